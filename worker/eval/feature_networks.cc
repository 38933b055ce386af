#include "worker/eval/feature_networks.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "worker/eval/fmnist_cnn.h"
#include "worker/eval/fmnist_cnn_weights.h"
#include "worker/eval/inception_v3.h"

namespace paragan::eval {
namespace {

absl::StatusOr<std::unique_ptr<FeatureNetwork>> OpenFmnistCnn(
    const std::string& weights, Backend* backend) {
  auto net = std::make_unique<FmnistCnn>(backend);
  absl::StatusOr<FmnistCnnInfo> info =
      weights == kBuiltinWeights
          ? net->LoadBytes(EmbeddedFmnistCnnWeights(),
                           "the built-in fmnist-cnn weights")
          : net->Load(weights);
  if (!info.ok()) return info.status();
  return std::unique_ptr<FeatureNetwork>(std::move(net));
}

absl::StatusOr<std::unique_ptr<FeatureNetwork>> OpenInceptionV3(
    const std::string& weights, Backend* backend) {
  auto net = std::make_unique<InceptionV3>(backend);
  absl::Status s = net->Load(weights);
  if (!s.ok()) return s;
  return std::unique_ptr<FeatureNetwork>(std::move(net));
}

}  // namespace

const std::vector<FeatureNetworkEntry>& FeatureNetworkTable() {
  static const auto* table = new std::vector<FeatureNetworkEntry>{
      {kFmnistCnnName,
       "the project's Fashion-MNIST classifier (128-d features, 1x32x32 "
       "input; paragan_train_fmnist_cnn)",
       kBuiltinWeights, &OpenFmnistCnn},
      {kInceptionV3Name,
       "pytorch-fid's FID InceptionV3 (2048-d pool3 features, 1008 logits; "
       "any image size, resized to 299x299)",
       "", &OpenInceptionV3, kInceptionV3WeightsHelp},
  };
  return *table;
}

std::string FeatureNetworkNames() {
  std::vector<std::string> names;
  for (const FeatureNetworkEntry& e : FeatureNetworkTable())
    names.push_back(e.name);
  return absl::StrJoin(names, ", ");
}

absl::StatusOr<std::unique_ptr<FeatureNetwork>> OpenFeatureNetwork(
    const std::string& name, const std::string& weights, Backend* backend) {
  for (const FeatureNetworkEntry& e : FeatureNetworkTable()) {
    if (name != e.name) continue;
    const std::string path = weights.empty() ? e.default_weights : weights;
    if (path.empty())
      return absl::InvalidArgumentError(absl::StrCat(
          "feature network ", name, " needs --weights=<file> (", e.description,
          ")", e.weights_help[0] != '\0' ? ": " : "", e.weights_help));
    return e.open(path, backend);
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown feature network '", name, "'; known: ", FeatureNetworkNames()));
}

}  // namespace paragan::eval
