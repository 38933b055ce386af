#ifndef PARAGAN_DATALOADER_CONGESTION_AWARE_POLICY_H_
#define PARAGAN_DATALOADER_CONGESTION_AWARE_POLICY_H_

// congestion_aware: shapes each link's delivery to what the link and its
// worker do (the paper's congestion-aware data pipeline).
//
// Per link it measures, from the service's events and the client's receipts
// (DataClient reports each batch's arrival as soon as it reads it):
//   - delivery rate: wire bytes of the last 8 batches over the time the
//     link spent on them (last receipt - max(first's send, the receipt
//     before it); one batch alone is at the mercy of a late receipt or a
//     shaper's burst); the link's bandwidth is the largest rate of the last
//     10 s, BBR style (spans in which the link sat idle, "app limited",
//     only raise it);
//   - round trip send -> receipt: smoothed (srtt, rttvar as TCP) and its
//     10 s minimum; srtt - min is the queueing delay (a competing flow
//     filling the bottleneck's queue shows up here);
//   - the worker's consumption: the smoothed time between its acks, and
//     its reported stalls (Next waited with no batch ready).
// and decides:
//   - Window: enough batches in flight to cover the round trip and its
//     variation at the worker's consumption rate (lead = (min_rtt + 2
//     rttvar) / consumption interval + 1, at least 2; the minimum, because
//     our own queued batches inflate srtt); doubled when the worker reports
//     a stall, decaying back to the lead when it does not;
//   - Encoding: the compression rung r (none, lz4, zstd 1, 3, 7) with the
//     least per-batch cost encode(r) + wire_bytes(r) / bandwidth, from each
//     rung's measured encode time and ratio (properties of the data, kept
//     per link) and the current bandwidth. When the link's transmission time
//     dominates it probes the next rung up; when encoding dominates, the next
//     rung down. A fast link (loopback) therefore stays uncompressed, a
//     congested one compresses harder;
//   - PickStream: among the eligible streams, the one with the fewest
//     batches in flight relative to its window (the one closest to
//     stalling), first in line on ties.
// The client's credits stay the hard cap: the window works within them, so
// clients should grant a budget (paragan_data_fetch --credits=16; the
// DataClient default of 4 leaves it little room) and let the
// window decide.

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "dataloader/dispatch_policy.h"
#include "dataloader/link_stats.h"

namespace paragan {

// One link's measurements and decisions (the policy keeps one per stream;
// exposed for tests).
class LinkEstimator {
 public:
  // The compression ladder.
  static constexpr int kRungs = 5;
  static WireEncoding Rung(int rung);

  struct Params {
    absl::Duration window_span = absl::Seconds(10);  // max bw, min rtt
    int64_t initial_window = 4;
    int64_t min_window = 2;
    int64_t max_window = 64;
    int reevaluate_every = 8;  // batches sent between Encoding decisions
  };

  explicit LinkEstimator(const StreamInfo& stream)
      : LinkEstimator(stream, {}) {}
  LinkEstimator(const StreamInfo& stream, Params params);

  void Sent(const Delivery& batch);
  void Received(const Delivery& batch);
  void Acked(const Delivery& batch);
  void Report(const ClientReport& report);

  int64_t window() const;
  WireEncoding encoding() const { return Rung(rung_); }
  int rung() const { return rung_; }
  LinkEstimate estimate() const;

  double bandwidth() const;  // bytes/s; 0 before the first receipt
  absl::Duration srtt() const { return srtt_; }
  absl::Duration min_rtt() const;
  absl::Duration consume_interval() const { return consume_interval_; }
  // Per-batch cost of `rung` at the current bandwidth (nullopt: the rung
  // was never measured on this link).
  std::optional<absl::Duration> Cost(int rung) const;

 private:
  struct RungStats {
    int64_t samples = 0;
    double ratio = 1;      // wire bytes / raw bytes (smoothed)
    double encode_s = 0;   // seconds per batch (smoothed)
    double raw_bytes = 0;  // bytes the encoding starts from
  };
  void Expire(absl::Time now);
  void Decide();
  void UpdateWindow();

  const Params params_;
  std::vector<v1::Compression> accepted_;
  struct Receipt {
    absl::Time from;           // the link began on this batch
    bool app_limited = false;  // the link was idle before it
    int64_t wire_bytes = 0;
  };
  std::deque<Receipt> receipts_;  // the newest, for one rate sample
  std::deque<std::pair<absl::Time, double>> rates_;  // delivery samples
  std::deque<std::pair<absl::Time, absl::Duration>> rtts_;
  absl::Time last_received_ = absl::InfinitePast();
  absl::Duration srtt_;
  absl::Duration rttvar_;
  bool have_rtt_ = false;
  absl::Time last_acked_ = absl::InfinitePast();
  absl::Duration consume_interval_;
  double window_;
  bool stalled_since_ack_ = false;
  int rung_ = 0;
  int sent_since_decision_ = 0;
  RungStats rungs_[kRungs];
};

class CongestionAwarePolicy final : public DispatchPolicy {
 public:
  static constexpr char kName[] = "congestion_aware";

  explicit CongestionAwarePolicy(const DispatchPolicyConfig& config = {});
  absl::string_view name() const override { return kName; }

  void OnStreamOpened(const StreamInfo& stream) override;
  void OnCredits(StreamId id, int64_t granted, absl::Time now,
                 const LinkState& link) override;
  void OnDealt(StreamId id, const Delivery& batch,
               const LinkState& link) override;
  void OnSent(StreamId id, const Delivery& batch,
              const LinkState& link) override;
  void OnReceived(StreamId id, const Delivery& batch,
                  const LinkState& link) override;
  void OnClientReport(StreamId id, const ClientReport& report,
                      const LinkState& link) override;
  void OnAcked(StreamId id, const Delivery& batch,
               const LinkState& link) override;
  void OnStreamClosed(StreamId id, const absl::Status& why,
                      int64_t requeued) override;

  std::optional<StreamId> PickStream(
      absl::FunctionRef<bool(StreamId)> eligible) override;
  int64_t Window(StreamId id) const override;
  WireEncoding Encoding(StreamId id) const override;
  std::optional<LinkEstimate> Estimate(StreamId id) const override;

  const LinkEstimator* estimator(StreamId id) const;
  const LinkTable& links() const { return links_; }

 private:
  LinkEstimator::Params params_;
  std::map<StreamId, LinkEstimator> by_id_;
  // Each open link's queues (LinkStats::state) come from links_.
  std::deque<StreamId> line_;  // open streams, the longest unserved first
  LinkTable links_;
};

}  // namespace paragan

#endif  // PARAGAN_DATALOADER_CONGESTION_AWARE_POLICY_H_
