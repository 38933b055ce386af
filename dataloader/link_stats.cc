#include "dataloader/link_stats.h"

namespace paragan {

LinkStats* LinkTable::Get(StreamId id, const LinkState& link) {
  auto it = links_.find(id);
  if (it == links_.end()) return nullptr;
  it->second.state = link;
  return &it->second;
}

void LinkTable::Opened(const StreamInfo& stream) {
  LinkStats& s = links_[stream.id];
  s = LinkStats();
  s.stream = stream;
}

void LinkTable::Credits(StreamId id, int64_t granted, const LinkState& link) {
  if (LinkStats* s = Get(id, link)) s->credits_granted += granted;
}

void LinkTable::Dealt(StreamId id, const Delivery& batch,
                      const LinkState& link) {
  LinkStats* s = Get(id, link);
  if (s == nullptr) return;
  ++s->batches_dealt;
  if (batch.redelivered) ++s->redelivered;
}

void LinkTable::Sent(StreamId id, const Delivery& batch,
                     const LinkState& link) {
  LinkStats* s = Get(id, link);
  if (s == nullptr) return;
  ++s->batches_sent;
  s->bytes_sent += batch.payload_bytes;
  s->last_sent = batch.sent;
}

void LinkTable::Acked(StreamId id, const Delivery& batch,
                      const LinkState& link) {
  LinkStats* s = Get(id, link);
  if (s == nullptr) return;
  ++s->batches_acked;
  s->bytes_acked += batch.payload_bytes;
  s->last_acked = batch.acked;
  if (batch.sent != absl::InfinitePast()) {
    s->last_delivery = batch.acked - batch.sent;
    s->total_delivery += s->last_delivery;
    ++s->timed_acks;
  }
  if (batch.written != absl::InfinitePast()) {
    s->last_write = batch.written - batch.sent;
  }
}

void LinkTable::Closed(StreamId id, const absl::Status& /*why*/,
                       int64_t requeued) {
  if (links_.erase(id) > 0) ++closed_;
  requeued_ += requeued;
}

const LinkStats* LinkTable::Find(StreamId id) const {
  auto it = links_.find(id);
  return it == links_.end() ? nullptr : &it->second;
}

}  // namespace paragan
