// In-process gRPC tests of the parameter-server service: a real server on
// 127.0.0.1:0 and a real channel.

#include "server/parameter_server_service.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <limits>
#include <random>
#include <thread>

#include "absl/time/clock.h"
#include "common/optim_kernels.h"
#include "common/process_metrics.h"
#include "common/tensor_codec.h"
#include "prometheus/exposer.h"
#include "prometheus/registry.h"
#include "server/metrics.h"
#include "server/ps_client.h"

namespace paragan {
namespace {

constexpr int kMaxMessageBytes = 256 << 10;
constexpr int64_t kChunkBytes = 16 << 10;

std::vector<float> RandomVector(int64_t n, uint32_t seed, float scale) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> out(static_cast<size_t>(n));
  for (float& x : out) x = dist(gen);
  return out;
}

// D: "conv.weight" [8, 4, 5, 5] (800 floats), "fc.weight" [20000] (80 KB:
// several chunks), "fc.bias" [3], buffer "bn.running_var" [4]. G: "g.w" [6].
std::vector<TableTensor> DTensors() {
  return {{{"conv.weight", {8, 4, 5, 5}, true}, RandomVector(800, 1, 1)},
          {{"fc.weight", {20000}, true}, RandomVector(20000, 2, 1)},
          {{"fc.bias", {3}, true}, RandomVector(3, 3, 1)},
          {{"bn.running_var", {4}, false}, {1, 1, 1, 1}}};
}

struct Grad {
  std::string name;
  Shape shape;
  std::vector<float> values;
  v1::TensorKind kind = v1::GRADIENT;
};

std::vector<Grad> DGradients(uint32_t seed) {
  std::vector<Grad> out;
  for (const TableTensor& t : DTensors()) {
    if (!t.spec.trainable) continue;
    out.push_back({t.spec.name, t.spec.shape,
                   RandomVector(NumElements(t.spec.shape), seed++, 0.01f)});
  }
  return out;
}

std::vector<PushTensor> AsPush(const std::vector<Grad>& grads) {
  std::vector<PushTensor> out;
  for (const Grad& g : grads) {
    out.push_back({g.name, g.shape, g.values.data(), g.kind, nullptr});
  }
  return out;
}

// Plain HTTP/1.0 GET of http://127.0.0.1:<port><path>; returns the response.
std::string HttpGet(int port, const std::string& path) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return "";
  }
  const std::string req =
      "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
  if (write(fd, req.data(), req.size()) != static_cast<ssize_t>(req.size())) {
    close(fd);
    return "";
  }
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) out.append(buf, n);
  close(fd);
  return out;
}

