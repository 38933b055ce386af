// paragan_ps_bench: push + pull bandwidth of a whole model's G and D tables
// through one parameter-server shard over loopback gRPC, against a plain TCP
// transfer of the same bytes (send them, receive them back) on loopback.
//
//   bazel-bin/server/paragan_ps_bench --model=biggan32 --iters=10
//
// One iteration = push a gradient for every trainable tensor of G and D
// (chunked, validated, one Adam step per table on the server) and pull both
// tables back (every tensor, float32). Both sides run in this process, the
// gRPC server with its own threads; MB/s = payload bytes (push + pull) /
// seconds, 1 MB = 1e6 bytes.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <random>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "grpcpp/grpcpp.h"
#include "server/parameter_server_service.h"
#include "server/ps_client.h"
#include "server/shard.h"
#include "worker/train/gan_trainer.h"

ABSL_FLAG(std::string, model, "biggan32", "dcgan32 | biggan32");
ABSL_FLAG(int, iters, 10, "timed push+pull iterations (after 1 warm-up)");
ABSL_FLAG(int, threads, 1, "CPU threads of the server's Adam kernel");
ABSL_FLAG(int, chunk_bytes, 1 << 20, "payload bytes per chunk (both ways)");
ABSL_FLAG(std::string, dtype, "float32", "float32 | bfloat16 on the wire");

