#include "dataloader/byte_budget.h"

#include <algorithm>
#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace paragan {

absl::StatusOr<ByteBudget> ByteBudget::Create(double bytes_per_second,
                                              absl::Duration burst) {
  if (!(bytes_per_second > 0) || !std::isfinite(bytes_per_second)) {
    return absl::InvalidArgumentError(
        absl::StrCat("a byte budget needs a rate > 0 bytes per second, got ",
                     bytes_per_second));
  }
  if (burst < absl::ZeroDuration() || burst == absl::InfiniteDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a byte budget's burst must be >= 0 seconds and finite, got ",
        absl::FormatDuration(burst)));
  }
  return ByteBudget(bytes_per_second, burst);
}

ByteBudget::ByteBudget(ByteBudget&& other) noexcept
    : bytes_per_second_(other.bytes_per_second_), burst_(other.burst_) {
  std::lock_guard<std::mutex> lock(other.mu_);
  next_free_ = other.next_free_;
}

absl::Duration ByteBudget::Reserve(int64_t bytes, absl::Time now) {
  const absl::Duration cost = absl::Seconds(
      static_cast<double>(std::max<int64_t>(bytes, 0)) / bytes_per_second_);
  std::lock_guard<std::mutex> lock(mu_);
  // An idle budget banks no more than one burst: the message may start up to
  // `burst` before the wire it reserved is reached.
  next_free_ = std::max(next_free_, now) + cost;
  return std::max(absl::ZeroDuration(), next_free_ - burst_ - now);
}

}  // namespace paragan