class ServiceTest : public ::testing::Test {
 protected:
  void Start(const UpdateRule& d_rule = {}, float g_ema_decay = 0,
             absl::Duration lease = absl::InfiniteDuration()) {
    TableConfig d_config{
        kDiscriminatorTable, {4e-4f, 0.0f, 0.999f, 1e-6f}, d_rule};
    TableConfig g_config{kGeneratorTable, {1e-4f, 0.0f, 0.999f, 1e-6f}, {}};
    g_config.ema_decay = g_ema_decay;
    d_config.worker_lease = g_config.worker_lease = lease;
    d_ = std::move(ParameterTable::Create(d_config, DTensors())).value();
    g_ = std::move(ParameterTable::Create(
                       g_config, {{{"g.w", {6}, true}, RandomVector(6, 9, 1)}}))
             .value();
    metrics_ = std::make_unique<ServerMetrics>(registry_.get(), 3);
    ServiceOptions o;
    o.shard_id = 3;
    o.num_shards = 4;
    o.model = "test";
    o.d_steps_per_g_step = 2;
    o.chunk_bytes = kChunkBytes;
    handler_ = std::make_unique<ShardHandler>(
        o, std::vector<ParameterTable*>{g_.get(), d_.get()}, metrics_.get());
    service_ = std::make_unique<ParameterServerService>(handler_.get());
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                       &port_);
    b.SetMaxReceiveMessageSize(kMaxMessageBytes);
    b.RegisterService(service_.get());
    server_ = b.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(port_, 0);
    ParameterServerClient::Options co;
    co.chunk_bytes = kChunkBytes;
    co.timeout = absl::Seconds(30);
    client_ = std::make_unique<ParameterServerClient>(
        ParameterServerClient::Connect("127.0.0.1:" + std::to_string(port_),
                                       4 * kMaxMessageBytes),
        co);
  }

  void TearDown() override {
    if (server_) server_->Shutdown();
  }

  PulledTable PullD() {
    auto p = client_->Pull(kDiscriminatorTable, "w0");
    EXPECT_TRUE(p.ok()) << p.status();
    return p.ok() ? *p : PulledTable();
  }

  // Sends raw chunks as one push; returns the call's status.
  grpc::Status RawPush(const std::vector<v1::TensorChunk>& chunks,
                       v1::PushResponse* resp) {
    grpc::ClientContext ctx;
    auto writer = client_->stub()->Push(&ctx, resp);
    for (const auto& c : chunks) {
      if (!writer->Write(c)) break;
    }
    writer->WritesDone();
    return writer->Finish();
  }

  static std::vector<v1::TensorChunk> ChunksOf(
      const std::vector<Grad>& grads, int64_t base_version = 0,
      v1::DType dtype = v1::FLOAT32, const std::string& worker = "w0") {
    std::vector<v1::TensorChunk> out;
    for (const Grad& g : grads) {
      v1::TensorChunk h;
      h.set_table(kDiscriminatorTable);
      h.set_tensor_name(g.name);
      for (int64_t d : g.shape) h.add_shape(d);
      h.set_base_version(base_version);
      h.set_worker_id(worker);
      h.set_kind(g.kind);
      EmitTensorChunks(h, g.values.data(),
                       static_cast<int64_t>(g.values.size()), dtype,
                       kChunkBytes, [&](const v1::TensorChunk& c) {
                         out.push_back(c);
                         return true;
                       });
    }
    return out;
  }

  // Expected D values after Adam steps with `grads` (one list per step),
  // from the Adam kernel.
  std::map<std::string, std::vector<float>> ExpectedD(
      const std::vector<std::vector<Grad>>& steps) {
    std::map<std::string, Tensor> value, m, v;
    for (const TableTensor& t : DTensors()) {
      value[t.spec.name] = Tensor::HostFrom(t.spec.shape, t.values);
      m[t.spec.name] = Tensor::Host(t.spec.shape);
      v[t.spec.name] = Tensor::Host(t.spec.shape);
    }
    for (size_t s = 0; s < steps.size(); ++s) {
      for (const Grad& g : steps[s]) {
        if (g.kind != v1::GRADIENT) {
          value[g.name] = Tensor::HostFrom(g.shape, g.values);
          continue;
        }
        AdamUpdateHost(4e-4f, 0.0f, 0.999f, 1e-6f, s + 1, g.values.data(),
                       value[g.name].data(), m[g.name].data(), v[g.name].data(),
                       value[g.name].numel());
      }
    }
    std::map<std::string, std::vector<float>> out;
    for (auto& [name, t] : value) out[name] = t.ToVector();
    return out;
  }

  static std::map<std::string, std::vector<float>> Values(
      const PulledTable& t) {
    std::map<std::string, std::vector<float>> out;
    for (const auto& [name, x] : t.tensors) out[name] = x.values;
    return out;
  }

  // Every table of the shard has exactly `worker` registered.
  void ExpectOnlyRegistered(const std::string& worker) {
    auto state = client_->GetState();
    ASSERT_TRUE(state.ok()) << state.status();
    for (const auto& t : state->tables()) {
      EXPECT_EQ(std::vector<std::string>(t.registered_workers().begin(),
                                         t.registered_workers().end()),
                std::vector<std::string>{worker})
          << t.name();
    }
  }
  // The counter `family`{table=`table`}; -1 when it has no such series.
  double TableCounter(const std::string& family, const std::string& table) {
    for (const auto& f : registry_->Collect()) {
      if (f.name != family) continue;
      for (const auto& m : f.metric) {
        for (const auto& l : m.label) {
          if (l.name == "table" && l.value == table) return m.counter.value;
        }
      }
    }
    return -1;
  }

  std::unique_ptr<ParameterTable> g_, d_;
  std::shared_ptr<prometheus::Registry> registry_ =
      std::make_shared<prometheus::Registry>();
  std::unique_ptr<ServerMetrics> metrics_;
  std::unique_ptr<ShardHandler> handler_;
  std::unique_ptr<ParameterServerService> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::unique_ptr<ParameterServerClient> client_;
};

