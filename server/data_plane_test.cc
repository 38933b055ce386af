// The tensor data plane: framing over real sockets, and a shard's Pull and
// Push through it (real gRPC server + data-plane server on 127.0.0.1),
// checked bit for bit against the gRPC path and the engine's Adam.

#include "server/data_plane.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmath>
#include <limits>
#include <random>
#include <thread>

#include "absl/time/clock.h"
#include "common/check.h"
#include "common/optim_kernels.h"
#include "common/tensor_codec.h"
#include "common/wait_for.h"
#include "grpcpp/grpcpp.h"
#include "server/data_plane_server.h"
#include "server/parameter_server_service.h"
#include "server/ps_client.h"

namespace paragan {
namespace {

TEST(HostOfTargetTest, NamesTheHostOfEveryTargetForm) {
  EXPECT_EQ(HostOfTarget("127.0.0.1:5000"), "127.0.0.1");
  EXPECT_EQ(HostOfTarget("ps-0.ps.default.svc:5000"), "ps-0.ps.default.svc");
  EXPECT_EQ(HostOfTarget("dns:///ps-1:5000"), "ps-1");
  EXPECT_EQ(HostOfTarget("ipv4:10.0.0.2:7"), "10.0.0.2");
  EXPECT_EQ(HostOfTarget("[::1]:5000"), "::1");
  EXPECT_EQ(HostOfTarget("localhost"), "localhost");
  EXPECT_EQ(HostOfTarget("unix:/tmp/ps.sock"), "");
}

TEST(FramingTest, SendAllDeliversMoreThanIovMaxPiecesInOrder) {
  int fds[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  Socket a(fds[0]), b(fds[1]);
  // 3000 pieces of 1 to 700 bytes: several sendmsg calls and partial writes.
  std::vector<std::string> pieces;
  std::string expected;
  std::mt19937 gen(5);
  for (int i = 0; i < 3000; ++i) {
    pieces.push_back(
        std::string(1 + gen() % 700, static_cast<char>('a' + i % 26)));
    expected += pieces.back();
  }
  std::vector<iovec> iov;
  for (std::string& p : pieces) iov.push_back({p.data(), p.size()});
  std::string received(expected.size(), '\0');
  std::thread reader([&] {
    ASSERT_TRUE(RecvAll(b.fd(), received.data(), received.size()).ok());
  });
  ASSERT_TRUE(SendAll(a.fd(), iov).ok());
  reader.join();
  EXPECT_EQ(received, expected);
}

TEST(FramingTest, RefusesHeadersThatAreNotOurs) {
  int fds[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  Socket a(fds[0]), b(fds[1]);
  FrameHeader h;
  std::string meta;
  h.magic = 0x54544848;  // "HHTT": an HTTP client on the wrong port
  ASSERT_EQ(write(a.fd(), &h, sizeof(h)), static_cast<ssize_t>(sizeof(h)));
  absl::Status st = RecvFrameStart(b.fd(), &h, &meta);
  EXPECT_TRUE(absl::IsInvalidArgument(st)) << st;
  EXPECT_NE(st.message().find("magic"), std::string::npos) << st;

  h = FrameHeader();
  h.kind = 1;
  h.meta_bytes = kDataPlaneMaxMetaBytes + 1;
  ASSERT_EQ(write(a.fd(), &h, sizeof(h)), static_cast<ssize_t>(sizeof(h)));
  st = RecvFrameStart(b.fd(), &h, &meta);
  EXPECT_TRUE(absl::IsInvalidArgument(st)) << st;

  a.Close();
  st = RecvFrameStart(b.fd(), &h, &meta);
  EXPECT_TRUE(absl::IsUnavailable(st)) << st;
}

std::vector<float> RandomVector(int64_t n, uint32_t seed, float scale) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> out(static_cast<size_t>(n));
  for (float& x : out) x = dist(gen);
  return out;
}

// D: two trainable tensors (one of 300 000 floats: 1.2 MB) and a buffer.
std::vector<TableTensor> DTensors() {
  return {{{"conv.weight", {8, 4, 5, 5}, true}, RandomVector(800, 1, 1)},
          {{"fc.weight", {300000}, true}, RandomVector(300000, 2, 1)},
          {{"bn.running_var", {4}, false}, {1, 2, 3, 4}}};
}

struct Push {
  std::vector<std::vector<float>> storage;
  std::vector<PushTensor> tensors;
  TensorMap gradients, buffers;  // the same, for ApplyGradients
};

Push DPush(uint32_t seed) {
  Push p;
  for (const TableTensor& t : DTensors()) {
    p.storage.push_back(
        t.spec.trainable
            ? RandomVector(NumElements(t.spec.shape), seed++, 0.01f)
            : std::vector<float>{5, 6, 7, 8});
  }
  int i = 0;
  for (const TableTensor& t : DTensors()) {
    const std::vector<float>& v = p.storage[i++];
    p.tensors.push_back({t.spec.name, t.spec.shape, v.data(),
                         t.spec.trainable ? v1::GRADIENT : v1::VALUE, nullptr});
    (t.spec.trainable ? p.gradients : p.buffers)[t.spec.name] = v;
  }
  return p;
}

class DataPlaneTest : public ::testing::Test {
 protected:
  std::unique_ptr<ParameterTable> MakeD(const UpdateRule& rule = {}) {
    TableConfig c{kDiscriminatorTable, {4e-4f, 0.5f, 0.999f, 1e-6f}, rule};
    return std::move(ParameterTable::Create(c, DTensors())).value();
  }

  void Start(const UpdateRule& rule = {}, int64_t max_push_bytes = 0,
             const std::string& auth_token = "") {
    d_ = MakeD(rule);
    reference_ = MakeD(rule);
    TableConfig g{kGeneratorTable, {1e-4f, 0.5f, 0.999f, 1e-6f}, {}};
    g.ema_decay = 0.9f;
    g_ = std::move(ParameterTable::Create(
                       g, {{{"g.w", {6}, true}, RandomVector(6, 9, 1)}}))
             .value();
    ServiceOptions o;
    o.model = "test";
    o.max_push_bytes = max_push_bytes;
    o.auth_token = auth_token;
    handler_ = std::make_unique<ShardHandler>(
        o, std::vector<ParameterTable*>{g_.get(), d_.get()}, nullptr);
    service_ = std::make_unique<ParameterServerService>(handler_.get());
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                       &port_);
    b.RegisterService(service_.get());
    server_ = b.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    DataPlaneServer::Options dopts = dp_options_;
    dopts.bind_address = "127.0.0.1";
    auto dp = DataPlaneServer::Start(dopts, handler_.get());
    ASSERT_TRUE(dp.ok()) << dp.status();
    data_plane_ = *std::move(dp);
    ParameterServerClient::Options co;
    co.timeout = absl::Seconds(30);
    co.security.auth_token = auth_token;
    client_ = std::make_unique<ParameterServerClient>(target(), co);
    auto r = client_->Register("w0", v1::BOTH);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->data_plane_port(), data_plane_->port());
    ASSERT_EQ(client_->data_plane_port(), data_plane_->port());
    reference_->RegisterWorker("w0");
  }

