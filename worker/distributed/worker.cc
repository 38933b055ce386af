#include "worker/distributed/worker.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/check.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "server/data_plane.h"
#include "server/ps_client.h"
#include "server/table_names.h"
#include "worker/distributed/table_sync.h"

namespace paragan {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

// A channel that reconnects quickly after its server comes back (gRPC's
// default reconnect backoff grows to two minutes).
std::shared_ptr<grpc::Channel> MakeChannel(const std::string& target) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  args.SetMaxSendMessageSize(64 << 20);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(),
                                   args);
}

}  // namespace

std::string DefaultWorkerId() {
  char host[256] = {0};
  if (gethostname(host, sizeof(host) - 1) != 0)
    std::snprintf(host, 8, "worker");
  return absl::StrCat(host, "-", getpid());
}

struct Shard {
  int id = 0;
  std::string address;
  std::unique_ptr<ParameterServerClient> client;
};

// One table across the shards, and its background push-then-pull chain.
struct TableState {
  std::string name;
  ParamStore* store = nullptr;
  TableLayout layout;
  // Per shard (int, not vector<bool>: shard threads write their own entry).
  std::vector<int64_t> held;      // version of the local values; -1: never
  std::vector<int64_t> wait_for;  // sync: min_version of the next pull
  std::vector<int> resync;        // re-register before the next pull
  std::vector<int> force;         // merge the next pull even if same version
  std::vector<PulledTable> pulled;
  std::vector<int> has_pulled;
  PushStaging staging;
  bool merged_once = false;

  std::thread chain;
  bool chain_running = false;
  std::atomic<bool> chain_done{true};
  absl::Status chain_status;
  double chain_push_s = 0, chain_pull_s = 0;

  std::mutex mu;  // stats below
  double staleness_sum = 0;
  int64_t staleness_n = 0;
  int64_t rejected = 0;

  bool OnShard(int s) const { return !layout.on_shard(s).empty(); }
};

struct Worker::Impl {
  Worker* w;
  std::vector<Shard> shards;
  TableState g, d;
  const std::atomic<bool>* stop = nullptr;
  std::atomic<bool> never{false};

  const std::atomic<bool>* StopFlag() const { return stop ? stop : &never; }

  // Push ids (TensorChunk.push_id): microseconds since the epoch, bumped to
  // stay increasing; a restarted worker with the same id starts above its
  // earlier pushes.
  std::atomic<uint64_t> last_push_id{0};
  uint64_t NextPushId() {
    const uint64_t now = static_cast<uint64_t>(absl::ToUnixMicros(absl::Now()));
    uint64_t last = last_push_id.load();
    uint64_t id;
    do {
      id = std::max(now, last + 1);
    } while (!last_push_id.compare_exchange_weak(last, id));
    return id;
  }

  std::string What(const char* op, const TableState& t, int s) const {
    const bool push = std::string(op) == "push";
    return absl::StrCat(op, " ", t.name, push ? " to" : " from", " shard ", s,
                        " (", shards[s].address, ")");
  }

  absl::Status Retry(const std::string& what,
                     const std::function<absl::Status()>& f) {
    return CallWithRetry(w->options_.retry, what, f, StopFlag(),
                         [this, what](const absl::Status& st, int attempt) {
                           if (w->metrics_) w->metrics_->RecordRetry();
                           if (attempt == 1 || attempt % 10 == 0) {
                             std::cerr << "paragan_worker: " << what
                                       << ": retrying (" << st << ")"
                                       << std::endl;
                           }
                         });
  }

  absl::Status CheckRegistration(int s, const v1::RegisterResponse& r) {
    const WorkerOptions& o = w->options_;
    if (r.shard_id() != s || r.num_shards() != static_cast<int>(o.ps.size())) {
      return absl::FailedPreconditionError(
          absl::StrCat("server ", shards[s].address, " is shard ", r.shard_id(),
                       " of ", r.num_shards(), ", but --ps lists it as shard ",
                       s, " of ", o.ps.size()));
    }
    if (r.model() != o.model) {
      return absl::FailedPreconditionError(
          absl::StrCat("server ", shards[s].address, " serves model '",
                       r.model(), "', this worker runs '", o.model, "'"));
    }
    for (TableState* t : {&g, &d}) {
      const v1::TableInfo* info = nullptr;
      for (const v1::TableInfo& ti : r.tables())
        if (ti.name() == t->name) info = &ti;
      if (info == nullptr) {
        return absl::FailedPreconditionError(absl::StrCat(
            "server ", shards[s].address, " has no table ", t->name));
      }
      absl::Status st = t->layout.CheckShardInfo(s, *info);
      if (!st.ok()) {
        return absl::FailedPreconditionError(
            absl::StrCat("server ", shards[s].address, ": ", st.message()));
      }
    }
    return absl::OkStatus();
  }

