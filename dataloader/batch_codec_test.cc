#include "dataloader/batch_codec.h"

#include <cstdint>
#include <vector>

#include "absl/strings/match.h"
#include "dataloader/datasets/dataset.h"
#include "gtest/gtest.h"

namespace paragan {
namespace {

v1::Batch PixelBatch(std::vector<uint8_t>* pixels) {
  const Shape shape = {2, 1, 4, 4};
  pixels->resize(32);
  for (size_t i = 0; i < pixels->size(); ++i) {
    (*pixels)[i] = static_cast<uint8_t>(i < 16 ? 0 : i * 7);  // some runs
  }
  v1::Batch b;
  *b.mutable_images() = EncodePixelChunk("images", shape, pixels->data());
  return b;
}

TEST(BatchCodecTest, PixelsDecodeToTheDatasetsFloats) {
  std::vector<uint8_t> pixels;
  v1::Batch b = PixelBatch(&pixels);
  EXPECT_EQ(b.images().data().size(), 32u);
  absl::StatusOr<Tensor> t = DecodeImages(b.images(), "test");
  ASSERT_TRUE(t.ok()) << t.status();
  for (int i = 0; i < 32; ++i) {
    EXPECT_EQ(t->data()[i], PixelToFloat(pixels[i])) << i;
  }
  // Widened for a FLOAT32 client: the same floats.
  absl::StatusOr<v1::TensorChunk> wide = WidenImageChunk(b.images(), "test");
  ASSERT_TRUE(wide.ok()) << wide.status();
  EXPECT_EQ(wide->dtype(), v1::FLOAT32);
  absl::StatusOr<Tensor> w = DecodeImages(*wide, "test");
  ASSERT_TRUE(w.ok());
  for (int i = 0; i < 32; ++i) EXPECT_EQ(w->data()[i], t->data()[i]);
}

// Found by //dataloader:batch_codec_fuzzer (UBSan: memcpy from a null
// pointer for an image chunk with no elements).
TEST(BatchCodecTest, ImagesWithAnEmptyDimAreRefused) {
  for (v1::DType dtype : {v1::FLOAT32, v1::UINT8}) {
    const float none = 0;
    const uint8_t no_pixel = 0;
    v1::TensorChunk c =
        dtype == v1::UINT8 ? EncodePixelChunk("images", {2, 1, 0, 4}, &no_pixel)
                           : EncodeFloatChunk("images", {2, 0, 4, 4}, &none);
    absl::StatusOr<Tensor> t = DecodeImages(c, "batch 7");
    EXPECT_TRUE(absl::IsInvalidArgument(t.status())) << t.status();
    EXPECT_NE(t.status().message().find("every dim >= 1"), std::string::npos)
        << t.status();
  }
}

TEST(BatchCodecTest, GeneratedImagesInEachDtype) {
  const std::vector<float> values = {-1.5f,  -1.0f, -0.3f,    0.0f,
                                     0.004f, 0.5f,  0.99999f, 2.0f};
  const Shape shape = {1, 1, 2, 4};
  absl::StatusOr<v1::TensorChunk> f =
      EncodeSampleImages(shape, values.data(), v1::FLOAT32);
  ASSERT_TRUE(f.ok());
  absl::StatusOr<Tensor> t = DecodeImages(*f, "f");
  ASSERT_TRUE(t.ok());
  for (size_t i = 0; i < values.size(); ++i) EXPECT_EQ(t->data()[i], values[i]);

  absl::StatusOr<v1::TensorChunk> b =
      EncodeSampleImages(shape, values.data(), v1::BFLOAT16);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->data().size(), 16u);
  t = DecodeImages(*b, "b");
  ASSERT_TRUE(t.ok());
  for (size_t i = 0; i < values.size(); ++i) {
    EXPECT_NEAR(t->data()[i], values[i], std::fabs(values[i]) / 256) << i;
  }

  absl::StatusOr<v1::TensorChunk> u =
      EncodeSampleImages(shape, values.data(), v1::UINT8);
  ASSERT_TRUE(u.ok());
  const std::string& p = u->data();
  ASSERT_EQ(p.size(), 8u);
  // Clamped to [-1, 1], nearest level: (x + 1) * 127.5 rounded.
  const std::vector<int> levels = {0, 0, 89, 128, 128, 191, 255, 255};
  for (size_t i = 0; i < levels.size(); ++i) {
    EXPECT_EQ(static_cast<uint8_t>(p[i]), levels[i]) << i;
  }
  EXPECT_EQ(EncodeSampleImages(shape, values.data(), static_cast<v1::DType>(7))
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(BatchCodecTest, EveryCodecRoundTripsExactly) {
  for (WireEncoding e : {WireEncoding{v1::LZ4, 1}, WireEncoding{v1::ZSTD, 1},
                         WireEncoding{v1::ZSTD, 7}}) {
    std::vector<uint8_t> pixels;
    v1::Batch b = PixelBatch(&pixels);
    const std::string raw = b.images().data();
    ASSERT_TRUE(CompressImages(e, &b).ok()) << WireEncodingName(e);
    EXPECT_EQ(b.compression(), e.codec);
    ASSERT_TRUE(DecompressImages(&b, "test").ok()) << WireEncodingName(e);
    EXPECT_EQ(b.compression(), v1::NO_COMPRESSION);
    EXPECT_EQ(b.images().data(), raw) << WireEncodingName(e);
  }
}

TEST(BatchCodecTest, CorruptCompressedDataIsDataLoss) {
  std::vector<uint8_t> pixels;
  v1::Batch b = PixelBatch(&pixels);
  ASSERT_TRUE(CompressImages({v1::ZSTD, 3}, &b).ok());
  v1::Batch truncated = b;
  truncated.mutable_images()->mutable_data()->resize(b.images().data().size() /
                                                     2);
  absl::Status st = DecompressImages(&truncated, "batch 7");
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss) << st;
  EXPECT_TRUE(absl::StrContains(st.message(), "batch 7")) << st;
  // A size that does not follow from the shape is refused before inflating.
  v1::Batch huge = b;
  huge.mutable_images()->set_total_bytes(int64_t{1} << 40);
  st = DecompressImages(&huge, "batch 8");
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss) << st;
  EXPECT_TRUE(absl::StrContains(st.message(), "shape and dtype")) << st;
}

}  // namespace
}  // namespace paragan
