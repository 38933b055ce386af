#ifndef PARAGAN_WORKER_TRAIN_SAFETENSORS_H_
#define PARAGAN_WORKER_TRAIN_SAFETENSORS_H_

// The safetensors file format (huggingface/safetensors), which PyTorch users
// load without pickle:
//
//   uint64  header_len (little-endian)
//   char    header[header_len]   JSON, padded with spaces to a multiple of 8:
//           {"__metadata__": {"key": "value", ...},
//            "name": {"dtype": "F32", "shape": [2, 3],
//                     "data_offsets": [begin, end]}, ...}
//   bytes   data: every tensor's raw little-endian bytes, C order; offsets
//           are relative to the start of the data and tile it exactly.
//
// The writer lays tensors out as the reference implementation does: dtypes in
// decreasing alignment (I64 before F32), then by name, so each tensor is
// aligned to its element size; compact JSON with "__metadata__" (when there is
// any; keys sorted) first and the tensors in data order; the header padded
// with spaces to a multiple of 8. The output is byte for byte the reference's
// (its own serialization tests are in safetensors_test.cc).
// The reader refuses what the reference refuses: a header length past the
// file or over 100 MB, a header that is not UTF-8 JSON, an object of tensor
// entries, unknown dtypes, negative or fractional dims, offsets out of range,
// overlapping or leaving gaps or trailing bytes, a byte count that does not
// match dtype and shape, non-string metadata; and, stricter than the
// reference (which plans to), a header that does not start with '{', and
// duplicate keys or unknown fields in a tensor entry.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/tensor.h"

namespace paragan {

// The reference's limit on the JSON header (MAX_HEADER_SIZE).
inline constexpr uint64_t kSafetensorsMaxHeaderBytes = 100'000'000;

struct SafetensorsTensor {
  std::string name;
  // "F32", "I64", ... (SafetensorsDTypeSize lists them all).
  std::string dtype;
  Shape shape;        // empty: a scalar (one element)
  std::string bytes;  // prod(shape) elements, little-endian, C order
};

struct SafetensorsFile {
  // In data order (as written, or as the file lays them out).
  std::vector<SafetensorsTensor> tensors;
  std::map<std::string, std::string> metadata;

  // The tensor called `name`, or nullptr.
  const SafetensorsTensor* Find(absl::string_view name) const;
};

// Bytes per element of a safetensors dtype ("BOOL", "U8", "I8", "F8_E5M2",
// "F8_E4M3", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "F64", "I64",
// "U64"), or 0 for anything else.
int64_t SafetensorsDTypeSize(absl::string_view dtype);

// Tensors from host values; fail when prod(shape) != values.size() or a dim
// is negative.
absl::StatusOr<SafetensorsTensor> MakeF32Tensor(
    std::string name, Shape shape, const std::vector<float>& values);
absl::StatusOr<SafetensorsTensor> MakeI64Tensor(
    std::string name, Shape shape, const std::vector<int64_t>& values);
// Values of an F32 / I64 tensor; fail for another dtype.
absl::StatusOr<std::vector<float>> F32Values(const SafetensorsTensor& t);
absl::StatusOr<std::vector<int64_t>> I64Values(const SafetensorsTensor& t);

// The file's bytes. Refuses empty or duplicate names, a name
// "__metadata__", unknown dtypes, negative dims and byte counts that do not
// match dtype and shape.
absl::StatusOr<std::string> EncodeSafetensors(
    const std::vector<SafetensorsTensor>& tensors,
    const std::map<std::string, std::string>& metadata);
// Parses a whole file; `source` (a path) names it in error messages.
absl::StatusOr<SafetensorsFile> DecodeSafetensors(absl::string_view data,
                                                  absl::string_view source);

// Writes EncodeSafetensors' bytes to `path` atomically (a temporary file
// beside it, fsync, then a rename or, without `overwrite`, a hard link that
// fails when `path` exists): `path` is either untouched or complete. Without
// `overwrite` an existing `path` is an AlreadyExists error.
absl::Status WriteSafetensorsFile(
    const std::string& path, const std::vector<SafetensorsTensor>& tensors,
    const std::map<std::string, std::string>& metadata, bool overwrite);
absl::StatusOr<SafetensorsFile> ReadSafetensorsFile(const std::string& path);

}  // namespace paragan

#endif  // PARAGAN_WORKER_TRAIN_SAFETENSORS_H_
