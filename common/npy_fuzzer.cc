// Fuzzes the .npy reader (reference statistics, sample dumps, fixtures).
// What parses holds exactly prod(shape) items of its dtype.

#include <string>
#include <vector>

#include "common/image_io.h"
#include "tools/fuzz/fuzz_target.h"

namespace paragan {

std::vector<std::string> FuzzSeeds() {
  const float f[6] = {0, 1, -2.5f, 3, 1e30f, -0.0f};
  const int32_t i[3] = {-1, 0, 2147483647};
  const uint8_t u[4] = {0, 128, 255, 7};
  return {*EncodeNpy("<f4", {2, 3}, f), *EncodeNpy("<i4", {3}, i),
          *EncodeNpy("|u1", {2, 1, 2}, u), *EncodeNpy("<f4", {0}, f)};
}

}  // namespace paragan

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::StatusOr<paragan::NpyArray> npy = paragan::ParseNpy(
      absl::string_view(reinterpret_cast<const char*>(data), size),
      "fuzz input");
  if (!npy.ok()) return 0;
  int64_t items = 1;
  for (int64_t d : npy->shape) {
    paragan::FuzzCheck(d >= 0, "non-negative dims");
    items *= d;
  }
  const size_t bytes = npy->bytes.size();
  if (items == 0) {
    paragan::FuzzCheck(bytes == 0, "no items, no bytes");
  } else {
    const size_t item_size = bytes / size_t(items);
    paragan::FuzzCheck(
        bytes % size_t(items) == 0 && item_size >= 1 && item_size <= 16,
        "prod(shape) items of one size");
  }
  return 0;
}
