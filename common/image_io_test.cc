#include "common/image_io.h"

#include <png.h>
#include <sys/stat.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "common/tensor_io.h"
#include "gtest/gtest.h"

namespace paragan {
namespace {

std::string TmpPath(const std::string& name) {
  const char* d = std::getenv("TEST_TMPDIR");
  return std::string(d != nullptr ? d : "/tmp") + "/" + name;
}

void WriteRaw(const std::string& path, const std::string& data) {
  FILE* f = std::fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(std::fwrite(data.data(), 1, data.size(), f), data.size());
  std::fclose(f);
}

std::string ReadRaw(const std::string& path) {
  return ReadFileToString(path).value();
}

// A smooth test pattern (JPEG-friendly), HWC.
std::vector<uint8_t> Pattern(int h, int w, int c) {
  std::vector<uint8_t> p(size_t(h) * w * c);
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      for (int k = 0; k < c; ++k) {
        p[(size_t(y) * w + x) * c + k] =
            static_cast<uint8_t>((y * 255 / (h - 1) + x * 3 + k * 60) % 256);
      }
    }
  }
  return p;
}

// No wrap-around edges: lossy codecs reproduce it closely.
std::vector<uint8_t> Smooth(int h, int w, int c) {
  std::vector<uint8_t> p(size_t(h) * w * c);
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      for (int k = 0; k < c; ++k) {
        p[(size_t(y) * w + x) * c + k] =
            static_cast<uint8_t>(20 + y * 3 + x * 2 + k * 20);
      }
    }
  }
  return p;
}

void ExpectErrorNamesFile(const absl::StatusOr<Image>& image,
                          const std::string& path) {
  ASSERT_FALSE(image.ok());
  EXPECT_NE(image.status().message().find(path), std::string::npos)
      << image.status();
}

TEST(PngTest, RoundTripGrayAndRgb) {
  for (int c : {1, 3}) {
    const std::string path = TmpPath("rt" + std::to_string(c) + ".png");
    const std::vector<uint8_t> pixels = Pattern(13, 17, c);
    ASSERT_TRUE(WritePng(path, pixels.data(), 13, 17, c).ok());
    absl::StatusOr<Image> image = DecodeImageFile(path);
    ASSERT_TRUE(image.ok()) << image.status();
    EXPECT_EQ(image->height, 13);
    EXPECT_EQ(image->width, 17);
    EXPECT_EQ(image->channels, c);
    EXPECT_EQ(image->pixels, pixels);
  }
}

TEST(PngTest, WriteRejectsBadArgs) {
  const std::vector<uint8_t> pixels(16);
  EXPECT_FALSE(WritePng(TmpPath("bad.png"), pixels.data(), 2, 2, 4).ok());
  EXPECT_FALSE(WritePng(TmpPath("bad.png"), pixels.data(), 0, 2, 1).ok());
  EXPECT_FALSE(WritePng("/nonexistent_dir/x.png", pixels.data(), 2, 2, 1).ok());
}

// Writes with libpng's simplified API (formats WritePng does not produce).
std::string WriteSimplePng(const std::string& name, png_uint_32 format,
                           const void* pixels, const void* colormap,
                           int colormap_entries) {
  png_image image;
  std::memset(&image, 0, sizeof(image));
  image.version = PNG_IMAGE_VERSION;
  image.width = 4;
  image.height = 3;
  image.format = format;
  image.colormap_entries = colormap_entries;
  const std::string path = TmpPath(name);
  EXPECT_NE(
      png_image_write_to_file(&image, path.c_str(), 0, pixels, 0, colormap), 0)
      << image.message;
  return path;
}