TEST_F(ServiceTest, RegisterPullPushAdvancesVersionExactlyAsAdam) {
  Start();
  auto reg = client_->Register("w0", v1::BOTH);
  ASSERT_TRUE(reg.ok()) << reg.status();
  EXPECT_EQ(reg->shard_id(), 3);
  EXPECT_EQ(reg->num_shards(), 4);
  EXPECT_EQ(reg->model(), "test");
  EXPECT_EQ(reg->d_steps_per_g_step(), 2);
  ASSERT_EQ(reg->tables_size(), 2);
  EXPECT_EQ(reg->push_tables_size(), 2);
  const v1::TableInfo& dinfo =
      reg->tables(0).name() == "D" ? reg->tables(0) : reg->tables(1);
  ASSERT_EQ(dinfo.tensors_size(), 4);
  EXPECT_EQ(dinfo.tensors(0).name(), "conv.weight");
  EXPECT_EQ(dinfo.tensors(0).shape_size(), 4);
  EXPECT_FALSE(dinfo.tensors(3).trainable());
  EXPECT_FLOAT_EQ(dinfo.adam().lr(), 4e-4f);

  PulledTable before = PullD();
  EXPECT_EQ(before.version, 0);
  for (const TableTensor& t : DTensors()) {
    EXPECT_EQ(before.tensors.at(t.spec.name).values, t.values) << t.spec.name;
    EXPECT_EQ(before.tensors.at(t.spec.name).shape, t.spec.shape);
  }

  // Step 1: float32 gradients plus a buffer value.
  std::vector<Grad> g1 = DGradients(100);
  g1.push_back({"bn.running_var", {4}, {2, 3, 4, 5}, v1::VALUE});
  auto r = client_->Push(kDiscriminatorTable, "w0", 0, AsPush(g1));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->accepted());
  EXPECT_TRUE(r->applied());
  EXPECT_EQ(r->new_version(), 1);
  EXPECT_EQ(r->staleness(), 0);
  PulledTable after = PullD();
  EXPECT_EQ(after.version, 1);
  EXPECT_EQ(Values(after), ExpectedD({g1}));
  EXPECT_NE(Values(after), Values(before));

  // Step 2: bfloat16 gradients, widened by the server.
  std::vector<Grad> g2 = DGradients(200);
  r = client_->Push(kDiscriminatorTable, "w0", 1, AsPush(g2), v1::BFLOAT16);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->new_version(), 2);
  std::vector<Grad> g2_rounded = g2;
  for (Grad& g : g2_rounded) {
    for (float& x : g.values) x = BFloat16ToFloat(FloatToBFloat16(x));
  }
  EXPECT_EQ(Values(PullD()), ExpectedD({g1, g2_rounded}));

  // A subset pull, in bfloat16.
  auto sub =
      client_->Pull(kDiscriminatorTable, "w0", {"fc.bias"}, v1::BFLOAT16);
  ASSERT_TRUE(sub.ok()) << sub.status();
  ASSERT_EQ(sub->tensors.size(), 1u);
  const std::vector<float> exact = ExpectedD({g1, g2_rounded})["fc.bias"];
  for (size_t i = 0; i < exact.size(); ++i) {
    EXPECT_EQ(sub->tensors["fc.bias"].values[i],
              BFloat16ToFloat(FloatToBFloat16(exact[i])));
  }
  EXPECT_EQ(client_->Pull(kDiscriminatorTable, "w0", {"nope"}).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(client_->Pull("X", "w0").status().code(),
            absl::StatusCode::kNotFound);

  auto state = client_->GetState();
  ASSERT_TRUE(state.ok());
  for (const v1::TableState& t : state->tables()) {
    if (t.name() != "D") continue;
    EXPECT_EQ(t.version(), 2);
    EXPECT_EQ(t.num_updates(), 2);
    EXPECT_EQ(t.accepted_pushes(), 2);
    ASSERT_EQ(t.registered_workers_size(), 1);
    EXPECT_EQ(t.registered_workers(0), "w0");
    EXPECT_EQ(t.num_elements(), 20807);
  }
}

