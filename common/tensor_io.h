#ifndef PARAGAN_COMMON_TENSOR_IO_H_
#define PARAGAN_COMMON_TENSOR_IO_H_

// The "PGTENS01" named-tensor container, plus small file helpers shared by the
// other writers in common/ (atomic write, whole-file read).
//
// Layout (all integers little-endian):
//   char     magic[8] = "PGTENS01"
//   uint32   count
//   count x {
//     uint32 name_len; char name[name_len];
//     uint32 dtype;    // 0 = float32, 1 = int64, 2 = uint8
//     uint32 ndim;     int64 dims[ndim];
//     raw data: prod(dims) * sizeof(dtype) bytes, C order
//   }
//   uint32   crc32 (zlib) of every preceding byte

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/tensor.h"

namespace paragan {

enum TensorDType : uint32_t {
  kDTypeFloat32 = 0,
  kDTypeInt64 = 1,
  kDTypeUint8 = 2,
};

// Bytes per element of `dtype`, or 0 for an unknown dtype.
int64_t DTypeSize(uint32_t dtype);
// "float32", "int64", "uint8" or "dtype(<n>)".
std::string DTypeName(uint32_t dtype);

// One named array: `bytes` holds prod(dims) elements of `dtype` in host
// (little-endian) byte order, C order.
struct NamedArray {
  std::string name;
  uint32_t dtype = kDTypeFloat32;
  Shape dims;
  std::string bytes;
};

// Build a NamedArray; fails if a dim is negative or prod(dims) differs from
// values.size().
absl::StatusOr<NamedArray> MakeFloatArray(std::string name, Shape dims,
                                          const std::vector<float>& values);
absl::StatusOr<NamedArray> MakeInt64Array(std::string name, Shape dims,
                                          const std::vector<int64_t>& values);
absl::StatusOr<NamedArray> MakeUint8Array(std::string name, Shape dims,
                                          const std::vector<uint8_t>& values);

// Read back; fails if the dtype differs or the byte size does not match dims.
absl::StatusOr<std::vector<float>> ToFloatVector(const NamedArray& array);
absl::StatusOr<std::vector<int64_t>> ToInt64Vector(const NamedArray& array);
absl::StatusOr<std::vector<uint8_t>> ToUint8Vector(const NamedArray& array);

// Checks that the dtype is known, dims are non-negative and bytes.size()
// equals prod(dims) * DTypeSize(dtype).
absl::Status ValidateNamedArray(const NamedArray& array);

// The first array called `name`, or nullptr.
const NamedArray* FindArray(const std::vector<NamedArray>& arrays,
                            absl::string_view name);

// In-memory encoding of the container (what WriteTensorFile writes).
absl::StatusOr<std::string> SerializeTensors(
    const std::vector<NamedArray>& arrays);
// Decodes a container; `source` names the origin (a path) in error messages.
absl::StatusOr<std::vector<NamedArray>> ParseTensors(absl::string_view data,
                                                     absl::string_view source);

// Writes atomically: `path` + ".tmp.<pid>", fflush + fsync, rename over
// `path`, fsync of the directory. On failure `path` is left untouched and the
// temporary file is removed.
absl::Status WriteTensorFile(const std::string& path,
                             const std::vector<NamedArray>& arrays);
// Reads and verifies magic, bounds and checksum.
absl::StatusOr<std::vector<NamedArray>> ReadTensorFile(const std::string& path);

// Generic helpers used by the writers in common/. `owner_only`: the file is
// readable by its owner alone (mode 0600) from its creation, for secrets.
absl::Status WriteFileAtomically(const std::string& path,
                                 absl::string_view contents,
                                 bool owner_only = false);
absl::StatusOr<std::string> ReadFileToString(const std::string& path);
// fsync of a directory: makes the renames in it durable.
absl::Status SyncDirectory(const std::string& dir);
// Creates `dir` (and its parents) and makes it its owner's alone (mode
// 0700), for secrets.
absl::Status MakeOwnerOnlyDirectory(const std::string& dir);

}  // namespace paragan

#endif  // PARAGAN_COMMON_TENSOR_IO_H_
