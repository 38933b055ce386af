#include "dataloader/batch_codec.h"

#include <cmath>
#include <limits>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/check.h"
#include "common/image_io.h"
#include "common/tensor_codec.h"
#include "dataloader/datasets/dataset.h"

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

// A UINT8 image chunk, with the checks ChunkAssembler makes of the others.
absl::StatusOr<Tensor> DecodePixels(const v1::TensorChunk& chunk,
                                    const std::string& what) {
  Shape shape(chunk.shape().begin(), chunk.shape().end());
  int64_t n = 0;
  PG_RETURN_IF_ERROR(CheckedNumElements(shape, what, &n));
  if (chunk.total_bytes() != n || chunk.offset() != 0 || !chunk.last() ||
      static_cast<int64_t>(chunk.data().size()) != n ||
      chunk.packed_size() != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": a UINT8 image chunk must hold all ", n,
        " pixels of its shape in one chunk (offset 0, last set, total_bytes ",
        n, "); got ", chunk.data().size(), " bytes, total_bytes ",
        chunk.total_bytes(), ", offset ", chunk.offset()));
  }
  Tensor t = Tensor::Host(shape);
  const auto* p = reinterpret_cast<const uint8_t*>(chunk.data().data());
  float* out = t.data();
  for (int64_t i = 0; i < n; ++i) out[i] = PixelToFloat(p[i]);
  return t;
}

// All of `values` as one chunk (offset 0, last set) of `dtype` (FLOAT32 or
// BFLOAT16).
v1::TensorChunk OneChunk(const std::string& name, const Shape& shape,
                         const float* values, v1::DType dtype) {
  v1::TensorChunk header;
  header.set_tensor_name(name);
  for (int64_t d : shape) header.add_shape(d);
  v1::TensorChunk out;
  EmitTensorChunks(header, values, NumElements(shape), dtype,
                   std::numeric_limits<int64_t>::max(),
                   [&out](const v1::TensorChunk& chunk) {
                     out = chunk;
                     return true;
                   });
  return out;
}

}  // namespace

absl::StatusOr<v1::TensorChunk> EncodeSampleImages(const Shape& shape,
                                                   const float* values,
                                                   v1::DType dtype) {
  const int64_t n = NumElements(shape);
  if (dtype == v1::UINT8) {
    std::vector<uint8_t> pixels(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) pixels[i] = PixelFromUnit(values[i]);
    return EncodePixelChunk("images", shape, pixels.data());
  }
  if (dtype != v1::FLOAT32 && dtype != v1::BFLOAT16) {
    return absl::InvalidArgumentError(absl::StrCat(
        "generated images travel as FLOAT32, BFLOAT16 or UINT8, not ",
        v1::DType_Name(dtype)));
  }
  return OneChunk("images", shape, values, dtype);
}

v1::TensorChunk EncodePixelChunk(const std::string& name, const Shape& shape,
                                 const uint8_t* pixels) {
  v1::TensorChunk out;
  out.set_tensor_name(name);
  for (int64_t d : shape) out.add_shape(d);
  const int64_t n = NumElements(shape);
  out.set_dtype(v1::UINT8);
  out.set_total_bytes(n);
  out.set_last(true);
  out.set_data(reinterpret_cast<const char*>(pixels), static_cast<size_t>(n));
  return out;
}

absl::StatusOr<v1::TensorChunk> WidenImageChunk(const v1::TensorChunk& chunk,
                                                const std::string& what) {
  if (chunk.dtype() == v1::FLOAT32) return chunk;
  absl::StatusOr<Tensor> t = DecodeImages(chunk, what);
  if (!t.ok()) return t.status();
  v1::TensorChunk out =
      EncodeFloatChunk(chunk.tensor_name(), t->shape(), t->data());
  return out;
}

absl::Status CompressImages(const WireEncoding& encoding, v1::Batch* batch) {
  if (encoding.codec == v1::NO_COMPRESSION) return absl::OkStatus();
  absl::StatusOr<std::string> packed =
      Compress(encoding, batch->images().data());
  if (!packed.ok()) return packed.status();
  batch->mutable_images()->set_data(std::move(packed).value());
  batch->set_compression(encoding.codec);
  return absl::OkStatus();
}

absl::Status DecompressImages(v1::Batch* batch, const std::string& what) {
  if (batch->compression() == v1::NO_COMPRESSION) return absl::OkStatus();
  // The size to inflate to must follow from the shape and dtype (a corrupt
  // or hostile total_bytes must not make us allocate what it says).
  const v1::TensorChunk& images = batch->images();
  int64_t expected = images.dtype() == v1::UINT8      ? 1
                     : images.dtype() == v1::BFLOAT16 ? 2
                     : images.dtype() == v1::FLOAT32  ? 4
                                                      : 0;
  for (int64_t d : images.shape()) {
    if (d < 0 || (d > 0 && expected > (int64_t{1} << 31) / d)) expected = 0;
    expected *= d;
  }
  if (expected <= 0 || images.total_bytes() != expected) {
    return absl::DataLossError(
        absl::StrCat(what, ": compressed images claim ", images.total_bytes(),
                     " bytes, but their shape and dtype make ", expected,
                     " (at most 2 GiB)"));
  }
  absl::StatusOr<std::string> raw =
      Decompress(batch->compression(), batch->images().data(),
                 batch->images().total_bytes(), what);
  if (!raw.ok()) return raw.status();
  batch->mutable_images()->set_data(std::move(raw).value());
  batch->set_compression(v1::NO_COMPRESSION);
  return absl::OkStatus();
}

v1::TensorChunk EncodeFloatChunk(const std::string& name, const Shape& shape,
                                 const float* values) {
  return OneChunk(name, shape, values, v1::FLOAT32);
}

absl::StatusOr<Tensor> DecodeImages(const v1::TensorChunk& chunk,
                                    const std::string& what) {
  if (chunk.shape_size() != 4 || chunk.shape(0) < 1 || chunk.shape(1) < 1 ||
      chunk.shape(2) < 1 || chunk.shape(3) < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": images must have shape [N, C, H, W], every dim >= 1, got [",
        absl::StrJoin(chunk.shape(), ", "), "]"));
  }
  if (chunk.dtype() == v1::UINT8) return DecodePixels(chunk, what);
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
