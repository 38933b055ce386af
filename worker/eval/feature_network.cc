#include "worker/eval/feature_network.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace paragan::eval {

absl::Status CheckUnitRange(const Tensor& images) {
  constexpr float kSlack = 1e-3f;
  const int64_t n = images.numel();
  const int64_t per_image = images.ndim() > 0 && images.dim(0) > 0
                                ? n / images.dim(0)
                                : 1;
  const float* p = images.data();
  for (int64_t i = 0; i < n; ++i) {
    const float v = p[i];
    if (!std::isfinite(v) || v < -1.0f - kSlack || v > 1.0f + kSlack)
      return absl::InvalidArgumentError(absl::StrCat(
          "image ", i / per_image, " value ", i % per_image, " is ", v,
          ": images must be finite and in [-1, 1] (the GAN's tanh range)"));
  }
  return absl::OkStatus();
}

}  // namespace paragan::eval
