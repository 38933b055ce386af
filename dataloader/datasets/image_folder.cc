// Class-per-sub-folder image dataset.

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/check.h"
#include "common/image_io.h"
#include "dataloader/datasets/dataset.h"

namespace paragan {
namespace {

namespace fs = std::filesystem;

// Resampling taps for one output coordinate along one axis.
struct Taps {
  int first = 0;
  std::vector<float> weights;
};

// Area averaging when shrinking (exact pixel-coverage weights), bilinear with
// half-pixel centers when enlarging.
std::vector<Taps> MakeTaps(int src, int dst) {
  std::vector<Taps> taps(dst);
  const double scale = static_cast<double>(src) / dst;
  for (int o = 0; o < dst; ++o) {
    Taps& t = taps[o];
    if (scale > 1.0) {
      const double lo = o * scale;
      const double hi = (o + 1) * scale;
      t.first = static_cast<int>(std::floor(lo));
      const int last = std::min(src - 1, static_cast<int>(std::ceil(hi)) - 1);
      for (int i = t.first; i <= last; ++i) {
        const double cover =
            std::min<double>(hi, i + 1) - std::max<double>(lo, i);
        t.weights.push_back(static_cast<float>(std::max(0.0, cover) / scale));
      }
    } else {
      double pos = (o + 0.5) * scale - 0.5;
      pos = std::min<double>(std::max(pos, 0.0), src - 1);
      const int i0 = static_cast<int>(std::floor(pos));
      const int i1 = std::min(i0 + 1, src - 1);
      const float frac = static_cast<float>(pos - i0);
      t.first = i0;
      t.weights.push_back(1.0f - frac);
      if (i1 != i0) t.weights.push_back(frac);
    }
  }
  return taps;
}

bool IsImageFile(const fs::path& path) {
  const std::string ext = absl::AsciiStrToLower(path.extension().string());
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg";
}

std::vector<std::string> SortedEntries(const fs::path& dir, bool directories,
                                       std::error_code* ec) {
  std::vector<std::string> names;
  for (fs::directory_iterator it(dir, *ec), end; !*ec && it != end;
       it.increment(*ec)) {
    const std::string name = it->path().filename().string();
    if (name.empty() || name[0] == '.') continue;
    std::error_code type_ec;
    const bool is_dir = it->is_directory(type_ec);
    if (type_ec) continue;
    if (directories ? is_dir
                    : (!is_dir && it->is_regular_file(type_ec) && !type_ec &&
                       IsImageFile(it->path()))) {
      names.push_back(name);
    }
  }
  std::sort(names.begin(), names.end());
  return names;
}

class ImageFolder : public Dataset {
 public:
  ImageFolder(DatasetInfo info, std::vector<uint8_t> pixels,
              std::vector<int> labels)
      : info_(std::move(info)),
        pixels_(std::move(pixels)),
        labels_(std::move(labels)) {}

  const DatasetInfo& info() const override { return info_; }

  void Get(int64_t index, float* image, int* label) const override {
    PG_CHECK(index >= 0 && index < info_.size)
        << "index " << index << " out of range [0, " << info_.size << ")";
    const int64_t n = int64_t{info_.channels} * info_.height * info_.width;
    const uint8_t* src = pixels_.data() + index * n;
    for (int64_t i = 0; i < n; ++i) image[i] = PixelToFloat(src[i]);
    if (label != nullptr) *label = labels_[index];
  }

  bool has_pixels() const override { return true; }
  void GetPixels(int64_t index, uint8_t* pixels, int* label) const override {
    PG_CHECK(index >= 0 && index < info_.size)
        << "index " << index << " out of range [0, " << info_.size << ")";
    const int64_t n = int64_t{info_.channels} * info_.height * info_.width;
    std::memcpy(pixels, pixels_.data() + index * n, static_cast<size_t>(n));
    if (label != nullptr) *label = labels_[index];
  }

