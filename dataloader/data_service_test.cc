// In-process gRPC tests of the data service: a real server on 127.0.0.1 over
// the synthetic dataset, raw streams (to see the protocol) and DataClient.

#include "dataloader/data_service.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "common/auth.h"
#include "common/grpc_status.h"
#include "common/wait_for.h"
#include "dataloader/data_client.h"
#include "dataloader/datasets/sampler.h"
#include "dataloader/dispatch_policy.h"
#include "dataloader/round_robin_policy.h"
#include "dataloader/test_server.h"
#include "prometheus/metric_family.h"

namespace paragan {
namespace {

using BatchStream = grpc::ClientReaderWriter<v1::BatchRequest, v1::Batch>;

DataServiceOptions Options(int batch_size, uint64_t seed = 7) {
  DataServiceOptions o;
  o.batch_size = batch_size;
  o.seed = seed;
  o.prefetch = 4;
  o.max_in_flight = 64;
  o.generated_buffer = 2;
  return o;
}

DataClient::Options ClientOptions(const TestServer& server,
                                  const std::string& worker) {
  DataClient::Options o;
  o.address = server.address();
  o.worker_id = worker;
  o.max_retry_seconds = 5;
  o.initial_backoff_ms = 20;
  o.max_backoff_ms = 200;
  return o;
}

// A raw StreamBatches call.
struct RawStream {
  RawStream(v1::DataService::Stub* stub, const v1::BatchRequest& first) {
    stream = stub->StreamBatches(&context);
    stream->Write(first);
  }
  v1::Batch Read() {
    v1::Batch b;
    EXPECT_TRUE(stream->Read(&b));
    return b;
  }
  grpc::ClientContext context;
  std::unique_ptr<BatchStream> stream;
};

v1::BatchRequest Open(const std::string& worker, int credits) {
  v1::BatchRequest r;
  r.set_worker_id(worker);
  r.set_credits(credits);
  return r;
}

std::unique_ptr<v1::DataService::Stub> StubFor(const TestServer& server) {
  return v1::DataService::NewStub(grpc::CreateChannel(
      server.address(), grpc::InsecureChannelCredentials()));
}

// The service's metrics as name{label=value}... -> value (histograms: their
// sample count).
std::map<std::string, double> MetricValues(const TestServer& server) {
  std::map<std::string, double> values;
  for (const prometheus::MetricFamily& f : server.registry->Collect()) {
    for (const prometheus::ClientMetric& m : f.metric) {
      std::string key = f.name;
      for (const auto& l : m.label) key += "{" + l.name + "=" + l.value + "}";
      values[key] = f.type == prometheus::MetricType::Counter ? m.counter.value
                    : f.type == prometheus::MetricType::Gauge
                        ? m.gauge.value
                        : static_cast<double>(m.histogram.sample_count);
    }
  }
  return values;
}

// The mean wire bytes of the batches sent to `worker`.
double WireBytesPerBatch(std::map<std::string, double>& values,
                         const std::string& worker) {
  const std::string label = "{worker=" + worker + "}";
  return values["paragan_data_bytes_sent_total" + label] /
         values["paragan_data_batches_sent_total" + label];
}

// Fetches `batches` batches as worker `worker`; returns the seconds from
// before connecting to the last batch's arrival.
double SecondsToFetch(const TestServer& server, const std::string& worker,
                      int batches) {
  const absl::Time start = absl::Now();
  auto client = DataClient::Connect(ClientOptions(server, worker));
  EXPECT_TRUE(client.ok()) << client.status();
  if (!client.ok()) return 0;
  Tensor images;
  std::vector<int> labels;
  for (int i = 0; i < batches; ++i) {
    absl::Status st = (*client)->Next(&images, &labels);
    EXPECT_TRUE(st.ok()) << st;
    if (!st.ok()) break;
  }
  return absl::ToDoubleSeconds(absl::Now() - start);
}

TEST(DataServiceTest, DescribeReportsTheDataset) {
  TestServer server(Options(16, 3), SyntheticSpec(256, 3));
  ASSERT_NE(server.port, 0);
  auto client = DataClient::Connect(ClientOptions(server, "w"));
  ASSERT_TRUE(client.ok()) << client.status();
  const v1::DescribeResponse& info = (*client)->info();
  EXPECT_EQ(info.dataset(), "synthetic");
  EXPECT_EQ(info.num_examples(), 256);
  EXPECT_EQ(std::vector<int64_t>(info.image_shape().begin(),
                                 info.image_shape().end()),
            (std::vector<int64_t>{1, 8, 8}));
  EXPECT_EQ(info.num_classes(), 10);
  EXPECT_EQ(info.batch_size(), 16);
  EXPECT_EQ(info.seed(), 3u);
  EXPECT_EQ(info.image_dtype(), v1::FLOAT32);
}

TEST(DataServiceTest, WithATokenEveryCallWithoutItIsRefused) {
  const std::string token = "data-token-0123456789";
  DataServiceOptions o = Options(16, 3);
  o.auth_token = token;
  TestServer server(o, SyntheticSpec(256, 3));
  ASSERT_NE(server.port, 0);
  auto stub = StubFor(server);
  for (const std::string& presented : {std::string(), token + "x"}) {
    auto context = [&presented] {
      auto c = std::make_unique<grpc::ClientContext>();
      AddAuthMetadata(presented, c.get());
      return c;
    };
    v1::DescribeResponse info;
    grpc::Status st =
        stub->Describe(context().get(), v1::DescribeRequest(), &info);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAUTHENTICATED)
        << st.error_message();
    v1::RoleReport report;
    report.set_worker_id("w");
    v1::RoleAssignment assignment;
    st = stub->AssignRole(context().get(), report, &assignment);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAUTHENTICATED);
    {
      auto c = context();
      auto stream = stub->StreamBatches(c.get());
      stream->Write(Open("w", 4));
      v1::Batch b;
      EXPECT_FALSE(stream->Read(&b));  // not one batch
      EXPECT_EQ(stream->Finish().error_code(),
                grpc::StatusCode::UNAUTHENTICATED);
    }
    {
      auto c = context();
      v1::PublishResponse response;
      auto writer = stub->PublishSamples(c.get(), &response);
      writer->WritesDone();
      EXPECT_EQ(writer->Finish().error_code(),
                grpc::StatusCode::UNAUTHENTICATED);
    }
    DataClient::Options co = ClientOptions(server, "w");
    co.security.auth_token = presented;
    co.max_retry_seconds = 1;
    auto client = DataClient::Connect(co);
    EXPECT_FALSE(client.ok());
  }
  // Nothing was dealt to a stranger: the right token gets the first batch.
  DataClient::Options co = ClientOptions(server, "w");
  co.security.auth_token = token;
  auto client = DataClient::Connect(co);
  ASSERT_TRUE(client.ok()) << client.status();
  Tensor images;
  std::vector<int> labels;
  ASSERT_TRUE((*client)->Next(&images, &labels).ok());
  EXPECT_EQ((*client)->last_batch().batch_id, 0);
}

