#include "worker/eval/trainer_eval.h"

#include <chrono>
#include <cstdio>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/check.h"
#include "worker/eval/feature_networks.h"
#include "worker/eval/generated_samples.h"

namespace paragan::eval {
namespace {

using Clock = std::chrono::steady_clock;

double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

}  // namespace

// Everything the scoring needs lives here; the thread that creates a backend
// owns its OpenMP thread count, so it is created in the evaluator's thread.
struct TrainerEvaluator::Scorer {
  std::unique_ptr<Backend> backend;
  std::unique_ptr<FeatureNetwork> net;
  Reference ref;
  std::unique_ptr<FidLog> log;
};

TrainerEvaluator::TrainerEvaluator(TrainerEvalOptions options)
    : o_(std::move(options)) {}

absl::StatusOr<std::unique_ptr<TrainerEvaluator>> TrainerEvaluator::Start(
    TrainerEvalOptions options) {
  if (options.reference.empty())
    return absl::InvalidArgumentError(
        "the evaluator needs a reference statistics file (--eval_reference)");
  if (options.num_samples < 2)
    return absl::InvalidArgumentError(
        absl::StrCat("--eval_samples must be >= 2, got ", options.num_samples));
  if (options.final_samples != 0 && options.final_samples < 2)
    return absl::InvalidArgumentError(
        absl::StrCat("--eval_final_samples must be 0 (none) or >= 2, got ",
                     options.final_samples));
  std::unique_ptr<TrainerEvaluator> ev(
      new TrainerEvaluator(std::move(options)));
  ev->thread_ = std::thread([e = ev.get()] { e->Loop(); });
  std::unique_lock<std::mutex> lock(ev->mu_);
  ev->cv_.wait(lock, [&] { return ev->setup_done_; });
  if (!ev->setup_status_.ok()) {
    absl::Status st = ev->setup_status_;
    lock.unlock();
    return st;  // the thread has returned; the destructor joins it
  }
  return ev;
}

TrainerEvaluator::~TrainerEvaluator() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    quit_ = true;
    job_.reset();
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

absl::Status TrainerEvaluator::OpenNetwork() {
  scorer_->backend = MakeCpuBackend(o_.threads, CpuConvLayout::kAuto);
  PG_ASSIGN_OR_RETURN(scorer_->net, OpenFeatureNetwork(o_.network, o_.weights,
                                                       scorer_->backend.get()));
  return absl::OkStatus();
}

void TrainerEvaluator::CloseNetwork() {
  scorer_->net.reset();  // before the backend it runs on
  scorer_->backend.reset();
}

absl::Status TrainerEvaluator::SetUp() {
  scorer_ = std::make_unique<Scorer>();
  PG_RETURN_IF_ERROR(OpenNetwork());
  PG_ASSIGN_OR_RETURN(
      scorer_->ref,
      LoadOrComputeReference(o_.reference, o_.data_dir, scorer_->net.get()));
  if (scorer_->ref.computed)
    std::printf(
        "eval: computed the reference %s from %lld train images in "
        "%.1f s (cached for later runs)\n",
        o_.reference.c_str(), static_cast<long long>(scorer_->ref.stats.count),
        scorer_->ref.seconds);
  if (!o_.csv.empty()) {
    PG_ASSIGN_OR_RETURN(
        FidLog log,
        FidLog::Open(o_.csv, o_.png,
                     absl::StrCat("FID(", o_.network, ") against time")));
    scorer_->log = std::make_unique<FidLog>(std::move(log));
  }
  return absl::OkStatus();
}

void TrainerEvaluator::Loop() {
  absl::Status setup = SetUp();
  if (!setup.ok()) CloseNetwork();
  {
    std::lock_guard<std::mutex> lock(mu_);
    setup_status_ = setup;
    setup_done_ = true;
  }
  cv_.notify_all();
  if (!setup.ok()) return;
  // Rounds while training run on the cycles training leaves.
  if (absl::Status st = RunThisThreadAt(o_.priority); !st.ok())
    std::fprintf(stderr, "eval: warning: %s\n",
                 std::string(st.message()).c_str());
  while (true) {
    Job job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return quit_ || job_.has_value(); });
      if (quit_) break;
      job = std::move(*job_);
      job_.reset();
      busy_ = true;
    }
    absl::Status st;
    {
      RoundPriority priority(o_.priority, o_.escalate_after_s);
      st = Score(job, o_.num_samples);
    }
    if (!st.ok())
      std::fprintf(stderr, "eval: G step %lld: failed: %s\n",
                   static_cast<long long>(job.step),
                   std::string(st.message()).c_str());
    {
      std::lock_guard<std::mutex> lock(mu_);
      busy_ = false;
    }
    cv_.notify_all();
  }
  CloseNetwork();
}

absl::Status TrainerEvaluator::Score(const Job& job, int64_t num_samples) {
  const auto t0 = Clock::now();
  const double unix_s = absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch());
  PG_ASSIGN_OR_RETURN(std::unique_ptr<GanTrainer> trainer,
                      TrainerFromCheckpoint(job.state, scorer_->backend.get()));
  PG_ASSIGN_OR_RETURN(Tensor images,
                      SamplesFromTrainer(trainer.get(), num_samples, o_.seed));
  EvalOptions eo = o_.eval;
  eo.dataset = absl::StrFormat("G step %d", job.step);
  PG_ASSIGN_OR_RETURN(EvalResult r, EvaluateSamples(scorer_->net.get(), images,
                                                    scorer_->ref, eo));
  const FidRow row =
      FidRowFromResult(r, job.wall_s, unix_s, job.step, Since(t0));
  if (scorer_->log) PG_RETURN_IF_ERROR(scorer_->log->Append(row));
  std::printf(
      "eval %s%.0fs G step %lld: FID(%s) %.3f KID %.5f IS %.3f (%lld "
      "samples, %.1f s)\n",
      job.final ? "final, " : "", row.wall_s,
      static_cast<long long>(row.g_step), row.network.c_str(), row.fid,
      row.kid_mean, row.is_mean, static_cast<long long>(row.num_samples),
      row.eval_s);
  std::fflush(stdout);
  std::lock_guard<std::mutex> lock(mu_);
  rows_.push_back(row);
  return absl::OkStatus();
}

bool TrainerEvaluator::Ready() {
  std::lock_guard<std::mutex> lock(mu_);
  return !busy_ && !job_.has_value();
}

void TrainerEvaluator::Observe(std::vector<NamedArray> state, int64_t step,
                               double wall_s) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    job_ = Job{std::move(state), step, wall_s, false};
  }
  cv_.notify_all();
}

absl::Status TrainerEvaluator::Finish(std::vector<NamedArray> state,
                                      int64_t step, double wall_s) {
  {
    // A round not started yet is superseded by the final state; one in
    // flight is waited for (its row belongs on the curve).
    std::unique_lock<std::mutex> lock(mu_);
    job_.reset();
    cv_.wait(lock, [&] { return !busy_; });
    quit_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (o_.final_samples == 0) return absl::OkStatus();
  // On the caller's thread, at full priority as training is over, with a
  // backend of its own: oneDNN's shared scratchpad requires every primitive
  // to run (and be destroyed) on the thread that created it, so the
  // evaluator thread's backend went with that thread.
  PG_RETURN_IF_ERROR(OpenNetwork());
  return Score(Job{std::move(state), step, wall_s, true}, o_.final_samples);
}

std::vector<FidRow> TrainerEvaluator::rows() {
  std::lock_guard<std::mutex> lock(mu_);
  return rows_;
}

}  // namespace paragan::eval
