// The distributed worker's logic against in-memory shards (fake_shard.h),
// with the real trainer on a small batch: options and roles, D steps per G
// step from the servers, step bookkeeping and versions, when it waits for a
// table (synchronous mode, --overlap=false), staleness and refusals in the
// progress lines, retries, a shard that restarts mid-run, errors that end
// the run, and stopping.

#include "worker/distributed/worker.h"

#include <atomic>
#include <cmath>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "server/table_names.h"
#include "worker/distributed/fake_shard.h"
#include "worker/distributed/table_sync.h"
#include "worker/train/gan_trainer.h"

namespace paragan {
namespace {

using fake::FakeCluster;
using fake::FakeShard;

constexpr int kBatch = 4;

// Real-looking batches; `on_batch(k)` runs before batch k (0, 1, ...).
class FakeBatches : public BatchProvider {
 public:
  FakeBatches(Shape shape, std::function<absl::Status(int)> on_batch)
      : shape_(std::move(shape)), on_batch_(std::move(on_batch)) {}
  absl::Status Next(Tensor* images, std::vector<int>* labels) override {
    const int k = served_++;
    if (on_batch_) {
      absl::Status st = on_batch_(k);
      if (!st.ok()) return st;
    }
    *images = Tensor::Host(shape_);
    for (int64_t i = 0; i < images->numel(); ++i) {
      images->data()[i] = std::sin(0.37f * (i + 11 * k));
    }
    labels->assign(static_cast<size_t>(shape_[0]), k % 10);
    return absl::OkStatus();
  }
  int served() const { return served_; }

 private:
  Shape shape_;
  std::function<absl::Status(int)> on_batch_;
  std::atomic<int> served_{0};
};

// The sample buffer's ends, in memory.
class RecordingSink : public SampleSink {
 public:
  struct Published {
    Shape shape;
    std::vector<float> images;
    std::vector<int> labels;
    int64_t g_version;
  };
  absl::Status Publish(const Tensor& images, const std::vector<int>& labels,
                       int64_t g_version) override {
    published.push_back(
        Published{images.shape(), images.ToVector(), labels, g_version});
    return absl::OkStatus();
  }
  std::vector<Published> published;
};

// Fakes with the ages `ages` (newest_g_version 100); `wait` before each.
class ScriptedFakes : public FakeSource {
 public:
  ScriptedFakes(Shape shape, std::vector<int64_t> ages,
                absl::Duration wait = absl::ZeroDuration())
      : shape_(std::move(shape)), ages_(std::move(ages)), wait_(wait) {}
  absl::Status Next(Tensor* images, std::vector<int>* labels,
                    FakeBatchInfo* info, absl::Time deadline) override {
    if (absl::Now() + wait_ > deadline) {
      absl::SleepFor(deadline - absl::Now());
      return absl::DeadlineExceededError("scripted: too slow");
    }
    absl::SleepFor(wait_);
    const int k = served_++;
    *images = Tensor::Host(shape_);
    for (int64_t i = 0; i < images->numel(); ++i)
      images->data()[i] = std::cos(0.21f * (i + 5 * k));
    labels->assign(static_cast<size_t>(shape_[0]), 3);
    info->newest_g_version = 100;
    info->g_version = 100 - ages_[k % ages_.size()];
    return absl::OkStatus();
  }
  int served() const { return served_; }

 private:
  Shape shape_;
  std::vector<int64_t> ages_;
  absl::Duration wait_;
  std::atomic<int> served_{0};
};

struct Rig {
  std::unique_ptr<Backend> backend = MakeCpuBackend(1);
  std::unique_ptr<GanTrainer> reference;  // the model's table layouts
  std::vector<TableLayout> layouts;
  std::unique_ptr<FakeCluster> cluster;
  WorkerOptions o;
  std::ostringstream log;
  std::function<absl::Status(int)> on_batch;
  Shape batch_shape{kBatch, 1, 32, 32};
  FakeBatches* batches = nullptr;

