#ifndef PARAGAN_WORKER_EVAL_FMNIST_CNN_H_
#define PARAGAN_WORKER_EVAL_FMNIST_CNN_H_

// "fmnist-cnn": the project's own in-domain feature network for evaluating
// GANs on Fashion-MNIST (FID/KID over its 128-d features, IS over its 10
// logits), built from the engine's layers with explicit forward/backward and
// trained by paragan_train_fmnist_cnn (train_fmnist_cnn_main.cc).
//
// Input: [N, 1, 32, 32] (or [N, 32, 32]) float32 in [-1, 1], the GAN's output
// range and what OpenFashionMnist yields (28x28 padded by 2 with -1).
//   conv3x3(1->32, pad 1) + ReLU, avgpool 2x           -> 32 x 16 x 16
//   conv3x3(32->64, pad 1) + ReLU, avgpool 2x          -> 64 x 8 x 8
//   conv3x3(64->128, pad 1) + ReLU, avgpool 2x         -> 128 x 4 x 4
//   flatten, linear 2048 -> 128 + ReLU                 -> 128  (FEATURES)
//   linear 128 -> 10                                   -> logits
// (10M multiply-adds per image; 0.4M parameters.)
// No batch norm, so features do not depend on the batch they are computed in.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/tensor_io.h"
#include "common/tensor.h"
#include "worker/engine/backend.h"
#include "worker/engine/layers.h"
#include "worker/engine/params.h"
#include "worker/eval/feature_network.h"

namespace paragan::eval {

inline constexpr char kFmnistCnnName[] = "fmnist-cnn";
inline constexpr int64_t kFmnistCnnVersion = 1;
inline constexpr int kFmnistCnnFeatureDim = 128;
inline constexpr int kFmnistCnnClasses = 10;
inline constexpr int kFmnistCnnResolution = 32;
// FeatureStatsInfo::network for statistics of these features.
inline constexpr char kFmnistCnnFeatureNetwork[] = "fmnist-cnn.v1.fc1";

// Training facts stored beside the weights (informational; -1 = unknown).
struct FmnistCnnInfo {
  double test_accuracy = -1;  // on the 10k Fashion-MNIST test images
  int64_t epochs = -1;
  int64_t steps = -1;
  int64_t seed = -1;
};

class FmnistCnn : public FeatureNetwork {
 public:
  explicit FmnistCnn(Backend* backend);
  FmnistCnn(const FmnistCnn&) = delete;
  FmnistCnn& operator=(const FmnistCnn&) = delete;

  // PyTorch-default init (U(+-1/sqrt(fan_in)) for weights and biases),
  // deterministic in `seed`.
  void Init(uint64_t seed);

  // Training-style pass on backend tensors: x [N, 1, 32, 32] -> logits
  // [N, 10]; caches what Backward needs. features() is the 128-d
  // penultimate activation (after its ReLU) of this pass.
  Tensor Forward(const Tensor& x, const Mode& mode);
  const Tensor& features() const { return features_; }
  // dlogits [N, 10] -> dx (empty when Forward ran without mode.input_grads).
  // Parameter gradients accumulate into params()->params()[i].grad.
  Tensor Backward(const Tensor& dlogits);

  // FeatureNetwork. Host images [N, 1, 32, 32] (or [N, 32, 32]).
  std::string name() const override { return kFmnistCnnName; }
  std::string stats_network() const override {
    return kFmnistCnnFeatureNetwork;
  }
  int feature_dim() const override { return kFmnistCnnFeatureDim; }
  int resolution() const override { return kFmnistCnnResolution; }
  absl::Status CheckInput(const Shape& shape) const override;
  absl::StatusOr<FeatureOutputs> Evaluate(const Tensor& images,
                                          int batch_size) override;
  absl::StatusOr<Tensor> Features(const Tensor& images, int batch_size = 500);
  absl::StatusOr<Tensor> Logits(const Tensor& images, int batch_size = 500);

  // Weights as a PGTENS01 file: every parameter under its name, plus
  // "meta/network" (uint8 text "fmnist-cnn"), "meta/version" (int64),
  // "meta/test_accuracy" (float32), "meta/epochs", "meta/steps",
  // "meta/seed" (int64).
  absl::Status Save(const std::string& path, const FmnistCnnInfo& info);
  // Refuses a file of another network or version, a missing, extra or
  // misshapen tensor, or non-finite weights (the error names which); the
  // weights are unchanged then.
  absl::StatusOr<FmnistCnnInfo> Load(const std::string& path);
  // The same from a file's bytes (`source` names them in errors).
  absl::StatusOr<FmnistCnnInfo> LoadBytes(absl::string_view bytes,
                                          const std::string& source);

  ParamStore* params() { return &store_; }
  Backend* backend() const { return b_; }

 private:
  absl::StatusOr<FmnistCnnInfo> LoadArrays(
      const std::vector<NamedArray>& arrays, const std::string& path);
  Backend* b_;
  ParamStore store_;
  Conv2d conv1_, conv2_, conv3_;
  ActivationLayer relu1_, relu2_, relu3_;
  ActivationLayer relu4_;
  AvgPool2x pool1_, pool2_, pool3_;
  Linear fc1_, fc2_;
  Tensor features_;
};

// Mean softmax cross-entropy of logits [n, classes] (row-major) against
// labels in [0, classes), in float64 (log-sum-exp); writes dLoss/dlogits
// (float32, same layout) when dlogits is non-null. Labels are checked.
double SoftmaxCrossEntropy(const std::vector<float>& logits, int classes,
                           const std::vector<int>& labels,
                           std::vector<float>* dlogits);

// Index of the largest logit per row.
std::vector<int> Argmax(const Tensor& logits);

}  // namespace paragan::eval

#endif  // PARAGAN_WORKER_EVAL_FMNIST_CNN_H_