TEST_F(ServiceTest, MalformedPushesGetErrorsAndChangeNothing) {
  Start();
  ASSERT_TRUE(client_->Register("w0", v1::BOTH).ok());
  ASSERT_TRUE(client_->Register("g-only", v1::G_ONLY).ok());
  // One good step first so Adam state exists.
  ASSERT_TRUE(
      client_->Push(kDiscriminatorTable, "w0", 0, AsPush(DGradients(1))).ok());
  const PulledTable reference = PullD();
  ASSERT_EQ(reference.version, 1);

  struct Case {
    std::string what;
    std::vector<v1::TensorChunk> chunks;
    grpc::StatusCode code;
  };
  std::vector<Case> cases;
  const auto kInvalid = grpc::StatusCode::INVALID_ARGUMENT;
  {
    std::vector<Grad> g = DGradients(5);
    g[0].shape = {8, 4, 25};  // same element count, wrong shape
    cases.push_back({"wrong shape", ChunksOf(g, 1), kInvalid});
  }
  {
    std::vector<Grad> g = DGradients(5);
    g.push_back({"mystery", {2}, {1, 2}});
    cases.push_back({"unknown tensor", ChunksOf(g, 1), kInvalid});
  }
  {
    std::vector<Grad> g = DGradients(5);
    g[1].values[12345] = std::numeric_limits<float>::quiet_NaN();
    cases.push_back({"NaN", ChunksOf(g, 1), kInvalid});
  }
  {
    std::vector<Grad> g = DGradients(5);
    g[2].values[0] = std::numeric_limits<float>::infinity();
    cases.push_back({"Inf (bfloat16)", ChunksOf(g, 1, v1::BFLOAT16), kInvalid});
  }
  {
    std::vector<Grad> g = DGradients(5);
    g.pop_back();
    cases.push_back({"missing tensor", ChunksOf(g, 1), kInvalid});
  }
  {
    auto chunks = ChunksOf(DGradients(5), 1);
    chunks.erase(chunks.begin() + 2);  // fc.weight loses a middle chunk
    cases.push_back({"missing chunk", chunks, kInvalid});
  }
  {
    auto chunks = ChunksOf(DGradients(5), 1);
    chunks.pop_back();  // the stream ends before fc.bias's last chunk
    cases.push_back({"truncated stream", chunks, kInvalid});
  }
  {
    auto chunks = ChunksOf(DGradients(5), 1);
    chunks.back().mutable_data()->resize(4);  // last chunk short
    cases.push_back({"truncated last chunk", chunks, kInvalid});
  }
  {
    auto chunks = ChunksOf(DGradients(5), 1);
    chunks.back().mutable_data()->append(64, '\0');
    cases.push_back({"data beyond total_bytes", chunks, kInvalid});
  }
  {
    auto chunks = ChunksOf(DGradients(5), 1);
    for (auto& c : chunks) {
      if (c.tensor_name() == "fc.bias") c.set_total_bytes(int64_t{1} << 40);
    }
    cases.push_back({"declared size inconsistent", chunks, kInvalid});
  }
  {
    // One message larger than the server's max receive size.
    auto chunks = ChunksOf(DGradients(5), 1);
    chunks[1].mutable_data()->append(kMaxMessageBytes, '\0');
    cases.push_back(
        {"oversize message", chunks, grpc::StatusCode::RESOURCE_EXHAUSTED});
  }
  {
    std::vector<Grad> g = DGradients(5);
    g.push_back({"bn.running_var", {4}, {1, 2, 3, 4}, v1::GRADIENT});
    cases.push_back({"gradient for a buffer", ChunksOf(g, 1), kInvalid});
  }
  cases.push_back({"future version", ChunksOf(DGradients(5), 9),
                   grpc::StatusCode::FAILED_PRECONDITION});
  cases.push_back({"unregistered worker",
                   ChunksOf(DGradients(5), 1, v1::FLOAT32, "stranger"),
                   grpc::StatusCode::FAILED_PRECONDITION});
  cases.push_back({"G-only worker pushing D",
                   ChunksOf(DGradients(5), 1, v1::FLOAT32, "g-only"),
                   grpc::StatusCode::FAILED_PRECONDITION});
  {
    auto chunks = ChunksOf(DGradients(5), 1);
    for (auto& c : chunks) c.set_table("Q");
    cases.push_back({"unknown table", chunks, grpc::StatusCode::NOT_FOUND});
  }
  cases.push_back({"empty push", {}, kInvalid});

  for (const Case& c : cases) {
    v1::PushResponse resp;
    grpc::Status st = RawPush(c.chunks, &resp);
    EXPECT_EQ(st.error_code(), c.code) << c.what << ": " << st.error_message();
    EXPECT_FALSE(st.error_message().empty()) << c.what;
    const PulledTable now = PullD();
    EXPECT_EQ(now.version, reference.version) << c.what;
    EXPECT_EQ(Values(now), Values(reference)) << c.what;
  }
  // And the table still takes a good push afterwards.
  auto r = client_->Push(kDiscriminatorTable, "w0", 1, AsPush(DGradients(7)));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->new_version(), 2);
  EXPECT_EQ(d_->Stats().accepted_pushes, 2);
}

