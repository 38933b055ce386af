#include "worker/distributed/worker.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <optional>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/check.h"
#include "server/table_names.h"
#include "worker/distributed/table_sync.h"

namespace paragan {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

// "their data planes", "gRPC" or a mix.
std::string TransportLine(int on_data_plane, int shards) {
  if (on_data_plane == shards) return "their data planes";
  if (on_data_plane == 0) return "gRPC";
  return absl::StrCat("the data planes of ", on_data_plane,
                      ", gRPC for the rest");
}

}  // namespace

std::string DefaultWorkerId() {
  char host[256] = {0};
  if (gethostname(host, sizeof(host) - 1) != 0)
    std::snprintf(host, 8, "worker");
  return absl::StrCat(host, "-", getpid());
}

int ResolveDSteps(int flag, int servers) {
  return flag > 0 ? flag : std::max(servers, 1);
}

// One table on the worker's side: the model's store, the host staging of
// its pushes, and the session call in flight.
struct Worker::TableSync {
  std::string name;
  ParamStore* store = nullptr;
  PushStaging staging;
  std::optional<TableCall> call;
  bool merged_once = false;
};

Worker::Worker()
    : g_(std::make_unique<TableSync>()), d_(std::make_unique<TableSync>()) {}

Worker::~Worker() { session_.reset(); }

int64_t Worker::g_version() const {
  return session_->held_version(kGeneratorTable);
}
int64_t Worker::d_version() const {
  return session_->held_version(kDiscriminatorTable);
}

absl::StatusOr<std::unique_ptr<Worker>> Worker::Create(
    const WorkerOptions& options, std::unique_ptr<BatchProvider> batches,
    WorkerMetrics* metrics, std::ostream* log, const std::atomic<bool>* stop) {
  Exchange exchange;
  exchange.batches = std::move(batches);
  return Create(options, std::move(exchange), metrics, log, stop);
}

absl::StatusOr<std::unique_ptr<Worker>> Worker::Create(
    const WorkerOptions& options, Exchange exchange, WorkerMetrics* metrics,
    std::ostream* log, const std::atomic<bool>* stop) {
  if (options.ps.empty()) {
    return absl::InvalidArgumentError("no parameter servers (--ps)");
  }
  if (options.worker_id.empty()) {
    return absl::InvalidArgumentError("empty worker id");
  }
  if (!v1::WorkerRole_IsValid(options.role)) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown worker role ", static_cast<int>(options.role)));
  }
  const std::string role = v1::WorkerRole_Name(options.role);
  if (options.role != v1::G_ONLY && exchange.batches == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("role ", role, " needs real batches"));
  }
  if (options.role == v1::G_ONLY && exchange.samples == nullptr) {
    return absl::InvalidArgumentError(
        "role G_ONLY needs somewhere to publish its samples (the data "
        "service, --data)");
  }
  if (options.role == v1::D_ONLY && exchange.fakes == nullptr) {
    return absl::InvalidArgumentError(
        "role D_ONLY needs generated samples (the data service, --data)");
  }
  if (options.batch_size < 1 || options.steps < 0 || options.log_every < 0 ||
      options.d_steps < 0) {
    return absl::InvalidArgumentError(
        "need batch_size >= 1, steps >= 0, log_every >= 0, d_steps >= 0");
  }
  auto w = std::unique_ptr<Worker>(new Worker());
  w->options_ = options;
  w->batches_ = std::move(exchange.batches);
  w->samples_ = std::move(exchange.samples);
  w->fakes_ = std::move(exchange.fakes);
  w->metrics_ = metrics;
  w->log_ = log;
  PG_RETURN_IF_ERROR(w->MakeTrainer());
  PG_RETURN_IF_ERROR(w->Connect(stop));
  if (options.role != v1::BOTH && w->synchronous()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "role ", role,
        " (the decoupled schedule) needs asynchronous servers; these run "
        "synchronous rounds (--sync_workers > 0): use --role=both"));
  }
  return w;
}

absl::Status Worker::MakeTrainer() {
  BackendOptions bo;
  bo.threads = options_.threads;
  bo.cpu_layout = options_.cpu_layout;
  bo.gpu_layout = options_.gpu_layout;
  bo.gpu_precision = options_.gpu_precision;
  PG_ASSIGN_OR_RETURN(backend_, MakeBackend(options_.device, bo));
  TrainerConfig tc = DefaultTrainerConfig(options_.model);
  tc.model.image_channels = options_.image_channels;
  tc.model.num_classes = options_.num_classes;
  tc.batch_size = options_.batch_size;
  tc.seed = options_.seed;
  PG_ASSIGN_OR_RETURN(trainer_, GanTrainer::Create(tc, backend_.get()));
  g_->name = kGeneratorTable;
  g_->store = &trainer_->model().generator();
  d_->name = kDiscriminatorTable;
  d_->store = &trainer_->model().discriminator();
  return absl::OkStatus();
}

