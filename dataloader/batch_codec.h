#ifndef PARAGAN_DATALOADER_BATCH_CODEC_H_
#define PARAGAN_DATALOADER_BATCH_CODEC_H_

// Batches on the wire: images and labels as single TensorChunks of raw
// little-endian FLOAT32 bytes (common/tensor_codec.h does the encoding and
// the validated decoding).

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/tensor.h"
#include "proto/paragan.pb.h"

namespace paragan {

// One FLOAT32 chunk (offset 0, last set) holding all of `values`.
v1::TensorChunk EncodeFloatChunk(const std::string& name, const Shape& shape,
                                 const float* values);

// Images [N, C, H, W] (N >= 1) from one complete chunk (FLOAT32 or
// BFLOAT16), as a host tensor. `what` names the field in errors.
absl::StatusOr<Tensor> DecodeImages(const v1::TensorChunk& chunk,
                                    const std::string& what);

// Labels of `n` images: an empty chunk (no shape, no data) gives no labels;
// otherwise shape [n] of whole numbers in [0, num_classes) (num_classes <= 0:
// any non-negative whole number).
absl::Status DecodeLabels(const v1::TensorChunk& chunk, int64_t n,
                          int num_classes, const std::string& what,
                          std::vector<int>* labels);

}  // namespace paragan

#endif  // PARAGAN_DATALOADER_BATCH_CODEC_H_