TEST_F(ServiceTest, RetriedPushWithTheSameIdIsNotAppliedTwice) {
  Start();
  ASSERT_TRUE(client_->Register("w0", v1::BOTH).ok());
  const std::vector<Grad> g = DGradients(3);
  auto first = client_->Push(kDiscriminatorTable, "w0", 0, AsPush(g),
                             v1::FLOAT32, /*push_id=*/42);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE(first->applied());
  EXPECT_FALSE(first->duplicate());
  const PulledTable after_first = PullD();
  auto retry =
      client_->Push(kDiscriminatorTable, "w0", 0, AsPush(g), v1::FLOAT32, 42);
  ASSERT_TRUE(retry.ok()) << retry.status();
  EXPECT_TRUE(retry->duplicate());
  EXPECT_TRUE(retry->applied());
  EXPECT_EQ(retry->new_version(), 1);
  const PulledTable after_retry = PullD();
  EXPECT_EQ(after_retry.version, 1);
  for (const auto& [name, t] : after_first.tensors) {
    EXPECT_EQ(after_retry.tensors.at(name).values, t.values) << name;
  }
  // Chunks of one push that disagree on the id are malformed.
  std::vector<v1::TensorChunk> chunks = ChunksOf(DGradients(4), 1);
  ASSERT_GE(chunks.size(), 2u);
  chunks[0].set_push_id(43);
  chunks[1].set_push_id(44);
  v1::PushResponse resp;
  const grpc::Status st = RawPush(chunks, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(st.error_message().find("push_id"), std::string::npos)
      << st.error_message();
  EXPECT_EQ(PullD().version, 1);
}

TEST_F(ServiceTest, StalePushRefusedByPolicyIsNotAnError) {
  Start({"reject_above_bound", 0, 0});
  ASSERT_TRUE(client_->Register("w0", v1::BOTH).ok());
  ASSERT_TRUE(
      client_->Push(kDiscriminatorTable, "w0", 0, AsPush(DGradients(1))).ok());
  const PulledTable before = PullD();
  auto r = client_->Push(kDiscriminatorTable, "w0", 0, AsPush(DGradients(2)));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->accepted());
  EXPECT_EQ(r->staleness(), 1);
  EXPECT_FALSE(r->reason().empty());
  EXPECT_EQ(Values(PullD()), Values(before));
}