absl::Status Worker::Connect(const std::atomic<bool>* stop) {
  const int n = static_cast<int>(options_.ps.size());
  std::vector<TableLayout> layouts;
  for (TableSync* t : {g_.get(), d_.get()}) {
    PG_ASSIGN_OR_RETURN(TableLayout layout,
                        TableLayout::Create(t->name, *t->store, n));
    layouts.push_back(std::move(layout));
  }
  PsSessionOptions so;
  so.worker_id = options_.worker_id;
  so.role = options_.role;
  so.model = options_.model;
  so.ps = options_.ps;
  so.push_dtype = options_.push_dtype;
  so.data_plane = options_.data_plane;
  so.rpc_timeout = options_.rpc_timeout;
  so.retry = options_.retry;
  so.io_threads = options_.io_threads;
  so.connect = options_.connect;
  PG_ASSIGN_OR_RETURN(session_,
                      PsSession::Create(so, std::move(layouts), metrics_));
  session_->set_stop(stop);
  PG_ASSIGN_OR_RETURN(ShardAgreement agreed, session_->Register());
  d_steps_ = ResolveDSteps(options_.d_steps, agreed.d_steps_per_g_step);
  *log_ << "paragan_worker: " << options_.worker_id << " registered with " << n
        << " shards (tensors over " << TransportLine(agreed.on_data_plane, n)
        << ")" << std::endl;
  return absl::OkStatus();
}

void Worker::StartCall(TableSync& t, bool push) {
  PG_CHECK(!t.call.has_value()) << "a call on " << t.name << " is in flight";
  t.call =
      push ? session_->PushThenPull(t.name, t.staging) : session_->Pull(t.name);
}

absl::Status Worker::Ensure(TableSync& t, bool block) {
  if (!t.call.has_value()) return absl::OkStatus();
  if (!block &&
      t.call->wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
    return absl::OkStatus();
  }
  const auto start = Clock::now();
  const TableCallResult r = t.call->get();
  t.call.reset();
  timings_.exposed_comm += Seconds(start);
  timings_.push += r.push_seconds;
  timings_.pull += r.pull_seconds;
  timings_.comm += r.push_seconds + r.pull_seconds;
  PG_RETURN_IF_ERROR(r.status);
  const auto merge_start = Clock::now();
  const TableLayout& layout = session_->layout(t.name);
  PG_RETURN_IF_ERROR(
      session_->TakePulled(t.name, [&](int s, const PulledTable& slice) {
        return MergePulled(layout.on_shard(s), slice, t.store);
      }));
  t.merged_once = true;
  timings_.compute += Seconds(merge_start);
  return absl::OkStatus();
}

absl::Status Worker::DStep(const WaitSchedule& when, StepStats* stats) {
  PG_RETURN_IF_ERROR(Ensure(*g_, when.g_before_d_step(g_->merged_once)));
  PG_RETURN_IF_ERROR(Ensure(*d_, when.d_before_d_step()));
  const auto bw = Clock::now();
  absl::Status st = batches_->Next(&host_batch_, &labels_);
  timings_.batch_wait += Seconds(bw);
  PG_RETURN_IF_ERROR(st);
  const int b = options_.batch_size;
  const int res = trainer_->config().model.resolution;
  if (host_batch_.shape() != Shape{b, options_.image_channels, res, res}) {
    return absl::InvalidArgumentError(
        absl::StrCat("batch has shape ", ShapeToString(host_batch_.shape())));
  }
  const auto c = Clock::now();
  trainer_->ComputeDGradients(backend_->FromHost(host_batch_), labels_, stats);
  d_->staging.Stage(*d_->store);
  timings_.compute += Seconds(c);
  StartCall(*d_, /*push=*/true);
  if (when.after_push()) PG_RETURN_IF_ERROR(Ensure(*d_, true));
  return absl::OkStatus();
}