TEST(PngTest, ConvertsRgbaGrayAlphaPalette16Bit) {
  std::vector<uint8_t> rgba(4 * 3 * 4), ga(4 * 3 * 2), index(4 * 3);
  std::vector<uint16_t> gray16(4 * 3);
  const uint8_t colormap[3 * 3] = {10, 20, 30, 200, 100, 0, 255, 255, 255};
  for (int i = 0; i < 12; ++i) {
    for (int k = 0; k < 3; ++k)
      rgba[i * 4 + k] = static_cast<uint8_t>(i * 20 + k);
    rgba[i * 4 + 3] = static_cast<uint8_t>(i * 10);  // alpha: dropped
    ga[i * 2] = static_cast<uint8_t>(i * 21);
    ga[i * 2 + 1] = 128;
    index[i] = static_cast<uint8_t>(i % 3);
    gray16[i] = static_cast<uint16_t>(i * 21 * 257);
  }
  {
    absl::StatusOr<Image> im = DecodeImageFile(
        WriteSimplePng("rgba.png", PNG_FORMAT_RGBA, rgba.data(), nullptr, 0));
    ASSERT_TRUE(im.ok()) << im.status();
    ASSERT_EQ(im->channels, 3);
    for (int i = 0; i < 12; ++i) {
      for (int k = 0; k < 3; ++k) {
        EXPECT_EQ(im->pixels[i * 3 + k], rgba[i * 4 + k]);
      }
    }
  }
  {
    absl::StatusOr<Image> im = DecodeImageFile(
        WriteSimplePng("ga.png", PNG_FORMAT_GA, ga.data(), nullptr, 0));
    ASSERT_TRUE(im.ok()) << im.status();
    ASSERT_EQ(im->channels, 1);
    for (int i = 0; i < 12; ++i) EXPECT_EQ(im->pixels[i], ga[i * 2]);
  }
  {
    absl::StatusOr<Image> im = DecodeImageFile(WriteSimplePng(
        "pal.png", PNG_FORMAT_RGB_COLORMAP, index.data(), colormap, 3));
    ASSERT_TRUE(im.ok()) << im.status();
    ASSERT_EQ(im->channels, 3);
    ASSERT_EQ(im->height, 3);
    ASSERT_EQ(im->width, 4);
    for (int i = 0; i < 12; ++i) {
      for (int k = 0; k < 3; ++k) {
        EXPECT_EQ(im->pixels[i * 3 + k], colormap[index[i] * 3 + k]);
      }
    }
  }
  {
    absl::StatusOr<Image> im = DecodeImageFile(WriteSimplePng(
        "g16.png", PNG_FORMAT_LINEAR_Y, gray16.data(), nullptr, 0));
    ASSERT_TRUE(im.ok()) << im.status();
    ASSERT_EQ(im->channels, 1);
    for (int i = 0; i < 12; ++i) EXPECT_EQ(im->pixels[i], i * 21);
  }
}

TEST(PngTest, CorruptAndTruncatedGiveErrors) {
  const std::string good = TmpPath("good.png");
  const std::vector<uint8_t> pixels = Pattern(32, 32, 3);
  ASSERT_TRUE(WritePng(good, pixels.data(), 32, 32, 3).ok());
  const std::string data = ReadRaw(good);

  const std::string path = TmpPath("corrupt.png");
  for (size_t len : {size_t{8}, size_t{20}, size_t{40}, data.size() / 2,
                     data.size() - 13, data.size() - 1}) {
    WriteRaw(path, data.substr(0, len));
    ExpectErrorNamesFile(DecodeImageFile(path), path);
  }
  // Flip bytes inside the IHDR and IDAT chunks (crc / zlib errors).
  for (size_t pos : {size_t{17}, size_t{30}, data.size() / 2}) {
    std::string bad = data;
    bad[pos] ^= 0x5a;
    WriteRaw(path, bad);
    ExpectErrorNamesFile(DecodeImageFile(path), path);
  }
  WriteRaw(path, std::string("\x89PNG\r\n\x1a\n", 8) + std::string(100, 'x'));
  ExpectErrorNamesFile(DecodeImageFile(path), path);
}

TEST(JpegTest, RoundTripApproximately) {
  for (int c : {1, 3}) {
    const std::string path = TmpPath("rt" + std::to_string(c) + ".jpg");
    const int h = 24, w = 40;
    const std::vector<uint8_t> pixels = Smooth(h, w, c);
    ASSERT_TRUE(WriteJpeg(path, pixels.data(), h, w, c, 95).ok());
    absl::StatusOr<Image> image = DecodeImageFile(path);
    ASSERT_TRUE(image.ok()) << image.status();
    EXPECT_EQ(image->height, h);
    EXPECT_EQ(image->width, w);
    EXPECT_EQ(image->channels, c);
    double err = 0;
    for (size_t i = 0; i < pixels.size(); ++i) {
      err += std::abs(int{image->pixels[i]} - int{pixels[i]});
    }
    EXPECT_LT(err / pixels.size(), 2.0) << "channels " << c;
  }
}

