#ifndef PARAGAN_DATALOADER_DATASETS_DATASET_H_
#define PARAGAN_DATALOADER_DATASETS_DATASET_H_

// Training data sources. A Dataset serves images as C*H*W floats in [-1, 1]
// (NCHW order per image) with integer class labels; all data is decoded and
// held in memory as uint8 when the dataset is opened, so Get is cheap and
// thread-safe.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/image_io.h"

namespace paragan {

struct DatasetInfo {
  std::string name;
  int channels = 0;
  int height = 0;
  int width = 0;
  int num_classes = 0;
  int64_t size = 0;
};

class Dataset {
 public:
  virtual ~Dataset();
  virtual const DatasetInfo& info() const = 0;
  // Writes image `index` (0 <= index < info().size, checked) as
  // channels*height*width floats in [-1, 1] to `image` and its class in
  // [0, num_classes) to `*label` (`label` may be null). Thread-safe.
  virtual void Get(int64_t index, float* image, int* label) const = 0;
  // Whether GetPixels works: the dataset holds uint8 pixels, which travel on
  // the data wire at a quarter of the float32 bytes.
  virtual bool has_pixels() const { return false; }
  // has_pixels() datasets: writes image `index` as channels*height*width
  // bytes, pixel p standing for exactly the float Get writes (p / 127.5f -
  // 1), and its class to `*label` (may be null). Others abort. Thread-safe.
  virtual void GetPixels(int64_t index, uint8_t* pixels, int* label) const;
};

// Pixel p as the float in [-1, 1] every dataset and decoder uses.
inline float PixelToFloat(uint8_t p) { return p / 127.5f - 1.0f; }

// Fashion-MNIST from the original IDX files (gzip-compressed, as shipped by
// Debian's dataset-fashion-mnist in /usr/share/datasets/fashion-mnist):
// {train,t10k}-images-idx3-ubyte.gz and {train,t10k}-labels-idx1-ubyte.gz
// (uncompressed files without ".gz" are accepted too). Images are 1x32x32:
// the 28x28 digits zero-padded by 2 pixels (padding reads as -1), scaled as
// x / 127.5 - 1. Header, sizes and labels are validated; errors name the file.
absl::StatusOr<std::unique_ptr<Dataset>> OpenFashionMnist(
    const std::string& dir, bool train);

// Every sub-folder of `dir` (sorted by name; names starting with '.' are
// skipped) is a class, labelled 0..K-1. Files ending in .png/.jpg/.jpeg (any
// case) are decoded at open time, center-cropped to a square, resized to
// resolution x resolution (area averaging when shrinking, bilinear when
// enlarging) and converted to `channels` (1 or 3). Other files are ignored.
absl::StatusOr<std::unique_ptr<Dataset>> OpenImageFolder(const std::string& dir,
                                                         int resolution,
                                                         int channels);

// Deterministic procedural data: class k is an elongated Gaussian blob whose
// position and orientation depend on k (and, for RGB, its color), plus a small
// per-sample jitter and pixel noise derived from (seed, index). Label of image
// i is i % num_classes.
std::unique_ptr<Dataset> MakeSyntheticDataset(int64_t size, int channels,
                                              int resolution, int num_classes,
                                              uint64_t seed);

struct DatasetSpec {
  std::string name;  // "fashion_mnist" | "folder" | "synthetic"
  std::string path;  // directory for fashion_mnist and folder
  int resolution = 32;
  int channels = 1;
  int64_t synthetic_size = 4096;
  int synthetic_classes = 10;
  uint64_t seed = 0;
  bool train = true;  // fashion_mnist: train (60k) or t10k (10k) split
};

// Opens the dataset `spec` names; unknown names and parameters the dataset
// cannot honour are InvalidArgument errors.
absl::StatusOr<std::unique_ptr<Dataset>> OpenDataset(const DatasetSpec& spec);

// Center-crops `image` to a square, resizes it to resolution x resolution and
// converts it to `channels` (1 or 3; gray = 0.299 R + 0.587 G + 0.114 B).
// Returns CHW uint8 data. Exposed for tests.
std::vector<uint8_t> CenterCropResize(const Image& image, int resolution,
                                      int channels);

}  // namespace paragan

#endif  // PARAGAN_DATALOADER_DATASETS_DATASET_H_