absl::Status Worker::GStep(const WaitSchedule& when, StepStats* stats) {
  PG_RETURN_IF_ERROR(Ensure(*d_, when.d_before_g_step()));
  PG_RETURN_IF_ERROR(Ensure(*g_, when.g_before_g_step()));
  const auto c = Clock::now();
  trainer_->ComputeGGradients(stats);
  g_->staging.Stage(*g_->store);
  timings_.compute += Seconds(c);
  StartCall(*g_, /*push=*/true);
  if (when.after_push()) PG_RETURN_IF_ERROR(Ensure(*g_, true));
  return absl::OkStatus();
}

void Worker::LogProgress(int64_t done, const StepStats& stats, double secs,
                         int64_t images) {
  const PushStats d = session_->TakePushStats(kDiscriminatorTable);
  const PushStats g = session_->TakePushStats(kGeneratorTable);
  *log_ << absl::StrFormat(
               "progress worker=%s step=%d d_version=%d g_version=%d "
               "img_s=%.1f d_loss=%.4f g_loss=%.4f d_real=%.4f "
               "d_fake=%.4f staleness_d=%.2f staleness_g=%.2f rejected=%d",
               options_.worker_id, done, d_version(), g_version(),
               secs > 0 ? images / secs : 0.0, stats.d_loss, stats.g_loss,
               stats.d_real, stats.d_fake, d.mean_staleness, g.mean_staleness,
               d.rejected_total + g.rejected_total)
        << std::endl;
}

absl::Status Worker::Run(const std::atomic<bool>* stop) {
  if (stop != nullptr) session_->set_stop(stop);
  timings_ = WorkerTimings();
  switch (options_.role) {
    case v1::G_ONLY:
      return RunGOnly(stop);
    case v1::D_ONLY:
      return RunDOnly(stop);
    default:
      return RunCoupled(stop);
  }
}

absl::Status Worker::Finish(absl::Status result,
                            const std::atomic<bool>* stop) {
  const bool stopping = stop != nullptr && stop->load();
  // Let the last pushes land (their pulls are merged too).
  for (TableSync* t : {d_.get(), g_.get()}) {
    absl::Status st = Ensure(*t, true);
    if (result.ok() && !stopping) result = st;
  }
  if (stopping &&
      (result.code() == absl::StatusCode::kCancelled || result.ok())) {
    return absl::OkStatus();
  }
  return result;
}

absl::Status Worker::RunCoupled(const std::atomic<bool>* stop) {
  WaitSchedule when;
  when.sync = synchronous();
  when.overlap = options_.overlap;
  auto stopping = [&] { return stop != nullptr && stop->load(); };
  const auto run_start = Clock::now();

  StartCall(*g_, /*push=*/false);
  StartCall(*d_, /*push=*/false);

  auto last_line = Clock::now();
  int64_t images_since = 0;
  StepStats stats;
  absl::Status result;
  const int64_t b = options_.batch_size;
  while (options_.steps == 0 || steps_done_ < options_.steps) {
    if (stopping()) break;
    bool abandoned = false;
    for (int k = 0; k < d_steps_; ++k) {
      if (stopping()) {
        abandoned = true;
        break;
      }
      result = DStep(when, &stats);
      if (!result.ok()) break;
      images_since += b;
    }
    if (!result.ok() || abandoned) break;
    result = GStep(when, &stats);
    if (!result.ok()) break;
    const int64_t done = ++steps_done_;
    if (metrics_) {
      metrics_->RecordStep(b * d_steps_, stats.d_loss, stats.g_loss);
      metrics_->RecordLogits(stats.d_real, stats.d_fake);
    }
    if (options_.log_every > 0 && done % options_.log_every == 0) {
      LogProgress(done, stats, Seconds(last_line), images_since);
      last_line = Clock::now();
      images_since = 0;
    }
  }
  result = Finish(result, stop);
  timings_.wall = Seconds(run_start);
  return result;
}

absl::Status Worker::WaitForD(const std::atomic<bool>* stop) {
  if (options_.max_g_lead < 0) return absl::OkStatus();
  // The G version this worker's own last push made (its pull is in flight).
  PG_RETURN_IF_ERROR(Ensure(*g_, true));
  auto lead = [&] {
    return static_cast<int64_t>(d_steps_) * (g_version() - g_base_) -
           (d_version() - d_base_);
  };
  if (lead() <= options_.max_g_lead) return absl::OkStatus();
  ++decoupled_.gate_waits;
  const auto start = Clock::now();
  while (lead() > options_.max_g_lead) {
    if (stop != nullptr && stop->load()) break;
    // A fresh D, then look again; the pause keeps an idle G from hammering
    // the shards.
    PG_RETURN_IF_ERROR(Ensure(*d_, true));
    if (lead() <= options_.max_g_lead) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    StartCall(*d_, /*push=*/false);
  }
  const double waited = Seconds(start);
  timings_.d_gate_wait += waited;
  if (metrics_) metrics_->RecordGateWait(waited);
  return absl::OkStatus();
}