  absl::StatusOr<v1::RegisterResponse> Register(int s) {
    absl::StatusOr<v1::RegisterResponse> resp;
    absl::Status st = Retry(
        absl::StrCat("register with shard ", s, " (", shards[s].address, ")"),
        [&] {
          resp = shards[s].client->Register(w->options_.worker_id,
                                            w->options_.role);
          return resp.status();
        });
    if (!st.ok()) return st;
    PG_RETURN_IF_ERROR(CheckRegistration(s, *resp));
    return resp;
  }

  // Push of the staged table to shard s at the version held.
  absl::Status PushShard(TableState& t, int s) {
    const WorkerOptions& o = w->options_;
    const int64_t base = t.held[s];
    const std::vector<PushTensor> tensors =
        t.staging.ForShard(t.layout.on_shard(s));
    absl::StatusOr<v1::PushResponse> resp;
    const auto start = Clock::now();
    // One id for every attempt: a retry after a lost response is answered
    // with the first attempt's result instead of being applied twice.
    const uint64_t push_id = NextPushId();
    absl::Status st = Retry(What("push", t, s), [&] {
      resp = shards[s].client->Push(t.name, o.worker_id, base, tensors,
                                    o.push_dtype, push_id);
      return resp.status();
    });
    if (st.code() == absl::StatusCode::kFailedPrecondition) {
      // Restarted shard (base_version ahead) or lost registration: drop
      // this gradient, re-register and pull again.
      std::cerr << "paragan_worker: " << What("push", t, s) << " refused ("
                << st.message() << "); re-registering and pulling again"
                << std::endl;
      t.resync[s] = 1;
      t.force[s] = 1;
      t.wait_for[s] = 0;
      return absl::OkStatus();
    }
    if (!st.ok()) return st;
    const double secs = Seconds(start);
    if (w->metrics_) {
      w->metrics_->RecordPush(t.name, t.staging.bytes(t.layout.on_shard(s)),
                              secs, resp->accepted(), resp->staleness());
    }
    {
      std::lock_guard<std::mutex> lock(t.mu);
      t.staleness_sum += static_cast<double>(resp->staleness());
      ++t.staleness_n;
      if (!resp->accepted()) ++t.rejected;
    }
    if (w->synchronous()) t.wait_for[s] = base + 1;
    return absl::OkStatus();
  }

  absl::Status PullShard(TableState& t, int s) {
    const WorkerOptions& o = w->options_;
    if (t.resync[s]) {
      PG_RETURN_IF_ERROR(Register(s).status());
      t.resync[s] = 0;
    }
    int64_t min_version = w->synchronous() ? t.wait_for[s] : 0;
    bool was_down = false;
    absl::StatusOr<PulledTable> pulled;
    const auto start = Clock::now();
    absl::Status st = Retry(What("pull", t, s), [&]() -> absl::Status {
      if (was_down) {
        // The shard may have restarted without our registration.
        absl::StatusOr<v1::RegisterResponse> r =
            shards[s].client->Register(o.worker_id, o.role);
        if (!r.ok()) return r.status();
        PG_RETURN_IF_ERROR(CheckRegistration(s, *r));
        was_down = false;
      }
      // The previous pull's memory (merged already) takes this one.
      pulled = shards[s].client->Pull(t.name, o.worker_id, {}, v1::FLOAT32,
                                      min_version, &t.pulled[s]);
      if (pulled.status().code() == absl::StatusCode::kUnavailable) {
        was_down = true;
      }
      if (pulled.status().code() == absl::StatusCode::kDeadlineExceeded &&
          min_version > 0) {
        // A synchronous round that will not complete: the shard restarted
        // below our version, or lost the pending round. Take what it has.
        absl::StatusOr<v1::StateResponse> state = shards[s].client->GetState();
        if (state.ok()) {
          for (const v1::TableState& ts : state->tables()) {
            if (ts.name() != t.name) continue;
            if (ts.version() < min_version - 1 ||
                (ts.version() == min_version - 1 &&
                 ts.pending_contributions() == 0)) {
              std::cerr << "paragan_worker: " << What("pull", t, s)
                        << ": version " << ts.version() << " will not reach "
                        << min_version << "; pulling what it has" << std::endl;
              min_version = 0;
              was_down = true;
            }
          }
        }
      }
      return pulled.status();
    });
    if (!st.ok()) return st;
    if (w->metrics_) {
      int64_t bytes = 0;
      for (const auto& [name, pt] : pulled->tensors)
        bytes += 4 * static_cast<int64_t>(pt.values.size());
      w->metrics_->RecordPull(t.name, bytes, Seconds(start));
    }
    if (pulled->version < t.held[s]) {
      std::cerr << "paragan_worker: shard " << s << " (" << shards[s].address
                << ") table " << t.name << " went back from version "
                << t.held[s] << " to " << pulled->version
                << " (restarted from a checkpoint)" << std::endl;
      t.force[s] = 1;
      PG_RETURN_IF_ERROR(Register(s).status());
    }
    t.pulled[s] = std::move(pulled).value();
    t.has_pulled[s] = 1;
    t.wait_for[s] = 0;
    return absl::OkStatus();
  }

