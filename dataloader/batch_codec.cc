#include "dataloader/batch_codec.h"

#include <cmath>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/tensor_codec.h"

namespace paragan {
namespace {

// Reassembles one tensor sent as a single chunk, with every header check of
// ChunkAssembler (dtype, total_bytes, offset, last, size).
absl::StatusOr<ReceivedTensor> DecodeOne(const v1::TensorChunk& chunk,
                                         const std::string& what) {
  ChunkAssembler assembler(ChunkAssembler::Options{});
  absl::Status st;
  if (chunk.tensor_name().empty()) {
    // The proto leaves the name unused in batches; the assembler keys by it.
    v1::TensorChunk named = chunk;
    named.set_tensor_name(what);
    st = assembler.Add(named);
  } else {
    st = assembler.Add(chunk);
  }
  if (st.ok()) st = assembler.Finish();
  if (!st.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", st.message()));
  }
  return std::move(assembler.tensors().begin()->second);
}

}  // namespace

v1::TensorChunk EncodeFloatChunk(const std::string& name, const Shape& shape,
                                 const float* values) {
  v1::TensorChunk header;
  header.set_tensor_name(name);
  for (int64_t d : shape) header.add_shape(d);
  v1::TensorChunk out;
  EmitTensorChunks(header, values, NumElements(shape), v1::FLOAT32,
                   std::numeric_limits<int64_t>::max(),
                   [&out](const v1::TensorChunk& chunk) {
                     out = chunk;
                     return true;
                   });
  return out;
}

absl::StatusOr<Tensor> DecodeImages(const v1::TensorChunk& chunk,
                                    const std::string& what) {
  if (chunk.shape_size() != 4 || chunk.shape(0) < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": images must have shape [N >= 1, C, H, W], got rank ",
        chunk.shape_size()));
  }
  absl::StatusOr<ReceivedTensor> t = DecodeOne(chunk, what);
  if (!t.ok()) return t.status();
  return Tensor::HostFrom(t->shape, t->values);
}

absl::Status DecodeLabels(const v1::TensorChunk& chunk, int64_t n,
                          int num_classes, const std::string& what,
                          std::vector<int>* labels) {
  labels->clear();
  if (chunk.shape_size() == 0 && chunk.data().empty() &&
      chunk.total_bytes() == 0) {
    return absl::OkStatus();
  }
  if (chunk.shape_size() != 1 || chunk.shape(0) != n) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": labels must have shape [", n, "]"));
  }
  absl::StatusOr<ReceivedTensor> t = DecodeOne(chunk, what);
  if (!t.ok()) return t.status();
  labels->reserve(static_cast<size_t>(n));
  for (float v : t->values) {
    if (!(v >= 0) || v != std::floor(v) || v > 1e9f ||
        (num_classes > 0 && v >= static_cast<float>(num_classes))) {
      labels->clear();
      return absl::InvalidArgumentError(absl::StrCat(
          what, ": label ", v, " is not a class in [0, ", num_classes, ")"));
    }
    labels->push_back(static_cast<int>(v));
  }
  return absl::OkStatus();
}

}  // namespace paragan