absl::Status Worker::GOnlyStep(StepStats* stats) {
  // G's loss goes through whatever D has arrived (after the first one).
  PG_RETURN_IF_ERROR(Ensure(*d_, !d_->merged_once));
  PG_RETURN_IF_ERROR(Ensure(*g_, true));
  const int64_t version = g_version();
  const auto c = Clock::now();
  trainer_->ComputeGGradients(stats, &host_fake_, &fake_labels_);
  g_->staging.Stage(*g_->store);
  timings_.compute += Seconds(c);
  StartCall(*g_, /*push=*/true);
  // Publishing overlaps the push; d_steps batches feed d_steps D updates.
  for (int k = 0; k < d_steps_; ++k) {
    if (k > 0) {
      const auto f = Clock::now();
      host_fake_ = trainer_->GenerateFakes(&fake_labels_);
      timings_.compute += Seconds(f);
    }
    const auto p = Clock::now();
    PG_RETURN_IF_ERROR(samples_->Publish(host_fake_, fake_labels_, version));
    timings_.batch_wait += Seconds(p);
    ++decoupled_.published;
  }
  if (metrics_) metrics_->RecordPublished(d_steps_, samples_->buffered());
  // A fresh D for the next step, fetched while it runs.
  if (!d_->call.has_value()) StartCall(*d_, /*push=*/false);
  if (!options_.overlap) PG_RETURN_IF_ERROR(Ensure(*g_, true));
  return absl::OkStatus();
}

absl::Status Worker::RunGOnly(const std::atomic<bool>* stop) {
  auto stopping = [&] { return stop != nullptr && stop->load(); };
  const auto run_start = Clock::now();
  StartCall(*g_, /*push=*/false);
  StartCall(*d_, /*push=*/false);
  absl::Status result = Ensure(*g_, true);
  if (result.ok()) result = Ensure(*d_, true);
  g_base_ = g_version();
  d_base_ = d_version();
  auto last_line = Clock::now();
  int64_t images_since = 0;
  StepStats stats;
  const int64_t b = options_.batch_size;
  while (result.ok() && (options_.steps == 0 || steps_done_ < options_.steps)) {
    if (stopping()) break;
    result = WaitForD(stop);
    if (!result.ok() || stopping()) break;
    result = GOnlyStep(&stats);
    if (!result.ok()) break;
    const int64_t done = ++steps_done_;
    images_since += b;
    // images_total counts real images: a G worker reads none.
    if (metrics_) metrics_->RecordStep(0, stats.d_loss, stats.g_loss);
    if (options_.log_every > 0 && done % options_.log_every == 0) {
      LogDecoupledProgress(done, stats, Seconds(last_line), images_since);
      last_line = Clock::now();
      images_since = 0;
    }
  }
  result = Finish(result, stop);
  timings_.wall = Seconds(run_start);
  return result;
}

