// paragan_ps_bench: push + pull bandwidth of a whole model's G and D tables
// through parameter-server shards on loopback (over their data planes, as
// workers do; --data_plane=false: over gRPC), against a plain TCP transfer of
// the same bytes (send them, receive them back) on loopback.
//
//   bazel-bin/tests/bench/paragan_ps_bench --model=biggan32 --iters=10
//   [--shards=2]
//
// One iteration = for G and D: pull the table from every shard (every
// tensor) and push a gradient for every trainable tensor (chunked, validated,
// one Adam step and for G the EMA on the server), shards in parallel and the
// two tables concurrently, as a worker's two table chains do
// (--tables_in_parallel=false: G, then D). Servers and client run in this
// process, the servers with their own gRPC threads; MB/s = payload bytes (push
// + pull) / seconds, 1 MB = 1e6 bytes. Also reported: the servers' own work
// timed without gRPC on the same tables, and the rate with the optimizer step's
// time taken out (the transport's share).

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/check.h"
#include "common/malloc_tuning.h"
#include "common/transport_args.h"
#include "grpcpp/grpcpp.h"
#include "server/data_plane_server.h"
#include "server/parameter_server_service.h"
#include "server/ps_client.h"
#include "server/shard.h"
#include "worker/train/init_networks.h"

ABSL_FLAG(std::string, model, "biggan32", "dcgan32 | biggan32");
ABSL_FLAG(int, iters, 10, "timed push+pull iterations (after 1 warm-up)");
ABSL_FLAG(int, threads, 1, "CPU threads of the server's Adam kernel");
ABSL_FLAG(int, chunk_bytes, 1 << 20, "payload bytes per chunk (both ways)");
ABSL_FLAG(std::string, dtype, "float32", "float32 | bfloat16 on the wire");
ABSL_FLAG(int, shards, 1,
          "parameter-server shards (each its own gRPC server); the client "
          "pulls and pushes them in parallel, as a worker does");
ABSL_FLAG(bool, tables_in_parallel, true,
          "G's and D's pull+push run concurrently, as a worker's two table "
          "chains do; false: G, then D");
ABSL_FLAG(int, tcp_streams, 1,
          "plain-TCP connections the same bytes are split over, in parallel");
ABSL_FLAG(bool, data_plane, true,
          "tensors through each shard's data plane (server/data_plane.h), as "
          "workers do by default; false: through gRPC");
ABSL_FLAG(int, repeats, 3,
          "timed rounds of --iters iterations, each with its own plain-TCP "
          "run; the median is reported");