TEST(DataServiceTest, StreamsBeyondMaxStreamsAreRefusedButAReconnectFits) {
  DataServiceOptions o = Options(16, 3);
  o.max_streams = 2;
  TestServer server(o, SyntheticSpec(256, 3));
  ASSERT_NE(server.port, 0);
  auto stub = StubFor(server);
  struct OpenStream {
    std::unique_ptr<grpc::ClientContext> context =
        std::make_unique<grpc::ClientContext>();
    std::unique_ptr<BatchStream> stream;
  };
  // Opens a stream for `worker`; whether it got a batch.
  auto open = [&](OpenStream* s, const std::string& worker) {
    s->stream = stub->StreamBatches(s->context.get());
    s->stream->Write(Open(worker, 1));
    v1::Batch b;
    return s->stream->Read(&b);
  };
  OpenStream a, b, c;
  ASSERT_TRUE(open(&a, "a"));
  ASSERT_TRUE(open(&b, "b"));
  EXPECT_FALSE(open(&c, "c"));
  const grpc::Status refused = c.stream->Finish();
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(refused.error_message().find("--max_streams"), std::string::npos)
      << refused.error_message();
  // Worker a reconnects: its new stream replaces the old one.
  OpenStream a2;
  EXPECT_TRUE(open(&a2, "a"));
  // b leaves: c fits.
  b.stream->WritesDone();
  EXPECT_TRUE(b.stream->Finish().ok());
  ASSERT_TRUE(WaitFor([&] { return server.service->stats().streams < 2; }));
  OpenStream c2;
  EXPECT_TRUE(open(&c2, "c"));
  for (OpenStream* s : {&a2, &c2}) {
    s->context->TryCancel();
    s->stream->Finish();
  }
  a.context->TryCancel();
  a.stream->Finish();
}

// One worker sees exactly the single-process trainer's data: the batches of
// EpochSampler(size, seed) loaded the way training_run.cc's BatchSource does
// (labels assigned 0, then LoadBatch), `steps` batches from the start.
// `policy` (default: round_robin) and `client_options` change how batches
// travel (dtype, compression), never what arrives.
void ExpectTrainerOrder(
    const DatasetSpec& spec, int batch, uint64_t seed, int steps,
    std::unique_ptr<DispatchPolicy> policy = nullptr,
    const std::function<void(DataClient::Options*)>& client_options = {},
    DataClient::Totals* totals = nullptr) {
  TestServer server(Options(batch, seed), spec, 0, std::move(policy));
  DataClient::Options o = ClientOptions(server, "solo");
  if (client_options) client_options(&o);
  auto client = DataClient::Connect(o);
  ASSERT_TRUE(client.ok()) << client.status();

  auto dataset = OpenDataset(spec);
  ASSERT_TRUE(dataset.ok());
  const DatasetInfo& info = (*dataset)->info();
  EpochSampler sampler(info.size, seed);
  Tensor expected =
      Tensor::Host({batch, info.channels, info.height, info.width});
  std::vector<int64_t> indices;
  std::vector<int> expected_labels;
  for (int step = 0; step < steps; ++step) {
    const int64_t epoch = sampler.state().epoch;
    sampler.NextBatch(batch, &indices);
    expected_labels.assign(batch, 0);
    LoadBatch(**dataset, indices, expected.data(), expected_labels.data(), 2);

    Tensor images;
    std::vector<int> labels;
    ASSERT_TRUE((*client)->Next(&images, &labels).ok()) << step;
    ASSERT_EQ(images.shape(), expected.shape());
    EXPECT_EQ(std::memcmp(images.data(), expected.data(),
                          sizeof(float) * expected.numel()),
              0)
        << "step " << step;
    EXPECT_EQ(labels, expected_labels) << "step " << step;
    EXPECT_EQ((*client)->last_batch().example_indices, indices);
    EXPECT_EQ((*client)->last_batch().epoch, epoch);
    EXPECT_FALSE((*client)->last_batch().generated);
  }
  if (totals != nullptr) *totals = (*client)->totals();
}

// Across epoch boundaries: 24 does not divide 256; 30 batches ~ 2.8 epochs.
TEST(DataServiceTest, SingleWorkerOrderEqualsTrainerSampler) {
  ExpectTrainerOrder(SyntheticSpec(256, 11), 24, 11, 30);
}

DatasetSpec FashionMnistSpec() {
  const char* env = std::getenv("PARAGAN_FASHION_MNIST_DIR");
  DatasetSpec spec;
  spec.name = "fashion_mnist";
  spec.path = env != nullptr && *env != '\0'
                  ? env
                  : "/usr/share/datasets/fashion-mnist";
  return spec;
}

// The trainer's default dataset, when installed: DataClient's default asks
// for UINT8 pixels, and they decode to the trainer's floats bit for bit.
TEST(DataServiceTest, SingleWorkerOrderEqualsTrainerSamplerFashionMnist) {
  const DatasetSpec spec = FashionMnistSpec();
  if (!OpenDataset(spec).ok())
    GTEST_SKIP() << "no Fashion-MNIST at " << spec.path;
  ExpectTrainerOrder(spec, 64, 0, 20);
  // Today's wire (a client of before UINT8): the same floats.
  ExpectTrainerOrder(spec, 64, 0, 5, nullptr, [](DataClient::Options* o) {
    o->image_dtype = v1::FLOAT32;
    o->accept_compression.clear();
  });
}

