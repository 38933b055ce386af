#include "dataloader/datasets/dataset.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/check.h"

namespace paragan {

Dataset::~Dataset() = default;

void Dataset::GetPixels(int64_t, uint8_t*, int*) const {
  PG_CHECK(false) << "dataset " << info().name << " holds no uint8 pixels";
}

absl::StatusOr<std::unique_ptr<Dataset>> OpenDataset(const DatasetSpec& spec) {
  if (spec.name == "fashion_mnist") {
    if (spec.resolution != 32 || spec.channels != 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          "dataset fashion_mnist provides 1x32x32 images; got resolution ",
          spec.resolution, " and channels ", spec.channels));
    }
    if (spec.path.empty()) {
      return absl::InvalidArgumentError(
          "dataset fashion_mnist needs a path (e.g. "
          "/usr/share/datasets/fashion-mnist)");
    }
    return OpenFashionMnist(spec.path, spec.train);
  }
  if (spec.name == "folder" || spec.name == "synthetic") {
    if (spec.resolution <= 0 || spec.resolution > 4096) {
      return absl::InvalidArgumentError(
          absl::StrCat("dataset ", spec.name, ": resolution must be in [1, ",
                       "4096], got ", spec.resolution));
    }
    if (spec.channels != 1 && spec.channels != 3) {
      return absl::InvalidArgumentError(
          absl::StrCat("dataset ", spec.name, ": channels must be 1 or 3, ",
                       "got ", spec.channels));
    }
  }
  if (spec.name == "folder") {
    if (spec.path.empty()) {
      return absl::InvalidArgumentError("dataset folder needs a path");
    }
    return OpenImageFolder(spec.path, spec.resolution, spec.channels);
  }
  if (spec.name == "synthetic") {
    if (spec.synthetic_size <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("dataset synthetic: size must be positive, got ",
                       spec.synthetic_size));
    }
    if (spec.synthetic_classes <= 0 || spec.synthetic_classes > 1000) {
      return absl::InvalidArgumentError(
          absl::StrCat("dataset synthetic: classes must be in [1, 1000], got ",
                       spec.synthetic_classes));
    }
    return MakeSyntheticDataset(spec.synthetic_size, spec.channels,
                                spec.resolution, spec.synthetic_classes,
                                spec.seed);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown dataset '", spec.name,
                   "'; valid names: fashion_mnist, folder, synthetic"));
}

}  // namespace paragan