 private:
  DatasetInfo info_;
  std::vector<uint8_t> pixels_;  // size * C*H*W, CHW per image
  std::vector<int> labels_;
};

}  // namespace

std::vector<uint8_t> CenterCropResize(const Image& image, int resolution,
                                      int channels) {
  PG_CHECK(image.height > 0 && image.width > 0 &&
           (image.channels == 1 || image.channels == 3))
      << image.height << "x" << image.width << "x" << image.channels;
  PG_CHECK(resolution > 0 && (channels == 1 || channels == 3));
  const int side = std::min(image.height, image.width);
  const int y0 = (image.height - side) / 2;
  const int x0 = (image.width - side) / 2;
  const int c = image.channels;
  const std::vector<Taps> taps = MakeTaps(side, resolution);

  // Horizontal pass over the crop rows: side x resolution x c.
  std::vector<float> tmp(size_t(side) * resolution * c, 0.0f);
  for (int y = 0; y < side; ++y) {
    const uint8_t* row =
        image.pixels.data() + (size_t(y0 + y) * image.width + x0) * c;
    float* out = tmp.data() + size_t(y) * resolution * c;
    for (int x = 0; x < resolution; ++x) {
      const Taps& t = taps[x];
      for (size_t k = 0; k < t.weights.size(); ++k) {
        const uint8_t* px = row + size_t(t.first + k) * c;
        for (int ch = 0; ch < c; ++ch) out[x * c + ch] += t.weights[k] * px[ch];
      }
    }
  }
  // Vertical pass and channel conversion into CHW.
  const size_t plane = size_t(resolution) * resolution;
  std::vector<uint8_t> result(plane * channels);
  std::vector<float> px(c);
  auto to_u8 = [](float v) {
    v = std::round(v);
    return static_cast<uint8_t>(v < 0.0f ? 0.0f : (v > 255.0f ? 255.0f : v));
  };
  for (int y = 0; y < resolution; ++y) {
    const Taps& t = taps[y];
    for (int x = 0; x < resolution; ++x) {
      std::fill(px.begin(), px.end(), 0.0f);
      for (size_t k = 0; k < t.weights.size(); ++k) {
        const float* src =
            tmp.data() + (size_t(t.first + k) * resolution + x) * c;
        for (int ch = 0; ch < c; ++ch) px[ch] += t.weights[k] * src[ch];
      }
      const size_t at = size_t(y) * resolution + x;
      if (channels == c) {
        for (int ch = 0; ch < c; ++ch) result[ch * plane + at] = to_u8(px[ch]);
      } else if (channels == 1) {
        result[at] = to_u8(0.299f * px[0] + 0.587f * px[1] + 0.114f * px[2]);
      } else {
        const uint8_t g = to_u8(px[0]);
        for (int ch = 0; ch < 3; ++ch) result[ch * plane + at] = g;
      }
    }
  }
  return result;
}

absl::StatusOr<std::unique_ptr<Dataset>> OpenImageFolder(const std::string& dir,
                                                         int resolution,
                                                         int channels) {
  if (resolution <= 0 || resolution > 4096) {
    return absl::InvalidArgumentError(
        absl::StrCat("image folder ", dir,
                     ": resolution must be in [1, 4096], got ", resolution));
  }
  if (channels != 1 && channels != 3) {
    return absl::InvalidArgumentError(absl::StrCat(
        "image folder ", dir, ": channels must be 1 or 3, got ", channels));
  }
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    return absl::NotFoundError(absl::StrCat("image folder ", dir,
                                            " does not exist or is not a "
                                            "directory"));
  }
  const std::vector<std::string> classes = SortedEntries(dir, true, &ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("cannot list ", dir, ": ", ec.message()));
  }
  if (classes.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "image folder ", dir,
        " has no class sub-folders (expected <dir>/<class>/<image>.png|jpg)"));
  }
  std::vector<std::string> files;
  std::vector<int> labels;
  for (size_t k = 0; k < classes.size(); ++k) {
    const fs::path class_dir = fs::path(dir) / classes[k];
    const std::vector<std::string> names = SortedEntries(class_dir, false, &ec);
    if (ec) {
      return absl::UnavailableError(
          absl::StrCat("cannot list ", class_dir.string(), ": ", ec.message()));
    }
    if (names.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("class folder ", class_dir.string(),
                       " contains no .png/.jpg/.jpeg images"));
    }
    for (const std::string& name : names) {
      files.push_back((class_dir / name).string());
      labels.push_back(static_cast<int>(k));
    }
  }

  const size_t per_image = size_t(channels) * resolution * resolution;
  std::vector<uint8_t> pixels(files.size() * per_image);
  std::vector<absl::Status> errors(files.size());
  std::atomic<size_t> next{0};
  auto worker = [&]() {
    for (size_t i = next++; i < files.size(); i = next++) {
      absl::StatusOr<Image> image = DecodeImageFile(files[i]);
      if (!image.ok()) {
        errors[i] = image.status();
        continue;
      }
      const std::vector<uint8_t> chw =
          CenterCropResize(*image, resolution, channels);
      std::copy(chw.begin(), chw.end(), pixels.begin() + i * per_image);
    }
  };
  const unsigned hw = std::max(1u, std::thread::hardware_concurrency());
  const size_t num_threads = std::min<size_t>(std::min(hw, 8u), files.size());
  std::vector<std::thread> threads;
  for (size_t t = 1; t < num_threads; ++t) threads.emplace_back(worker);
  worker();
  for (std::thread& t : threads) t.join();
  for (const absl::Status& st : errors) {
    if (!st.ok()) {
      return absl::Status(
          st.code(), absl::StrCat("image folder ", dir, ": ", st.message()));
    }
  }

  DatasetInfo info;
  info.name = "folder";
  info.channels = channels;
  info.height = resolution;
  info.width = resolution;
  info.num_classes = static_cast<int>(classes.size());
  info.size = static_cast<int64_t>(files.size());
  return std::unique_ptr<Dataset>(std::make_unique<ImageFolder>(
      std::move(info), std::move(pixels), std::move(labels)));
}

}  // namespace paragan