namespace paragan {
namespace {

constexpr int kMaxMessage = 16 << 20;

// Plain TCP: the client sends `bytes` and reads `bytes` back per iteration;
// the server reads them and echoes a same-sized buffer.
double PlainTcpMBps(int64_t push_bytes, int64_t pull_bytes, int iters) {
  const int listener = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len);
  listen(listener, 1);
  auto read_all = [](int fd, char* buf, int64_t n) {
    while (n > 0) {
      const ssize_t r =
          read(fd, buf, static_cast<size_t>(std::min<int64_t>(n, 1 << 20)));
      if (r <= 0) return false;
      n -= r;
    }
    return true;
  };
  auto write_all = [](int fd, const char* buf, int64_t n) {
    while (n > 0) {
      const ssize_t w =
          write(fd, buf, static_cast<size_t>(std::min<int64_t>(n, 1 << 20)));
      if (w <= 0) return false;
      n -= w;
    }
    return true;
  };
  const int total = iters + 1;
  std::thread server([&] {
    const int fd = accept(listener, nullptr, nullptr);
    std::vector<char> in(static_cast<size_t>(push_bytes));
    std::vector<char> out(static_cast<size_t>(pull_bytes), 1);
    for (int i = 0; i < total; ++i) {
      if (!read_all(fd, in.data(), push_bytes)) break;
      if (!write_all(fd, out.data(), pull_bytes)) break;
    }
    close(fd);
  });
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  std::vector<char> out(static_cast<size_t>(push_bytes), 2);
  std::vector<char> in(static_cast<size_t>(pull_bytes));
  absl::Time start;
  for (int i = 0; i < total; ++i) {
    if (i == 1) start = absl::Now();
    write_all(fd, out.data(), push_bytes);
    read_all(fd, in.data(), pull_bytes);
  }
  const double s = absl::ToDoubleSeconds(absl::Now() - start);
  close(fd);
  server.join();
  close(listener);
  return static_cast<double>(push_bytes + pull_bytes) * iters / s / 1e6;
}

int Run() {
  const std::string model = absl::GetFlag(FLAGS_model);
  const int iters = std::max(1, absl::GetFlag(FLAGS_iters));
  const v1::DType dtype =
      absl::GetFlag(FLAGS_dtype) == "bfloat16" ? v1::BFLOAT16 : v1::FLOAT32;
  const int wire = dtype == v1::BFLOAT16 ? 2 : 4;
  ShardOptions so;
  so.shard_id = 0;
  so.num_shards = 1;
  const TrainerConfig defaults = DefaultTrainerConfig(model);
  so.model = defaults.model;
  so.g.adam = defaults.g_adam;
  so.d.adam = defaults.d_adam;
  so.g.ema_decay = 0.999f;
  so.threads = absl::GetFlag(FLAGS_threads);
  absl::StatusOr<std::unique_ptr<ParameterShard>> shard =
      ParameterShard::Create(so);
  if (!shard.ok()) {
    std::cerr << shard.status() << std::endl;
    return 1;
  }
  ServiceOptions sopts;
  sopts.model = model;
  sopts.chunk_bytes = absl::GetFlag(FLAGS_chunk_bytes);
  ParameterServerService service(sopts, (*shard)->tables(), nullptr);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                           &port);
  builder.SetMaxReceiveMessageSize(kMaxMessage);
  builder.SetMaxSendMessageSize(kMaxMessage);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ParameterServerClient::Options co;
  co.chunk_bytes = absl::GetFlag(FLAGS_chunk_bytes);
  ParameterServerClient client(
      ParameterServerClient::Connect(absl::StrCat("127.0.0.1:", port)), co);
  if (auto r = client.Register("bench", v1::BOTH); !r.ok()) {
    std::cerr << r.status() << std::endl;
    return 1;
  }
  // Gradients: small random values for every trainable tensor.
  struct Grads {
    std::string table;
    std::vector<std::vector<float>> values;
    std::vector<PushTensor> push;
  };
  std::vector<Grads> grads;
  int64_t push_floats = 0, pull_floats = 0;
  std::mt19937 gen(1);
  std::normal_distribution<float> dist(0.0f, 1e-3f);
  for (ParameterTable* t : (*shard)->tables()) {
    Grads g;
    g.table = t->name();
    for (const TableTensorSpec& s : t->specs()) {
      pull_floats += NumElements(s.shape);
      if (!s.trainable) continue;
      std::vector<float> v(static_cast<size_t>(NumElements(s.shape)));
      for (float& x : v) x = dist(gen);
      push_floats += static_cast<int64_t>(v.size());
      g.values.push_back(std::move(v));
    }
    size_t k = 0;
    for (const TableTensorSpec& s : t->specs()) {
      if (!s.trainable) continue;
      g.push.push_back({s.name, s.shape, g.values[k++].data(), v1::GRADIENT});
    }
    grads.push_back(std::move(g));
  }
  const int64_t push_bytes = push_floats * wire,
                pull_bytes = pull_floats * wire;
  absl::Time start;
  double push_s = 0, pull_s = 0;
  for (int i = 0; i <= iters; ++i) {
    if (i == 1) start = absl::Now();
    for (const Grads& g : grads) {
      const absl::Time t0 = absl::Now();
      auto pulled = client.Pull(g.table, "bench", {}, dtype);
      const absl::Time t1 = absl::Now();
      if (!pulled.ok()) {
        std::cerr << pulled.status() << std::endl;
        return 1;
      }
      auto r = client.Push(g.table, "bench", pulled->version, g.push, dtype);
      const absl::Time t2 = absl::Now();
      if (!r.ok() || !r->applied()) {
        std::cerr << "push failed: " << r.status() << std::endl;
        return 1;
      }
      if (i > 0) {
        pull_s += absl::ToDoubleSeconds(t1 - t0);
        push_s += absl::ToDoubleSeconds(t2 - t1);
      }
    }
  }
  const double s = absl::ToDoubleSeconds(absl::Now() - start);
  const double ps_mbps =
      static_cast<double>(push_bytes + pull_bytes) * iters / s / 1e6;
  server->Shutdown();
  // The server's own work without gRPC: snapshot (a pull's copy) and
  // ApplyGradients (validation, Adam, EMA) on the same tables.
  double snap_s = 0, apply_s = 0;
  {
    std::vector<TensorMap> maps;
    for (const Grads& g : grads) {
      TensorMap m;
      for (size_t k = 0; k < g.push.size(); ++k)
        m[g.push[k].name] = g.values[k];
      maps.push_back(std::move(m));
    }
    for (int i = 0; i < iters; ++i) {
      size_t k = 0;
      for (ParameterTable* t : (*shard)->tables()) {
        const absl::Time t0 = absl::Now();
        auto snap = t->Snapshot();
        const absl::Time t1 = absl::Now();
        auto r = t->ApplyGradients("bench", snap->version, maps[k++]);
        const absl::Time t2 = absl::Now();
        snap_s += absl::ToDoubleSeconds(t1 - t0);
        apply_s += absl::ToDoubleSeconds(t2 - t1);
      }
    }
  }
  const double tcp_mbps = PlainTcpMBps(push_bytes, pull_bytes, iters);
  std::printf(
      "model %s, %s on the wire: push %.1f MB (G+D gradients), pull %.1f MB "
      "(G+D values+buffers) per iteration, %d iterations\n",
      model.c_str(), absl::GetFlag(FLAGS_dtype).c_str(), push_bytes / 1e6,
      pull_bytes / 1e6, iters);
  std::printf(
      "parameter server push+pull: %.1f MB/s (push %.1f MB/s incl. "
      "Adam, pull %.1f MB/s), %.1f ms per iteration\n",
      ps_mbps, push_bytes * iters / push_s / 1e6,
      pull_bytes * iters / pull_s / 1e6, 1e3 * s / iters);
  std::printf("plain TCP, same bytes:       %.1f MB/s\n", tcp_mbps);
  const double server_ms = 1e3 * (snap_s + apply_s) / iters;
  const double transport_s = s - (snap_s + apply_s);
  std::printf(
      "server work without gRPC: %.1f ms per iteration (snapshot %.1f ms, "
      "validate + Adam + EMA %.1f ms); transport alone: %.1f MB/s, ratio "
      "%.2f\n",
      server_ms, 1e3 * snap_s / iters, 1e3 * apply_s / iters,
      static_cast<double>(push_bytes + pull_bytes) * iters / transport_s / 1e6,
      static_cast<double>(push_bytes + pull_bytes) * iters / transport_s / 1e6 /
          tcp_mbps);
  std::printf("ratio parameter server / plain TCP: %.2f\n", ps_mbps / tcp_mbps);
  return 0;
}

}  // namespace
}  // namespace paragan

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Push+pull bandwidth of one shard vs plain TCP. See server/ps_bench.cc.");
  absl::ParseCommandLine(argc, argv);
  return paragan::Run();
}
