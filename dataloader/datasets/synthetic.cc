// Procedural dataset for tests and benchmarks without files.

#include <algorithm>
#include <cmath>
#include <memory>

#include "common/check.h"
#include "common/rng.h"
#include "dataloader/datasets/dataset.h"

namespace paragan {
namespace {

constexpr double kPi = 3.14159265358979323846;

class Synthetic : public Dataset {
 public:
  Synthetic(int64_t size, int channels, int resolution, int num_classes,
            uint64_t seed)
      : seed_(seed) {
    info_.name = "synthetic";
    info_.channels = channels;
    info_.height = resolution;
    info_.width = resolution;
    info_.num_classes = num_classes;
    info_.size = size;
  }

  const DatasetInfo& info() const override { return info_; }

  void Get(int64_t index, float* image, int* label) const override {
    PG_CHECK(index >= 0 && index < info_.size)
        << "index " << index << " out of range [0, " << info_.size << ")";
    const int k = static_cast<int>(index % info_.num_classes);
    const int res = info_.height;
    SplitMix64 rng(HashCombine(seed_, static_cast<uint64_t>(index)));
    auto jitter = [&rng](double amplitude) {
      return (rng.Uniform() * 2.0 - 1.0) * amplitude;
    };
    // Class k: blob on a circle at angle theta, elongated along phi.
    const double theta = 2.0 * kPi * k / info_.num_classes;
    const double phi = kPi * k / info_.num_classes + jitter(0.05);
    const double cx = (0.5 + 0.25 * std::cos(theta)) * res + jitter(0.04 * res);
    const double cy = (0.5 + 0.25 * std::sin(theta)) * res + jitter(0.04 * res);
    const double major = std::max(0.5, 0.18 * res);
    const double minor = std::max(0.5, 0.07 * res);
    const double cos_phi = std::cos(phi);
    const double sin_phi = std::sin(phi);
    const int64_t plane = int64_t{res} * res;
    for (int c = 0; c < info_.channels; ++c) {
      const double weight =
          info_.channels == 1
              ? 1.0
              : 0.6 + 0.4 * std::cos(theta + 2.0 * kPi * c / 3.0);
      for (int y = 0; y < res; ++y) {
        for (int x = 0; x < res; ++x) {
          const double dx = x + 0.5 - cx;
          const double dy = y + 0.5 - cy;
          const double u = (dx * cos_phi + dy * sin_phi) / major;
          const double v = (-dx * sin_phi + dy * cos_phi) / minor;
          const double g = std::exp(-0.5 * (u * u + v * v));
          double value = -1.0 + 2.0 * weight * g + jitter(0.04);
          value = std::min(1.0, std::max(-1.0, value));
          image[c * plane + int64_t{y} * res + x] = static_cast<float>(value);
        }
      }
    }
    if (label != nullptr) *label = k;
  }

 private:
  DatasetInfo info_;
  uint64_t seed_;
};

}  // namespace

std::unique_ptr<Dataset> MakeSyntheticDataset(int64_t size, int channels,
                                              int resolution, int num_classes,
                                              uint64_t seed) {
  PG_CHECK(size > 0 && (channels == 1 || channels == 3) && resolution > 0 &&
           num_classes > 0)
      << "size=" << size << " channels=" << channels
      << " resolution=" << resolution << " num_classes=" << num_classes;
  return std::make_unique<Synthetic>(size, channels, resolution, num_classes,
                                     seed);
}

}  // namespace paragan