TEST_F(ServiceTest, SyncModePullWaitsForTheRound) {
  Start({"reject_above_bound", 0, 2});
  ASSERT_TRUE(client_->Register("w0", v1::BOTH).ok());
  ASSERT_TRUE(client_->Register("w1", v1::D_ONLY).ok());
  const std::vector<Grad> g0 = DGradients(10), g1 = DGradients(20);
  auto r = client_->Push(kDiscriminatorTable, "w0", 0, AsPush(g0));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->accepted());
  EXPECT_FALSE(r->applied());
  EXPECT_EQ(r->new_version(), 0);

  absl::StatusOr<PulledTable> waited;
  std::thread puller([&] {
    waited = client_->Pull(kDiscriminatorTable, "w0", {}, v1::FLOAT32, 1);
  });
  absl::SleepFor(absl::Milliseconds(200));
  r = client_->Push(kDiscriminatorTable, "w1", 0, AsPush(g1));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->applied());
  EXPECT_EQ(r->new_version(), 1);
  puller.join();
  ASSERT_TRUE(waited.ok()) << waited.status();
  EXPECT_EQ(waited->version, 1);
  std::vector<Grad> avg = g0;
  for (size_t i = 0; i < avg.size(); ++i) {
    for (size_t k = 0; k < avg[i].values.size(); ++k) {
      avg[i].values[k] = (g0[i].values[k] + g1[i].values[k]) / 2.0f;
    }
  }
  EXPECT_EQ(Values(*waited), ExpectedD({avg}));

  // A pull for a version that never comes ends at its deadline.
  ParameterServerClient::Options quick;
  quick.timeout = absl::Milliseconds(300);
  ParameterServerClient impatient(
      ParameterServerClient::Connect("127.0.0.1:" + std::to_string(port_)),
      quick);
  EXPECT_EQ(impatient.Pull(kDiscriminatorTable, "w0", {}, v1::FLOAT32, 5)
                .status()
                .code(),
            absl::StatusCode::kDeadlineExceeded);
}

TEST_F(ServiceTest, MetricsServedOverHttp) {
  Start({"reject_above_bound", 0, 0});
  prometheus::Exposer exposer("127.0.0.1:0");
  exposer.RegisterCollectable(registry_);
  const auto process_metrics = MakeProcessCollectable();
  exposer.RegisterCollectable(process_metrics);
  const int metrics_port = exposer.GetListeningPorts().at(0);
  ASSERT_GT(metrics_port, 0);

  ASSERT_TRUE(client_->Register("w0", v1::BOTH).ok());
  PullD();
  ASSERT_TRUE(
      client_->Push(kDiscriminatorTable, "w0", 0, AsPush(DGradients(1))).ok());
  ASSERT_TRUE(
      client_->Push(kDiscriminatorTable, "w0", 0, AsPush(DGradients(2))).ok());
  v1::PushResponse resp;
  std::vector<Grad> bad = DGradients(3);
  bad[0].values[0] = NAN;
  EXPECT_FALSE(RawPush(ChunksOf(bad, 1), &resp).ok());

  metrics_->RecordCheckpoint(true, 1700000000.0);
  metrics_->RecordCheckpoint(false, 1700000100.0);

  const std::string page = HttpGet(metrics_port, "/metrics");
  ASSERT_NE(page.find("200 OK"), std::string::npos) << page;
  // A failed checkpoint counts as a failure and leaves the age where it was.
  EXPECT_NE(
      page.find("paragan_ps_last_checkpoint_timestamp_seconds{shard=\"3\"} "
                "1700000000"),
      std::string::npos)
      << page;
  EXPECT_NE(page.find("paragan_ps_checkpoint_failures_total{shard=\"3\"} 1"),
            std::string::npos)
      << page;
  for (const char* name :
       {"paragan_ps_pushes_total", "paragan_ps_pulls_total",
        "paragan_ps_push_bytes_total", "paragan_ps_pull_bytes_total",
        "paragan_ps_staleness_bucket", "paragan_ps_staleness_count",
        "paragan_ps_rejected_pushes_total", "paragan_ps_table_version",
        "paragan_ps_apply_seconds_total",
        "paragan_process_resident_memory_bytes"}) {
    EXPECT_NE(page.find(name), std::string::npos) << name << "\n" << page;
  }
  EXPECT_NE(page.find("# TYPE paragan_ps_staleness histogram"),
            std::string::npos);
  EXPECT_NE(page.find("paragan_ps_table_version{shard=\"3\",table=\"D\"} 1"),
            std::string::npos)
      << page;
  EXPECT_NE(page.find("outcome=\"applied\""), std::string::npos);
  EXPECT_NE(page.find("reason=\"stale\""), std::string::npos);
  EXPECT_NE(page.find("reason=\"invalid\""), std::string::npos);
  // One pull of D: 20807 floats.
  EXPECT_NE(
      page.find("paragan_ps_pull_bytes_total{shard=\"3\",table=\"D\"} 83228"),
      std::string::npos)
      << page;
}