  // Runs f(s) for every shard holding the table, in parallel threads.
  absl::Status ForShards(TableState& t,
                         const std::function<absl::Status(int)>& f) {
    std::vector<int> ids;
    for (size_t s = 0; s < shards.size(); ++s)
      if (t.OnShard(static_cast<int>(s))) ids.push_back(static_cast<int>(s));
    std::vector<absl::Status> results(ids.size());
    std::vector<std::thread> threads;
    for (size_t i = 1; i < ids.size(); ++i) {
      threads.emplace_back([&, i] { results[i] = f(ids[i]); });
    }
    if (!ids.empty()) results[0] = f(ids[0]);
    for (std::thread& th : threads) th.join();
    for (const absl::Status& st : results)
      if (!st.ok()) return st;
    return absl::OkStatus();
  }

  // Background: push the staged table (if `push`), then pull it.
  void StartChain(TableState& t, bool push) {
    PG_CHECK(!t.chain_running) << "chain of " << t.name << " already running";
    t.chain_running = true;
    t.chain_done = false;
    t.chain_status = absl::OkStatus();
    t.chain = std::thread([this, &t, push] {
      const auto start = Clock::now();
      absl::Status st;
      if (push) st = ForShards(t, [&](int s) { return PushShard(t, s); });
      const auto mid = Clock::now();
      if (st.ok()) st = ForShards(t, [&](int s) { return PullShard(t, s); });
      t.chain_push_s = std::chrono::duration<double>(mid - start).count();
      t.chain_pull_s = Seconds(mid);
      t.chain_status = st;
      t.chain_done = true;
    });
  }

  // Joins the chain (when `block`, or when it is already done) and merges
  // the pulled slices: a shard's slice is written into the model when its
  // version differs from the one held (or after a restart), so local
  // buffers that moved since (BN running statistics) are kept while nobody
  // changed the table.
  absl::Status Ensure(TableState& t, bool block) {
    if (!t.chain_running) return absl::OkStatus();
    if (!block && !t.chain_done.load()) return absl::OkStatus();
    const auto start = Clock::now();
    t.chain.join();
    t.chain_running = false;
    w->timings_.exposed_comm += Seconds(start);
    w->timings_.push += t.chain_push_s;
    w->timings_.pull += t.chain_pull_s;
    w->timings_.comm += t.chain_push_s + t.chain_pull_s;
    PG_RETURN_IF_ERROR(t.chain_status);
    const auto merge_start = Clock::now();
    for (size_t s = 0; s < shards.size(); ++s) {
      if (!t.has_pulled[s]) continue;
      t.has_pulled[s] = 0;
      PulledTable& p = t.pulled[s];
      if (p.version != t.held[s] || t.force[s]) {
        absl::Status st =
            MergePulled(t.layout.on_shard(static_cast<int>(s)), p, t.store);
        if (!st.ok()) {
          return absl::Status(
              st.code(), absl::StrCat("table ", t.name, " from shard ", s, " (",
                                      shards[s].address, "): ", st.message()));
        }
      }
      t.held[s] = p.version;
      t.force[s] = 0;
      // p keeps its tensors: the next pull reads into their memory.
    }
    t.merged_once = true;
    w->timings_.compute += Seconds(merge_start);
    return absl::OkStatus();
  }

  void JoinQuietly(TableState& t) {
    if (t.chain_running) {
      t.chain.join();
      t.chain_running = false;
    }
  }

  int64_t MinVersion(const TableState& t) const {
    int64_t v = -1;
    bool any = false;
    for (size_t s = 0; s < shards.size(); ++s) {
      if (!t.OnShard(static_cast<int>(s))) continue;
      v = any ? std::min(v, t.held[s]) : t.held[s];
      any = true;
    }
    return v;
  }
};