  std::string target() const { return "127.0.0.1:" + std::to_string(port_); }

  // A client of the same shard that uses gRPC only.
  std::unique_ptr<ParameterServerClient> GrpcClient() {
    ParameterServerClient::Options co;
    co.data_plane = false;
    auto c = std::make_unique<ParameterServerClient>(target(), co);
    EXPECT_TRUE(c->Register("w0", v1::BOTH).ok());
    EXPECT_EQ(c->data_plane_port(), 0);
    return c;
  }

  static std::map<std::string, std::vector<float>> Values(
      const PulledTable& t) {
    std::map<std::string, std::vector<float>> out;
    for (const auto& [name, x] : t.tensors) out[name] = x.values;
    return out;
  }

  std::map<std::string, std::vector<float>> TableValues(ParameterTable& t) {
    auto snap = t.Snapshot();
    EXPECT_TRUE(snap.ok());
    std::map<std::string, std::vector<float>> out;
    for (const TableTensor& x : snap->tensors) out[x.spec.name] = x.values;
    return out;
  }

  // A raw frame on a new connection; returns the reply's metadata.
  absl::StatusOr<v1::DataPlaneReply> RawCall(FrameKind kind,
                                             const std::string& meta,
                                             const std::string& payload,
                                             uint64_t claimed_payload) {
    absl::StatusOr<Socket> s =
        ConnectTcp("127.0.0.1", data_plane_->port(), absl::Seconds(10));
    if (!s.ok()) return s.status();
    FrameHeader h;
    h.kind = static_cast<uint16_t>(kind);
    h.meta_bytes = static_cast<uint32_t>(meta.size());
    h.payload_bytes = claimed_payload;
    std::string m = meta, p = payload;
    PG_RETURN_IF_ERROR(
        SendAll(s->fd(),
                {{&h, sizeof(h)}, {m.data(), m.size()}, {p.data(), p.size()}}));
    FrameHeader rh;
    std::string rmeta;
    PG_RETURN_IF_ERROR(RecvFrameStart(s->fd(), &rh, &rmeta));
    v1::DataPlaneReply reply;
    if (!reply.ParseFromString(rmeta)) return absl::DataLossError("reply");
    return reply;
  }