TEST(DataServiceTest, TwoWorkersCoverAnEpochExactlyOnce) {
  constexpr int kBatch = 16;  // 16 batches per epoch of 256
  TestServer server(Options(kBatch), SyntheticSpec(256));
  std::vector<std::unique_ptr<DataClient>> clients;
  for (const char* w : {"a", "b"}) {
    DataClient::Options o = ClientOptions(server, w);
    o.credits = 2;
    auto c = DataClient::Connect(o);
    ASSERT_TRUE(c.ok()) << c.status();
    clients.push_back(*std::move(c));
  }
  std::vector<std::vector<int64_t>> seen(2);
  std::vector<int> batches(2, 0);
  // Each worker's first batch before the race, so both streams are open.
  Tensor images;
  std::vector<int> labels;
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(clients[i]->Next(&images, &labels).ok());
    const auto& ix = clients[i]->last_batch().example_indices;
    seen[i].insert(seen[i].end(), ix.begin(), ix.end());
    ++batches[i];
  }
  std::vector<std::thread> threads;
  for (int i = 0; i < 2; ++i) {
    threads.emplace_back([&, i] {
      Tensor im;
      std::vector<int> lb;
      // A worker's stream is in deal order: after its first epoch-1 batch,
      // it holds no more epoch-0 batches.
      for (;;) {
        ASSERT_TRUE(clients[i]->Next(&im, &lb).ok());
        const DataClient::BatchInfo& b = clients[i]->last_batch();
        if (b.epoch >= 1) break;
        seen[i].insert(seen[i].end(), b.example_indices.begin(),
                       b.example_indices.end());
        ++batches[i];
      }
    });
  }
  for (auto& t : threads) t.join();
  std::vector<int64_t> all = seen[0];
  all.insert(all.end(), seen[1].begin(), seen[1].end());
  std::sort(all.begin(), all.end());
  std::vector<int64_t> expected(256);
  for (int i = 0; i < 256; ++i) expected[i] = i;
  EXPECT_EQ(all, expected);
  EXPECT_GE(batches[0], 1);
  EXPECT_GE(batches[1], 1);
  EXPECT_EQ(batches[0] + batches[1], 16);
}

TEST(DataServiceTest, FlowControlNeverExceedsCredits) {
  TestServer server(Options(8), SyntheticSpec(256));
  auto stub = StubFor(server);
  RawStream raw(stub.get(), Open("fc", 3));
  std::atomic<int> received{0};
  std::vector<int64_t> ids;
  std::mutex mu;
  std::thread reader([&] {
    v1::Batch b;
    while (raw.stream->Read(&b)) {
      std::lock_guard<std::mutex> lock(mu);
      ids.push_back(b.batch_id());
      ++received;
    }
  });
  ASSERT_TRUE(WaitFor([&] { return received.load() == 3; }));
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_EQ(received.load(), 3) << "sent beyond the 3 credits";
  EXPECT_EQ(server.service->stats().in_flight, 3);

  // Acks alone grant nothing.
  v1::BatchRequest ack;
  {
    std::lock_guard<std::mutex> lock(mu);
    for (int64_t id : ids) ack.add_acks(id);
  }
  raw.stream->Write(ack);
  ASSERT_TRUE(WaitFor([&] { return server.service->stats().in_flight == 0; }));
  absl::SleepFor(absl::Milliseconds(200));
  EXPECT_EQ(received.load(), 3);

  v1::BatchRequest more;
  more.set_credits(2);
  raw.stream->Write(more);
  ASSERT_TRUE(WaitFor([&] { return received.load() == 5; }));
  absl::SleepFor(absl::Milliseconds(200));
  EXPECT_EQ(received.load(), 5);
  // Memory stays bounded: prepared + in flight within the cap.
  const DataService::Stats st = server.service->stats();
  EXPECT_LE(st.prepared, 4);
  EXPECT_LE(st.prepared + st.in_flight + st.requeued, 64);

  raw.stream->WritesDone();
  reader.join();
  EXPECT_TRUE(raw.stream->Finish().ok());
}

TEST(DataServiceTest, MaxInFlightCapsPreparedAndUnacked) {
  DataServiceOptions o = Options(8);
  o.prefetch = 4;
  o.max_in_flight = 5;
  TestServer server(o, SyntheticSpec(256));
  auto stub = StubFor(server);
  RawStream raw(stub.get(), Open("greedy", 100));
  std::atomic<int> received{0};
  std::thread reader([&] {
    v1::Batch b;
    while (raw.stream->Read(&b)) ++received;
  });
  ASSERT_TRUE(WaitFor([&] { return received.load() == 5; }));
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_EQ(received.load(), 5) << "the cap of 5 unacked batches was passed";
  const DataService::Stats st = server.service->stats();
  EXPECT_EQ(st.in_flight, 5);
  EXPECT_EQ(st.prepared, 0);
  raw.context.TryCancel();
  reader.join();
}

TEST(DataServiceTest, BrokenStreamsBatchesAreRedelivered) {
  TestServer server(Options(8), SyntheticSpec(256));
  auto stub = StubFor(server);
  auto a = std::make_unique<RawStream>(stub.get(), Open("a", 3));
  const v1::Batch a0 = a->Read(), a1 = a->Read(), a2 = a->Read();
  v1::BatchRequest ack;
  ack.add_acks(a0.batch_id());
  a->stream->Write(ack);
  ASSERT_TRUE(WaitFor([&] { return server.service->stats().in_flight == 2; }));
  a->context.TryCancel();  // the worker dies with a1, a2 unacked
  ASSERT_TRUE(WaitFor([&] { return server.service->stats().requeued == 2; }));
  a->stream->Finish().IgnoreError();
  a.reset();

  RawStream b(stub.get(), Open("b", 3));
  const v1::Batch b0 = b.Read(), b1 = b.Read(), b2 = b.Read();
  EXPECT_EQ(b0.batch_id(), a1.batch_id());
  EXPECT_EQ(b1.batch_id(), a2.batch_id());
  EXPECT_EQ(b0.images().data(), a1.images().data());
  EXPECT_EQ(b1.example_indices(0), a2.example_indices(0));
  EXPECT_GT(b2.batch_id(), a2.batch_id());
  const DataService::Stats st = server.service->stats();
  EXPECT_EQ(st.requeued_total, 2);
  EXPECT_EQ(st.requeued, 0);
  b.context.TryCancel();
}