TEST(JpegTest, CorruptAndTruncatedGiveErrors) {
  const std::string good = TmpPath("good.jpg");
  const std::vector<uint8_t> pixels = Pattern(64, 64, 3);
  ASSERT_TRUE(WriteJpeg(good, pixels.data(), 64, 64, 3).ok());
  const std::string data = ReadRaw(good);
  ASSERT_TRUE(DecodeImageFile(good).ok());

  const std::string path = TmpPath("corrupt.jpg");
  for (size_t len :
       {size_t{3}, size_t{10}, size_t{200}, data.size() / 2, data.size() - 2}) {
    WriteRaw(path, data.substr(0, len));
    ExpectErrorNamesFile(DecodeImageFile(path), path);
  }
  // Garbage after the SOI marker.
  WriteRaw(path, std::string("\xff\xd8\xff", 3) + std::string(500, '\x01'));
  ExpectErrorNamesFile(DecodeImageFile(path), path);
  // Break the SOF0 marker.
  std::string bad = data;
  const size_t sof = bad.find("\xff\xc0");
  ASSERT_NE(sof, std::string::npos);
  bad[sof + 1] = '\x37';
  WriteRaw(path, bad);
  ExpectErrorNamesFile(DecodeImageFile(path), path);
}

TEST(DecodeTest, UnknownFormatAndMissingFile) {
  const std::string path = TmpPath("text.png");
  WriteRaw(path, "hello, not an image");
  ExpectErrorNamesFile(DecodeImageFile(path), path);
  WriteRaw(path, "");
  ExpectErrorNamesFile(DecodeImageFile(path), path);
  const std::string missing = TmpPath("missing.png");
  ExpectErrorNamesFile(DecodeImageFile(missing), missing);
}

TEST(GridTest, LayoutValuesAndPadding) {
  // 3 images of 1x2x2, 2 per row, padding 1 -> 7x7 grid.
  const std::vector<float> images = {-1, 1,    0,     2,       // image 0
                                     -3, 0.5f, -0.5f, 0.999f,  // image 1
                                     1,  1,    1,     1};      // image 2
  Image grid = MakeImageGrid(images.data(), 3, 1, 2, 2, 2, 1);
  ASSERT_EQ(grid.height, 7);
  ASSERT_EQ(grid.width, 7);
  ASSERT_EQ(grid.channels, 1);
  auto at = [&](int y, int x) { return int{grid.pixels[y * 7 + x]}; };
  EXPECT_EQ(at(1, 1), 0);
  EXPECT_EQ(at(1, 2), 255);
  EXPECT_EQ(at(2, 1), 128);  // round(127.5)
  EXPECT_EQ(at(2, 2), 255);  // clamped
  EXPECT_EQ(at(1, 4), 0);    // clamped
  EXPECT_EQ(at(1, 5), 191);  // round(1.5 * 127.5) = round(191.25)
  EXPECT_EQ(at(2, 4), 64);   // round(63.75)
  EXPECT_EQ(at(2, 5), 255);  // round(254.87)
  EXPECT_EQ(at(4, 1), 255);
  EXPECT_EQ(at(5, 2), 255);
  // Padding rows/cols and the empty 4th cell are 0.
  for (int i = 0; i < 7; ++i) {
    EXPECT_EQ(at(0, i), 0);
    EXPECT_EQ(at(3, i), 0);
    EXPECT_EQ(at(6, i), 0);
    EXPECT_EQ(at(i, 0), 0);
    EXPECT_EQ(at(i, 3), 0);
    EXPECT_EQ(at(i, 6), 0);
  }
  EXPECT_EQ(at(4, 4), 0);
  EXPECT_EQ(at(5, 5), 0);
}

