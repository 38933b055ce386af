#ifndef PARAGAN_COMMON_NETWORK_TENSORS_H_
#define PARAGAN_COMMON_NETWORK_TENSORS_H_

// A network's tensors as the parameter servers hold them and workers, tools
// and checkpoints exchange them: named, canonical float32 (NCHW, OIHW), C
// order, each either trainable (a parameter: gradients, Adam state) or a
// buffer (e.g. batch-norm statistics: values only).

#include <string>
#include <vector>

#include "common/tensor.h"

namespace paragan {

struct TableTensorSpec {
  std::string name;
  Shape shape;
  bool trainable = true;  // false: a buffer (no gradient, no Adam state)
};

struct TableTensor {
  TableTensorSpec spec;
  std::vector<float> values;  // prod(shape) floats, C order
};

}  // namespace paragan

#endif  // PARAGAN_COMMON_NETWORK_TENSORS_H_
