#ifndef PARAGAN_DATALOADER_ROUND_ROBIN_POLICY_H_
#define PARAGAN_DATALOADER_ROUND_ROBIN_POLICY_H_

// round_robin: the data service's order before the DispatchPolicy seam, and
// its default. Streams holding credit stand in a line in the order they got
// it; the first in line that can take a batch gets the next one and goes to
// the back if it still holds credit (leaves the line if not).
//
// Credits: no window of its own (Window() is kNoWindow). The window of 4 is
// the client's (DataClient::Options::credits, --credits of the fetch tool):
// the client grants that many up front and one per batch it acks, and the
// service sends one batch per credit. Capping it here as well would change
// clients that ask for more (raw streams, tests) for no gain; what a server
// side cap needs is the seam, which Window() is. The per-link observations
// are recorded in links() (they change no decision).

#include <cstdint>
#include <deque>
#include <optional>
#include <vector>

#include "dataloader/dispatch_policy.h"
#include "dataloader/link_stats.h"

namespace paragan {

class RoundRobinPolicy final : public DispatchPolicy {
 public:
  static constexpr char kName[] = "round_robin";

  explicit RoundRobinPolicy(const DispatchPolicyConfig& config = {});

  absl::string_view name() const override { return kName; }

  void OnStreamOpened(const StreamInfo& stream) override;
  void OnCredits(StreamId id, int64_t granted, absl::Time now,
                 const LinkState& link) override;
  void OnDealt(StreamId id, const Delivery& batch,
               const LinkState& link) override;
  void OnSent(StreamId id, const Delivery& batch,
              const LinkState& link) override;
  void OnAcked(StreamId id, const Delivery& batch,
               const LinkState& link) override;
  void OnStreamClosed(StreamId id, const absl::Status& why,
                      int64_t requeued) override;

  std::optional<StreamId> PickStream(
      absl::FunctionRef<bool(StreamId)> eligible) override;
  int64_t Window(StreamId id) const override;

  // The line, next first (for tests and logs).
  std::vector<StreamId> line() const {
    return std::vector<StreamId>(line_.begin(), line_.end());
  }
  const LinkTable& links() const { return links_; }

 private:
  void Leave(StreamId id);

  std::deque<StreamId> line_;  // streams holding credit, in order of grant
  LinkTable links_;
};

}  // namespace paragan

#endif  // PARAGAN_DATALOADER_ROUND_ROBIN_POLICY_H_
