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

void Worker::Simulate(absl::Duration step) const {
  std::this_thread::sleep_for(absl::ToChronoNanoseconds(step));
}

void Worker::SimulatedFakes() {
  const int res = trainer_->config().model.resolution;
  const Shape shape{options_.batch_size, options_.image_channels, res, res};
  if (host_fake_.shape() != shape) {
    host_fake_ = Tensor::Host(shape);
    for (int64_t i = 0; i < host_fake_.numel(); ++i) {
      host_fake_.data()[i] = static_cast<float>((i % 255) / 127.0 - 1.0);
    }
  }
  fake_labels_.assign(options_.batch_size, 0);
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
  if (options.auto_role &&
      (exchange.samples == nullptr || !exchange.connect_fakes ||
       exchange.roles == nullptr || options.role != v1::BOTH)) {
    return absl::InvalidArgumentError(
        "role auto needs the data service (--data): its role coordinator, "
        "its sample buffer and real batches");
  }
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
  const SimulatedCompute& sim = options.simulated;
  if (sim.d_step < absl::ZeroDuration() || sim.g_step < absl::ZeroDuration() ||
      (sim.on() && (sim.d_step == absl::ZeroDuration() ||
                    sim.g_step == absl::ZeroDuration()))) {
    return absl::InvalidArgumentError(
        "simulated compute needs both a D and a G step time > 0");
  }
  auto w = std::unique_ptr<Worker>(new Worker());
  w->options_ = options;
  w->batches_ = std::move(exchange.batches);
  w->samples_ = std::move(exchange.samples);
  w->fakes_ = std::move(exchange.fakes);
  w->connect_fakes_ = std::move(exchange.connect_fakes);
  w->roles_ = std::move(exchange.roles);
  w->metrics_ = metrics;
  w->log_ = log;
  PG_RETURN_IF_ERROR(w->MakeTrainer());
  PG_RETURN_IF_ERROR(w->Connect(stop));
  if ((options.role != v1::BOTH || options.auto_role) && w->synchronous()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "role ", options.auto_role ? "auto" : role,
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
  so.push_dtype_by_table = options_.push_dtype_by_table;
  so.data_plane = options_.data_plane;
  so.rpc_timeout = options_.rpc_timeout;
  so.security = options_.security;
  so.retry = options_.retry;
  so.io_threads = options_.io_threads;
  so.connect = options_.connect;
  if (!options_.push_journal.empty() && journal_ == nullptr) {
    PG_ASSIGN_OR_RETURN(
        journal_, PushJournal::Open(options_.push_journal, options_.worker_id));
  }
  so.journal = journal_.get();
  PG_ASSIGN_OR_RETURN(session_,
                      PsSession::Create(so, std::move(layouts), metrics_));
  session_->set_stop(stop);
  PG_ASSIGN_OR_RETURN(ShardAgreement agreed, session_->Register());
  d_steps_ = ResolveDSteps(options_.d_steps, agreed.d_steps_per_g_step);
  *log_ << "paragan_worker: " << options_.worker_id << " registered with " << n
        << " shards (tensors over " << TransportLine(agreed.on_data_plane, n)
        << ")" << std::endl;
  if (Simulated()) {
    *log_ << "paragan_worker: " << options_.worker_id
          << " SIMULATED compute: every D step waits "
          << absl::FormatDuration(options_.simulated.d_step)
          << " and every G step "
          << absl::FormatDuration(options_.simulated.g_step)
          << " instead of computing; the pushes carry the tables' full "
             "tensors (zero gradients), the pulls, data and samples are "
             "real. For scaling measurements, not training."
          << std::endl;
  }
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
  if (Simulated()) {
    Simulate(options_.simulated.d_step);
  } else {
    trainer_->ComputeDGradients(backend_->FromHost(host_batch_), labels_,
                                stats);
  }
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
  if (Simulated()) {
    Simulate(options_.simulated.g_step);
  } else {
    trainer_->ComputeGGradients(stats);
  }
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
  const auto run_start = Clock::now();
  last_line_ = Clock::now();
  images_since_ = 0;
  absl::Status result;
  if (options_.auto_role) {
    result = RunAuto(stop);
  } else {
    result = BeginRole(options_.role);
    if (result.ok()) {
      result = RunRole(options_.role, Clock::time_point::max(), stop);
    }
  }
  result = Finish(result, stop);
  timings_.wall = Seconds(run_start);
  return result;
}

void Worker::Leave(absl::Duration timeout) {
  std::lock_guard<std::mutex> lock(leave_mu_);
  if (left_) return;
  left_ = true;
  const absl::StatusOr<int> confirmed = session_->Deregister(timeout);
  if (confirmed.ok()) {
    *log_ << "paragan_worker: " << options_.worker_id
          << " left the job (deregistered from " << *confirmed
          << " shard(s))" << std::endl;
  } else {
    *log_ << "paragan_worker: " << options_.worker_id
          << " could not deregister (" << confirmed.status().message()
          << "): the shard drops it when its lease ends" << std::endl;
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

absl::Status Worker::BeginRole(v1::WorkerRole role) {
  role_ = role;
  when_.sync = synchronous();
  when_.overlap = options_.overlap;
  // A D worker never needs G.
  if (role != v1::D_ONLY && !g_->call.has_value()) StartCall(*g_, false);
  if (!d_->call.has_value()) StartCall(*d_, false);
  if (role == v1::G_ONLY) {
    PG_RETURN_IF_ERROR(Ensure(*g_, true));
    PG_RETURN_IF_ERROR(Ensure(*d_, true));
    g_base_ = g_version();
    d_base_ = d_version();
  }
  return absl::OkStatus();
}

absl::Status Worker::RunRole(v1::WorkerRole role, Clock::time_point until,
                             const std::atomic<bool>* stop) {
  auto stopping = [&] { return stop != nullptr && stop->load(); };
  const int64_t b = options_.batch_size;
  StepStats& stats = stats_;
  role_until_ = until;
  // Role auto: a wait for the other role that runs into the report time
  // ends the period without a step.
  auto period_over = [&](const absl::Status& st) {
    return absl::IsDeadlineExceeded(st) && until != Clock::time_point::max();
  };
  while (options_.steps == 0 || steps_done_ < options_.steps) {
    if (stopping() || Clock::now() >= until) break;
    if (role == v1::G_ONLY) {
      absl::Status st = WaitForD(stop);
      if (period_over(st)) break;
      PG_RETURN_IF_ERROR(st);
      if (stopping()) break;
      PG_RETURN_IF_ERROR(GOnlyStep(&stats));
      images_since_ += b;  // generated: the progress line's rate
      // images_total counts real images: a G worker reads none.
      if (metrics_) metrics_->RecordStep(0, stats.d_loss, stats.g_loss);
    } else if (role == v1::D_ONLY) {
      absl::Status st = DOnlyStep(&stats);
      if (period_over(st)) break;
      PG_RETURN_IF_ERROR(st);
      images_since_ += b;
      if (metrics_) {
        metrics_->RecordStep(b, stats.d_loss, stats.g_loss);
        metrics_->RecordLogits(stats.d_real, stats.d_fake);
      }
    } else {
      for (int k = 0; k < d_steps_; ++k) {
        if (stopping()) return absl::OkStatus();  // the G step abandoned
        PG_RETURN_IF_ERROR(DStep(when_, &stats));
        images_since_ += b;
      }
      PG_RETURN_IF_ERROR(GStep(when_, &stats));
      if (metrics_) {
        metrics_->RecordStep(b * d_steps_, stats.d_loss, stats.g_loss);
        metrics_->RecordLogits(stats.d_real, stats.d_fake);
      }
    }
    const int64_t done = ++steps_done_;
    if (options_.log_every > 0 && done % options_.log_every == 0) {
      if (role == v1::BOTH) {
        LogProgress(done, stats, Seconds(last_line_), images_since_);
      } else {
        LogDecoupledProgress(done, stats, Seconds(last_line_), images_since_);
      }
      last_line_ = Clock::now();
      images_since_ = 0;
    }
  }
  return absl::OkStatus();
}

namespace {
const char* RoleName(v1::WorkerRole role) {
  return role == v1::G_ONLY ? "G" : role == v1::D_ONLY ? "D" : "both";
}
}  // namespace

absl::Status Worker::RunAuto(const std::atomic<bool>* stop) {
  auto stopping = [&] { return stop != nullptr && stop->load(); };
  v1::RoleReport report;
  report.set_worker_id(options_.worker_id);
  report.set_role(v1::BOTH);  // with no steps: nothing run yet
  report.set_d_steps_per_g_step(d_steps_);
  bool first = true;
  v1::WorkerRole role = v1::BOTH;
  while ((options_.steps == 0 || steps_done_ < options_.steps) && !stopping()) {
    absl::StatusOr<v1::RoleAssignment> a = roles_->Report(report);
    if (!a.ok()) return a.status();
    const v1::WorkerRole next = a->role();
    if (next != v1::G_ONLY && next != v1::D_ONLY && next != v1::BOTH) {
      return absl::InternalError(absl::StrCat(
          "the role coordinator assigned role ", static_cast<int>(next)));
    }
    if (first || next != role) {
      *log_ << "paragan_worker: " << options_.worker_id << " role "
            << (first ? "" : absl::StrCat(RoleName(role), " -> "))
            << RoleName(next) << " (coordinator: " << a->reason() << ")"
            << std::endl;
      if (!first) {
        // The last pushes of the old role land before the new one starts.
        PG_RETURN_IF_ERROR(Ensure(*g_, true));
        PG_RETURN_IF_ERROR(Ensure(*d_, true));
        ++decoupled_.role_changes;
      }
      // A fakes stream only while D: an idle one would hold fakes back.
      if (next != v1::D_ONLY) fakes_.reset();
      if (next == v1::D_ONLY && fakes_ == nullptr) {
        absl::StatusOr<std::unique_ptr<FakeSource>> f = connect_fakes_();
        if (!f.ok()) return f.status();
        fakes_ = std::move(f).value();
      }
      PG_RETURN_IF_ERROR(BeginRole(next));
      if (metrics_) metrics_->SetCurrentRole(RoleLabel(next));
      role = next;
      first = false;
    }
    const double period =
        a->report_after_seconds() > 0 ? a->report_after_seconds() : 5.0;
    const int64_t steps_before = steps_done_;
    const double waits_before = timings_.d_gate_wait + timings_.fake_wait;
    const auto start = Clock::now();
    PG_RETURN_IF_ERROR(
        RunRole(role,
                start + std::chrono::duration_cast<Clock::duration>(
                            std::chrono::duration<double>(period)),
                stop));
    const double wall = Seconds(start);
    const double waited =
        timings_.d_gate_wait + timings_.fake_wait - waits_before;
    report.set_role(role);
    report.set_steps(steps_done_ - steps_before);
    report.set_wall_seconds(wall);
    report.set_busy_seconds(std::max(0.0, wall - waited));
  }
  return absl::OkStatus();
}

std::string RoleLabel(v1::WorkerRole role) {
  return role == v1::G_ONLY ? "g_only" : role == v1::D_ONLY ? "d_only" : "both";
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
  absl::Status result;
  while (lead() > options_.max_g_lead) {
    if (stop != nullptr && stop->load()) break;
    if (Clock::now() >= role_until_) {
      // Role auto: time to report, even without D's progress.
      result = absl::DeadlineExceededError("still waiting for D");
      break;
    }
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
  return result;
}

absl::Status Worker::GOnlyStep(StepStats* stats) {
  // G's loss goes through whatever D has arrived (after the first one).
  PG_RETURN_IF_ERROR(Ensure(*d_, !d_->merged_once));
  PG_RETURN_IF_ERROR(Ensure(*g_, true));
  const int64_t version = g_version();
  const auto c = Clock::now();
  if (Simulated()) {
    Simulate(options_.simulated.g_step);
    SimulatedFakes();
  } else {
    trainer_->ComputeGGradients(stats, &host_fake_, &fake_labels_);
  }
  g_->staging.Stage(*g_->store);
  timings_.compute += Seconds(c);
  StartCall(*g_, /*push=*/true);
  // Publishing overlaps the push; d_steps batches feed d_steps D updates.
  for (int k = 0; k < d_steps_; ++k) {
    if (k > 0) {
      const auto f = Clock::now();
      if (Simulated()) {
        SimulatedFakes();
      } else {
        host_fake_ = trainer_->GenerateFakes(&fake_labels_);
      }
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

absl::Status Worker::DOnlyStep(StepStats* stats) {
  PG_RETURN_IF_ERROR(Ensure(*d_, true));
  const int b = options_.batch_size;
  const int res = trainer_->config().model.resolution;
  const Shape want{b, options_.image_channels, res, res};
  // The fake first: when none comes before the role's deadline, no real
  // batch has been taken for nothing.
  const absl::Time deadline =
      role_until_ == Clock::time_point::max()
          ? absl::InfiniteFuture()
          : absl::Now() + absl::FromChrono(role_until_ - Clock::now());
  FakeBatchInfo info;
  for (;;) {
    const auto fw = Clock::now();
    absl::Status st = fakes_->Next(&host_fake_, &fake_labels_, &info, deadline);
    const double waited = Seconds(fw);
    timings_.fake_wait += waited;
    const bool stalled = waited > 0.002;
    if (stalled) ++decoupled_.stalls;
    if (metrics_) metrics_->RecordFakeWait(waited, stalled);
    PG_RETURN_IF_ERROR(st);
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
  const auto bw = Clock::now();
  absl::Status st = batches_->Next(&host_batch_, &labels_);
  timings_.batch_wait += Seconds(bw);
  PG_RETURN_IF_ERROR(st);
  if (host_batch_.shape() != want) {
    return absl::InvalidArgumentError(absl::StrCat(
        "real batch has shape ", ShapeToString(host_batch_.shape()),
        ", expected ", ShapeToString(want)));
  }
  ++decoupled_.fakes_used;
  decoupled_.sample_age_sum += static_cast<double>(info.age());
  decoupled_.max_sample_age = std::max(decoupled_.max_sample_age, info.age());
  if (metrics_) metrics_->RecordSampleAge(info.age());
  const auto c = Clock::now();
  if (Simulated()) {
    Simulate(options_.simulated.d_step);
  } else {
    trainer_->ComputeDGradientsOn(backend_->FromHost(host_batch_), labels_,
                                  backend_->FromHost(host_fake_), fake_labels_,
                                  stats);
  }
  d_->staging.Stage(*d_->store);
  timings_.compute += Seconds(c);
  StartCall(*d_, /*push=*/true);
  if (!options_.overlap) PG_RETURN_IF_ERROR(Ensure(*d_, true));
  return absl::OkStatus();
}

void Worker::LogDecoupledProgress(int64_t done, const StepStats& stats,
                                  double secs, int64_t images) {
  const double img_s = secs > 0 ? images / secs : 0.0;
  const DecoupledStats& now = decoupled_;
  DecoupledStats& then = decoupled_since_line_;
  if (role_ == v1::G_ONLY) {
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
                 stats.d_real, stats.d_fake, d.mean_staleness, d.rejected_total,
                 mean_age, now.max_sample_age, now.stalls - then.stalls,
                 timings_.fake_wait, now.fakes_skipped)
          << std::endl;
  }
  then = now;
}

}  // namespace paragan