  void TearDown() override {
    if (data_plane_) data_plane_->Shutdown();
    if (server_) server_->Shutdown();
  }

  std::unique_ptr<ParameterTable> g_, d_, reference_;
  std::unique_ptr<ShardHandler> handler_;
  std::unique_ptr<ParameterServerService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<DataPlaneServer> data_plane_;
  std::unique_ptr<ParameterServerClient> client_;
  int port_ = 0;
  DataPlaneServer::Options dp_options_;  // tests set limits before Start
};

// Whether the server closed `fd` within `timeout` (recv sees the end).
bool ClosedByServer(int fd, absl::Duration timeout) {
  pollfd p{fd, POLLIN, 0};
  if (poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(timeout))) <= 0) {
    return false;
  }
  char c;
  return recv(fd, &c, 1, MSG_DONTWAIT) <= 0;
}

// Whether `fd` got the server's over-the-limit refusal (one reply frame,
// before anything was sent) and then its end.
bool Refused(int fd) {
  FrameHeader h;
  std::string meta;
  if (!RecvFrameStart(fd, &h, &meta).ok()) return false;
  v1::DataPlaneReply reply;
  if (h.kind != static_cast<uint16_t>(FrameKind::kReply) ||
      !reply.ParseFromString(meta) ||
      reply.code() != static_cast<int>(absl::StatusCode::kResourceExhausted) ||
      reply.message().rfind(kDataPlaneRefusedPrefix, 0) != 0) {
    return false;
  }
  return ClosedByServer(fd, absl::Seconds(3));
}

TEST_F(DataPlaneTest, ConnectionsOverThePerClientLimitAreClosedAndCounted) {
  dp_options_.max_connections_per_peer = 2;
  Start();
  std::vector<Socket> held;
  for (int i = 0; i < 2; ++i) {
    auto s = ConnectTcp("127.0.0.1", data_plane_->port(), absl::Seconds(5));
    ASSERT_TRUE(s.ok()) << s.status();
    held.push_back(*std::move(s));
  }
  ASSERT_TRUE(WaitFor([&] { return data_plane_->open_connections() == 2; },
                      absl::Seconds(5)));
  auto third = ConnectTcp("127.0.0.1", data_plane_->port(), absl::Seconds(5));
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_TRUE(Refused(third->fd())) << "a connection over the limit was kept";
  EXPECT_EQ(data_plane_->limit_hits(DataPlaneServer::kLimitPeerConnections), 1);
  EXPECT_EQ(data_plane_->open_connections(), 2);
  // The worker's client cannot get a data-plane connection either: its pull
  // still succeeds, over gRPC.
  auto pulled = client_->Pull(kDiscriminatorTable, "w0");
  ASSERT_TRUE(pulled.ok()) << pulled.status();
  EXPECT_EQ(client_->data_plane_port(), 0);
  // A place frees up once a connection ends.
  held.clear();
  EXPECT_TRUE(WaitFor([&] { return data_plane_->open_connections() == 0; },
                      absl::Seconds(5)));
}

TEST_F(DataPlaneTest, ConnectionsOverTheTotalLimitAreClosedAndCounted) {
  dp_options_.max_connections = 1;
  Start();
  auto first = ConnectTcp("127.0.0.1", data_plane_->port(), absl::Seconds(5));
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(WaitFor([&] { return data_plane_->open_connections() == 1; },
                      absl::Seconds(5)));
  auto second = ConnectTcp("127.0.0.1", data_plane_->port(), absl::Seconds(5));
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_TRUE(Refused(second->fd()));
  EXPECT_EQ(data_plane_->limit_hits(DataPlaneServer::kLimitConnections), 1);
  EXPECT_EQ(data_plane_->limit_hits(DataPlaneServer::kLimitPeerConnections), 0);
}

