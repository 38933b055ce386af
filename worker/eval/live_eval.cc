#include "worker/eval/live_eval.h"

#include <chrono>
#include <cmath>
#include <thread>
#include <utility>

#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "worker/eval/generated_samples.h"

namespace paragan::eval {
namespace {

using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

prometheus::Gauge& G(prometheus::Registry* r, const std::string& name,
                     const std::string& help, const prometheus::Labels& l) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(*r).Add(l);
}

}  // namespace

LiveEvalMetrics::LiveEvalMetrics(prometheus::Registry* r,
                                 const std::string& network)
    : fid_(G(r, "paragan_eval_fid", "FID of the servers' EMA generator",
             {{"network", network}})),
      kid_(G(r, "paragan_eval_kid", "KID (mean over subsets)",
             {{"network", network}})),
      is_(G(r, "paragan_eval_is", "Inception Score over the network's logits",
            {{"network", network}})),
      g_version_(G(r, "paragan_eval_g_version",
                   "G version the last evaluation scored", {})),
      seconds_(G(r, "paragan_eval_seconds",
                 "Seconds the last evaluation took (pull, generate, score)",
                 {})),
      samples_(G(r, "paragan_eval_samples", "Samples per evaluation", {})),
      rounds_(prometheus::BuildCounter()
                  .Name("paragan_eval_rounds_total")
                  .Help("Evaluations done")
                  .Register(*r)
                  .Add({})),
      errors_(prometheus::BuildCounter()
                  .Name("paragan_eval_errors_total")
                  .Help("Evaluations that failed (e.g. shards unreachable)")
                  .Register(*r)
                  .Add({})) {}

void LiveEvalMetrics::Record(const FidRow& row) {
  fid_.Set(row.fid);
  kid_.Set(row.kid_mean);
  is_.Set(row.is_mean);
  g_version_.Set(static_cast<double>(row.g_step));
  seconds_.Set(row.eval_s);
  samples_.Set(static_cast<double>(row.num_samples));
  rounds_.Increment();
}

void LiveEvalMetrics::RecordError() { errors_.Increment(); }

LiveEvaluator::LiveEvaluator(LiveEvalOptions options, FeatureNetwork* net,
                             const Reference* ref, FidLog* log,
                             LiveEvalMetrics* metrics, std::ostream* out)
    : o_(std::move(options)),
      net_(net),
      ref_(ref),
      log_(log),
      metrics_(metrics),
      out_(out) {}

absl::StatusOr<FidRow> LiveEvaluator::EvaluateOnce(double wall_s) {
  const auto t0 = Clock::now();
  const double unix_s = absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch());
  absl::StatusOr<ServerSamples> s =
      SamplesFromServers(o_.ps, o_.model, o_.num_samples, o_.seed, o_.threads,
                         absl::Seconds(60), o_.security);
  if (!s.ok()) return s.status();
  EvalOptions eo = o_.eval;
  eo.dataset = absl::StrFormat("%s@G%d", o_.model, s->g_version);
  absl::StatusOr<EvalResult> r = EvaluateSamples(net_, s->images, *ref_, eo);
  if (!r.ok()) return r.status();
  FidRow row = FidRowFromResult(*r, wall_s, unix_s, s->g_version, Since(t0));
  if (log_) {
    if (absl::Status st = log_->Append(row); !st.ok()) return st;
  }
  if (metrics_) metrics_->Record(row);
  if (out_) {
    *out_ << absl::StrFormat(
                 "eval %.0fs G %d: FID(%s) %.3f KID %.5f IS %.3f "
                 "(%d samples%s, %.1f s)",
                 wall_s, row.g_step, row.network, row.fid, row.kid_mean,
                 row.is_mean, row.num_samples, s->from_ema ? ", EMA" : ", G",
                 row.eval_s)
          << std::endl;
  }
  return row;
}

void LiveEvaluator::Run(const std::atomic<bool>* stop) {
  const auto start = Clock::now();
  double next = 0;
  while (!stop->load()) {
    const double now = Since(start);
    if (now < next) {
      std::this_thread::sleep_for(std::chrono::milliseconds(
          static_cast<int>(std::min(0.2, next - now) * 1000) + 1));
      continue;
    }
    next = now + o_.every_s;
    absl::StatusOr<FidRow> row;
    {
      RoundPriority priority(o_.priority, o_.escalate_after_s);
      row = EvaluateOnce(now);
      if (priority.escalated() && out_)
        *out_ << absl::StrFormat(
                     "eval %.0fs: the round waited %.0f s for idle CPU and "
                     "finished at nice 19",
                     now, o_.escalate_after_s)
              << std::endl;
    }
    if (!row.ok()) {
      if (metrics_) metrics_->RecordError();
      if (out_)
        *out_ << "eval " << absl::StrFormat("%.0fs", now)
              << ": failed: " << row.status().message() << " (retrying in "
              << o_.every_s << " s)" << std::endl;
    }
  }
}

}  // namespace paragan::eval