TEST(DataServiceTest, ReconnectingWorkerResumes) {
  TestServer server(Options(8), SyntheticSpec(256));
  auto stub = StubFor(server);
  RawStream old(stub.get(), Open("w", 3));
  const v1::Batch o0 = old.Read(), o1 = old.Read(), o2 = old.Read();
  // The worker reconnects (its old stream still open on the server), having
  // consumed o0 and o1 but acked neither.
  v1::BatchRequest first = Open("w", 3);
  first.add_acks(o0.batch_id());
  first.add_acks(o1.batch_id());
  RawStream fresh(stub.get(), first);
  const v1::Batch n0 = fresh.Read(), n1 = fresh.Read();
  EXPECT_EQ(n0.batch_id(), o2.batch_id());
  EXPECT_EQ(n1.batch_id(), o2.batch_id() + 1);
  const grpc::Status old_status = old.stream->Finish();
  EXPECT_FALSE(old_status.ok());
  EXPECT_EQ(server.service->stats().streams, 1);
  fresh.context.TryCancel();
}

TEST(DataServiceTest, BadRequestsGetClearErrors) {
  TestServer server(Options(16), SyntheticSpec(256));
  auto stub = StubFor(server);
  auto refused = [&](const v1::BatchRequest& first,
                     const v1::BatchRequest* second) {
    RawStream raw(stub.get(), first);
    if (second != nullptr) {
      v1::Batch b0;
      EXPECT_TRUE(raw.stream->Read(&b0));
      raw.stream->Write(*second);
    }
    v1::Batch b;
    while (raw.stream->Read(&b)) {
    }
    return raw.stream->Finish();
  };
  struct Case {
    v1::BatchRequest first;
    std::string message;
  };
  std::vector<Case> cases;
  cases.push_back({Open("z", 0), "credits >= 1"});
  cases.push_back({Open("n", -2), "credits >= 1"});
  cases.push_back({Open("", 1), "worker_id"});
  v1::BatchRequest role = Open("r", 1);
  role.set_role(static_cast<v1::WorkerRole>(7));
  cases.push_back({role, "unknown role 7"});
  v1::BatchRequest size = Open("s", 1);
  size.set_batch_size(5);
  cases.push_back({size, "batch_size 5 differs from the service's 16"});
  v1::BatchRequest gen = Open("g", 1);
  gen.set_want_generated(true);
  cases.push_back({gen, "D_ONLY"});
  for (const Case& c : cases) {
    const grpc::Status st = refused(c.first, nullptr);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.message;
    EXPECT_TRUE(absl::StrContains(st.error_message(), c.message))
        << st.error_message();
  }
  // Negative credits later in the stream.
  v1::BatchRequest negative;
  negative.set_credits(-1);
  const grpc::Status st = refused(Open("later", 1), &negative);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StrContains(st.error_message(), "credits must be >= 0"))
      << st.error_message();
  // Nothing leaked: the refused streams' batches went back.
  ASSERT_TRUE(WaitFor([&] { return server.service->stats().in_flight == 0; }));
  EXPECT_EQ(server.service->stats().streams, 0);

  // DataClient refuses a batch size the service does not serve.
  DataClient::Options o = ClientOptions(server, "c");
  o.batch_size = 32;
  auto client = DataClient::Connect(o);
  EXPECT_EQ(client.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(client.status().message(), "batch_size 32"));
}

TEST(DataServiceTest, GeneratedSamplesReachDOnlyWorkers) {
  TestServer server(Options(4), SyntheticSpec(256));  // generated_buffer 2
  DataClient::Options go = ClientOptions(server, "g0");
  go.role = v1::G_ONLY;
  auto g = DataClient::Connect(go);
  ASSERT_TRUE(g.ok()) << g.status();
  for (int k = 0; k < 3; ++k) {
    Tensor images = Tensor::HostFrom(
        {4, 1, 8, 8},
        std::vector<float>(4 * 64, 0.25f * static_cast<float>(k)));
    ASSERT_TRUE((*g)->Publish(images, {k, k, k, k}, 10 + k).ok());
  }
  EXPECT_EQ((*g)->last_publish().accepted_batches(), 1);
  EXPECT_EQ((*g)->last_publish().dropped_batches(), 1);  // buffer of 2
  DataService::Stats st = server.service->stats();
  EXPECT_EQ(st.generated_accepted, 3);
  EXPECT_EQ(st.generated_dropped, 1);
  EXPECT_EQ(st.generated_buffered, 2);

  DataClient::Options d = ClientOptions(server, "d0");
  d.role = v1::D_ONLY;
  d.want_generated = true;
  d.credits = 1;
  auto dc = DataClient::Connect(d);
  ASSERT_TRUE(dc.ok()) << dc.status();
  for (int k = 1; k < 3; ++k) {  // the oldest (k = 0) was dropped
    Tensor images;
    std::vector<int> labels;
    ASSERT_TRUE((*dc)->Next(&images, &labels).ok());
    EXPECT_TRUE((*dc)->last_batch().generated);
    EXPECT_EQ((*dc)->last_batch().g_version, 10 + k);
    EXPECT_EQ(images.shape(), (Shape{4, 1, 8, 8}));
    EXPECT_EQ(images.data()[0], 0.25f * static_cast<float>(k));
    EXPECT_EQ(labels, std::vector<int>(4, k));
  }
  // Unlabelled samples are fine; wrong image shapes and labels are not.
  ASSERT_TRUE((*g)->Publish(Tensor::Host({2, 1, 8, 8}), {}, 20).ok());
  Tensor images;
  std::vector<int> labels{1};
  ASSERT_TRUE((*dc)->Next(&images, &labels).ok());
  EXPECT_TRUE(labels.empty());
  absl::Status bad = (*g)->Publish(Tensor::Host({2, 3, 8, 8}), {}, 21);
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument) << bad;
  EXPECT_TRUE(absl::StrContains(bad.message(), "[N, 1, 8, 8]")) << bad;
  bad = (*g)->Publish(Tensor::Host({2, 1, 8, 8}), {0, 10}, 22);
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument) << bad;
  // Acked generated batches leave the in-flight count.
  dc->reset();
  ASSERT_TRUE(WaitFor([&] { return server.service->stats().streams == 0; }));
  EXPECT_EQ(server.service->stats().in_flight, 0);
  // Real data keeps flowing to other workers meanwhile.
  auto r = DataClient::Connect(ClientOptions(server, "r0"));
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE((*r)->Next(&images, &labels).ok());
  EXPECT_FALSE((*r)->last_batch().generated);
}

