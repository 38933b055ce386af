#ifndef PARAGAN_COMMON_IMAGE_IO_H_
#define PARAGAN_COMMON_IMAGE_IO_H_

// Image files (PNG via libpng, JPEG via libjpeg), sample grids and NumPy .npy
// files. Decoders never abort on bad input: every libpng/libjpeg error is
// turned into an absl::Status that names the file.

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/tensor.h"

namespace paragan {

// 8-bit image, rows top to bottom, channels interleaved (HWC). channels is 1
// (gray) or 3 (RGB) for everything the decoders return.
struct Image {
  int height = 0;
  int width = 0;
  int channels = 0;
  std::vector<uint8_t> pixels;  // height * width * channels
};

// Encodes `data` (HWC, channels 1 or 3) as an 8-bit PNG.
absl::StatusOr<std::string> EncodePng(const uint8_t* data, int height,
                                      int width, int channels);
// EncodePng + atomic write (same protocol as WriteTensorFile).
absl::Status WritePng(const std::string& path, const uint8_t* data, int height,
                      int width, int channels);
// Baseline JPEG (channels 1 or 3, quality 1..100), written atomically.
absl::Status WriteJpeg(const std::string& path, const uint8_t* data, int height,
                       int width, int channels, int quality = 95);

// Decodes a PNG or JPEG (detected from the signature) held in memory; `source`
// names it in errors. PNG palette / gray+alpha / RGBA / 16-bit / <8-bit inputs
// are converted to 8-bit gray or RGB (alpha is dropped). JPEG warnings about
// corrupt data (e.g. a truncated file) are treated as errors.
absl::StatusOr<Image> DecodeImage(absl::string_view bytes,
                                  absl::string_view source);
absl::StatusOr<Image> DecodeImageFile(const std::string& path);

// A model output in [-1, 1] as a pixel: round((x + 1) * 127.5) clamped to
// [0, 255]; NaN maps to 0.
inline uint8_t PixelFromUnit(float x) {
  float v = std::round((x + 1.0f) * 127.5f);
  if (!(v >= 0.0f)) v = 0.0f;
  if (v > 255.0f) v = 255.0f;
  return static_cast<uint8_t>(v);
}

// Tiles n images (NCHW floats in [-1, 1]) into a grid with `nrow` images per
// row (like torchvision's make_grid): each pixel is round((x + 1) * 127.5)
// clamped to [0, 255]; the `padding`-pixel borders are 0. The result has c
// channels and size (rows*(h+padding)+padding) x (cols*(w+padding)+padding).
Image MakeImageGrid(const float* images, int n, int c, int h, int w, int nrow,
                    int padding = 2);

// NumPy .npy v1.0 files. dtype is one of "|u1", "<i4", "<f4"; data holds
// prod(shape) elements in C order. The header matches numpy.save byte for byte
// (dict, growth spaces, padding to a multiple of 64, '\n').
absl::StatusOr<std::string> EncodeNpy(absl::string_view dtype,
                                      const Shape& shape, const void* data);
absl::Status WriteNpy(const std::string& path, absl::string_view dtype,
                      const Shape& shape, const void* data);

struct NpyArray {
  std::string dtype;  // the descr string, e.g. "<f4"
  Shape shape;
  std::string bytes;  // raw little-endian data, C order
};
// Reads a C-order, little-endian (or byte-sized) numeric .npy v1/v2 file.
absl::StatusOr<NpyArray> ParseNpy(absl::string_view data,
                                  absl::string_view source);
absl::StatusOr<NpyArray> ReadNpy(const std::string& path);

}  // namespace paragan

#endif  // PARAGAN_COMMON_IMAGE_IO_H_
