#include "dataloader/congestion_aware_policy.h"

#include <algorithm>
#include <cmath>

namespace paragan {
namespace {

// Smoothing of the per-link averages: new = old + (sample - old) * gain.
constexpr double kRttGain = 1.0 / 8;     // TCP's srtt
constexpr double kRttVarGain = 1.0 / 4;  // TCP's rttvar
constexpr double kConsumeGain = 1.0 / 8;
constexpr double kRungGain = 1.0 / 4;
// A rung must beat the current one by this much to replace it (measurements
// are noisy; flapping costs a probe each time).
constexpr double kHysteresis = 0.9;
// Receipts one delivery-rate sample spans.
constexpr size_t kRateSpan = 8;

template <typename T>
void Smooth(T* average, T sample, double gain) {
  *average = *average + (sample - *average) * gain;
}

}  // namespace

WireEncoding LinkEstimator::Rung(int rung) {
  switch (rung) {
    case 1:
      return {v1::LZ4, 1};
    case 2:
      return {v1::ZSTD, 1};
    case 3:
      return {v1::ZSTD, 3};
    case 4:
      return {v1::ZSTD, 7};
    default:
      return {};
  }
}

LinkEstimator::LinkEstimator(const StreamInfo& stream, Params params)
    : params_(params),
      accepted_(stream.compressions),
      window_(static_cast<double>(params.initial_window)) {}

void LinkEstimator::Expire(absl::Time now) {
  const absl::Time horizon = now - params_.window_span;
  // Keep the newest sample even when old: a link quiet for a while keeps
  // its last estimate.
  while (rates_.size() > 1 && rates_.front().first < horizon) {
    rates_.pop_front();
  }
  while (rtts_.size() > 1 && rtts_.front().first < horizon) rtts_.pop_front();
}

double LinkEstimator::bandwidth() const {
  double best = 0;
  for (const auto& [at, rate] : rates_) best = std::max(best, rate);
  return best;
}

absl::Duration LinkEstimator::min_rtt() const {
  if (rtts_.empty()) return absl::ZeroDuration();
  absl::Duration best = absl::InfiniteDuration();
  for (const auto& [at, rtt] : rtts_) best = std::min(best, rtt);
  return best;
}

void LinkEstimator::Sent(const Delivery& batch) {
  if (batch.raw_bytes <= 0) return;
  // Rung stats are per encoding actually used (the service may have
  // replaced the policy's choice by none).
  int used = 0;
  for (int r = 1; r < kRungs; ++r) {
    if (Rung(r) == batch.encoding) used = r;
  }
  RungStats& s = rungs_[used];
  const double ratio = static_cast<double>(batch.wire_bytes) /
                       static_cast<double>(batch.raw_bytes);
  const double encode_s = absl::ToDoubleSeconds(batch.encode_time);
  if (s.samples++ == 0) {
    s.ratio = ratio;
    s.encode_s = encode_s;
    s.raw_bytes = static_cast<double>(batch.raw_bytes);
  } else {
    Smooth(&s.ratio, ratio, kRungGain);
    Smooth(&s.encode_s, encode_s, kRungGain);
    Smooth(&s.raw_bytes, static_cast<double>(batch.raw_bytes), kRungGain);
  }
  if (++sent_since_decision_ >= params_.reevaluate_every) {
    sent_since_decision_ = 0;
    Decide();
  }
}

void LinkEstimator::Received(const Delivery& batch) {
  if (batch.sent == absl::InfinitePast() ||
      batch.received == absl::InfinitePast() || batch.received < batch.sent) {
    return;
  }
  const absl::Time now = batch.received;
  // The link worked on this batch from when it was sent, or from when the
  // previous one arrived if that was later (it waited behind it).
  Receipt r;
  r.from = std::max(batch.sent, last_received_);
  r.app_limited = batch.sent >= last_received_;
  r.wire_bytes = batch.wire_bytes;
  last_received_ = std::max(last_received_, now);
  receipts_.push_back(r);
  if (receipts_.size() > kRateSpan) receipts_.pop_front();
  // One sample spans the last kRateSpan receipts: a receipt timed late (the
  // worker's receiver thread busy, two receipts in one message) or a
  // shaper's burst after an idle spell would make a single batch's rate
  // many times the link's, and the max filter would keep it for 10 s.
  if (receipts_.size() == kRateSpan) {
    int64_t bytes = 0;
    bool app_limited = false;
    for (const Receipt& x : receipts_) {
      bytes += x.wire_bytes;
      app_limited = app_limited || x.app_limited;
    }
    const absl::Duration busy = now - receipts_.front().from;
    if (busy > absl::ZeroDuration() && bytes > 0) {
      const double rate =
          static_cast<double>(bytes) / absl::ToDoubleSeconds(busy);
      // A span with idle time in it measured the worker, not the link:
      // it only counts when it shows more than we knew.
      if (!app_limited || rate > bandwidth()) rates_.emplace_back(now, rate);
    }
  }
  const absl::Duration rtt = now - batch.sent;
  rtts_.emplace_back(now, rtt);
  if (!have_rtt_) {
    srtt_ = rtt;
    rttvar_ = rtt / 2;
    have_rtt_ = true;
  } else {
    Smooth(&rttvar_, absl::AbsDuration(srtt_ - rtt), kRttVarGain);
    Smooth(&srtt_, rtt, kRttGain);
  }
  Expire(now);
}

void LinkEstimator::Report(const ClientReport& report) {
  if (report.stall > absl::ZeroDuration()) stalled_since_ack_ = true;
}

void LinkEstimator::Acked(const Delivery& batch) {
  const absl::Time now = batch.acked;
  if (now == absl::InfinitePast()) return;
  if (last_acked_ != absl::InfinitePast()) {
    const absl::Duration gap = now - last_acked_;
    if (consume_interval_ == absl::ZeroDuration()) {
      consume_interval_ = gap;
    } else {
      Smooth(&consume_interval_, gap, kConsumeGain);
    }
  }
  last_acked_ = now;
  UpdateWindow();
}

void LinkEstimator::UpdateWindow() {
  double lead = static_cast<double>(params_.initial_window);
  if (have_rtt_ && consume_interval_ > absl::ZeroDuration()) {
    // From the minimum, not srtt: our own batches queued in the bottleneck
    // raise srtt, and sizing the window by it would feed on itself.
    lead = (min_rtt() + 2 * rttvar_) / consume_interval_ + 1;
  }
  lead = std::max(lead, static_cast<double>(params_.min_window));
  if (stalled_since_ack_) {
    // The worker waited: what we measured did not cover it (a burst of
    // queueing, a slow decode). Grow fast, as slow start.
    window_ = std::max(window_ * 2, lead);
  } else if (window_ > lead) {
    // No stall: drift back to what the measurements say is enough, so that
    // batches do not sit in the bottleneck's queue (or the worker's memory).
    window_ = std::max(lead, window_ - 0.25);
  } else {
    window_ = lead;
  }
  window_ = std::clamp(window_, static_cast<double>(params_.min_window),
                       static_cast<double>(params_.max_window));
  stalled_since_ack_ = false;
}

int64_t LinkEstimator::window() const {
  return static_cast<int64_t>(std::ceil(window_));
}

std::optional<absl::Duration> LinkEstimator::Cost(int rung) const {
  if (rung < 0 || rung >= kRungs) return std::nullopt;
  const RungStats& s = rungs_[rung];
  const double bw = bandwidth();
  if (s.samples == 0 || bw <= 0) return std::nullopt;
  return absl::Seconds(s.encode_s + s.ratio * s.raw_bytes / bw);
}

void LinkEstimator::Decide() {
  const double bw = bandwidth();
  if (bw <= 0) return;
  auto accepted = [this](int rung) {
    const WireEncoding e = Rung(rung);
    return e.codec == v1::NO_COMPRESSION ||
           std::find(accepted_.begin(), accepted_.end(), e.codec) !=
               accepted_.end();
  };
  const RungStats& cur = rungs_[rung_];
  const double transmit_s = cur.ratio * cur.raw_bytes / bw;
  // Probe a neighbour never measured, in the direction the cost points:
  // transmission dominating -> compress harder; encoding dominating -> less.
  int probe = -1;
  if (transmit_s > cur.encode_s) {
    for (int r = rung_ + 1; r < kRungs; ++r) {
      if (accepted(r)) {
        probe = r;
        break;
      }
    }
  } else if (rung_ > 0) {
    probe = rung_ - 1;
    while (probe > 0 && !accepted(probe)) --probe;
  }
  if (probe >= 0 && rungs_[probe].samples == 0) {
    rung_ = probe;
    return;
  }
  // Otherwise the cheapest measured rung at today's bandwidth, if it beats
  // the current one clearly.
  const absl::Duration current = *Cost(rung_);
  int best = rung_;
  absl::Duration best_cost = current;
  for (int r = 0; r < kRungs; ++r) {
    if (r == rung_ || !accepted(r)) continue;
    std::optional<absl::Duration> c = Cost(r);
    if (c.has_value() && *c < best_cost) {
      best = r;
      best_cost = *c;
    }
  }
  if (best_cost >= current * kHysteresis) best = rung_;
  rung_ = best;
}

LinkEstimate LinkEstimator::estimate() const {
  LinkEstimate e;
  e.bandwidth_bytes_per_second = bandwidth();
  e.rtt = srtt_;
  e.min_rtt = min_rtt();
  e.queueing_delay = std::max(absl::ZeroDuration(), srtt_ - e.min_rtt);
  e.window = window();
  e.compression_level = rung_;
  return e;
}

CongestionAwarePolicy::CongestionAwarePolicy(
    const DispatchPolicyConfig& config) {
  params_.max_window = std::max<int64_t>(
      params_.min_window, std::min<int64_t>(config.max_in_flight, 64));
}

void CongestionAwarePolicy::OnStreamOpened(const StreamInfo& stream) {
  links_.Opened(stream);
  by_id_.emplace(stream.id, LinkEstimator(stream, params_));
  line_.push_back(stream.id);
}

void CongestionAwarePolicy::OnCredits(StreamId id, int64_t granted,
                                      absl::Time /*now*/,
                                      const LinkState& link) {
  links_.Credits(id, granted, link);
}

void CongestionAwarePolicy::OnDealt(StreamId id, const Delivery& batch,
                                    const LinkState& link) {
  links_.Dealt(id, batch, link);
  // Served: to the back of the line (ties go to the longest unserved).
  auto pos = std::find(line_.begin(), line_.end(), id);
  if (pos != line_.end()) {
    line_.erase(pos);
    line_.push_back(id);
  }
}

void CongestionAwarePolicy::OnSent(StreamId id, const Delivery& batch,
                                   const LinkState& link) {
  links_.Sent(id, batch, link);
  if (auto it = by_id_.find(id); it != by_id_.end()) {
    it->second.Sent(batch);
  }
}

void CongestionAwarePolicy::OnReceived(StreamId id, const Delivery& batch,
                                       const LinkState& /*link*/) {
  if (auto it = by_id_.find(id); it != by_id_.end()) {
    it->second.Received(batch);
  }
}

void CongestionAwarePolicy::OnClientReport(StreamId id,
                                           const ClientReport& report,
                                           const LinkState& /*link*/) {
  if (auto it = by_id_.find(id); it != by_id_.end()) {
    it->second.Report(report);
  }
}

void CongestionAwarePolicy::OnAcked(StreamId id, const Delivery& batch,
                                    const LinkState& link) {
  links_.Acked(id, batch, link);
  if (auto it = by_id_.find(id); it != by_id_.end()) {
    it->second.Acked(batch);
  }
}

void CongestionAwarePolicy::OnStreamClosed(StreamId id, const absl::Status& why,
                                           int64_t requeued) {
  links_.Closed(id, why, requeued);
  by_id_.erase(id);
  auto pos = std::find(line_.begin(), line_.end(), id);
  if (pos != line_.end()) line_.erase(pos);
}

std::optional<StreamId> CongestionAwarePolicy::PickStream(
    absl::FunctionRef<bool(StreamId)> eligible) {
  std::optional<StreamId> best;
  double best_fill = 0;
  for (StreamId id : line_) {
    auto it = by_id_.find(id);
    const LinkStats* stats = links_.Find(id);
    if (it == by_id_.end() || stats == nullptr || !eligible(id)) continue;
    const double fill = static_cast<double>(stats->state.unacked) /
                        static_cast<double>(it->second.window());
    if (!best.has_value() || fill < best_fill) {
      best = id;
      best_fill = fill;
    }
  }
  return best;
}

int64_t CongestionAwarePolicy::Window(StreamId id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? 0 : it->second.window();
}

WireEncoding CongestionAwarePolicy::Encoding(StreamId id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? WireEncoding{} : it->second.encoding();
}

std::optional<LinkEstimate> CongestionAwarePolicy::Estimate(StreamId id) const {
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return std::nullopt;
  return it->second.estimate();
}

const LinkEstimator* CongestionAwarePolicy::estimator(StreamId id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &it->second;
}

PARAGAN_REGISTER_DISPATCH_POLICY(CongestionAwarePolicy);

}  // namespace paragan
