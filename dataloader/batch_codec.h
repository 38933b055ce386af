#ifndef PARAGAN_DATALOADER_BATCH_CODEC_H_
#define PARAGAN_DATALOADER_BATCH_CODEC_H_

// Batches on the wire: images and labels as single TensorChunks. Labels
// and float images are raw little-endian FLOAT32 (or BFLOAT16) bytes
// (common/tensor_codec.h does the encoding and the validated decoding);
// images may also travel as UINT8 pixels (p / 127.5 - 1, a quarter of the
// bytes) and with images.data compressed (Batch.compression).

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/tensor.h"
#include "dataloader/wire_compression.h"
#include "proto/paragan.pb.h"

namespace paragan {

// One FLOAT32 chunk (offset 0, last set) holding all of `values`.
v1::TensorChunk EncodeFloatChunk(const std::string& name, const Shape& shape,
                                 const float* values);

// One UINT8 chunk (offset 0, last set) of `shape`'s pixels.
v1::TensorChunk EncodePixelChunk(const std::string& name, const Shape& shape,
                                 const uint8_t* pixels);
// A G worker's generated images [N, C, H, W] as one chunk of `dtype`:
// FLOAT32 (exact), BFLOAT16 (half the bytes, 8 bits of mantissa) or UINT8
// (a quarter: PixelFromUnit, the nearest of the 256 levels real images
// have, as sample PNGs are written). Another dtype: InvalidArgument.
absl::StatusOr<v1::TensorChunk> EncodeSampleImages(const Shape& shape,
                                                   const float* values,
                                                   v1::DType dtype);

// A FLOAT32 chunk (the form every client decodes) of an image chunk of any
// wire dtype; `what` names it in errors.
absl::StatusOr<v1::TensorChunk> WidenImageChunk(const v1::TensorChunk& chunk,
                                                const std::string& what);

// Compresses batch->images().data() with `encoding` and sets
// batch->compression (NO_COMPRESSION: leaves the batch as it is).
absl::Status CompressImages(const WireEncoding& encoding, v1::Batch* batch);
// Decompresses batch->images().data() in place (to images.total_bytes) and
// clears batch->compression; corrupt data is DataLoss naming `what`.
absl::Status DecompressImages(v1::Batch* batch, const std::string& what);

// Images [N, C, H, W] (N >= 1) from one complete chunk (FLOAT32, BFLOAT16 or
// UINT8), as a float32 host tensor. `what` names the field in errors.
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
