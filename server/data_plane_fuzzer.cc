// Fuzzes a shard's data-plane server end to end: each input is the bytes a
// client sends on one TCP connection to a real DataPlaneServer (on
// 127.0.0.1, over a shard with small G and D tables and a registered worker
// "w0"), followed by a half-close; the fuzzer then reads the replies until
// the server hangs up. Frame decoding, metadata parsing, payload reads and
// the pull and push paths all see the bytes, on a shard open to anyone and
// on one that requires a bearer token (its first-frame check). The server
// must answer or hang up, never crash, and keep serving the next
// connection.

#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/wait_for.h"
#include "google/protobuf/stubs/logging.h"
#include "server/data_plane.h"
#include "server/data_plane_server.h"
#include "server/shard_handler.h"
#include "server/table.h"
#include "server/table_names.h"
#include "tools/fuzz/fuzz_target.h"

namespace paragan {
namespace {

struct Shard {
  std::unique_ptr<ParameterTable> g, d;
  std::unique_ptr<ShardHandler> handler;
  std::unique_ptr<DataPlaneServer> server;
};

constexpr char kToken[] = "fuzz-token-0123456789";

Shard* StartShard(const std::string& auth_token) {
  auto* s = new Shard;  // lives for the process, as a server does
  TableConfig g{kGeneratorTable, {1e-4f, 0.5f, 0.999f, 1e-6f}, {}};
  g.ema_decay = 0.9f;
  s->g = *ParameterTable::Create(
      g, {{{"g.w", {6}, true}, std::vector<float>(6, 0.1f)}});
  TableConfig d{kDiscriminatorTable, {4e-4f, 0.5f, 0.999f, 1e-6f}, {}};
  s->d = *ParameterTable::Create(
      d, {{{"conv.weight", {2, 3}, true}, std::vector<float>(6, 0.2f)},
          {{"bias", {3}, true}, std::vector<float>(3, 0.0f)},
          {{"bn.running_var", {2}, false}, {1.0f, 1.0f}}});
  ServiceOptions o;
  o.model = "fuzz";
  o.max_pull_wait = absl::Milliseconds(5);  // a min_version pull must not stall
  o.auth_token = auth_token;
  s->handler = std::make_unique<ShardHandler>(
      o, std::vector<ParameterTable*>{s->g.get(), s->d.get()}, nullptr);
  v1::RegisterRequest r;
  r.set_worker_id("w0");
  r.set_role(v1::BOTH);
  FuzzCheck(s->handler->Register(r).ok(), "register w0");
  DataPlaneServer::Options dopts;
  dopts.bind_address = "127.0.0.1";
  dopts.io_timeout = absl::Seconds(2);
  absl::StatusOr<std::unique_ptr<DataPlaneServer>> server =
      DataPlaneServer::Start(dopts, s->handler.get());
  FuzzCheck(server.ok(), "start the data-plane server");
  s->server = *std::move(server);
  return s;
}

std::string Frame(FrameKind kind, const google::protobuf::MessageLite& meta,
                  const std::string& payload) {
  FrameHeader h;
  h.kind = static_cast<uint16_t>(kind);
  const std::string m = meta.SerializeAsString();
  h.meta_bytes = static_cast<uint32_t>(m.size());
  h.payload_bytes = payload.size();
  std::string out(reinterpret_cast<const char*>(&h), sizeof(h));
  return out + m + payload;
}

std::string Floats(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()),
                     v.size() * sizeof(float));
}

}  // namespace

std::vector<std::string> FuzzSeeds() {
  v1::PullRequest pull;
  pull.set_table("D");
  pull.set_worker_id("w0");
  pull.set_dtype(v1::FLOAT32);
  v1::PullRequest pull_g = pull;
  pull_g.set_table("G_ema");
  pull_g.set_dtype(v1::BFLOAT16);
  pull_g.add_tensors("g.w");
  v1::DataPlanePush push;
  push.set_table("D");
  push.set_worker_id("w0");
  push.set_base_version(0);
  push.set_push_id(1);
  push.set_dtype(v1::FLOAT32);
  auto add = [&push](const std::string& name, std::vector<int64_t> shape,
                     v1::TensorKind kind) {
    v1::DataPlaneTensor* t = push.add_tensors();
    t->set_name(name);
    for (int64_t d : shape) t->add_shape(d);
    t->set_kind(kind);
  };
  add("conv.weight", {2, 3}, v1::GRADIENT);
  add("bias", {3}, v1::GRADIENT);
  add("bn.running_var", {2}, v1::VALUE);
  const std::string payload = Floats(
      {0.1f, -0.2f, 0.3f, 0.0f, 1.0f, -1.0f, 0.5f, 0.5f, 0.5f, 2.0f, 3.0f});
  FrameHeader auth;
  auth.kind = static_cast<uint16_t>(FrameKind::kAuth);
  auth.meta_bytes = sizeof(kToken) - 1;
  const std::string auth_frame =
      std::string(reinterpret_cast<const char*>(&auth), sizeof(auth)) + kToken;
  return {Frame(FrameKind::kPull, pull, ""),
          Frame(FrameKind::kPull, pull_g, ""),
          Frame(FrameKind::kPush, push, payload),
          Frame(FrameKind::kPush, push, payload) +
              Frame(FrameKind::kPull, pull, ""),
          auth_frame + Frame(FrameKind::kPull, pull, ""),
          auth_frame + Frame(FrameKind::kPush, push, payload)};
}

}  // namespace paragan

namespace paragan {
namespace {

// One connection: the input, a half-close, then every reply byte.
void Converse(int port, const uint8_t* data, size_t size) {
  absl::StatusOr<Socket> s = ConnectTcp("127.0.0.1", port, absl::Seconds(10));
  FuzzCheck(s.ok(), "the server keeps accepting connections");
  if (size > 0) {
    // The server may hang up before reading everything: not an error.
    (void)SendAll(s->fd(), {{const_cast<uint8_t*>(data), size}});
  }
  shutdown(s->fd(), SHUT_WR);
  char buf[4096];
  for (;;) {
    const ssize_t n = recv(s->fd(), buf, sizeof(buf), 0);
    if (n > 0) continue;
    // libFuzzer's timer signals interrupt the wait.
    if (n < 0 && errno == EINTR) continue;
    FuzzCheck(n == 0 || errno == ECONNRESET || errno == EPIPE,
              "the server answers and hangs up within its io timeout");
    break;
  }
  // Reset instead of TIME_WAIT: a long run makes millions of connections.
  linger l{1, 0};
  setsockopt(s->fd(), SOL_SOCKET, SO_LINGER, &l, sizeof(l));
}

}  // namespace
}  // namespace paragan

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Protobuf logs every invalid UTF-8 string it parses: noise here.
  static const bool quiet = (google::protobuf::SetLogHandler(nullptr), true);
  (void)quiet;
  using namespace paragan;
  // One shard open to anyone, one that requires kToken (the seeds with an
  // auth frame get past its first-frame check).
  static Shard* open = StartShard("");
  static Shard* locked = StartShard(kToken);
  for (Shard* shard : {open, locked}) {
    Converse(shard->server->port(), data, size);
    // The server's thread is done with the connection before the next
    // input (and before libFuzzer counts this one's allocations).
    FuzzCheck(WaitFor([&] { return shard->server->open_connections() == 0; },
                      absl::Seconds(5), absl::Microseconds(50)),
              "the server lets go of a finished connection");
  }
  return 0;
}