Worker::~Worker() {
  if (impl_) {
    impl_->JoinQuietly(impl_->g);
    impl_->JoinQuietly(impl_->d);
  }
}

int64_t Worker::g_version() const { return impl_->MinVersion(impl_->g); }
int64_t Worker::d_version() const { return impl_->MinVersion(impl_->d); }

absl::StatusOr<std::unique_ptr<Worker>> Worker::Create(
    const WorkerOptions& options, std::unique_ptr<BatchProvider> batches,
    WorkerMetrics* metrics, std::ostream* log, const std::atomic<bool>* stop) {
  if (options.ps.empty()) {
    return absl::InvalidArgumentError("no parameter servers (--ps)");
  }
  if (options.worker_id.empty()) {
    return absl::InvalidArgumentError("empty worker id");
  }
  if (options.role != v1::BOTH) {
    return absl::UnimplementedError(
        "roles g_only and d_only are not implemented yet: use --role=both");
  }
  if (options.batch_size < 1 || options.steps < 0 || options.log_every < 0 ||
      options.d_steps < 0) {
    return absl::InvalidArgumentError(
        "need batch_size >= 1, steps >= 0, log_every >= 0, d_steps >= 0");
  }
  auto w = std::unique_ptr<Worker>(new Worker());
  w->options_ = options;
  w->batches_ = std::move(batches);
  w->metrics_ = metrics;
  w->log_ = log;
  BackendOptions bo;
  bo.threads = options.threads;
  bo.cpu_layout = options.cpu_layout;
  bo.gpu_layout = options.gpu_layout;
  bo.gpu_precision = options.gpu_precision;
  PG_ASSIGN_OR_RETURN(w->backend_, MakeBackend(options.device, bo));
  TrainerConfig tc = DefaultTrainerConfig(options.model);
  tc.model.image_channels = options.image_channels;
  tc.model.num_classes = options.num_classes;
  tc.batch_size = options.batch_size;
  tc.seed = options.seed;
  PG_ASSIGN_OR_RETURN(w->trainer_, GanTrainer::Create(tc, w->backend_.get()));

  w->impl_ = std::make_unique<Impl>();
  Impl& im = *w->impl_;
  im.w = w.get();
  im.stop = stop;
  const int n = static_cast<int>(options.ps.size());
  ParameterServerClient::Options copts;
  copts.timeout = options.rpc_timeout;
  copts.data_plane = options.data_plane;
  for (int s = 0; s < n; ++s) {
    Shard sh;
    sh.id = s;
    sh.address = options.ps[s];
    copts.data_plane_host = HostOfTarget(options.ps[s]);
    sh.client = std::make_unique<ParameterServerClient>(
        MakeChannel(options.ps[s]), copts);
    im.shards.push_back(std::move(sh));
  }
  GanModel& model = w->trainer_->model();
  for (auto [t, name, store] :
       {std::make_tuple(&im.g, kGeneratorTable, &model.generator()),
        std::make_tuple(&im.d, kDiscriminatorTable, &model.discriminator())}) {
    t->name = name;
    t->store = store;
    PG_ASSIGN_OR_RETURN(t->layout, TableLayout::Create(name, *store, n));
    t->held.assign(n, -1);
    t->wait_for.assign(n, 0);
    t->resync.assign(n, 0);
    t->force.assign(n, 1);
    t->pulled.resize(n);
    t->has_pulled.assign(n, 0);
  }
  int d_steps = 0, sync = -1;
  for (int s = 0; s < n; ++s) {
    PG_ASSIGN_OR_RETURN(v1::RegisterResponse r, im.Register(s));
    if (s == 0) d_steps = r.d_steps_per_g_step();
    for (const v1::TableInfo& ti : r.tables()) {
      if (ti.tensors_size() == 0) continue;
      if (sync < 0) sync = ti.update_rule().sync_workers();
      if (ti.update_rule().sync_workers() != sync) {
        return absl::FailedPreconditionError(
            "shards disagree on sync_workers (synchronous mode)");
      }
    }
  }
  w->sync_workers_ = std::max(sync, 0);
  w->d_steps_ = options.d_steps > 0 ? options.d_steps : std::max(d_steps, 1);
  int on_data_plane = 0;
  for (const Shard& sh : im.shards) {
    if (sh.client->data_plane_port() > 0) ++on_data_plane;
  }
  *log << "paragan_worker: " << options.worker_id << " registered with " << n
       << " shards (tensors over "
       << (on_data_plane == n ? std::string("their data planes")
           : on_data_plane == 0
               ? std::string("gRPC")
               : absl::StrCat("the data planes of ", on_data_plane,
                              ", gRPC for the "
                              "rest"))
       << ")" << std::endl;
  return w;
}