// A G worker's --sample_dtype: BFLOAT16 and UINT8 samples reach a D worker
// that decodes them and one that decodes FLOAT32 only (widened by the
// service), at half and a quarter of the float bytes, within their
// rounding of the published values.
TEST(DataServiceTest, GeneratedSamplesTravelInTheDtypeTheGWorkerChose) {
  std::vector<float> values(2 * 64);
  for (size_t i = 0; i < values.size(); ++i) {
    values[i] = -1.2f + 2.4f * static_cast<float>(i) / values.size();
  }
  for (v1::DType dtype : {v1::BFLOAT16, v1::UINT8}) {
    SCOPED_TRACE(v1::DType_Name(dtype));
    DataServiceOptions so = Options(2);
    so.generated_buffer = 4;
    TestServer server(so, SyntheticSpec(256));
    DataClient::Options go = ClientOptions(server, "g0");
    go.role = v1::G_ONLY;
    go.sample_dtype = dtype;
    auto g = DataClient::Connect(go);
    ASSERT_TRUE(g.ok()) << g.status();
    for (int k = 0; k < 2; ++k) {
      ASSERT_TRUE(
          (*g)->Publish(Tensor::HostFrom({2, 1, 8, 8}, values), {}, 5 + k)
              .ok());
    }
    for (v1::DType decodes : {v1::UINT8, v1::FLOAT32}) {
      DataClient::Options d =
          ClientOptions(server, decodes == v1::UINT8 ? "d_uint8" : "d_float32");
      d.role = v1::D_ONLY;
      d.want_generated = true;
      d.credits = 1;
      d.image_dtype = decodes;
      auto dc = DataClient::Connect(d);
      ASSERT_TRUE(dc.ok()) << dc.status();
      Tensor images;
      std::vector<int> labels;
      ASSERT_TRUE((*dc)->Next(&images, &labels).ok());
      ASSERT_EQ(images.shape(), (Shape{2, 1, 8, 8}));
      for (size_t i = 0; i < values.size(); ++i) {
        const float want = std::clamp(values[i], -1.0f, 1.0f);
        if (dtype == v1::UINT8) {
          // Clamped to [-1, 1], then the nearest of 256 levels.
          EXPECT_NEAR(images.data()[i], want, 0.5f / 127.5f + 1e-6f) << i;
        } else {
          EXPECT_NEAR(images.data()[i], values[i],
                      std::fabs(values[i]) / 256 + 1e-6f)
              << i;
        }
      }
      // (Unlabelled: images only. FLOAT32 clients decode BFLOAT16 too.)
      const int64_t wire = (*dc)->totals().wire_bytes;
      EXPECT_EQ(wire, dtype == v1::BFLOAT16  ? 2 * 64 * 2
                      : decodes == v1::UINT8 ? 2 * 64
                                             : 2 * 64 * 4);
    }
  }
  // A dtype samples cannot travel as is refused before connecting.
  TestServer server(Options(2), SyntheticSpec(256));
  DataClient::Options bad = ClientOptions(server, "g1");
  bad.role = v1::G_ONLY;
  bad.sample_dtype = static_cast<v1::DType>(7);
  auto g = DataClient::Connect(bad);
  EXPECT_EQ(g.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(g.status().message(), "sample_dtype"))
      << g.status();
}