TEST_F(DataPlaneTest, AClientTricklingBytesIsCutAndFreesItsThread) {
  dp_options_.frame_timeout = absl::Milliseconds(500);
  dp_options_.min_bytes_per_s = 1000;
  Start();
  // Half a header, then nothing: cut 0.5 s after the connect.
  auto header_only =
      ConnectTcp("127.0.0.1", data_plane_->port(), absl::Seconds(5));
  ASSERT_TRUE(header_only.ok()) << header_only.status();
  FrameHeader h;
  h.kind = static_cast<uint16_t>(FrameKind::kPull);
  ASSERT_EQ(send(header_only->fd(), &h, sizeof(h) / 2, MSG_NOSIGNAL),
            static_cast<ssize_t>(sizeof(h) / 2));
  const absl::Time t0 = absl::Now();
  EXPECT_TRUE(ClosedByServer(header_only->fd(), absl::Seconds(5)));
  const absl::Duration took = absl::Now() - t0;
  EXPECT_GE(took, absl::Milliseconds(400));
  EXPECT_LT(took, absl::Seconds(2));
  EXPECT_EQ(data_plane_->limit_hits(DataPlaneServer::kLimitSlowFrame), 1);

  // A whole header announcing 2000 payload bytes, then 20 bytes/s: the
  // frame has 0.5 s + 2000 / 1000 s, then the connection is cut.
  auto trickler =
      ConnectTcp("127.0.0.1", data_plane_->port(), absl::Seconds(5));
  ASSERT_TRUE(trickler.ok()) << trickler.status();
  v1::PullRequest pull;
  pull.set_table(kDiscriminatorTable);
  pull.set_worker_id("w0");
  const std::string meta = pull.SerializeAsString();
  h.meta_bytes = static_cast<uint32_t>(meta.size());
  h.payload_bytes = 2000;
  std::string m = meta;
  ASSERT_TRUE(
      SendAll(trickler->fd(), {{&h, sizeof(h)}, {m.data(), m.size()}}).ok());
  const absl::Time t1 = absl::Now();
  bool cut = false;
  while (absl::Now() - t1 < absl::Seconds(6)) {
    const char byte = 0;
    if (send(trickler->fd(), &byte, 1, MSG_NOSIGNAL) != 1) {
      cut = true;
      break;
    }
    if (ClosedByServer(trickler->fd(), absl::Milliseconds(50))) {
      cut = true;
      break;
    }
  }
  const absl::Duration trickled = absl::Now() - t1;
  EXPECT_TRUE(cut) << "a trickling client held its connection for " << trickled;
  EXPECT_GE(trickled, absl::Seconds(2));
  EXPECT_LT(trickled, absl::Seconds(4));
  EXPECT_EQ(data_plane_->limit_hits(DataPlaneServer::kLimitSlowFrame), 2);
  EXPECT_TRUE(WaitFor([&] { return data_plane_->open_connections() == 0; },
                      absl::Seconds(5)));

  // A client that speaks at speed is served as before, after idling longer
  // than the frame timeout between calls.
  auto a = client_->Pull(kDiscriminatorTable, "w0");
  ASSERT_TRUE(a.ok()) << a.status();
  absl::SleepFor(absl::Seconds(1));
  auto b = client_->Pull(kDiscriminatorTable, "w0");
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_GT(client_->data_plane_port(), 0) << "the data plane was given up";
  EXPECT_EQ(data_plane_->limit_hits(DataPlaneServer::kLimitSlowFrame), 2);
}

TEST_F(DataPlaneTest, BadLimitsAreRefused) {
  ServiceOptions o;
  ShardHandler handler(o, {}, nullptr);
  DataPlaneServer::Options dopts;
  dopts.bind_address = "127.0.0.1";
  dopts.max_connections_per_peer = 0;
  auto dp = DataPlaneServer::Start(dopts, &handler);
  EXPECT_TRUE(absl::IsInvalidArgument(dp.status())) << dp.status();
}