  explicit Rig(int n = 2) {
    TrainerConfig tc = DefaultTrainerConfig("dcgan32");
    tc.model.image_channels = 1;
    tc.model.num_classes = 10;
    tc.batch_size = kBatch;
    reference = GanTrainer::Create(tc, backend.get()).value();
    GanModel& m = reference->model();
    layouts.push_back(
        TableLayout::Create(kGeneratorTable, m.generator(), n).value());
    layouts.push_back(
        TableLayout::Create(kDiscriminatorTable, m.discriminator(), n).value());
    cluster = std::make_unique<FakeCluster>(
        n, "dcgan32",
        std::vector<const TableLayout*>{&layouts[0], &layouts[1]});
    o.worker_id = "wt";
    o.ps = cluster->addresses;
    o.model = "dcgan32";
    o.batch_size = kBatch;
    o.threads = 1;
    o.cpu_layout = CpuConvLayout::kBlocked;
    o.steps = 3;
    o.log_every = 1;
    o.seed = 5;
    o.retry.initial_backoff = absl::Milliseconds(1);
    o.retry.max_backoff = absl::Milliseconds(2);
    o.retry.max_total = absl::Seconds(20);
    o.connect = cluster->connector();
  }
  FakeShard& shard(int s) { return *cluster->shards[s]; }
  absl::StatusOr<std::unique_ptr<Worker>> Create(
      const std::atomic<bool>* stop = nullptr) {
    auto b = std::make_unique<FakeBatches>(batch_shape, on_batch);
    batches = b.get();
    return Worker::Create(o, std::move(b), nullptr, &log, stop);
  }
  // A decoupled worker: G_ONLY publishes to `sink`; D_ONLY reads `fakes`.
  absl::StatusOr<std::unique_ptr<Worker>> CreateRole(
      v1::WorkerRole role, std::unique_ptr<FakeSource> fake_source = nullptr,
      const std::atomic<bool>* stop = nullptr) {
    o.role = role;
    Worker::Exchange e;
    if (role == v1::G_ONLY) {
      auto s = std::make_unique<RecordingSink>();
      sink = s.get();
      e.samples = std::move(s);
    } else {
      auto b = std::make_unique<FakeBatches>(batch_shape, on_batch);
      batches = b.get();
      e.batches = std::move(b);
      e.fakes = std::move(fake_source);
    }
    return Worker::Create(o, std::move(e), nullptr, &log, stop);
  }
  RecordingSink* sink = nullptr;
  int Pulls(int s, const std::string& table) {
    int n = 0;
    for (const fake::PullRecord& p : shard(s).pulls()) n += p.table == table;
    return n;
  }
  // Pushes of `table` the shard took (all of them, with their bases).
  std::vector<int64_t> Bases(int s, const std::string& table) {
    std::vector<int64_t> out;
    for (const fake::PushRecord& p : shard(s).pushes())
      if (p.table == table && p.status.ok()) out.push_back(p.base_version);
    return out;
  }
  std::vector<std::string> Progress() {
    std::vector<std::string> out;
    std::istringstream in(log.str());
    for (std::string line; std::getline(in, line);)
      if (absl::StartsWith(line, "progress ")) out.push_back(line);
    return out;
  }
};

std::string Field(const std::string& line, const std::string& name) {
  const std::string key = name + "=";
  size_t at = line.find(" " + key);
  if (at == std::string::npos) return "";
  at += key.size() + 1;
  return line.substr(at, line.find(' ', at) - at);
}

std::vector<int64_t> Iota(int64_t n) {
  std::vector<int64_t> v;
  for (int64_t i = 0; i < n; ++i) v.push_back(i);
  return v;
}

// ---- Pieces ----

TEST(WorkerDecisionTest, DStepsComeFromTheServersUnlessTheFlagSaysSo) {
  EXPECT_EQ(ResolveDSteps(0, 2), 2);
  EXPECT_EQ(ResolveDSteps(0, 0), 1);  // a server that says nothing
  EXPECT_EQ(ResolveDSteps(3, 2), 3);
  EXPECT_EQ(ResolveDSteps(1, 5), 1);
}

TEST(WorkerDecisionTest, WhenTheComputeThreadWaitsForATable) {
  WaitSchedule async;  // overlap
  EXPECT_TRUE(async.g_before_d_step(/*g_merged_once=*/false));
  EXPECT_FALSE(async.g_before_d_step(true));  // whatever has arrived
  EXPECT_TRUE(async.d_before_d_step());
  EXPECT_FALSE(async.d_before_g_step());
  EXPECT_TRUE(async.g_before_g_step());
  EXPECT_FALSE(async.after_push());
  WaitSchedule sync;
  sync.sync = true;
  EXPECT_TRUE(sync.g_before_d_step(true));
  EXPECT_TRUE(sync.d_before_g_step());
  WaitSchedule serial;
  serial.overlap = false;
  EXPECT_TRUE(serial.after_push());
}

// ---- Create ----

TEST(WorkerTest, CreateRefusesBadOptions) {
  for (auto bad : std::vector<std::function<void(WorkerOptions&)>>{
           [](WorkerOptions& o) { o.ps.clear(); },
           [](WorkerOptions& o) { o.worker_id.clear(); },
           [](WorkerOptions& o) { o.batch_size = 0; },
           [](WorkerOptions& o) { o.steps = -1; },
           [](WorkerOptions& o) { o.d_steps = -1; },
           [](WorkerOptions& o) { o.log_every = -1; }}) {
    Rig y;
    bad(y.o);
    EXPECT_EQ(y.Create().status().code(), absl::StatusCode::kInvalidArgument);
  }
}

TEST(WorkerTest, CreateRefusesShardsOfAnotherModelOrOrder) {
  Rig x;
  x.shard(1).reported_model = "biggan32";
  absl::Status st = x.Create().status();
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(st.message().find("serves model 'biggan32'"), std::string::npos);
  Rig y;
  y.shard(0).reported_shard_id = 1;
  EXPECT_EQ(y.Create().status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(WorkerTest, SaysHowTensorsTravel) {
  Rig x;
  ASSERT_TRUE(x.Create().ok());
  EXPECT_NE(x.log.str().find("paragan_worker: wt registered with 2 shards "
                             "(tensors over gRPC)"),
            std::string::npos)
      << x.log.str();
  Rig y;
  y.shard(1).data_plane_port = 9001;
  ASSERT_TRUE(y.Create().ok());
  EXPECT_NE(y.log.str().find("(tensors over the data planes of 1, gRPC for "
                             "the rest)"),
            std::string::npos);
  Rig z;
  z.shard(0).data_plane_port = 9000;
  z.shard(1).data_plane_port = 9001;
  ASSERT_TRUE(z.Create().ok());
  EXPECT_NE(z.log.str().find("(tensors over their data planes)"),
            std::string::npos);
}

// ---- Run ----

TEST(WorkerTest, DStepsPerGStepFollowTheServers) {
  Rig x;
  x.shard(0).d_steps_per_g_step = 2;
  x.shard(1).d_steps_per_g_step = 4;  // shard 0 speaks for them
  auto w = x.Create().value();
  EXPECT_EQ(w->d_steps(), 2);
  EXPECT_FALSE(w->synchronous());
  ASSERT_TRUE(w->Run(nullptr).ok());
  EXPECT_EQ(w->steps_done(), 3);
  EXPECT_EQ(x.batches->served(), 6);
  for (int s = 0; s < 2; ++s) {
    if (x.shard(s).holds(kDiscriminatorTable)) {
      EXPECT_EQ(x.Bases(s, kDiscriminatorTable).size(), 6u);
      EXPECT_EQ(x.shard(s).version(kDiscriminatorTable), 6);
    }
    if (x.shard(s).holds(kGeneratorTable)) {
      EXPECT_EQ(x.Bases(s, kGeneratorTable).size(), 3u);
      EXPECT_EQ(x.shard(s).version(kGeneratorTable), 3);
    }
  }
  // The last pulls are merged before Run returns.
  EXPECT_EQ(w->d_version(), 6);
  EXPECT_EQ(w->g_version(), 3);

  Rig y;
  y.shard(0).d_steps_per_g_step = 2;
  y.o.d_steps = 1;
  y.o.steps = 2;
  auto w1 = y.Create().value();
  EXPECT_EQ(w1->d_steps(), 1);
  ASSERT_TRUE(w1->Run(nullptr).ok());
  EXPECT_EQ(y.batches->served(), 2);
}

TEST(WorkerTest, TheModelEndsWithTheShardsValues) {
  Rig x;
  auto w = x.Create().value();
  ASSERT_TRUE(w->Run(nullptr).ok());
  for (int t = 0; t < 2; ++t) {
    ParamStore& store = t == 0 ? w->trainer().model().generator()
                               : w->trainer().model().discriminator();
    const TableLayout& layout = x.layouts[t];
    int checked = 0;
    for (int s = 0; s < 2; ++s) {
      for (const TableTensorSpec& spec : layout.on_shard(s)) {
        if (!spec.trainable) continue;
        const std::vector<float> want =
            x.shard(s).values(layout.table(), spec.name);
        const std::vector<float> have =
            x.backend->ToHost(store.FindParam(spec.name)->value).ToVector();
        EXPECT_EQ(have, want) << layout.table() << " " << spec.name;
        ++checked;
      }
    }
    EXPECT_GT(checked, 0);
  }
}

TEST(WorkerTest, LeaveDeregistersFromEveryShardOnce) {
  Rig x;
  x.shard(1).deregister_errors = {absl::UnavailableError("down")};
  auto w = x.Create().value();
  ASSERT_TRUE(w->Run(nullptr).ok());
  EXPECT_EQ(x.shard(0).deregisters(), 0);  // Run alone does not leave
  w->Leave(absl::Seconds(1));
  w->Leave(absl::Seconds(1));  // once only
  EXPECT_EQ(x.shard(0).deregisters(), 1);
  EXPECT_EQ(x.shard(1).deregisters(), 1);
  // A shard that did not confirm is named, and the lease is the fallback.
  EXPECT_NE(x.log.str().find("wt could not deregister (shard 1"),
            std::string::npos)
      << x.log.str();
  EXPECT_NE(x.log.str().find("drops it when its lease ends"),
            std::string::npos);
}

TEST(WorkerTest, ProgressLinesCountStepsVersionsAndTime) {
  Rig x;
  auto w = x.Create().value();
  ASSERT_TRUE(w->Run(nullptr).ok());
  std::vector<std::string> lines = x.Progress();
  ASSERT_EQ(lines.size(), 3u) << x.log.str();
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(Field(lines[i], "worker"), "wt");
    EXPECT_EQ(Field(lines[i], "step"), absl::StrCat(i + 1));
    EXPECT_EQ(Field(lines[i], "rejected"), "0");
    EXPECT_TRUE(std::isfinite(std::stod(Field(lines[i], "d_loss"))));
    EXPECT_GT(std::stod(Field(lines[i], "img_s")), 0);
  }
  const WorkerTimings& t = w->timings();
  EXPECT_GT(t.wall, 0);
  EXPECT_GT(t.compute, 0);
  EXPECT_GE(t.comm, t.push);
  EXPECT_LE(t.compute + t.batch_wait, t.wall + 1e-6);
}

TEST(WorkerTest, SynchronousModeWaitsForEveryVersion) {
  Rig x;
  for (int s = 0; s < 2; ++s) x.shard(s).sync_workers = 1;
  auto w = x.Create().value();
  EXPECT_TRUE(w->synchronous());
  ASSERT_TRUE(w->Run(nullptr).ok());
  for (int s = 0; s < 2; ++s) {
    // Every push starts from the version the one before made.
    if (x.shard(s).holds(kDiscriminatorTable)) {
      EXPECT_EQ(x.Bases(s, kDiscriminatorTable), Iota(3));
    }
    if (x.shard(s).holds(kGeneratorTable)) {
      EXPECT_EQ(x.Bases(s, kGeneratorTable), Iota(3));
    }
    // The pull after a push waits for the next version.
    int waited = 0;
    for (const fake::PullRecord& p : x.shard(s).pulls()) {
      if (p.min_version > 0) ++waited;
    }
    EXPECT_EQ(waited, 3 * (x.shard(s).holds(kDiscriminatorTable) +
                           x.shard(s).holds(kGeneratorTable)));
  }
  for (const std::string& line : x.Progress()) {
    EXPECT_EQ(Field(line, "staleness_d"), "0.00");
    EXPECT_EQ(Field(line, "staleness_g"), "0.00");
  }
}

TEST(WorkerTest, WithoutOverlapEveryPushIsPulledBeforeTheNextStep) {
  Rig x;
  x.o.overlap = false;
  x.o.steps = 4;
  auto w = x.Create().value();
  ASSERT_TRUE(w->Run(nullptr).ok());
  for (int s = 0; s < 2; ++s) {
    if (x.shard(s).holds(kDiscriminatorTable)) {
      EXPECT_EQ(x.Bases(s, kDiscriminatorTable), Iota(4));
    }
    if (x.shard(s).holds(kGeneratorTable)) {
      EXPECT_EQ(x.Bases(s, kGeneratorTable), Iota(4));
    }
  }
  // Every call was waited for: all of its time was exposed.
  EXPECT_NEAR(w->timings().exposed_comm, w->timings().comm, 0.05);
}

TEST(WorkerTest, StalenessAndRefusalsReachTheProgressLines) {
  Rig x;
  x.o.overlap = false;
  int holder = x.shard(0).holds(kDiscriminatorTable) ? 0 : 1;
  // Other workers move D ahead by 2 before every batch.
  x.on_batch = [&](int) {
    x.shard(holder).Advance(kDiscriminatorTable, 2);
    return absl::OkStatus();
  };
  x.shard(1 - holder).refuse_pushes = true;
  auto w = x.Create().value();
  ASSERT_TRUE(w->Run(nullptr).ok());
  std::vector<std::string> lines = x.Progress();
  ASSERT_EQ(lines.size(), 3u);
  for (const std::string& line : lines) {
    // One D push at staleness 2 on the holder, 0 on the other shard (if it
    // holds D too): the mean over shards is 1 or 2.
    const double sd = std::stod(Field(line, "staleness_d"));
    EXPECT_GE(sd, 1.0) << line;
    EXPECT_LE(sd, 2.0) << line;
  }
  EXPECT_GT(std::stoi(Field(lines.back(), "rejected")), 0);
}

TEST(WorkerTest, RetriesUnavailableShards) {
  Rig x;
  x.shard(1).push_errors = {absl::UnavailableError("reset"),
                            absl::UnavailableError("reset")};
  x.shard(0).pull_errors = {absl::DeadlineExceededError("slow")};
  auto w = x.Create().value();
  ASSERT_TRUE(w->Run(nullptr).ok());
  EXPECT_EQ(w->steps_done(), 3);
}

TEST(WorkerTest, AShardThatRestartsMidRunIsJoinedAgain) {
  Rig x;
  x.o.steps = 4;
  x.o.overlap = false;
  x.on_batch = [&](int k) {
    if (k == 2) x.shard(0).Restart(0);  // from an older checkpoint
    return absl::OkStatus();
  };
  auto w = x.Create().value();
  ASSERT_TRUE(w->Run(nullptr).ok());
  EXPECT_EQ(w->steps_done(), 4);
  EXPECT_GE(x.shard(0).registers(), 2);
  EXPECT_EQ(x.shard(1).registers(), 1);
  bool refused = false;
  for (const fake::PushRecord& p : x.shard(0).pushes()) {
    refused |= p.status.code() == absl::StatusCode::kFailedPrecondition;
  }
  EXPECT_TRUE(refused);
  // Versions continue from the checkpoint's.
  EXPECT_LT(x.shard(0).version(kDiscriminatorTable), 4);
}

TEST(WorkerTest, AShardGoneForGoodEndsTheRunNamingIt) {
  Rig x;
  x.o.retry.max_total = absl::Milliseconds(30);
  for (int i = 0; i < 1000; ++i) {
    x.shard(1).pull_errors.push_back(absl::UnavailableError("refused"));
  }
  auto w = x.Create().value();
  absl::Status st = w->Run(nullptr);
  EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(st.message().find("from shard 1 (fake:7001): giving up"),
            std::string::npos)
      << st;
  EXPECT_EQ(w->steps_done(), 0);
}

TEST(WorkerTest, AnInvalidPushEndsTheRun) {
  Rig x;
  x.shard(0).push_errors = {absl::InvalidArgumentError("NaN in a gradient")};
  auto w = x.Create().value();
  absl::Status st = w->Run(nullptr);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_LT(w->steps_done(), 3);
}

TEST(WorkerTest, BatchErrorsEndTheRun) {
  Rig x;
  x.batch_shape = {kBatch, 3, 32, 32};
  auto w = x.Create().value();
  absl::Status st = w->Run(nullptr);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("batch has shape"), std::string::npos);
  Rig y;
  y.on_batch = [](int k) {
    return k == 1 ? absl::DataLossError("corrupt file") : absl::OkStatus();
  };
  auto w1 = y.Create().value();
  EXPECT_EQ(w1->Run(nullptr).code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(w1->steps_done(), 1);
}

TEST(WorkerTest, StopEndsTheRunQuietly) {
  Rig x;
  std::atomic<bool> stop{false};
  x.o.steps = 0;  // until stopped
  x.on_batch = [&](int k) {
    if (k == 2) stop = true;
    return absl::OkStatus();
  };
  auto w = x.Create(&stop).value();
  EXPECT_TRUE(w->Run(&stop).ok());
  // Checked before each D step: the step under way when it came finishes.
  EXPECT_EQ(w->steps_done(), 3);
  // Stopped while a shard is down: the retry ends, Run is still OK.
  Rig y;
  std::atomic<bool> stop2{false};
  y.o.retry.max_total = absl::Seconds(60);
  for (int i = 0; i < 5000; ++i) {
    y.shard(0).pull_errors.push_back(absl::UnavailableError("down"));
  }
  auto w2 = y.Create(&stop2).value();
  std::thread stopper([&] {
    absl::SleepFor(absl::Milliseconds(200));
    stop2 = true;
  });
  EXPECT_TRUE(w2->Run(&stop2).ok());
  stopper.join();
  EXPECT_EQ(w2->steps_done(), 0);
}

}  // namespace
}  // namespace paragan

namespace paragan {
namespace {

// ---- The decoupled schedule's roles ----

TEST(DecoupledWorkerTest, RolesNeedTheirEndsOfTheSampleBuffer) {
  Rig x;
  x.o.role = v1::G_ONLY;
  absl::Status st = x.Create().status();  // batches, no sink
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("publish"), std::string::npos) << st;
  Rig y;
  st = y.CreateRole(v1::D_ONLY, nullptr).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("generated samples"), std::string::npos) << st;
}

TEST(DecoupledWorkerTest, RolesRefuseSynchronousServers) {
  Rig x;
  for (int s = 0; s < 2; ++s) x.shard(s).sync_workers = 1;
  absl::Status st = x.CreateRole(v1::G_ONLY).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(st.message().find("asynchronous"), std::string::npos) << st;
}

TEST(DecoupledWorkerTest, AGWorkerPushesGAndPublishesDStepsBatchesPerStep) {
  Rig x;
  x.shard(0).d_steps_per_g_step = 2;
  x.o.max_g_lead = -1;  // no D worker here: never wait for one
  auto w = x.CreateRole(v1::G_ONLY).value();
  ASSERT_TRUE(w->Run(nullptr).ok());
  EXPECT_EQ(w->steps_done(), 3);
  ASSERT_EQ(x.sink->published.size(), 6u);
  for (size_t k = 0; k < x.sink->published.size(); ++k) {
    const RecordingSink::Published& p = x.sink->published[k];
    EXPECT_EQ(p.shape, (Shape{kBatch, 1, 32, 32}));
    EXPECT_EQ(p.labels.size(), static_cast<size_t>(kBatch));
    // The G version the batch came from: the one its G step was based on.
    EXPECT_EQ(p.g_version, static_cast<int64_t>(k / 2)) << k;
    for (float v : p.images) ASSERT_TRUE(v >= -1 && v <= 1) << v;  // tanh
  }
  // The batch of a G step and the extra one differ (fresh z).
  EXPECT_NE(x.sink->published[0].images, x.sink->published[1].images);
  for (int s = 0; s < 2; ++s) {
    EXPECT_TRUE(x.Bases(s, kDiscriminatorTable).empty()) << "shard " << s;
    if (x.shard(s).holds(kGeneratorTable)) {
      EXPECT_EQ(x.Bases(s, kGeneratorTable), Iota(3));
    }
  }
  EXPECT_EQ(w->decoupled_stats().published, 6);
  const std::vector<std::string> lines = x.Progress();
  ASSERT_EQ(lines.size(), 3u) << x.log.str();
  EXPECT_EQ(Field(lines[2], "role"), "g");
  EXPECT_EQ(Field(lines[2], "published"), "6");
}

TEST(DecoupledWorkerTest, AGWorkerWaitsWhileDLagsBehindTheRatio) {
  Rig x;
  x.o.max_g_lead = 1;  // d_steps 1: at most one G update ahead of D
  x.o.steps = 4;
  auto w = x.CreateRole(v1::G_ONLY).value();
  std::thread run([&] { ASSERT_TRUE(w->Run(nullptr).ok()); });
  const int g_shard = x.shard(0).holds(kGeneratorTable) ? 0 : 1;
  auto g_version = [&] { return x.shard(g_shard).version(kGeneratorTable); };
  // Nobody trains D: two G steps (leads 0 and 1) run, the third waits.
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (g_version() < 2 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  absl::SleepFor(absl::Milliseconds(400));
  EXPECT_EQ(g_version(), 2);
  for (int s = 0; s < 2; ++s) {
    if (x.shard(s).holds(kDiscriminatorTable)) {
      x.shard(s).Advance(kDiscriminatorTable, 2);
    }
  }
  run.join();
  EXPECT_EQ(w->steps_done(), 4);
  EXPECT_GE(w->decoupled_stats().gate_waits, 1);
  EXPECT_GT(w->timings().d_gate_wait, 0.3);  // it was held 0.4 s
}

TEST(DecoupledWorkerTest, ADWorkerTrainsOnPublishedFakesAndSkipsOldOnes) {
  Rig x;
  x.o.max_sample_age = 4;
  x.o.steps = 3;
  auto fakes = std::make_unique<ScriptedFakes>(x.batch_shape,
                                               std::vector<int64_t>{0, 9, 4});
  ScriptedFakes* f = fakes.get();
  auto w = x.CreateRole(v1::D_ONLY, std::move(fakes)).value();
  ASSERT_TRUE(w->Run(nullptr).ok());
  EXPECT_EQ(w->steps_done(), 3);
  EXPECT_EQ(x.batches->served(), 3);
  // Ages 0 | 9 (skipped), 4 | 0.
  EXPECT_EQ(f->served(), 4);
  const Worker::DecoupledStats& d = w->decoupled_stats();
  EXPECT_EQ(d.fakes_used, 3);
  EXPECT_EQ(d.fakes_skipped, 1);
  EXPECT_EQ(d.max_sample_age, 4);
  for (int s = 0; s < 2; ++s) {
    EXPECT_TRUE(x.Bases(s, kGeneratorTable).empty()) << "shard " << s;
    EXPECT_EQ(x.Pulls(s, kGeneratorTable), 0) << "shard " << s;
    if (x.shard(s).holds(kDiscriminatorTable)) {
      EXPECT_EQ(x.Bases(s, kDiscriminatorTable), Iota(3));
    }
  }
  const std::vector<std::string> lines = x.Progress();
  ASSERT_EQ(lines.size(), 3u) << x.log.str();
  EXPECT_EQ(Field(lines[0], "role"), "d");
  EXPECT_EQ(Field(lines[2], "skipped"), "1");
  EXPECT_TRUE(std::isfinite(std::stod(Field(lines[2], "d_loss"))));
}

TEST(DecoupledWorkerTest, ADWorkerCountsTheTimeItWaitsForFakesAsStalls) {
  Rig x;
  x.o.steps = 2;
  auto w = x.CreateRole(v1::D_ONLY, std::make_unique<ScriptedFakes>(
                                        x.batch_shape, std::vector<int64_t>{0},
                                        absl::Milliseconds(30)))
               .value();
  ASSERT_TRUE(w->Run(nullptr).ok());
  EXPECT_EQ(w->decoupled_stats().stalls, 2);
  EXPECT_GE(w->timings().fake_wait, 0.06);
}

TEST(DecoupledWorkerTest, ADWorkerRefusesFakesOfAnotherShape) {
  Rig x;
  auto w = x.CreateRole(v1::D_ONLY,
                        std::make_unique<ScriptedFakes>(
                            Shape{kBatch, 3, 32, 32}, std::vector<int64_t>{0}))
               .value();
  absl::Status st = w->Run(nullptr);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("same model and batch size"), std::string::npos)
      << st;
}

}  // namespace
}  // namespace paragan

