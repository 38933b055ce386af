// Fuzzes what a worker's DataClient and the data service do with a Batch's
// bytes: protobuf parsing, decompression (zstd, lz4), the relay's widening of
// generated samples, and image and label decoding. Whatever decodes is
// [N, C, H, W] images of finite values in [-1, 1] (dataset pixels and uint8
// samples) and labels of the batch's N images.

#include <cmath>
#include <string>
#include <vector>

#include "dataloader/batch_codec.h"
#include "google/protobuf/stubs/logging.h"
#include "tools/fuzz/fuzz_target.h"

namespace paragan {

std::vector<std::string> FuzzSeeds() {
  std::vector<std::string> seeds;
  const Shape shape = {2, 1, 4, 4};
  std::vector<uint8_t> pixels(32);
  std::vector<float> values(32);
  for (int i = 0; i < 32; ++i) {
    pixels[i] = uint8_t(i * 8);
    values[i] = (i % 7) / 3.5f - 1.0f;
  }
  const std::vector<float> labels = {3, 7};
  for (WireEncoding e : {WireEncoding{v1::NO_COMPRESSION, 0},
                         WireEncoding{v1::ZSTD, 3}, WireEncoding{v1::LZ4, 1}}) {
    v1::Batch b;
    b.set_batch_id(5);
    b.set_epoch(1);
    *b.mutable_images() = EncodePixelChunk("images", shape, pixels.data());
    *b.mutable_labels() = EncodeFloatChunk("labels", {2}, labels.data());
    FuzzCheck(CompressImages(e, &b).ok(), "compress");
    seeds.push_back(b.SerializeAsString());
  }
  for (v1::DType dtype : {v1::FLOAT32, v1::BFLOAT16, v1::UINT8}) {
    v1::Batch b;
    b.set_generated(true);
    *b.mutable_images() = *EncodeSampleImages(shape, values.data(), dtype);
    seeds.push_back(b.SerializeAsString());
  }
  return seeds;
}

}  // namespace paragan

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Protobuf logs every invalid UTF-8 string it parses: noise here.
  static const bool quiet = (google::protobuf::SetLogHandler(nullptr), true);
  (void)quiet;
  using namespace paragan;
  v1::Batch batch;
  if (!batch.ParseFromArray(data, static_cast<int>(size))) return 0;
  // The data service widens a G worker's samples before relaying them.
  if (batch.generated()) {
    absl::StatusOr<v1::TensorChunk> wide =
        WidenImageChunk(batch.images(), "fuzz sample");
    if (wide.ok()) {
      v1::Batch copy = batch;
      *copy.mutable_images() = *wide;
      (void)DecodeImages(copy.images(), "widened sample");
    }
  }
  if (!DecompressImages(&batch, "fuzz batch").ok()) return 0;
  absl::StatusOr<Tensor> images = DecodeImages(batch.images(), "fuzz batch");
  if (!images.ok()) return 0;
  const Shape& shape = images->shape();
  FuzzCheck(shape.size() == 4 && shape[0] >= 1 && shape[1] >= 1 &&
                shape[2] >= 1 && shape[3] >= 1,
            "[N, C, H, W], every dim >= 1");
  if (batch.images().dtype() == v1::UINT8) {
    const float* x = images->data();
    for (int64_t i = 0; i < images->numel(); ++i) {
      FuzzCheck(std::isfinite(x[i]) && x[i] >= -1.0f && x[i] <= 1.0f,
                "uint8 pixels decode into [-1, 1]");
    }
  }
  std::vector<int> labels;
  if (DecodeLabels(batch.labels(), shape[0], 10, "fuzz batch", &labels).ok()) {
    FuzzCheck(labels.empty() || int64_t(labels.size()) == shape[0],
              "a label per image");
    for (int l : labels) FuzzCheck(l >= 0 && l < 10, "labels in range");
  }
  return 0;
}