TEST_F(DataPlaneTest, PullsWhatGrpcPullsBitForBit) {
  Start();
  auto grpc_client = GrpcClient();
  for (v1::DType dtype : {v1::FLOAT32, v1::BFLOAT16}) {
    for (const char* table :
         {kGeneratorTable, kDiscriminatorTable, kGeneratorEmaTable}) {
      auto a = client_->Pull(table, "w0", {}, dtype);
      auto b = grpc_client->Pull(table, "w0", {}, dtype);
      ASSERT_TRUE(a.ok()) << a.status();
      ASSERT_TRUE(b.ok()) << b.status();
      EXPECT_EQ(a->version, b->version);
      EXPECT_EQ(Values(*a), Values(*b)) << table << " dtype " << dtype;
      for (const auto& [name, t] : a->tensors) {
        EXPECT_EQ(t.shape, b->tensors.at(name).shape);
      }
    }
  }
  // Named tensors only; an unknown name is the server's error.
  auto some = client_->Pull(kDiscriminatorTable, "w0", {"bn.running_var"});
  ASSERT_TRUE(some.ok()) << some.status();
  ASSERT_EQ(some->tensors.size(), 1u);
  EXPECT_EQ(some->tensors.at("bn.running_var").values,
            (std::vector<float>{1, 2, 3, 4}));
  auto bad = client_->Pull(kDiscriminatorTable, "w0", {"nope"});
  EXPECT_FALSE(bad.ok());
  auto none = client_->Pull("X", "w0");
  EXPECT_TRUE(absl::IsNotFound(none.status())) << none.status();
}

TEST_F(DataPlaneTest, WithATokenEveryCallWithoutItIsRefusedAndChangesNothing) {
  const std::string token = "s3cret-token-0123456789";
  Start({}, 0, token);  // client_ has the token: it registered as w0
  const auto d_before = TableValues(*d_);
  const auto g_before = TableValues(*g_);
  const int64_t refused_before = handler_->auth().refused();
  Push p = DPush(3);

  // Every gRPC method, without a token and with a wrong one.
  int refusals = 0;
  for (const std::string& presented : {std::string(), token + "x"}) {
    ParameterServerClient::Options co;
    co.security.auth_token = presented;
    ParameterServerClient stranger(target(), co);
    auto reg = stranger.Register("w9", v1::BOTH);
    EXPECT_TRUE(absl::IsUnauthenticated(reg.status())) << reg.status();
    auto pull = stranger.Pull(kDiscriminatorTable, "w0");
    EXPECT_TRUE(absl::IsUnauthenticated(pull.status())) << pull.status();
    auto push = stranger.Push(kDiscriminatorTable, "w0", 0, p.tensors);
    EXPECT_TRUE(absl::IsUnauthenticated(push.status())) << push.status();
    auto state = stranger.GetState();
    EXPECT_TRUE(absl::IsUnauthenticated(state.status())) << state.status();
    EXPECT_NE(state.status().message().find("requires a bearer token"),
              std::string::npos)
        << state.status();
    // A stranger cannot make a worker leave.
    auto leave = stranger.Deregister("w0", absl::Seconds(5));
    EXPECT_TRUE(absl::IsUnauthenticated(leave.status())) << leave.status();
    refusals += 5;
  }

  // The data plane: a pull or push frame first, or a wrong auth frame.
  v1::PullRequest pull;
  pull.set_table(kDiscriminatorTable);
  pull.set_worker_id("w0");
  for (FrameKind kind : {FrameKind::kPull, FrameKind::kPush}) {
    auto r = RawCall(kind, pull.SerializeAsString(), "", 0);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->code(), static_cast<int>(absl::StatusCode::kUnauthenticated));
    ++refusals;
  }
  auto wrong = RawCall(FrameKind::kAuth, token.substr(1), "", 0);
  ASSERT_TRUE(wrong.ok()) << wrong.status();
  EXPECT_EQ(wrong->code(),
            static_cast<int>(absl::StatusCode::kUnauthenticated));
  ++refusals;
  EXPECT_EQ(TableValues(*d_), d_before);
  EXPECT_EQ(TableValues(*g_), g_before);
  EXPECT_EQ(d_->version(), 0);
  EXPECT_EQ(handler_->auth().refused() - refused_before, refusals);

  // The right token: pulls and pushes through the data plane work.
  ASSERT_GT(client_->data_plane_port(), 0);
  auto r = client_->Push(kDiscriminatorTable, "w0", 0, p.tensors);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->applied());
  auto pulled = client_->Pull(kDiscriminatorTable, "w0");
  ASSERT_TRUE(pulled.ok()) << pulled.status();
  EXPECT_EQ(pulled->version, 1);
  auto state = client_->GetState();
  EXPECT_TRUE(state.ok()) << state.status();
}

