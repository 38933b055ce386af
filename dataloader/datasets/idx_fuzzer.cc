// Fuzzes the Fashion-MNIST IDX reader. An input is a little-endian uint32
// n, then n bytes of the images file and the rest as the labels file; both
// are written (uncompressed) to a private directory and opened as the test
// split. What opens has one valid label and 1x32x32 pixels in [-1, 1] per
// image.

#include <unistd.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "dataloader/datasets/dataset.h"
#include "tools/fuzz/fuzz_target.h"

namespace paragan {
namespace {

std::string BigEndian32(uint32_t v) {
  return {char(v >> 24), char(v >> 16), char(v >> 8), char(v)};
}

std::string Idx(uint32_t magic, const std::vector<uint32_t>& dims,
                const std::string& body) {
  std::string out = BigEndian32(magic);
  for (uint32_t d : dims) out += BigEndian32(d);
  return out + body;
}

std::string Seed(const std::string& images, const std::string& labels) {
  const uint32_t n = static_cast<uint32_t>(images.size());
  return std::string(reinterpret_cast<const char*>(&n), 4) + images + labels;
}

const std::string& Dir() {
  static const std::string* dir = [] {
    char path[] = "/tmp/paragan-idx-fuzz-XXXXXX";
    FuzzCheck(mkdtemp(path) != nullptr, "a temporary directory");
    return new std::string(path);
  }();
  return *dir;
}

void WriteFile(const std::string& path, const char* data, size_t size) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data, static_cast<std::streamsize>(size));
  FuzzCheck(out.good(), "write the input files");
}

}  // namespace

std::vector<std::string> FuzzSeeds() {
  std::string pixels(2 * 28 * 28, '\0');
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = char(i % 251);
  return {Seed(Idx(2051, {2, 28, 28}, pixels), Idx(2049, {2}, {3, 9})),
          Seed(Idx(2051, {0, 28, 28}, ""), Idx(2049, {0}, ""))};
}

}  // namespace paragan

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace paragan;
  const char* p = reinterpret_cast<const char*>(data);
  uint32_t n = 0;
  if (size >= 4) std::memcpy(&n, p, 4);
  const size_t images = size >= 4 ? std::min<size_t>(n, size - 4) : 0;
  const size_t skip = size >= 4 ? 4 : size;
  WriteFile(Dir() + "/t10k-images-idx3-ubyte", p + skip, images);
  WriteFile(Dir() + "/t10k-labels-idx1-ubyte", p + skip + images,
            size - skip - images);
  absl::StatusOr<std::unique_ptr<Dataset>> ds = OpenFashionMnist(Dir(), false);
  if (!ds.ok()) return 0;
  const DatasetInfo& info = (*ds)->info();
  std::vector<float> image(32 * 32);
  FuzzCheck(info.channels == 1 && info.height == 32 && info.width == 32,
            "1x32x32 images");
  for (int64_t i = 0; i < info.size; ++i) {
    int label = -1;
    (*ds)->Get(i, image.data(), &label);
    FuzzCheck(label >= 0 && label < info.num_classes, "a valid label");
    for (float x : image) {
      FuzzCheck(std::isfinite(x) && x >= -1.0f && x <= 1.0f, "pixels in range");
    }
  }
  return 0;
}
