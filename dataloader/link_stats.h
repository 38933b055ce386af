#ifndef PARAGAN_DATALOADER_LINK_STATS_H_
#define PARAGAN_DATALOADER_LINK_STATS_H_

// LinkTable: what a DispatchPolicy has observed of each open link, built
// from its observation hooks (dispatch_policy.h). A policy owns one and
// forwards its hooks to it; congestion-aware policies read it to decide.
// Not thread-safe: it lives under the service's lock with its policy.

#include <cstdint>
#include <map>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "dataloader/dispatch_policy.h"

namespace paragan {

struct LinkStats {
  StreamInfo stream;
  LinkState state;  // after the latest event
  int64_t credits_granted = 0;
  int64_t batches_dealt = 0;
  int64_t batches_sent = 0;  // writes begun
  int64_t batches_acked = 0;
  int64_t bytes_sent = 0;
  int64_t bytes_acked = 0;
  int64_t redelivered = 0;  // dealt batches requeued from a broken stream
  absl::Time last_sent = absl::InfinitePast();
  absl::Time last_acked = absl::InfinitePast();
  // Sent -> acked (the whole round trip: wire, decode, training step, ack).
  absl::Duration last_delivery = absl::ZeroDuration();
  absl::Duration total_delivery = absl::ZeroDuration();
  int64_t timed_acks = 0;  // acks of batches whose send time is known
  // Write began -> returned, of the acked batches whose return was seen.
  absl::Duration last_write = absl::ZeroDuration();

  absl::Duration mean_delivery() const {
    return timed_acks == 0 ? absl::ZeroDuration() : total_delivery / timed_acks;
  }
};

class LinkTable {
 public:
  void Opened(const StreamInfo& stream);
  void Credits(StreamId id, int64_t granted, const LinkState& link);
  void Dealt(StreamId id, const Delivery& batch, const LinkState& link);
  void Sent(StreamId id, const Delivery& batch, const LinkState& link);
  void Acked(StreamId id, const Delivery& batch, const LinkState& link);
  // Forgets the link (closed links are counted, not kept).
  void Closed(StreamId id, const absl::Status& why, int64_t requeued);

  // Null when `id` is not open.
  const LinkStats* Find(StreamId id) const;
  const std::map<StreamId, LinkStats>& open() const { return links_; }
  int64_t closed() const { return closed_; }
  int64_t requeued() const { return requeued_; }

 private:
  // Null for ids never opened (a policy's bug, tolerated here).
  LinkStats* Get(StreamId id, const LinkState& link);

  std::map<StreamId, LinkStats> links_;
  int64_t closed_ = 0;
  int64_t requeued_ = 0;
};

}  // namespace paragan

#endif  // PARAGAN_DATALOADER_LINK_STATS_H_