TEST_F(DataPlaneTest, PullReusesTheMemoryItIsLent) {
  Start();
  auto first = client_->Pull(kDiscriminatorTable, "w0");
  ASSERT_TRUE(first.ok());
  PulledTable previous = *std::move(first);
  const float* memory = previous.tensors.at("fc.weight").values.data();
  auto second =
      client_->Pull(kDiscriminatorTable, "w0", {}, v1::FLOAT32, 0, &previous);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_TRUE(previous.tensors.empty());
  EXPECT_EQ(second->tensors.at("fc.weight").values.data(), memory);
  EXPECT_EQ(Values(*second), TableValues(*d_));
}

TEST_F(DataPlaneTest, PushStepsLikeTheTableItself) {
  Start();
  for (int step = 0; step < 3; ++step) {
    Push p = DPush(10 * step + 1);
    auto r = client_->Push(kDiscriminatorTable, "w0", step, p.tensors);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_TRUE(r->accepted());
    EXPECT_TRUE(r->applied());
    EXPECT_EQ(r->new_version(), step + 1);
    auto want = reference_->ApplyGradients("w0", step, p.gradients, p.buffers);
    ASSERT_TRUE(want.ok());
  }
  EXPECT_EQ(TableValues(*d_), TableValues(*reference_));
  EXPECT_EQ(d_->version(), 3);

  // bfloat16 on the wire: the server steps with the rounded gradient.
  Push p = DPush(77);
  auto r = client_->Push(kDiscriminatorTable, "w0", 3, p.tensors, v1::BFLOAT16);
  ASSERT_TRUE(r.ok()) << r.status();
  for (auto& [name, g] : p.gradients) {
    for (float& x : g) x = BFloat16ToFloat(FloatToBFloat16(x));
  }
  ASSERT_TRUE(reference_->ApplyGradients("w0", 3, p.gradients, p.buffers).ok());
  EXPECT_EQ(TableValues(*d_), TableValues(*reference_));

  // G: a step moves G_ema too, and pulls of it see the new values.
  std::vector<float> gw = RandomVector(6, 3, 0.1f);
  auto rg = client_->Push(kGeneratorTable, "w0", 0,
                          {{"g.w", {6}, gw.data(), v1::GRADIENT, nullptr}});
  ASSERT_TRUE(rg.ok()) << rg.status();
  auto ema = client_->Pull(kGeneratorEmaTable, "w0");
  ASSERT_TRUE(ema.ok());
  EXPECT_EQ(ema->version, 1);
}

TEST_F(DataPlaneTest, RetriedPushIdIsAnsweredNotReapplied) {
  Start();
  Push p = DPush(3);
  auto first = client_->Push(kDiscriminatorTable, "w0", 0, p.tensors,
                             v1::FLOAT32, /*push_id=*/41);
  ASSERT_TRUE(first.ok());
  const auto after_first = TableValues(*d_);
  auto again = client_->Push(kDiscriminatorTable, "w0", 0, p.tensors,
                             v1::FLOAT32, /*push_id=*/41);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(again->duplicate());
  EXPECT_EQ(again->new_version(), first->new_version());
  EXPECT_EQ(TableValues(*d_), after_first);
}

