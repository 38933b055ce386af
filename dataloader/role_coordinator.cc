#include "dataloader/role_coordinator.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace paragan {
namespace {

const char* Name(v1::WorkerRole role) {
  return role == v1::G_ONLY ? "G" : role == v1::D_ONLY ? "D" : "both";
}

}  // namespace

RoleCoordinator::RoleCoordinator(RoleCoordinatorOptions options)
    : options_(std::move(options)) {}

double RoleCoordinator::Throughput(int n, int k, double g, double d, int r) {
  return std::min(static_cast<double>(r) * k * g,
                  static_cast<double>(n - k) * d);
}

int RoleCoordinator::BestGWorkers(int n, double g, double d, int r) {
  int best = 1;
  for (int k = 2; k <= n - 1; ++k) {
    // Ties go to fewer G workers: D consumes what G makes.
    if (Throughput(n, k, g, d, r) > Throughput(n, best, g, d, r) * 1.000001) {
      best = k;
    }
  }
  return best;
}

RoleCoordinator::Split RoleCoordinator::split() const {
  std::lock_guard<std::mutex> lock(mu_);
  Split s;
  for (const auto& [id, w] : workers_) {
    if (w.role == v1::G_ONLY) ++s.g;
    if (w.role == v1::D_ONLY) ++s.d;
    if (w.role == v1::BOTH) ++s.both;
  }
  return s;
}

double RoleCoordinator::MeanCapacity(v1::WorkerRole role) const {
  // Prefer the workers in the role now: a capacity measured before costs
  // changed would hold a split that no longer fits.
  auto mean = [&](v1::WorkerRole of, bool current_only) {
    double sum = 0;
    int count = 0;
    for (const auto& [id, w] : workers_) {
      const double c = of == v1::G_ONLY ? w.g_capacity : w.d_capacity;
      if (c >= 0 && (!current_only || w.role == of)) sum += c, ++count;
    }
    return count > 0 ? sum / count : -1.0;
  };
  const v1::WorkerRole other = role == v1::G_ONLY ? v1::D_ONLY : v1::G_ONLY;
  for (const double m : {mean(role, true), mean(role, false), mean(other, true),
                         mean(other, false)}) {
    if (m >= 0) return m;
  }
  return 1.0;
}

std::string RoleCoordinator::Describe(int r, int64_t buffered) const {
  int g = 0, d = 0;
  for (const auto& [id, w] : workers_) {
    g += w.role == v1::G_ONLY;
    d += w.role == v1::D_ONLY;
  }
  return absl::StrFormat(
      "%d G x %.2f steps/s x ratio %d vs %d D x %.2f steps/s, buffer %d", g,
      MeanCapacity(v1::G_ONLY), r, d, MeanCapacity(v1::D_ONLY), buffered);
}

void RoleCoordinator::Log(const std::string& line) const {
  if (options_.log) options_.log(line);
}

void RoleCoordinator::Forget(absl::Time now) {
  for (auto it = workers_.begin(); it != workers_.end();) {
    if (now - it->second.last_seen > options_.lease) {
      Log(absl::StrCat("role coordinator: forgot ", it->first, " (",
                       Name(it->second.role), "): silent for ",
                       absl::FormatDuration(now - it->second.last_seen)));
      it = workers_.erase(it);
    } else {
      ++it;
    }
  }
}

v1::RoleAssignment RoleCoordinator::Report(const v1::RoleReport& report,
                                           absl::Time now, int64_t buffered) {
  std::lock_guard<std::mutex> lock(mu_);
  Forget(now);
  const int r = std::max(1, report.d_steps_per_g_step());
  const bool known = workers_.count(report.worker_id()) > 0;
  Worker& me = workers_[report.worker_id()];
  me.last_seen = now;
  if (!known) {
    me.role_since = now;
    // A worker that restarted reports BOTH: whatever it ran is gone.
  }
  // Its capacity in the role it ran.
  if (known && report.steps() > 0 && report.busy_seconds() > 0 &&
      report.role() == me.role && me.role != v1::BOTH) {
    const double c = report.steps() / report.busy_seconds();
    double& cap = me.role == v1::G_ONLY ? me.g_capacity : me.d_capacity;
    cap = cap < 0 ? c : options_.ema * c + (1 - options_.ema) * cap;
  }
  const int n = static_cast<int>(workers_.size());
  v1::RoleAssignment out;
  out.set_report_after_seconds(absl::ToDoubleSeconds(options_.report_interval));
  auto assign = [&](v1::WorkerRole role, const std::string& why, bool log) {
    if (role != me.role) {
      me.role_since = now;
      if (log) {
        Log(absl::StrCat("role coordinator: ", report.worker_id(), " ",
                         known ? absl::StrCat(Name(me.role), " -> ") : "",
                         Name(role), ": ", why));
      }
    }
    me.role = role;
    out.set_role(role);
    out.set_reason(why);
    return out;
  };
  if (n == 1) {
    return assign(v1::BOTH,
                  "the only worker: it runs D and G steps itself (coupled)",
                  true);
  }
  int g = 0, d = 0;
  for (const auto& [id, w] : workers_) {
    if (&w == &me) continue;
    g += w.role == v1::G_ONLY;
    d += w.role == v1::D_ONLY;
  }
  const double gc = MeanCapacity(v1::G_ONLY), dc = MeanCapacity(v1::D_ONLY);
  const int best = BestGWorkers(n, gc, dc, r);
  // A worker without a role of the split (new, or alone until now): the role
  // that brings the others' split toward the best one.
  if (me.role == v1::BOTH) {
    const v1::WorkerRole role = g < best ? v1::G_ONLY : v1::D_ONLY;
    return assign(
        role,
        absl::StrFormat("joins as %s: best split %d G + %d D for %d "
                        "workers (%s)",
                        Name(role), best, n - best, n, Describe(r, buffered)),
        true);
  }
  const int k = g + (me.role == v1::G_ONLY);
  const double now_t = Throughput(n, k, gc, dc, r);
  int target = k;
  if (me.role == v1::G_ONLY && best < k && k > 1) target = k - 1;
  if (me.role == v1::D_ONLY && best > k && n - k > 1) target = k + 1;
  const double next_t = Throughput(n, target, gc, dc, r);
  const bool settled = now - me.role_since >= options_.min_dwell &&
                       now - last_move_ >= options_.cooldown;
  if (target != k && settled && next_t > now_t * (1 + options_.min_gain)) {
    last_move_ = now;
    const v1::WorkerRole role = me.role == v1::G_ONLY ? v1::D_ONLY : v1::G_ONLY;
    return assign(
        role,
        absl::StrFormat("%s; predicted D updates/s %.2f -> %.2f (best split "
                        "%d G + %d D)",
                        Describe(r, buffered), now_t, next_t, best, n - best),
        true);
  }
  return assign(me.role,
                absl::StrFormat("keeps %s: %s; predicted D updates/s %.2f "
                                "(best split %d G + %d D)",
                                Name(me.role), Describe(r, buffered), now_t,
                                best, n - best),
                false);
}

}  // namespace paragan
