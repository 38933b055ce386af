// Fuzzes the .pgt container reader (checkpoints, network files, samples).
// Each input is parsed as it is and again with its trailing crc32 recomputed,
// so mutations reach the parser behind the checksum. Whatever parses must be
// valid arrays that serialize and parse back to the same arrays.

#include <zlib.h>

#include <cstring>
#include <string>
#include <vector>

#include "common/tensor_io.h"
#include "tools/fuzz/fuzz_target.h"

namespace paragan {
namespace {

void CheckParsed(absl::string_view data) {
  absl::StatusOr<std::vector<NamedArray>> parsed =
      ParseTensors(data, "fuzz input");
  if (!parsed.ok()) {
    FuzzCheck(!parsed.status().message().empty(), "an error says what failed");
    return;
  }
  for (const NamedArray& a : *parsed) {
    FuzzCheck(ValidateNamedArray(a).ok(), "parsed arrays are valid");
  }
  absl::StatusOr<std::string> again = SerializeTensors(*parsed);
  FuzzCheck(again.ok(), "parsed arrays serialize");
  absl::StatusOr<std::vector<NamedArray>> reparsed =
      ParseTensors(*again, "reserialized");
  FuzzCheck(reparsed.ok() && reparsed->size() == parsed->size(),
            "serialized arrays parse back");
  for (size_t i = 0; i < parsed->size(); ++i) {
    const NamedArray& a = (*parsed)[i];
    const NamedArray& b = (*reparsed)[i];
    FuzzCheck(a.name == b.name && a.dtype == b.dtype && a.dims == b.dims &&
                  a.bytes == b.bytes,
              "the round trip keeps every array");
  }
}

}  // namespace

std::vector<std::string> FuzzSeeds() {
  std::vector<std::vector<NamedArray>> sets;
  sets.push_back({});
  sets.push_back({*MakeFloatArray("g/conv.weight", {2, 1, 3, 3},
                                  std::vector<float>(18, 0.25f)),
                  *MakeInt64Array("step", {}, {1234}),
                  *MakeUint8Array("pixels", {2, 3}, {0, 1, 2, 253, 254, 255})});
  sets.push_back({*MakeFloatArray("empty", {0, 4}, {}),
                  *MakeFloatArray("adam.m", {3}, {1e-8f, -2.0f, 3.5f})});
  std::vector<std::string> seeds;
  for (const auto& s : sets) seeds.push_back(*SerializeTensors(s));
  return seeds;
}

}  // namespace paragan

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  paragan::CheckParsed(input);
  if (size >= 4) {
    std::string fixed = input;
    const uint32_t crc = static_cast<uint32_t>(
        crc32(0L, reinterpret_cast<const Bytef*>(fixed.data()),
              static_cast<uInt>(size - 4)));
    std::memcpy(&fixed[size - 4], &crc, 4);
    paragan::CheckParsed(fixed);
  }
  return 0;
}