TEST(DataServiceTest, GeneratedBatchesOlderThanAStreamsBoundAreSkipped) {
  DataServiceOptions so = Options(4);
  so.generated_buffer = 8;
  TestServer server(so, SyntheticSpec(256));
  DataClient::Options go = ClientOptions(server, "g0");
  go.role = v1::G_ONLY;
  auto g = DataClient::Connect(go);
  ASSERT_TRUE(g.ok()) << g.status();
  // G versions as two G workers of unequal speed publish them.
  for (int64_t v : {3, 4, 9, 5, 10, 6}) {
    ASSERT_TRUE((*g)->Publish(Tensor::Host({4, 1, 8, 8}), {}, v).ok());
  }
  EXPECT_EQ((*g)->last_publish().buffered_batches(), 6);
  EXPECT_EQ(server.service->stats().newest_g_version, 10);

  DataClient::Options d = ClientOptions(server, "d0");
  d.role = v1::D_ONLY;
  d.want_generated = true;
  d.max_sample_age = 4;  // newest is 10: versions below 6 are too old
  d.credits = 1;
  auto dc = DataClient::Connect(d);
  ASSERT_TRUE(dc.ok()) << dc.status();
  Tensor images;
  std::vector<int> labels;
  std::vector<int64_t> got;
  for (int k = 0; k < 3; ++k) {
    ASSERT_TRUE((*dc)->Next(&images, &labels).ok());
    got.push_back((*dc)->last_batch().g_version);
    EXPECT_EQ((*dc)->last_batch().newest_g_version, 10);
  }
  EXPECT_EQ(got, (std::vector<int64_t>{9, 10, 6}));
  DataService::Stats st = server.service->stats();
  EXPECT_EQ(st.generated_stale, 3);  // 3, 4 and 5
  EXPECT_EQ(st.generated_buffered, 0);

  // A stream with a bound waits while every buffered batch is too old.
  ASSERT_TRUE((*g)->Publish(Tensor::Host({4, 1, 8, 8}), {}, 2).ok());
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_EQ(server.service->stats().generated_buffered, 1);
  ASSERT_TRUE((*g)->Publish(Tensor::Host({4, 1, 8, 8}), {}, 11).ok());
  ASSERT_TRUE((*dc)->Next(&images, &labels).ok());
  EXPECT_EQ((*dc)->last_batch().g_version, 11);
  EXPECT_EQ(server.service->stats().generated_stale, 4);

  // A bound is for generated streams, and not negative.
  DataClient::Options bad = ClientOptions(server, "r1");
  bad.max_sample_age = 2;
  EXPECT_EQ(DataClient::Connect(bad).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto stub = StubFor(server);
  v1::BatchRequest raw = Open("d1", 1);
  raw.set_role(v1::D_ONLY);
  raw.set_want_generated(true);
  raw.set_max_sample_age(-1);
  RawStream rs(stub.get(), raw);
  v1::Batch unused;
  EXPECT_FALSE(rs.stream->Read(&unused));
  const grpc::Status finish = rs.stream->Finish();
  EXPECT_EQ(finish.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StrContains(finish.error_message(), "max_sample_age"))
      << finish.error_message();
}

TEST(DataServiceTest, ShutdownEndsOpenStreamsAtOnce) {
  TestServer server(Options(8), SyntheticSpec(256));
  auto stub = StubFor(server);
  RawStream raw(stub.get(), Open("s", 2));
  raw.Read();
  server.service->Shutdown();
  const absl::Time start = absl::Now();
  server.server->Shutdown(std::chrono::system_clock::now() +
                          std::chrono::seconds(10));
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  v1::Batch b;
  while (raw.stream->Read(&b)) {
  }
  EXPECT_NE(raw.stream->Finish().error_code(), grpc::StatusCode::OK);
  EXPECT_EQ(server.service->stats().streams, 0);
  EXPECT_EQ(server.service->stats().in_flight, 0);
}

TEST(DataServiceTest, MetricsCountBatchesLatencyAndRequeues) {
  TestServer server(Options(8), SyntheticSpec(256));
  {
    auto client = DataClient::Connect(ClientOptions(server, "m0"));
    ASSERT_TRUE(client.ok());
    Tensor images;
    std::vector<int> labels;
    for (int i = 0; i < 5; ++i) {
      ASSERT_TRUE((*client)->Next(&images, &labels).ok());
    }
  }  // closes: the batches received ahead are requeued
  ASSERT_TRUE(WaitFor([&] { return server.service->stats().streams == 0; }));
  std::map<std::string, double> values = MetricValues(server);
  EXPECT_GE(values["paragan_data_batches_sent_total{worker=m0}"], 5);
  EXPECT_GE(values["paragan_data_bytes_sent_total{worker=m0}"], 5 * 8 * 64 * 4);
  EXPECT_EQ(values["paragan_data_delivery_latency_seconds{worker=m0}"], 5);
  EXPECT_GE(values["paragan_data_credit_wait_seconds{worker=m0}"], 5);
  EXPECT_GE(values["paragan_data_requeued_batches_total"], 1);
  EXPECT_EQ(values["paragan_data_in_flight_batches"], 0);
  EXPECT_EQ(values["paragan_data_streams"], 0);
  EXPECT_EQ(values.count("paragan_data_epoch"), 1u);
}

// The seam: round_robin's decisions, with every event the service reports
// recorded (readable from the test's thread), an optional window and an
// optional set of streams it refuses to deal to.
class RecordingPolicy final : public DispatchPolicy {
 public:
  struct Event {
    std::string what;  // opened credits dealt sent acked closed
    StreamId id = -1;
    std::string worker_id;  // opened
    int64_t n = 0;          // credits granted; closed: requeued
    Delivery batch;
    LinkState link;
    absl::Status status;  // closed
  };

  explicit RecordingPolicy(int64_t window = kNoWindow,
                           std::string refused_worker = "",
                           std::vector<WireEncoding> encodings = {})
      : window_(window),
        refused_worker_(std::move(refused_worker)),
        encodings_(std::move(encodings)) {}

  absl::string_view name() const override { return "recording"; }
  void OnStreamOpened(const StreamInfo& stream) override {
    rr_.OnStreamOpened(stream);
    if (stream.worker_id == refused_worker_) refused_.insert(stream.id);
    Event e = Make("opened", stream.id);
    e.worker_id = stream.worker_id;
    Record(std::move(e));
  }
  void OnCredits(StreamId id, int64_t granted, absl::Time now,
                 const LinkState& link) override {
    rr_.OnCredits(id, granted, now, link);
    Event e = Make("credits", id, link);
    e.n = granted;
    Record(std::move(e));
  }
  void OnDealt(StreamId id, const Delivery& batch,
               const LinkState& link) override {
    rr_.OnDealt(id, batch, link);
    Record(Make("dealt", id, link, batch));
  }
  void OnSent(StreamId id, const Delivery& batch,
              const LinkState& link) override {
    rr_.OnSent(id, batch, link);
    Record(Make("sent", id, link, batch));
  }
  void OnAcked(StreamId id, const Delivery& batch,
               const LinkState& link) override {
    rr_.OnAcked(id, batch, link);
    Record(Make("acked", id, link, batch));
  }
  void OnStreamClosed(StreamId id, const absl::Status& why,
                      int64_t requeued) override {
    rr_.OnStreamClosed(id, why, requeued);
    Event e = Make("closed", id);
    e.n = requeued;
    e.status = why;
    Record(std::move(e));
  }
  std::optional<StreamId> PickStream(
      absl::FunctionRef<bool(StreamId)> eligible) override {
    return rr_.PickStream(
        [&](StreamId id) { return refused_.count(id) == 0 && eligible(id); });
  }
  int64_t Window(StreamId) const override { return window_; }
  // Cycles through `encodings` (none when empty).
  WireEncoding Encoding(StreamId) const override {
    if (encodings_.empty()) return {};
    return encodings_[encoded_++ % encodings_.size()];
  }

  std::vector<Event> events() const {
    std::lock_guard<std::mutex> lock(mu_);
    return events_;
  }

 private:
  static Event Make(const char* what, StreamId id, const LinkState& link = {},
                    const Delivery& batch = {}) {
    Event e;
    e.what = what;
    e.id = id;
    e.link = link;
    e.batch = batch;
    return e;
  }
  void Record(Event e) {
    std::lock_guard<std::mutex> lock(mu_);
    events_.push_back(std::move(e));
  }

  const int64_t window_;
  const std::string refused_worker_;
  const std::vector<WireEncoding> encodings_;
  // Touched under the service's lock only.
  mutable size_t encoded_ = 0;
  RoundRobinPolicy rr_;
  std::set<StreamId> refused_;
  mutable std::mutex mu_;  // events_ is read by the test
  std::vector<Event> events_;
};

// A slow machine only lengthens the fetches, so the lower bounds below
// (bytes over the cap's rate, less one burst) cannot fail for load; they
// fail when the cap lets more through than it should.
TEST(DataServiceTest, ALinkByteBudgetHoldsEachStreamToItsRate) {
  DataServiceOptions o = Options(8);
  o.link_max_bytes_per_s = 100e3;
  o.budget_burst = absl::Milliseconds(10);
  TestServer server(o, SyntheticSpec(256));
  const int batches = 40;
  const double seconds = SecondsToFetch(server, "b0", batches);
  std::map<std::string, double> values = MetricValues(server);
  const double per_batch = WireBytesPerBatch(values, "b0");
  ASSERT_GT(per_batch, 8 * 64 * 4);  // float32 8x8 images and labels
  EXPECT_GE(seconds, (batches * per_batch - 1e3) / 100e3)
      << batches << " batches of " << per_batch << " bytes";
  EXPECT_GT(values["paragan_data_budget_wait_seconds_total{worker=b0}"],
            0.5 * seconds);
}

TEST(DataServiceTest, ATotalByteBudgetIsSharedByAllStreams) {
  DataServiceOptions o = Options(8);
  o.max_bytes_per_s = 100e3;
  o.budget_burst = absl::Milliseconds(10);
  TestServer server(o, SyntheticSpec(512));
  const int batches = 20;
  double seconds[2];
  std::thread other(
      [&] { seconds[1] = SecondsToFetch(server, "t1", batches); });
  seconds[0] = SecondsToFetch(server, "t0", batches);
  other.join();
  std::map<std::string, double> values = MetricValues(server);
  const double per_batch = WireBytesPerBatch(values, "t0");
  // Both streams' 2 x 20 batches went through one 100 KB/s budget.
  EXPECT_GE(std::max(seconds[0], seconds[1]),
            (2 * batches * per_batch - 1e3) / 100e3)
      << seconds[0] << " s and " << seconds[1] << " s for " << batches
      << " batches of " << per_batch << " bytes each";
  EXPECT_GT(values["paragan_data_budget_wait_seconds_total{worker=t0}"], 0);
  EXPECT_GT(values["paragan_data_budget_wait_seconds_total{worker=t1}"], 0);
}

TEST(DataServiceTest, BadByteBudgetsAreRefusedNamingTheOption) {
  for (const auto& [option, field] :
       {std::make_pair("max_bytes_per_s", &DataServiceOptions::max_bytes_per_s),
        std::make_pair("link_max_bytes_per_s",
                       &DataServiceOptions::link_max_bytes_per_s)}) {
    for (double rate : {-1.0, std::numeric_limits<double>::quiet_NaN()}) {
      DataServiceOptions o = Options(8);
      o.*field = rate;
      auto dataset = OpenDataset(SyntheticSpec(64));
      ASSERT_TRUE(dataset.ok());
      auto service = DataService::Create(*std::move(dataset), o, nullptr);
      EXPECT_EQ(service.status().code(), absl::StatusCode::kInvalidArgument);
      EXPECT_TRUE(absl::StartsWith(service.status().message(),
                                   absl::StrCat(option, " (0: no cap)")))
          << service.status();
    }
  }
}

TEST(DataServiceTest, DefaultPolicyIsRoundRobinAndUnknownOnesAreRefused) {
  TestServer server(Options(8), SyntheticSpec(256));
  EXPECT_EQ(server.service->dispatch_policy(), "round_robin");

  DataServiceOptions o = Options(8);
  o.dispatch_policy = "fastest_first";
  auto dataset = OpenDataset(SyntheticSpec(256));
  ASSERT_TRUE(dataset.ok());
  auto service = DataService::Create(*std::move(dataset), o, nullptr);
  EXPECT_EQ(service.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(service.status().message(),
                                "unknown dispatch policy 'fastest_first'"))
      << service.status();
  EXPECT_TRUE(absl::StrContains(service.status().message(), "round_robin"))
      << service.status();
}

TEST(DataServiceTest, PolicyObservesEveryDeliveryOfALink) {
  auto owned = std::make_unique<RecordingPolicy>();
  RecordingPolicy* policy = owned.get();
  TestServer server(Options(8), SyntheticSpec(256), 0, std::move(owned));
  EXPECT_EQ(server.service->dispatch_policy(), "recording");
  std::vector<int64_t> consumed;
  {
    DataClient::Options o = ClientOptions(server, "obs");
    o.credits = 2;
    auto client = DataClient::Connect(o);
    ASSERT_TRUE(client.ok()) << client.status();
    Tensor images;
    std::vector<int> labels;
    for (int i = 0; i < 3; ++i) {
      ASSERT_TRUE((*client)->Next(&images, &labels).ok());
      consumed.push_back((*client)->last_batch().batch_id);
    }
  }  // acks the last batch, half-closes
  ASSERT_TRUE(WaitFor([&] { return server.service->stats().streams == 0; }));

  const std::vector<RecordingPolicy::Event> events = policy->events();
  ASSERT_GE(events.size(), 2u);
  EXPECT_EQ(events.front().what, "opened");
  EXPECT_EQ(events.front().worker_id, "obs");
  const StreamId id = events.front().id;
  ASSERT_EQ(events[1].what, "credits");
  EXPECT_EQ(events[1].n, 2);
  EXPECT_EQ(events[1].link.credits, 2);
  EXPECT_EQ(events.back().what, "closed");
  EXPECT_TRUE(events.back().status.ok()) << events.back().status;

  constexpr int64_t kBytes = (8 * 1 * 8 * 8 + 8) * 4;  // images + labels
  std::map<int64_t, size_t> dealt_at, sent_at, acked_at;
  int64_t granted = 0;
  for (size_t i = 0; i < events.size(); ++i) {
    const RecordingPolicy::Event& e = events[i];
    EXPECT_EQ(e.id, id) << i;
    // The client keeps at most its 2 credits' worth unacked.
    EXPECT_LE(e.link.unacked, 2) << e.what << " " << i;
    if (e.what == "credits") granted += e.n;
    if (e.what != "dealt" && e.what != "sent" && e.what != "acked") continue;
    EXPECT_EQ(e.batch.payload_bytes, kBytes) << e.what;
    EXPECT_FALSE(e.batch.generated);
    EXPECT_NE(e.batch.credit_granted, absl::InfinitePast());
    EXPECT_GE(e.batch.dealt, e.batch.credit_granted);
    std::map<int64_t, size_t>& at = e.what == "dealt"  ? dealt_at
                                    : e.what == "sent" ? sent_at
                                                       : acked_at;
    EXPECT_TRUE(at.emplace(e.batch.batch_id, i).second)
        << e.what << " twice for batch " << e.batch.batch_id;
    if (e.what == "sent") {
      EXPECT_GE(e.batch.sent, e.batch.dealt);
    }
    if (e.what == "acked") {
      EXPECT_NE(e.batch.sent, absl::InfinitePast());
      EXPECT_GE(e.batch.acked, e.batch.sent);
    }
  }
  // 2 up front + 1 per acked batch while streaming; one batch per credit.
  EXPECT_EQ(granted, 4);
  EXPECT_GE(dealt_at.size(), 3u);
  EXPECT_LE(static_cast<int64_t>(dealt_at.size()), granted);
  // Every consumed batch was dealt, then sent, then acked, in that order.
  ASSERT_EQ(acked_at.size(), 3u);
  for (int64_t b : consumed) {
    ASSERT_EQ(acked_at.count(b), 1u) << b;
    ASSERT_EQ(sent_at.count(b), 1u) << b;
    EXPECT_LT(dealt_at.at(b), sent_at.at(b));
    EXPECT_LT(sent_at.at(b), acked_at.at(b));
  }
  // What was dealt and not acked went back to the queue.
  EXPECT_EQ(events.back().n,
            static_cast<int64_t>(dealt_at.size() - acked_at.size()));
  EXPECT_EQ(server.service->stats().requeued_total, events.back().n);
}

// Every codec the policy picks decompresses to the bytes it started from:
// the worker gets the trainer's batches whatever the wire did (synthetic
// floats, and Fashion-MNIST's uint8 pixels when installed).
TEST(DataServiceTest, CompressedBatchesArriveExactly) {
  const std::vector<WireEncoding> ladder = {
      {}, {v1::LZ4, 1}, {v1::ZSTD, 1}, {v1::ZSTD, 7}};
  ExpectTrainerOrder(SyntheticSpec(256, 11), 24, 11, 12,
                     std::make_unique<RecordingPolicy>(
                         RecordingPolicy::kNoWindow, "", ladder));
  const DatasetSpec spec = FashionMnistSpec();
  if (!OpenDataset(spec).ok())
    GTEST_SKIP() << "no Fashion-MNIST at " << spec.path;
  DataClient::Totals totals;
  ExpectTrainerOrder(
      spec, 64, 0, 8,
      std::make_unique<RecordingPolicy>(RecordingPolicy::kNoWindow, "", ladder),
      {}, &totals);
  EXPECT_EQ(totals.batches, 8);
  EXPECT_EQ(totals.decoded_bytes, 8 * (64 * 1024 + 64) * 4);
  // 2 of 8 batches uncompressed uint8 (a quarter of the floats), 6 smaller.
  EXPECT_LT(totals.wire_bytes, totals.decoded_bytes / 4);
  // A client that accepts no codec gets none, whatever the policy says.
  ExpectTrainerOrder(
      spec, 64, 0, 4,
      std::make_unique<RecordingPolicy>(RecordingPolicy::kNoWindow, "", ladder),
      [](DataClient::Options* o) { o->accept_compression.clear(); });
}

TEST(DataServiceTest, PolicyWindowHoldsBackAStreamWithCredit) {
  TestServer server(Options(8), SyntheticSpec(256), 0,
                    std::make_unique<RecordingPolicy>(/*window=*/1));
  auto stub = StubFor(server);
  RawStream raw(stub.get(), Open("win", 3));
  std::atomic<int> received{0};
  std::vector<int64_t> ids;
  std::mutex mu;
  std::thread reader([&] {
    v1::Batch b;
    while (raw.stream->Read(&b)) {
      std::lock_guard<std::mutex> lock(mu);
      ids.push_back(b.batch_id());
      ++received;
    }
  });
  auto ack_last = [&] {
    v1::BatchRequest ack;
    std::lock_guard<std::mutex> lock(mu);
    ack.add_acks(ids.back());
    raw.stream->Write(ack);
  };
  for (int want = 1; want <= 3; ++want) {
    ASSERT_TRUE(WaitFor([&] { return received.load() == want; })) << want;
    absl::SleepFor(absl::Milliseconds(200));
    EXPECT_EQ(received.load(), want) << "the window of 1 was passed";
    EXPECT_EQ(server.service->stats().in_flight, 1);
    ack_last();  // opens the window; the credits still held allow one more
  }
  ASSERT_TRUE(WaitFor([&] { return server.service->stats().in_flight == 0; }));
  absl::SleepFor(absl::Milliseconds(200));
  EXPECT_EQ(received.load(), 3) << "sent beyond the 3 credits";
  raw.stream->WritesDone();
  reader.join();
  EXPECT_TRUE(raw.stream->Finish().ok());
}

TEST(DataServiceTest, PolicyChoosesWhichStreamIsServed) {
  TestServer server(
      Options(8), SyntheticSpec(256), 0,
      std::make_unique<RecordingPolicy>(RecordingPolicy::kNoWindow, "starved"));
  auto stub = StubFor(server);
  RawStream starved(stub.get(), Open("starved", 2));
  RawStream fed(stub.get(), Open("fed", 2));
  fed.Read();
  fed.Read();
  absl::SleepFor(absl::Milliseconds(300));
  const DataService::Stats st = server.service->stats();
  EXPECT_EQ(st.streams, 2);
  EXPECT_EQ(st.in_flight, 2) << "the refused stream was dealt a batch";
  starved.context.TryCancel();
  fed.context.TryCancel();
  starved.stream->Finish().IgnoreError();
  fed.stream->Finish().IgnoreError();
}

}  // namespace
}  // namespace paragan
