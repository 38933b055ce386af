#ifndef PARAGAN_DATALOADER_BYTE_BUDGET_H_
#define PARAGAN_DATALOADER_BYTE_BUDGET_H_

// ByteBudget: a cap on the data bytes the data service puts on the wire per
// second, so image traffic cannot starve the gradient pushes and weight pulls
// that share a host's links (issue 14). Without a cap every batch stream is
// one more TCP flow competing for a bottleneck; N streams take about
// N/(N+1) of it from one gradient flow.
//
// The rule is the generic cell rate algorithm (a token bucket kept as one
// "theoretical arrival time"): each message reserves bytes / rate seconds of
// the wire after the previous reservation, and may start `burst` earlier
// than its reservation, so an idle budget lets one burst through at once and
// the long-run rate never exceeds `bytes_per_second`. A message larger than
// the burst waits only for its excess. Reservations are first come, first
// served across the threads that share a budget.
//
// Thread-safe. Time is passed in, so the rule is testable without sleeping.

#include <cstdint>
#include <mutex>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace paragan {

class ByteBudget {
 public:
  // `bytes_per_second` > 0; `burst` >= 0 seconds of it.
  static absl::StatusOr<ByteBudget> Create(double bytes_per_second,
                                           absl::Duration burst);
  ByteBudget(ByteBudget&& other) noexcept;

  // Reserves `bytes` (>= 0) at `now` and returns how long the caller must
  // hold them back (zero: send now). A reservation is never returned: a
  // caller that gives up sends nothing and the budget stays spent, which
  // errs toward the cap.
  absl::Duration Reserve(int64_t bytes, absl::Time now);

 private:
  ByteBudget(double bytes_per_second, absl::Duration burst)
      : bytes_per_second_(bytes_per_second), burst_(burst) {}

  const double bytes_per_second_;
  const absl::Duration burst_;
  std::mutex mu_;
  // When the wire reserved so far is used up at the budget's rate.
  absl::Time next_free_ = absl::InfinitePast();
};

}  // namespace paragan

#endif  // PARAGAN_DATALOADER_BYTE_BUDGET_H_