TEST_F(ServiceTest, GEmaIsPullableAndReadOnly) {
  Start({}, /*g_ema_decay=*/0.999f);
  ASSERT_TRUE(client_->Register("w0", v1::BOTH).ok());
  auto g = client_->Pull(kGeneratorTable, "w0");
  ASSERT_TRUE(g.ok()) << g.status();
  const std::vector<float> grad = RandomVector(6, 77, 0.1f);
  auto r = client_->Push(kGeneratorTable, "w0", 0,
                         {{"g.w", {6}, grad.data(), v1::GRADIENT, nullptr}});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->applied());
  auto after = client_->Pull(kGeneratorTable, "w0");
  auto ema = client_->Pull(kGeneratorEmaTable, "w0");
  ASSERT_TRUE(after.ok() && ema.ok()) << ema.status();
  EXPECT_EQ(ema->version, 1);
  ASSERT_EQ(ema->tensors.count("g.w"), 1u);
  // First step: ema = 0.1 * initial + 0.9 * new value.
  for (int i = 0; i < 6; ++i) {
    EXPECT_NEAR(ema->tensors.at("g.w").values[i],
                0.1f * g->tensors.at("g.w").values[i] +
                    0.9f * after->tensors.at("g.w").values[i],
                1e-6);
  }
  EXPECT_NE(ema->tensors.at("g.w").values, after->tensors.at("g.w").values);
  // bfloat16 pulls and a subset work as for G.
  auto sub = client_->Pull(kGeneratorEmaTable, "w0", {"g.w"}, v1::BFLOAT16);
  EXPECT_TRUE(sub.ok()) << sub.status();
  // Pushes to G_ema are refused with a clear error and change nothing.
  auto bad = client_->Push(kGeneratorEmaTable, "w0", 1,
                           {{"g.w", {6}, grad.data(), v1::GRADIENT, nullptr}});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(bad.status().message().find("read-only"), std::string::npos)
      << bad.status();
  auto ema2 = client_->Pull(kGeneratorEmaTable, "w0");
  ASSERT_TRUE(ema2.ok());
  EXPECT_EQ(ema2->tensors.at("g.w").values, ema->tensors.at("g.w").values);
  EXPECT_EQ(g_->version(), 1);
}