namespace paragan {
namespace {

constexpr int kMaxMessage = 16 << 20;

// Plain TCP: the client sends `bytes` and reads `bytes` back per iteration;
// the server reads them and echoes a same-sized buffer.
double PlainTcpOneStream(int64_t push_bytes, int64_t pull_bytes, int iters) {
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
  return s;
}

// `streams` connections in parallel, each moving its share of the bytes.
double PlainTcpMBps(int64_t push_bytes, int64_t pull_bytes, int iters,
                    int streams) {
  std::vector<double> seconds(static_cast<size_t>(streams));
  std::vector<std::thread> threads;
  for (int i = 0; i < streams; ++i) {
    threads.emplace_back([&, i] {
      seconds[static_cast<size_t>(i)] =
          PlainTcpOneStream(push_bytes / streams, pull_bytes / streams, iters);
    });
  }
  for (std::thread& t : threads) t.join();
  const double s = *std::max_element(seconds.begin(), seconds.end());
  return static_cast<double>(push_bytes + pull_bytes) * iters / s / 1e6;
}

// One shard in this process: its tables, its service and a client of it.
struct BenchShard {
  std::unique_ptr<ParameterShard> shard;
  std::unique_ptr<ShardHandler> handler;
  std::unique_ptr<ParameterServerService> service;
  std::unique_ptr<grpc::Server> server;
  std::unique_ptr<DataPlaneServer> data_plane;
  std::unique_ptr<ParameterServerClient> client;
  // Per table: the gradients pushed (owned, so pushes send them zero-copy).
  std::map<std::string, std::vector<PushTensor>> push;
  std::vector<std::shared_ptr<std::vector<float>>> storage;
  std::map<std::string, PulledTable> pulled;  // per table, the last pull
};

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Runs f(i) for i in [0, n) in parallel threads (the worker's pattern).
template <typename F>
void ForEachShard(int n, F f) {
  if (n == 1) return f(0);
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i) threads.emplace_back([&f, i] { f(i); });
  for (std::thread& t : threads) t.join();
}

int Run() {
  const std::string model = absl::GetFlag(FLAGS_model);
  const int iters = std::max(1, absl::GetFlag(FLAGS_iters));
  const int repeats = std::max(1, absl::GetFlag(FLAGS_repeats));
  const int num_shards = std::max(1, absl::GetFlag(FLAGS_shards));
  const v1::DType dtype =
      absl::GetFlag(FLAGS_dtype) == "bfloat16" ? v1::BFLOAT16 : v1::FLOAT32;
  const int wire = dtype == v1::BFLOAT16 ? 2 : 4;
  absl::StatusOr<NetworkInit> network =
      MakeNetworkInit(DefaultTrainerConfig(model));
  if (!network.ok()) {
    std::cerr << network.status() << std::endl;
    return 1;
  }
  std::vector<BenchShard> shards(static_cast<size_t>(num_shards));
  std::mt19937 gen(1);
  std::normal_distribution<float> dist(0.0f, 1e-3f);
  int64_t push_floats = 0, pull_floats = 0;
  for (int i = 0; i < num_shards; ++i) {
    BenchShard& b = shards[static_cast<size_t>(i)];
    ShardOptions so;
    so.shard_id = i;
    so.num_shards = num_shards;
    so.network = *network;
    so.g.adam = network->g_adam;
    so.d.adam = network->d_adam;
    so.g.ema_decay = 0.999f;
    so.threads = absl::GetFlag(FLAGS_threads);
    absl::StatusOr<std::unique_ptr<ParameterShard>> shard =
        ParameterShard::Create(so);
    if (!shard.ok()) {
      std::cerr << shard.status() << std::endl;
      return 1;
    }
    b.shard = *std::move(shard);
    ServiceOptions sopts;
    sopts.shard_id = i;
    sopts.num_shards = num_shards;
    sopts.model = model;
    sopts.chunk_bytes = absl::GetFlag(FLAGS_chunk_bytes);
    b.handler =
        std::make_unique<ShardHandler>(sopts, b.shard->tables(), nullptr);
    b.service = std::make_unique<ParameterServerService>(b.handler.get());
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port);
    builder.SetMaxReceiveMessageSize(kMaxMessage);
    builder.SetMaxSendMessageSize(kMaxMessage);
    SetTensorTransportArgs(&builder);
    builder.RegisterService(b.service.get());
    b.server = builder.BuildAndStart();
    if (absl::GetFlag(FLAGS_data_plane)) {
      DataPlaneServer::Options dopts;
      dopts.bind_address = "127.0.0.1";
      absl::StatusOr<std::unique_ptr<DataPlaneServer>> dp =
          DataPlaneServer::Start(dopts, b.handler.get());
      PG_CHECK_OK(dp.status());
      b.data_plane = *std::move(dp);
    }
    ParameterServerClient::Options co;
    co.chunk_bytes = absl::GetFlag(FLAGS_chunk_bytes);
    b.client = std::make_unique<ParameterServerClient>(
        absl::StrCat("127.0.0.1:", port), co);
    if (auto r = b.client->Register("bench", v1::BOTH); !r.ok()) {
      std::cerr << r.status() << std::endl;
      return 1;
    }
    for (ParameterTable* t : b.shard->tables()) {
      std::vector<PushTensor>& push = b.push[t->name()];
      for (const TableTensorSpec& spec : t->specs()) {
        pull_floats += NumElements(spec.shape);
        if (!spec.trainable) continue;
        auto v = std::make_shared<std::vector<float>>(
            static_cast<size_t>(NumElements(spec.shape)));
        for (float& x : *v) x = dist(gen);
        push_floats += static_cast<int64_t>(v->size());
        PushTensor p;
        p.name = spec.name;
        p.shape = spec.shape;
        p.values = v->data();
        p.owner = v;
        push.push_back(std::move(p));
        b.storage.push_back(std::move(v));
      }
    }
  }
  const int64_t push_bytes = push_floats * wire,
                pull_bytes = pull_floats * wire;
  const std::vector<std::string> table_names = {kGeneratorTable,
                                                kDiscriminatorTable};
  // One iteration, as a worker's step: per table, pull every shard in
  // parallel, then push every shard in parallel; the two tables one after the
  // other or (--tables_in_parallel) concurrently.
  const bool tables_in_parallel = absl::GetFlag(FLAGS_tables_in_parallel);
  std::mutex time_mu;
  double pull_s = 0, push_s = 0;
  auto iteration = [&](bool timed) {
    auto one_table = [&](const std::string& table) {
      std::vector<int64_t> versions(static_cast<size_t>(num_shards), 0);
      const absl::Time t0 = absl::Now();
      ForEachShard(num_shards, [&](int i) {
        BenchShard& b = shards[static_cast<size_t>(i)];
        // As a worker does: the previous pull's memory takes the next.
        PulledTable& previous = b.pulled[table];
        auto pulled = b.client->Pull(table, "bench", {}, dtype, 0, &previous);
        PG_CHECK_OK(pulled.status());
        versions[static_cast<size_t>(i)] = pulled->version;
        previous = *std::move(pulled);
      });
      const absl::Time t1 = absl::Now();
      ForEachShard(num_shards, [&](int i) {
        BenchShard& b = shards[static_cast<size_t>(i)];
        auto r =
            b.client->Push(table, "bench", versions[static_cast<size_t>(i)],
                           b.push[table], dtype);
        PG_CHECK_OK(r.status());
        PG_CHECK(r->applied());
      });
      if (timed) {
        std::lock_guard<std::mutex> lock(time_mu);
        pull_s += absl::ToDoubleSeconds(t1 - t0);
        push_s += absl::ToDoubleSeconds(absl::Now() - t1);
      }
    };
    if (!tables_in_parallel) {
      for (const std::string& table : table_names) one_table(table);
      return;
    }
    std::thread other([&] { one_table(table_names[1]); });
    one_table(table_names[0]);
    other.join();
  };
  // The optimizer's share, timed on the same tables without gRPC.
  std::vector<std::map<std::string, TensorMap>> grads(shards.size());
  for (size_t i = 0; i < shards.size(); ++i) {
    for (const auto& [table, push] : shards[i].push) {
      for (const PushTensor& p : push) {
        grads[i][table][p.name].assign(p.values,
                                       p.values + NumElements(p.shape));
      }
    }
  }
  std::printf(
      "model %s, %d shard(s), tensors over %s, %s on the wire: push %.1f MB "
      "(G+D gradients), pull %.1f MB (G+D values+buffers) per iteration, G "
      "and D %s; %d repeats of %d iterations; plain TCP over %d "
      "connection(s)\n",
      model.c_str(), num_shards,
      absl::GetFlag(FLAGS_data_plane) ? "the data plane" : "gRPC",
      absl::GetFlag(FLAGS_dtype).c_str(), push_bytes / 1e6, pull_bytes / 1e6,
      tables_in_parallel ? "concurrently" : "one after the other", repeats,
      iters, absl::GetFlag(FLAGS_tcp_streams));
  iteration(false);  // warm-up
  std::vector<double> ratios, ps_rates, tcp_rates, transport_ratios;
  for (int rep = 0; rep < repeats; ++rep) {
    pull_s = push_s = 0;
    const absl::Time start = absl::Now();
    for (int i = 0; i < iters; ++i) iteration(true);
    const double s = absl::ToDoubleSeconds(absl::Now() - start);
    const double ps_mbps =
        static_cast<double>(push_bytes + pull_bytes) * iters / s / 1e6;
    // SharedSnapshot (what a pull takes) and ApplyGradients (validation,
    // Adam, EMA)
    // of every shard, one after the other, as the server's own work.
    double snap_s = 0, apply_s = 0;
    for (int i = 0; i < iters; ++i) {
      for (size_t k = 0; k < shards.size(); ++k) {
        for (ParameterTable* t : shards[k].shard->tables()) {
          const absl::Time t0 = absl::Now();
          int64_t version = 0;
          {
            // What a pull takes (shared, copy-on-write), released before
            // the step as a finished pull's is.
            auto snap = t->SharedSnapshot();
            version = snap->version;
          }
          const absl::Time t1 = absl::Now();
          auto r = t->ApplyGradients("bench", version, grads[k][t->name()]);
          PG_CHECK_OK(r.status());
          snap_s += absl::ToDoubleSeconds(t1 - t0);
          apply_s += absl::ToDoubleSeconds(absl::Now() - t1);
        }
      }
    }
    const double tcp_mbps =
        PlainTcpMBps(push_bytes, pull_bytes, iters,
                     std::max(1, absl::GetFlag(FLAGS_tcp_streams)));
    const double transport_s = s - apply_s;
    const double transport_mbps = static_cast<double>(push_bytes + pull_bytes) *
                                  iters / transport_s / 1e6;
    std::printf(
        "repeat %d: parameter server push+pull %.1f MB/s (push %.1f MB/s "
        "incl. Adam, pull %.1f MB/s), %.1f ms per iteration; plain TCP %.1f "
        "MB/s; ratio %.2f | server work alone %.1f ms per iteration "
        "(snapshot %.1f, validate + Adam + EMA %.1f); without the optimizer "
        "step: %.1f MB/s, ratio %.2f\n",
        rep + 1, ps_mbps, push_bytes * iters / push_s / 1e6,
        pull_bytes * iters / pull_s / 1e6, 1e3 * s / iters, tcp_mbps,
        ps_mbps / tcp_mbps, 1e3 * (snap_s + apply_s) / iters,
        1e3 * snap_s / iters, 1e3 * apply_s / iters, transport_mbps,
        transport_mbps / tcp_mbps);
    ratios.push_back(ps_mbps / tcp_mbps);
    ps_rates.push_back(ps_mbps);
    tcp_rates.push_back(tcp_mbps);
    transport_ratios.push_back(transport_mbps / tcp_mbps);
  }
  for (BenchShard& b : shards) {
    if (b.data_plane) b.data_plane->Shutdown();
    b.server->Shutdown();
  }
  std::printf(
      "median: parameter server push+pull %.1f MB/s, plain TCP %.1f MB/s, "
      "ratio %.2f (without the optimizer step: %.2f)\n",
      Median(ps_rates), Median(tcp_rates), Median(ratios),
      Median(transport_ratios));
  return 0;
}

}  // namespace
}  // namespace paragan

int main(int argc, char** argv) {
  paragan::KeepLargeAllocationsInHeap();
  absl::SetProgramUsageMessage(
      "Push+pull bandwidth through parameter-server shards vs plain TCP. See "
      "server/ps_bench.cc.");
  absl::ParseCommandLine(argc, argv);
  return paragan::Run();
}
