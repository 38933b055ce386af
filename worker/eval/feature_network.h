#ifndef PARAGAN_WORKER_EVAL_FEATURE_NETWORK_H_
#define PARAGAN_WORKER_EVAL_FEATURE_NETWORK_H_

// The seam between the metrics (metrics.h) and the networks whose activations
// they are computed over. Each network is one class implementing
// FeatureNetwork plus one entry in feature_networks.cc's table; paragan_eval's
// --network picks one by name, and that name is printed in every number
// ("FID(fmnist-cnn)") so numbers from different networks are never confused.

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/tensor.h"

namespace paragan::eval {

struct FeatureOutputs {
  Tensor features;  // host [N, feature_dim()]
  Tensor logits;    // host [N, classes] (IS)
};

class FeatureNetwork {
 public:
  virtual ~FeatureNetwork() = default;
  // Printed beside every metric, e.g. "fmnist-cnn", "inception-v3".
  virtual std::string name() const = 0;
  // FeatureStatsInfo::network of statistics over these features (names the
  // layer and weights version, e.g. "fmnist-cnn.v1.fc1"); reference stats of
  // another network are refused.
  virtual std::string stats_network() const = 0;
  virtual int feature_dim() const = 0;
  // FeatureStatsInfo::resolution: the image side the network itself sees
  // (after any resize it does), so stats at another side are refused.
  virtual int resolution() const = 0;
  // OK when host images of this shape ([N, C, H, W], values in [-1, 1]) can
  // be scored; otherwise says what the network accepts.
  virtual absl::Status CheckInput(const Shape& shape) const = 0;
  // Features and logits of host images [N, C, H, W] in [-1, 1] (checked:
  // shape via CheckInput, values finite and within [-1, 1] up to 1e-3), in
  // batches of at most `batch_size`. Inference only.
  virtual absl::StatusOr<FeatureOutputs> Evaluate(const Tensor& images,
                                                  int batch_size) = 0;
};

// Checks values: finite and within [-1, 1] up to 1e-3 (names the first bad
// image and pixel). Shared by the networks' Evaluate.
absl::Status CheckUnitRange(const Tensor& images);

}  // namespace paragan::eval

#endif  // PARAGAN_WORKER_EVAL_FEATURE_NETWORK_H_