TEST(GridTest, RgbInterleavesChannels) {
  // One 3x1x1 image: channels -1, 0, 1.
  const std::vector<float> image = {-1, 0, 1};
  Image grid = MakeImageGrid(image.data(), 1, 3, 1, 1, 8, 2);
  ASSERT_EQ(grid.height, 5);
  ASSERT_EQ(grid.width, 5);
  const size_t center = (2 * 5 + 2) * 3;
  EXPECT_EQ(grid.pixels[center + 0], 0);
  EXPECT_EQ(grid.pixels[center + 1], 128);
  EXPECT_EQ(grid.pixels[center + 2], 255);
  ASSERT_TRUE(WritePng(TmpPath("grid.png"), grid.pixels.data(), grid.height,
                       grid.width, grid.channels)
                  .ok());
}

TEST(NpyTest, HeaderMatchesNumpyExactly) {
  const uint8_t data[6] = {1, 2, 3, 4, 5, 6};
  const std::string path = TmpPath("u8.npy");
  ASSERT_TRUE(WriteNpy(path, "|u1", {2, 3}, data).ok());
  const std::string bytes = ReadRaw(path);
  std::string header(
      "\x93NUMPY\x01\x00v\x00{'descr': '|u1', 'fortran_order': False, "
      "'shape': (2, 3), }",
      69);
  header.append(128 - 1 - header.size(), ' ');
  header.push_back('\n');
  ASSERT_EQ(header.size(), 128u);
  ASSERT_EQ(bytes.size(), 128u + 6);
  EXPECT_EQ(bytes.substr(0, 128), header);
  EXPECT_EQ(bytes.substr(128), std::string("\1\2\3\4\5\6", 6));
}

TEST(NpyTest, ShapesAndAlignment) {
  const float f[5] = {1, 2, 3, 4, 5};
  std::string one = EncodeNpy("<f4", {5}, f).value();
  EXPECT_NE(one.find("'shape': (5,), }"), std::string::npos);
  std::string scalar = EncodeNpy("<f4", {}, f).value();
  EXPECT_NE(scalar.find("'shape': (), }"), std::string::npos);
  for (const std::string& s : {one, scalar}) {
    const size_t header_len = static_cast<unsigned char>(s[8]) |
                              (static_cast<unsigned char>(s[9]) << 8);
    EXPECT_EQ((10 + header_len) % 64, 0u);
    EXPECT_EQ(s[10 + header_len - 1], '\n');
  }
  EXPECT_FALSE(EncodeNpy("<f8", {5}, f).ok());
  EXPECT_FALSE(EncodeNpy("<f4", {-1}, f).ok());
}

TEST(NpyTest, RoundTrip) {
  const std::vector<float> f = {1.5f, -2, 3, 4, 5, 6, 7, 8};
  const std::vector<int32_t> i = {-1, 2, 1 << 30};
  ASSERT_TRUE(WriteNpy(TmpPath("f.npy"), "<f4", {2, 2, 2}, f.data()).ok());
  ASSERT_TRUE(WriteNpy(TmpPath("i.npy"), "<i4", {3}, i.data()).ok());
  absl::StatusOr<NpyArray> rf = ReadNpy(TmpPath("f.npy"));
  ASSERT_TRUE(rf.ok()) << rf.status();
  EXPECT_EQ(rf->dtype, "<f4");
  EXPECT_EQ(rf->shape, Shape({2, 2, 2}));
  ASSERT_EQ(rf->bytes.size(), f.size() * 4);
  EXPECT_EQ(std::memcmp(rf->bytes.data(), f.data(), rf->bytes.size()), 0);
  absl::StatusOr<NpyArray> ri = ReadNpy(TmpPath("i.npy"));
  ASSERT_TRUE(ri.ok()) << ri.status();
  EXPECT_EQ(ri->shape, Shape({3}));
  EXPECT_EQ(std::memcmp(ri->bytes.data(), i.data(), 12), 0);

  // Truncated data is an error naming the file.
  const std::string bytes = ReadRaw(TmpPath("f.npy"));
  WriteRaw(TmpPath("short.npy"), bytes.substr(0, bytes.size() - 1));
  absl::StatusOr<NpyArray> bad = ReadNpy(TmpPath("short.npy"));
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("short.npy"), std::string::npos);
}

}  // namespace
}  // namespace paragan
