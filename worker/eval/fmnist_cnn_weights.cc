#include "worker/eval/fmnist_cnn_weights.h"

#include <cstddef>

namespace paragan::eval {

// Defined in the generated fmnist_cnn_weights_data.cc.
extern const unsigned char kFmnistCnnWeightsData[];
extern const size_t kFmnistCnnWeightsSize;

absl::string_view EmbeddedFmnistCnnWeights() {
  return absl::string_view(reinterpret_cast<const char*>(kFmnistCnnWeightsData),
                           kFmnistCnnWeightsSize);
}

}  // namespace paragan::eval
