#ifndef PARAGAN_WORKER_EVAL_FMNIST_CNN_WEIGHTS_H_
#define PARAGAN_WORKER_EVAL_FMNIST_CNN_WEIGHTS_H_

#include "absl/strings/string_view.h"

namespace paragan::eval {

// The bytes of worker/eval/fmnist_cnn.pgt, compiled in (a genrule turns the
// committed file into an array), so paragan_eval and paragan_train find
// fmnist-cnn's weights wherever they run.
absl::string_view EmbeddedFmnistCnnWeights();

}  // namespace paragan::eval

#endif  // PARAGAN_WORKER_EVAL_FMNIST_CNN_WEIGHTS_H_