absl::Status Worker::Run(const std::atomic<bool>* stop) {
  Impl& im = *impl_;
  if (stop != nullptr) im.stop = stop;
  const bool sync = synchronous();
  const bool overlap = options_.overlap;
  auto stopping = [&] { return stop != nullptr && stop->load(); };
  const auto run_start = Clock::now();
  timings_ = WorkerTimings();

  im.StartChain(im.g, /*push=*/false);
  im.StartChain(im.d, /*push=*/false);

  auto last_line = Clock::now();
  int64_t images_since = 0;
  StepStats stats;
  absl::Status result;
  const int b = options_.batch_size;
  Tensor host;
  std::vector<int> labels;
  while (options_.steps == 0 || steps_done_ < options_.steps) {
    if (stopping()) break;
    bool abandoned = false;
    for (int k = 0; k < d_steps_; ++k) {
      if (stopping()) {
        abandoned = true;
        break;
      }
      // Fake batches need G: the latest in sync mode, whatever has arrived
      // otherwise.
      result = im.Ensure(im.g, sync || !im.g.merged_once);
      if (!result.ok()) break;
      result = im.Ensure(im.d, true);
      if (!result.ok()) break;
      const auto bw = Clock::now();
      result = batches_->Next(&host, &labels);
      timings_.batch_wait += Seconds(bw);
      if (!result.ok()) break;
      if (host.shape() != Shape{b, options_.image_channels,
                                trainer_->config().model.resolution,
                                trainer_->config().model.resolution}) {
        result = absl::InvalidArgumentError(
            absl::StrCat("batch has shape ", ShapeToString(host.shape())));
        break;
      }
      const auto c = Clock::now();
      trainer_->ComputeDGradients(backend_->FromHost(host), labels, &stats);
      im.d.staging.Stage(*im.d.store);
      timings_.compute += Seconds(c);
      images_since += b;
      im.StartChain(im.d, /*push=*/true);
      if (!overlap) {
        result = im.Ensure(im.d, true);
        if (!result.ok()) break;
      }
    }
    if (!result.ok() || abandoned) break;
    // G through D: the updated D in sync mode (as the single-process
    // trainer), whatever has arrived otherwise.
    result = im.Ensure(im.d, sync);
    if (!result.ok()) break;
    result = im.Ensure(im.g, true);
    if (!result.ok()) break;
    const auto c = Clock::now();
    trainer_->ComputeGGradients(&stats);
    im.g.staging.Stage(*im.g.store);
    timings_.compute += Seconds(c);
    im.StartChain(im.g, /*push=*/true);
    if (!overlap) {
      result = im.Ensure(im.g, true);
      if (!result.ok()) break;
    }
    const int64_t done = ++steps_done_;
    if (metrics_) {
      metrics_->RecordStep(static_cast<int64_t>(b) * d_steps_, stats.d_loss,
                           stats.g_loss);
    }
    if (options_.log_every > 0 && done % options_.log_every == 0) {
      const double secs = Seconds(last_line);
      double sd = 0, sg = 0;
      int64_t rejected = 0;
      for (auto [t, out] :
           {std::make_pair(&im.d, &sd), std::make_pair(&im.g, &sg)}) {
        std::lock_guard<std::mutex> lock(t->mu);
        *out = t->staleness_n > 0 ? t->staleness_sum / t->staleness_n : 0;
        t->staleness_sum = 0;
        t->staleness_n = 0;
        rejected += t->rejected;
      }
      *log_ << absl::StrFormat(
                   "progress worker=%s step=%d d_version=%d g_version=%d "
                   "img_s=%.1f d_loss=%.4f g_loss=%.4f d_real=%.4f "
                   "d_fake=%.4f staleness_d=%.2f staleness_g=%.2f "
                   "rejected=%d",
                   options_.worker_id, done, d_version(), g_version(),
                   secs > 0 ? images_since / secs : 0.0, stats.d_loss,
                   stats.g_loss, stats.d_real, stats.d_fake, sd, sg, rejected)
            << std::endl;
      last_line = Clock::now();
      images_since = 0;
    }
  }
  // Let the last pushes land (their pulls are merged too).
  for (TableState* t : {&im.d, &im.g}) {
    absl::Status st = im.Ensure(*t, true);
    if (result.ok() && !stopping()) result = st;
  }
  timings_.wall = Seconds(run_start);
  if (stopping() &&
      (result.code() == absl::StatusCode::kCancelled || result.ok())) {
    return absl::OkStatus();
  }
  return result;
}

}  // namespace paragan
