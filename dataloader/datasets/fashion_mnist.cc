// Fashion-MNIST IDX reader.

#include <sys/stat.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/check.h"
#include "dataloader/datasets/dataset.h"

namespace paragan {
namespace {

constexpr int kSide = 28;
constexpr int kPaddedSide = 32;
constexpr int kPad = (kPaddedSide - kSide) / 2;
constexpr int kClasses = 10;
constexpr uint32_t kImagesMagic = 2051;
constexpr uint32_t kLabelsMagic = 2049;

uint32_t BigEndian32(const std::string& data, size_t offset) {
  const auto* p = reinterpret_cast<const unsigned char*>(data.data()) + offset;
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) |
         (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

bool Exists(const std::string& path) {
  struct stat sb;
  return stat(path.c_str(), &sb) == 0;
}

// "<dir>/<base>.gz", or "<dir>/<base>" when only the uncompressed file exists.
std::string ResolveIdxPath(const std::string& dir, const std::string& base) {
  const std::string gz = absl::StrCat(dir, "/", base, ".gz");
  const std::string plain = absl::StrCat(dir, "/", base);
  if (!Exists(gz) && Exists(plain)) return plain;
  return gz;
}

// Reads an IDX file (gzip or plain) whose header is `header_bytes` long: the
// header is read first, `expected_size(header)` gives the full uncompressed
// size, and the rest is read without trusting the header for allocation.
template <typename ExpectedSizeFn>
absl::StatusOr<std::string> ReadIdx(const std::string& path,
                                    size_t header_bytes,
                                    ExpectedSizeFn expected_size) {
  if (!Exists(path)) {
    return absl::NotFoundError(absl::StrCat(path, ": no such file"));
  }
  gzFile f = gzopen(path.c_str(), "rb");
  if (f == nullptr) {
    return absl::UnavailableError(
        absl::StrCat("cannot open ", path, ": ", std::strerror(errno)));
  }
  gzbuffer(f, 1 << 17);
  std::string data;
  absl::Status status;
  size_t expected = header_bytes;
  bool have_header = false;
  std::vector<char> buf(1 << 16);
  for (;;) {
    // Read at most one byte past what the header promises: enough to detect
    // trailing data without reading an arbitrarily large file.
    const size_t want = std::min(buf.size(), expected + 1 - data.size());
    const int n = gzread(f, buf.data(), static_cast<unsigned>(want));
    if (n < 0) {
      int errnum = 0;
      const char* msg = gzerror(f, &errnum);
      status = absl::DataLossError(absl::StrCat(
          path,
          ": gzip error: ", errnum == Z_ERRNO ? std::strerror(errno) : msg));
      break;
    }
    if (n == 0) break;
    data.append(buf.data(), static_cast<size_t>(n));
    if (!have_header && data.size() >= header_bytes) {
      have_header = true;
      absl::StatusOr<size_t> e = expected_size(data);
      if (!e.ok()) {
        status = e.status();
        break;
      }
      expected = *e;
    }
    if (data.size() > expected) break;
  }
  if (status.ok()) {
    int errnum = 0;
    const char* msg = gzerror(f, &errnum);
    if (errnum != Z_OK) {
      status = absl::DataLossError(absl::StrCat(
          path, ": gzip stream is corrupt or truncated (", msg, ")"));
    }
  }
  gzclose(f);
  if (!status.ok()) return status;
  if (!have_header) {
    return absl::DataLossError(
        absl::StrCat(path, ": truncated: expected at least a ", header_bytes,
                     "-byte IDX header, got ", data.size(), " bytes"));
  }
  if (data.size() < expected) {
    return absl::DataLossError(
        absl::StrCat(path, ": truncated: expected ", expected,
                     " bytes (from the IDX header), got ", data.size()));
  }
  if (data.size() > expected) {
    return absl::DataLossError(
        absl::StrCat(path, ": size mismatch: expected ", expected,
                     " bytes (from the IDX header), file has more"));
  }
  return data;
}

class FashionMnist : public Dataset {
 public:
  FashionMnist(std::string name, std::string images, std::string labels,
               int64_t count)
      : images_(std::move(images)), labels_(std::move(labels)) {
    info_.name = std::move(name);
    info_.channels = 1;
    info_.height = kPaddedSide;
    info_.width = kPaddedSide;
    info_.num_classes = kClasses;
    info_.size = count;
  }

  const DatasetInfo& info() const override { return info_; }

  void Get(int64_t index, float* image, int* label) const override {
    PG_CHECK(index >= 0 && index < info_.size)
        << "index " << index << " out of range [0, " << info_.size << ")";
    const auto* src = reinterpret_cast<const unsigned char*>(images_.data()) +
                      16 + index * kSide * kSide;
    for (int y = 0; y < kPaddedSide; ++y) {
      float* row = image + y * kPaddedSide;
      const int sy = y - kPad;
      for (int x = 0; x < kPaddedSide; ++x) {
        const int sx = x - kPad;
        row[x] = (sy >= 0 && sy < kSide && sx >= 0 && sx < kSide)
                     ? PixelToFloat(src[sy * kSide + sx])
                     : -1.0f;
      }
    }
    if (label != nullptr)
      label[0] = static_cast<unsigned char>(labels_[8 + index]);
  }

  bool has_pixels() const override { return true; }
  void GetPixels(int64_t index, uint8_t* pixels, int* label) const override {
    PG_CHECK(index >= 0 && index < info_.size)
        << "index " << index << " out of range [0, " << info_.size << ")";
    const auto* src = reinterpret_cast<const unsigned char*>(images_.data()) +
                      16 + index * kSide * kSide;
    // The padding is pixel 0, i.e. -1 as in Get.
    std::memset(pixels, 0, kPaddedSide * kPaddedSide);
    for (int sy = 0; sy < kSide; ++sy) {
      std::memcpy(pixels + (sy + kPad) * kPaddedSide + kPad, src + sy * kSide,
                  kSide);
    }
    if (label != nullptr)
      label[0] = static_cast<unsigned char>(labels_[8 + index]);
  }

 private:
  DatasetInfo info_;
  std::string images_;  // raw IDX file: 16-byte header + count*28*28 bytes
  std::string labels_;  // raw IDX file: 8-byte header + count bytes
};

}  // namespace

absl::StatusOr<std::unique_ptr<Dataset>> OpenFashionMnist(
    const std::string& dir, bool train) {
  struct stat sb;
  if (stat(dir.c_str(), &sb) != 0 || !S_ISDIR(sb.st_mode)) {
    return absl::NotFoundError(absl::StrCat(
        "Fashion-MNIST directory ", dir,
        " does not exist (Debian package dataset-fashion-mnist installs it "
        "in /usr/share/datasets/fashion-mnist)"));
  }
  const std::string prefix = train ? "train" : "t10k";
  const std::string images_path =
      ResolveIdxPath(dir, prefix + "-images-idx3-ubyte");
  const std::string labels_path =
      ResolveIdxPath(dir, prefix + "-labels-idx1-ubyte");

  absl::StatusOr<std::string> images = ReadIdx(
      images_path, 16, [&](const std::string& h) -> absl::StatusOr<size_t> {
        const uint32_t magic = BigEndian32(h, 0);
        if (magic != kImagesMagic) {
          return absl::DataLossError(
              absl::StrCat(images_path, ": bad magic ", magic, " (expected ",
                           kImagesMagic, " for an IDX image file)"));
        }
        const uint32_t rows = BigEndian32(h, 8);
        const uint32_t cols = BigEndian32(h, 12);
        if (rows != kSide || cols != kSide) {
          return absl::DataLossError(
              absl::StrCat(images_path, ": images are ", rows, "x", cols,
                           ", expected ", kSide, "x", kSide));
        }
        return size_t{16} + size_t{BigEndian32(h, 4)} * kSide * kSide;
      });
  if (!images.ok()) return images.status();
  absl::StatusOr<std::string> labels = ReadIdx(
      labels_path, 8, [&](const std::string& h) -> absl::StatusOr<size_t> {
        const uint32_t magic = BigEndian32(h, 0);
        if (magic != kLabelsMagic) {
          return absl::DataLossError(
              absl::StrCat(labels_path, ": bad magic ", magic, " (expected ",
                           kLabelsMagic, " for an IDX label file)"));
        }
        return size_t{8} + BigEndian32(h, 4);
      });
  if (!labels.ok()) return labels.status();

  const uint32_t num_images = BigEndian32(*images, 4);
  const uint32_t num_labels = BigEndian32(*labels, 4);
  if (num_images != num_labels) {
    return absl::DataLossError(absl::StrCat(
        "image/label count mismatch: ", images_path, " has ", num_images,
        " images but ", labels_path, " has ", num_labels, " labels"));
  }
  if (num_images == 0) {
    return absl::DataLossError(
        absl::StrCat(images_path, ": contains no images"));
  }
  for (uint32_t i = 0; i < num_labels; ++i) {
    const int label = static_cast<unsigned char>((*labels)[8 + i]);
    if (label >= kClasses) {
      return absl::DataLossError(absl::StrCat(labels_path, ": label ", label,
                                              " of item ", i,
                                              " is out of range [0, 10)"));
    }
  }
  return std::unique_ptr<Dataset>(std::make_unique<FashionMnist>(
      train ? "fashion_mnist" : "fashion_mnist_test", *std::move(images),
      *std::move(labels), num_images));
}

}  // namespace paragan
