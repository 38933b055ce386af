#ifndef PARAGAN_WORKER_EVAL_FEATURE_NETWORKS_H_
#define PARAGAN_WORKER_EVAL_FEATURE_NETWORKS_H_

// The feature networks paragan_eval can score with, by name. Adding one: a
// FeatureNetwork class and one row in feature_networks.cc's table.

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/engine/backend.h"
#include "worker/eval/feature_network.h"

namespace paragan::eval {

// The default_weights of a network whose weights are compiled into the
// binary (it runs from any directory, and in a container without files).
inline constexpr char kBuiltinWeights[] = "<built-in>";

struct FeatureNetworkEntry {
  const char* name;
  const char* description;
  // Weights used when none are given ("" = the user must give them).
  const char* default_weights;
  absl::StatusOr<std::unique_ptr<FeatureNetwork>> (*open)(
      const std::string& weights, Backend* backend);
  // Where weights come from, for the error when none are given (networks
  // without default weights).
  const char* weights_help = "";
};

const std::vector<FeatureNetworkEntry>& FeatureNetworkTable();

// "fmnist-cnn, inception-v3"
std::string FeatureNetworkNames();

// The network `name` with `weights` (empty: its default weights) on
// `backend`, which must outlive it. Unknown names and missing weights are
// refused, listing the networks / saying where weights come from.
absl::StatusOr<std::unique_ptr<FeatureNetwork>> OpenFeatureNetwork(
    const std::string& name, const std::string& weights, Backend* backend);

}  // namespace paragan::eval

#endif  // PARAGAN_WORKER_EVAL_FEATURE_NETWORKS_H_