namespace paragan {
namespace {

TEST(SimulatedComputeTest, StepsWaitInsteadOfComputingAndStillPushEverything) {
  Rig x;
  x.o.simulated.d_step = absl::Milliseconds(40);
  x.o.simulated.g_step = absl::Milliseconds(60);
  x.o.steps = 3;
  auto w = x.Create().value();
  EXPECT_NE(x.log.str().find("SIMULATED compute"), std::string::npos);
  ASSERT_TRUE(w->Run(nullptr).ok());
  EXPECT_EQ(w->steps_done(), 3);
  EXPECT_GE(w->timings().wall, 0.3);  // 3 x (40 + 60) ms of waiting
  EXPECT_EQ(x.batches->served(), 3);  // real batches still flow
  for (int s = 0; s < 2; ++s) {
    if (x.shard(s).holds(kGeneratorTable)) {
      EXPECT_EQ(x.Bases(s, kGeneratorTable), Iota(3));
    }
    if (x.shard(s).holds(kDiscriminatorTable)) {
      EXPECT_EQ(x.Bases(s, kDiscriminatorTable), Iota(3));
    }
  }
  // A G worker publishes batches of the real shape under simulation too.
  Rig g;
  g.o.simulated = x.o.simulated;
  g.o.max_g_lead = -1;
  g.o.steps = 2;
  auto gw = g.CreateRole(v1::G_ONLY).value();
  ASSERT_TRUE(gw->Run(nullptr).ok());
  ASSERT_EQ(g.sink->published.size(), 2u);
  EXPECT_EQ(g.sink->published[0].shape, (Shape{kBatch, 1, 32, 32}));
}

TEST(SimulatedComputeTest, NeedsBothStepTimes) {
  Rig x;
  x.o.simulated.d_step = absl::Milliseconds(5);
  EXPECT_EQ(x.Create().status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace paragan

namespace paragan {
namespace {

// Assigns the roles in `script`, one per report, then the last one.
class ScriptedRoles : public RoleClient {
 public:
  explicit ScriptedRoles(std::vector<v1::WorkerRole> script)
      : script_(std::move(script)) {}
  absl::StatusOr<v1::RoleAssignment> Report(
      const v1::RoleReport& report) override {
    reports.push_back(report);
    v1::RoleAssignment a;
    a.set_role(script_[std::min(reports.size() - 1, script_.size() - 1)]);
    a.set_reason("scripted");
    a.set_report_after_seconds(0.4);
    ++count;
    return a;
  }
  std::vector<v1::RoleReport> reports;  // read once the worker has stopped
  std::atomic<int> count{0};

 private:
  std::vector<v1::WorkerRole> script_;
};

TEST(AutoRoleWorkerTest, SwitchesRolesWithoutRestartingAndReportsCapacity) {
  Rig x;
  x.o.auto_role = true;
  x.o.max_g_lead = -1;
  x.o.steps = 0;
  Worker::Exchange e;
  auto b = std::make_unique<FakeBatches>(x.batch_shape, nullptr);
  x.batches = b.get();
  e.batches = std::move(b);
  auto sink = std::make_unique<RecordingSink>();
  RecordingSink* published = sink.get();
  e.samples = std::move(sink);
  int fake_streams = 0;
  e.connect_fakes = [&]() -> absl::StatusOr<std::unique_ptr<FakeSource>> {
    ++fake_streams;
    return std::unique_ptr<FakeSource>(std::make_unique<ScriptedFakes>(
        x.batch_shape, std::vector<int64_t>{0}));
  };
  auto roles = std::make_unique<ScriptedRoles>(std::vector<v1::WorkerRole>{
      v1::G_ONLY, v1::D_ONLY, v1::G_ONLY, v1::D_ONLY});
  ScriptedRoles* r = roles.get();
  e.roles = std::move(roles);
  auto w = Worker::Create(x.o, std::move(e), nullptr, &x.log).value();
  std::atomic<bool> stop{false};
  std::thread run([&] { ASSERT_TRUE(w->Run(&stop).ok()); });
  while (r->count < 5) absl::SleepFor(absl::Milliseconds(20));
  stop = true;
  run.join();
  // The first report ran nothing; then each reports the role it ran.
  EXPECT_EQ(r->reports[0].role(), v1::BOTH);
  EXPECT_EQ(r->reports[0].steps(), 0);
  EXPECT_EQ(r->reports[1].role(), v1::G_ONLY);
  EXPECT_EQ(r->reports[2].role(), v1::D_ONLY);
  for (int i = 1; i < 4; ++i) {
    EXPECT_GT(r->reports[i].steps(), 0) << i;
    EXPECT_GT(r->reports[i].busy_seconds(), 0) << i;
    EXPECT_LE(r->reports[i].busy_seconds(), r->reports[i].wall_seconds());
  }
  EXPECT_FALSE(published->published.empty());
  EXPECT_EQ(fake_streams, 2);  // a fresh fakes stream per D period
  EXPECT_EQ(w->decoupled_stats().role_changes, 3);
  EXPECT_NE(x.log.str().find("role G -> D (coordinator: scripted)"),
            std::string::npos)
      << x.log.str();
  // It pushed both tables, as the roles it ran.
  int g_pushes = 0, d_pushes = 0;
  for (int s = 0; s < 2; ++s) {
    g_pushes += x.Bases(s, kGeneratorTable).size();
    d_pushes += x.Bases(s, kDiscriminatorTable).size();
  }
  EXPECT_GT(g_pushes, 0);
  EXPECT_GT(d_pushes, 0);
}

TEST(AutoRoleWorkerTest, NeedsTheCoordinatorAndBothEnds) {
  Rig x;
  x.o.auto_role = true;
  absl::Status st = x.Create().status();  // only batches
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("role auto"), std::string::npos) << st;
}

}  // namespace
}  // namespace paragan
