#include "dataloader/round_robin_policy.h"

#include <algorithm>

namespace paragan {

RoundRobinPolicy::RoundRobinPolicy(const DispatchPolicyConfig& /*config*/) {}

void RoundRobinPolicy::Leave(StreamId id) {
  auto it = std::find(line_.begin(), line_.end(), id);
  if (it != line_.end()) line_.erase(it);
}

void RoundRobinPolicy::OnStreamOpened(const StreamInfo& stream) {
  links_.Opened(stream);
}

void RoundRobinPolicy::OnCredits(StreamId id, int64_t granted,
                                 absl::Time /*now*/, const LinkState& link) {
  links_.Credits(id, granted, link);
  // A stream joins the back of the line when it gains credit; one already in
  // line keeps its place.
  if (link.credits > 0 &&
      std::find(line_.begin(), line_.end(), id) == line_.end()) {
    line_.push_back(id);
  }
}

void RoundRobinPolicy::OnDealt(StreamId id, const Delivery& batch,
                               const LinkState& link) {
  links_.Dealt(id, batch, link);
  Leave(id);
  if (link.credits > 0) line_.push_back(id);  // round robin: back of the line
}

void RoundRobinPolicy::OnSent(StreamId id, const Delivery& batch,
                              const LinkState& link) {
  links_.Sent(id, batch, link);
}

void RoundRobinPolicy::OnAcked(StreamId id, const Delivery& batch,
                               const LinkState& link) {
  links_.Acked(id, batch, link);
}

void RoundRobinPolicy::OnStreamClosed(StreamId id, const absl::Status& why,
                                      int64_t requeued) {
  links_.Closed(id, why, requeued);
  Leave(id);
}

std::optional<StreamId> RoundRobinPolicy::PickStream(
    absl::FunctionRef<bool(StreamId)> eligible) {
  // The first in line that can take a batch now: one waiting for a kind of
  // batch that is not there (generated samples) does not hold up the others,
  // and keeps its place.
  for (StreamId id : line_) {
    if (eligible(id)) return id;
  }
  return std::nullopt;
}

int64_t RoundRobinPolicy::Window(StreamId /*id*/) const { return kNoWindow; }

PARAGAN_REGISTER_DISPATCH_POLICY(RoundRobinPolicy);

}  // namespace paragan