absl::Status Worker::DOnlyStep(StepStats* stats) {
  PG_RETURN_IF_ERROR(Ensure(*d_, true));
  const auto bw = Clock::now();
  absl::Status st = batches_->Next(&host_batch_, &labels_);
  timings_.batch_wait += Seconds(bw);
  PG_RETURN_IF_ERROR(st);
  const int b = options_.batch_size;
  const int res = trainer_->config().model.resolution;
  const Shape want{b, options_.image_channels, res, res};
  if (host_batch_.shape() != want) {
    return absl::InvalidArgumentError(absl::StrCat(
        "real batch has shape ", ShapeToString(host_batch_.shape()),
        ", expected ", ShapeToString(want)));
  }
  FakeBatchInfo info;
  for (;;) {
    const auto fw = Clock::now();
    PG_RETURN_IF_ERROR(fakes_->Next(&host_fake_, &fake_labels_, &info));
    const double waited = Seconds(fw);
    timings_.fake_wait += waited;
    const bool stalled = waited > 0.002;
    if (stalled) ++decoupled_.stalls;
    if (metrics_) metrics_->RecordFakeWait(waited, stalled);
    if (options_.max_sample_age < 0 || info.age() <= options_.max_sample_age) {
      break;
    }
    ++decoupled_.fakes_skipped;
    if (metrics_) metrics_->RecordFakeSkipped();
  }
  if (host_fake_.shape() != want) {
    return absl::InvalidArgumentError(absl::StrCat(
        "generated batch (G version ", info.g_version, ") has shape ",
        ShapeToString(host_fake_.shape()), ", expected ", ShapeToString(want),
        ": do the G workers run the same model and batch size?"));
  }
  ++decoupled_.fakes_used;
  decoupled_.sample_age_sum += static_cast<double>(info.age());
  decoupled_.max_sample_age = std::max(decoupled_.max_sample_age, info.age());
  if (metrics_) metrics_->RecordSampleAge(info.age());
  const auto c = Clock::now();
  trainer_->ComputeDGradientsOn(backend_->FromHost(host_batch_), labels_,
                                backend_->FromHost(host_fake_), fake_labels_,
                                stats);
  d_->staging.Stage(*d_->store);
  timings_.compute += Seconds(c);
  StartCall(*d_, /*push=*/true);
  if (!options_.overlap) PG_RETURN_IF_ERROR(Ensure(*d_, true));
  return absl::OkStatus();
}

absl::Status Worker::RunDOnly(const std::atomic<bool>* stop) {
  auto stopping = [&] { return stop != nullptr && stop->load(); };
  const auto run_start = Clock::now();
  StartCall(*d_, /*push=*/false);
  auto last_line = Clock::now();
  int64_t images_since = 0;
  StepStats stats;
  absl::Status result;
  const int64_t b = options_.batch_size;
  while (options_.steps == 0 || steps_done_ < options_.steps) {
    if (stopping()) break;
    result = DOnlyStep(&stats);
    if (!result.ok()) break;
    const int64_t done = ++steps_done_;
    images_since += b;
    if (metrics_) {
      metrics_->RecordStep(b, stats.d_loss, stats.g_loss);
      metrics_->RecordLogits(stats.d_real, stats.d_fake);
    }
    if (options_.log_every > 0 && done % options_.log_every == 0) {
      LogDecoupledProgress(done, stats, Seconds(last_line), images_since);
      last_line = Clock::now();
      images_since = 0;
    }
  }
  result = Finish(result, stop);
  timings_.wall = Seconds(run_start);
  return result;
}

void Worker::LogDecoupledProgress(int64_t done, const StepStats& stats,
                                  double secs, int64_t images) {
  const double img_s = secs > 0 ? images / secs : 0.0;
  const DecoupledStats& now = decoupled_;
  DecoupledStats& then = decoupled_since_line_;
  if (options_.role == v1::G_ONLY) {
    const PushStats g = session_->TakePushStats(kGeneratorTable);
    *log_ << absl::StrFormat(
                 "progress worker=%s role=g step=%d d_version=%d "
                 "g_version=%d img_s=%.1f g_loss=%.4f staleness_g=%.2f "
                 "rejected=%d published=%d buffered=%d dropped=%d "
                 "d_gate_waits=%d d_gate_wait_s=%.2f",
                 options_.worker_id, done, d_version(), g_version(), img_s,
                 stats.g_loss, g.mean_staleness, g.rejected_total,
                 now.published, samples_->buffered(), samples_->dropped(),
                 now.gate_waits - then.gate_waits, timings_.d_gate_wait)
          << std::endl;
  } else {
    const PushStats d = session_->TakePushStats(kDiscriminatorTable);
    const int64_t used = now.fakes_used - then.fakes_used;
    const double mean_age =
        used > 0 ? (now.sample_age_sum - then.sample_age_sum) / used : 0.0;
    *log_ << absl::StrFormat(
                 "progress worker=%s role=d step=%d d_version=%d img_s=%.1f "
                 "d_loss=%.4f d_real=%.4f d_fake=%.4f staleness_d=%.2f "
                 "rejected=%d sample_age=%.2f max_sample_age=%d stalls=%d "
                 "stall_s=%.2f skipped=%d",
                 options_.worker_id, done, d_version(), img_s, stats.d_loss,
                 stats.d_real, stats.d_fake, d.mean_staleness,
                 d.rejected_total, mean_age, now.max_sample_age,
                 now.stalls - then.stalls, timings_.fake_wait,
                 now.fakes_skipped)
          << std::endl;
  }
  then = now;
}

}  // namespace paragan