TEST_F(DataPlaneTest, BadPushesAreRefusedChangeNothingAndKeepTheConnection) {
  Start();
  const auto before = TableValues(*d_);
  Push good = DPush(1);

  Push wrong_shape = DPush(1);
  wrong_shape.tensors[0].shape = {8, 4, 25};
  auto r = client_->Push(kDiscriminatorTable, "w0", 0, wrong_shape.tensors);
  EXPECT_TRUE(absl::IsInvalidArgument(r.status())) << r.status();
  EXPECT_NE(r.status().message().find("shape"), std::string::npos);

  Push unknown = DPush(1);
  unknown.tensors[0].name = "no.such.tensor";
  r = client_->Push(kDiscriminatorTable, "w0", 0, unknown.tensors);
  EXPECT_TRUE(absl::IsInvalidArgument(r.status())) << r.status();
  EXPECT_NE(r.status().message().find("no.such.tensor"), std::string::npos);

  Push nan = DPush(1);
  nan.storage[1][123] = std::numeric_limits<float>::quiet_NaN();
  r = client_->Push(kDiscriminatorTable, "w0", 0, nan.tensors);
  EXPECT_TRUE(absl::IsInvalidArgument(r.status())) << r.status();
  EXPECT_NE(r.status().message().find("NaN"), std::string::npos);

  Push inf = DPush(1);
  inf.storage[2][0] = std::numeric_limits<float>::infinity();
  r = client_->Push(kDiscriminatorTable, "w0", 0, inf.tensors);
  EXPECT_TRUE(absl::IsInvalidArgument(r.status())) << r.status();

  r = client_->Push(kDiscriminatorTable, "stranger", 0, good.tensors);
  EXPECT_TRUE(absl::IsFailedPrecondition(r.status())) << r.status();

  r = client_->Push(kGeneratorEmaTable, "w0", 0, good.tensors);
  EXPECT_TRUE(absl::IsFailedPrecondition(r.status())) << r.status();

  r = client_->Push(kDiscriminatorTable, "w0", 5, good.tensors);
  EXPECT_TRUE(absl::IsFailedPrecondition(r.status())) << r.status();

  r = client_->Push(kDiscriminatorTable, "w0", 0, {});
  EXPECT_TRUE(absl::IsInvalidArgument(r.status())) << r.status();

  EXPECT_EQ(TableValues(*d_), before);
  EXPECT_EQ(d_->version(), 0);

  // The connection still works, and so does the table.
  r = client_->Push(kDiscriminatorTable, "w0", 0, good.tensors);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->applied());
  EXPECT_EQ(client_->data_plane_port(), data_plane_->port());
}

TEST_F(DataPlaneTest, OversizePushIsResourceExhausted) {
  Start({}, /*max_push_bytes=*/1 << 20);  // fc.weight alone is 1.2 MB
  Push p = DPush(1);
  auto r = client_->Push(kDiscriminatorTable, "w0", 0, p.tensors);
  EXPECT_TRUE(absl::IsResourceExhausted(r.status())) << r.status();
  EXPECT_EQ(d_->version(), 0);
}

TEST_F(DataPlaneTest, MalformedFramesGetAClearError) {
  Start();
  const auto before = TableValues(*d_);
  // Payload shorter than the tensors listed (and claimed so in the header).
  v1::DataPlanePush meta;
  meta.set_table(kDiscriminatorTable);
  meta.set_worker_id("w0");
  v1::DataPlaneTensor* t = meta.add_tensors();
  t->set_name("conv.weight");
  for (int64_t d : {8, 4, 5, 5}) t->add_shape(d);
  std::string payload(100, '\0');
  auto reply = RawCall(FrameKind::kPush, meta.SerializeAsString(), payload,
                       payload.size());
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->code(),
            static_cast<int>(absl::StatusCode::kInvalidArgument));
  EXPECT_NE(reply->message().find("payload of 100 bytes"), std::string::npos)
      << reply->message();

  // Metadata that is not a DataPlanePush.
  reply = RawCall(FrameKind::kPush, std::string("\xff\xff\xff", 3), "", 0);
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->code(),
            static_cast<int>(absl::StatusCode::kInvalidArgument));

  // A pull with a payload.
  v1::PullRequest pull;
  pull.set_table(kDiscriminatorTable);
  reply = RawCall(FrameKind::kPull, pull.SerializeAsString(), "xyz", 3);
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->code(),
            static_cast<int>(absl::StatusCode::kInvalidArgument));

  // A client speaking another protocol gets one error reply, then a hangup.
  absl::StatusOr<Socket> s =
      ConnectTcp("127.0.0.1", data_plane_->port(), absl::Seconds(10));
  ASSERT_TRUE(s.ok());
  const std::string http = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  ASSERT_TRUE(
      SendAll(s->fd(), {{const_cast<char*>(http.data()), http.size()}}).ok());
  FrameHeader h;
  std::string m;
  ASSERT_TRUE(RecvFrameStart(s->fd(), &h, &m).ok());
  v1::DataPlaneReply r;
  ASSERT_TRUE(r.ParseFromString(m));
  EXPECT_NE(r.message().find("not a ParaGAN data-plane frame"),
            std::string::npos);
  char c;
  EXPECT_LE(read(s->fd(), &c, 1), 0);  // end of stream or a reset
  EXPECT_EQ(TableValues(*d_), before);
}