TEST_F(ServiceTest, GEmaNotFoundWhenOff) {
  Start();
  auto ema = client_->Pull(kGeneratorEmaTable, "w0");
  ASSERT_FALSE(ema.ok());
  EXPECT_EQ(ema.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(ema.status().message().find("ema_decay"), std::string::npos);
}

TEST_F(ServiceTest, DeadWorkerLeaseExpiresAndSyncRoundCompletes) {
  // Real clock, short lease: w1 registers and never speaks again; w0 pushes
  // and waits in Pull(min_version) (which renews its lease). The reaper
  // (the binary calls ExpireLeases every second) drops w1, the round
  // completes with w0's gradient alone and the pull returns.
  Start({"reject_above_bound", 0, 2}, 0, absl::Milliseconds(600));
  ASSERT_TRUE(client_->Register("w0", v1::BOTH).ok());
  ASSERT_TRUE(client_->Register("w1", v1::BOTH).ok());
  std::atomic<bool> stop{false};
  std::thread reaper([&] {
    while (!stop) {
      handler_->ExpireLeases();
      absl::SleepFor(absl::Milliseconds(50));
    }
  });
  std::thread w0_renew([&] {  // w0 also pulls G now and then
    while (!stop) {
      // Only renews the lease; the pulled values are not needed.
      const auto pulled = client_->Pull(kGeneratorTable, "w0");
      EXPECT_TRUE(pulled.ok()) << pulled.status();
      absl::SleepFor(absl::Milliseconds(100));
    }
  });
  const std::vector<Grad> grads = DGradients(5);
  auto r = client_->Push(kDiscriminatorTable, "w0", 0, AsPush(grads));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->applied());
  const absl::Time start = absl::Now();
  auto pulled = client_->Pull(kDiscriminatorTable, "w0", {}, v1::FLOAT32, 1);
  stop = true;
  reaper.join();
  w0_renew.join();
  ASSERT_TRUE(pulled.ok()) << pulled.status();
  EXPECT_EQ(pulled->version, 1);
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  EXPECT_EQ(Values(*pulled), ExpectedD({grads}));
  ExpectOnlyRegistered("w0");
  // Counted in the metrics.
  EXPECT_EQ(TableCounter("paragan_ps_expired_leases_total", "D"), 1);
  // w1 comes back: its push re-registers it (a late push, refused by the
  // strict bound, but not an error).
  auto late = client_->Push(kDiscriminatorTable, "w1", 0, AsPush(grads));
  ASSERT_TRUE(late.ok()) << late.status();
  EXPECT_FALSE(late->accepted());
  EXPECT_TRUE(d_->IsRegistered("w1"));
}

TEST_F(ServiceTest, DeregisteredWorkerLeavesAndNoSyncRoundWaitsForIt) {
  // Leases never expire here: only DeregisterWorker can free the round.
  Start({"reject_above_bound", 0, 2});
  ASSERT_TRUE(client_->Register("w0", v1::BOTH).ok());
  ASSERT_TRUE(client_->Register("w1", v1::BOTH).ok());
  const std::vector<Grad> grads = DGradients(6);
  auto r = client_->Push(kDiscriminatorTable, "w0", 0, AsPush(grads));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->applied());
  absl::StatusOr<PulledTable> pulled;
  std::thread waiter([&] {
    pulled = client_->Pull(kDiscriminatorTable, "w0", {}, v1::FLOAT32, 1);
  });
  absl::SleepFor(absl::Milliseconds(300));  // the pull waits for the round
  auto left = client_->Deregister("w1", absl::Seconds(5));
  waiter.join();
  ASSERT_TRUE(left.ok()) << left.status();
  EXPECT_EQ(std::vector<std::string>(left->left_tables().begin(),
                                     left->left_tables().end()),
            (std::vector<std::string>{"D", "G"}));
  ASSERT_TRUE(pulled.ok()) << pulled.status();
  EXPECT_EQ(pulled->version, 1);
  EXPECT_EQ(Values(*pulled), ExpectedD({grads}));
  ExpectOnlyRegistered("w0");
  EXPECT_EQ(TableCounter("paragan_ps_deregistered_workers_total", "D"), 1);
  // Its late push is refused and changes nothing; leaving again is a no-op.
  auto late = client_->Push(kDiscriminatorTable, "w1", 1, AsPush(grads));
  EXPECT_EQ(late.status().code(), absl::StatusCode::kFailedPrecondition)
      << late.status();
  EXPECT_EQ(d_->version(), 1);
  auto again = client_->Deregister("w1", absl::Seconds(5));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->left_tables_size(), 0);
  EXPECT_EQ(client_->Deregister("", absl::Seconds(5)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace paragan