TEST_F(DataPlaneTest, SynchronousPullWaitsForTheRound) {
  UpdateRule sync;
  sync.sync_workers = 1;
  Start(sync);
  absl::StatusOr<PulledTable> waited;
  std::thread puller([&] {
    waited = client_->Pull(kDiscriminatorTable, "w0", {}, v1::FLOAT32,
                           /*min_version=*/1);
  });
  absl::SleepFor(absl::Milliseconds(300));
  ParameterServerClient::Options co;
  auto pusher = std::make_unique<ParameterServerClient>(target(), co);
  ASSERT_TRUE(pusher->Register("w0", v1::BOTH).ok());
  Push p = DPush(2);
  auto r = pusher->Push(kDiscriminatorTable, "w0", 0, p.tensors);
  ASSERT_TRUE(r.ok()) << r.status();
  puller.join();
  ASSERT_TRUE(waited.ok()) << waited.status();
  EXPECT_EQ(waited->version, 1);
  EXPECT_EQ(Values(*waited), TableValues(*d_));
}

TEST_F(DataPlaneTest, ReplacesAPooledConnectionTheServerClosed) {
  Start();
  ASSERT_TRUE(client_->Pull(kDiscriminatorTable, "w0").ok());  // pooled
  const int port = data_plane_->port();
  data_plane_->Shutdown();
  DataPlaneServer::Options dopts;
  dopts.bind_address = "127.0.0.1";
  dopts.port = port;
  auto dp = DataPlaneServer::Start(dopts, handler_.get());
  ASSERT_TRUE(dp.ok()) << dp.status();
  data_plane_ = *std::move(dp);
  // The pooled connection is dead; the call is made again on a new one and
  // the client stays on the data plane.
  auto pulled = client_->Pull(kDiscriminatorTable, "w0");
  ASSERT_TRUE(pulled.ok()) << pulled.status();
  EXPECT_EQ(client_->data_plane_port(), port);
  Push p = DPush(6);
  auto r = client_->Push(kDiscriminatorTable, "w0", 0, p.tensors, v1::FLOAT32,
                         /*push_id=*/9);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->applied());
}

TEST_F(DataPlaneTest, FollowsARestartedShardToItsNewDataPlanePort) {
  Start();
  ASSERT_TRUE(client_->Pull(kDiscriminatorTable, "w0").ok());  // pooled
  const int old_port = data_plane_->port();
  data_plane_->Shutdown();
  // The shard's data plane comes back elsewhere (a restarted process) and
  // the client does not register again: it learns the port from GetState.
  DataPlaneServer::Options dopts;
  dopts.bind_address = "127.0.0.1";
  auto dp = DataPlaneServer::Start(dopts, handler_.get());
  ASSERT_TRUE(dp.ok()) << dp.status();
  data_plane_ = *std::move(dp);
  ASSERT_NE(data_plane_->port(), old_port);
  auto pulled = client_->Pull(kDiscriminatorTable, "w0");
  ASSERT_TRUE(pulled.ok()) << pulled.status();
  EXPECT_EQ(Values(*pulled), TableValues(*d_));
  EXPECT_EQ(client_->data_plane_port(), data_plane_->port());
  Push p = DPush(5);
  auto r = client_->Push(kDiscriminatorTable, "w0", 0, p.tensors);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->applied());
  auto state = client_->GetState();
  ASSERT_TRUE(state.ok());
  EXPECT_EQ(state->data_plane_port(), data_plane_->port());
}

TEST_F(DataPlaneTest, FallsBackToGrpcWhenTheDataPlaneIsGone) {
  Start();
  auto before = client_->Pull(kDiscriminatorTable, "w0");  // pools a socket
  ASSERT_TRUE(before.ok());
  data_plane_->Shutdown();
  // The pooled connection is dead and no new one can be made; gRPC answers.
  auto pulled = client_->Pull(kDiscriminatorTable, "w0");
  ASSERT_TRUE(pulled.ok()) << pulled.status();
  EXPECT_EQ(Values(*pulled), TableValues(*d_));
  EXPECT_EQ(client_->data_plane_port(), 0);
  Push p = DPush(4);
  auto r = client_->Push(kDiscriminatorTable, "w0", 0, p.tensors);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->applied());
  // The shard no longer advertises a data plane.
  auto reg = client_->Register("w0", v1::BOTH);
  ASSERT_TRUE(reg.ok());
  EXPECT_EQ(reg->data_plane_port(), 0);
}

}  // namespace
}  // namespace paragan
