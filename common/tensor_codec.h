#ifndef PARAGAN_COMMON_TENSOR_CODEC_H_
#define PARAGAN_COMMON_TENSOR_CODEC_H_

// Tensors on the wire: float32 values <-> raw little-endian TensorChunk
// bytes (float32 or bfloat16), split into chunks on the sending side and
// reassembled, with every size and ordering checked, on the receiving side.
// Used by the parameter server (pull: send, push: receive) and its clients.

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/tensor.h"
#include "proto/paragan.pb.h"

namespace paragan {

// Round to nearest even; NaN stays NaN (quiet), infinities stay infinite.
uint16_t FloatToBFloat16(float value);
float BFloat16ToFloat(uint16_t value);

// Converts `count` float32 values to bfloat16 (as FloatToBFloat16) into
// `out`, which holds 2 * count bytes.
void FloatsToBFloat16(const float* values, int64_t count, char* out);

// Copies wire bytes of `dtype` (float32 or bfloat16) spread over `pieces`
// into floats at `dst`, widening bfloat16; the pieces may split an element
// anywhere. Their total size must be a whole number of elements.
void CopyWireToFloats(v1::DType dtype,
                      absl::Span<const absl::string_view> pieces, float* dst);

// Bytes per element of a wire dtype; 0 for an unknown value.
int64_t WireDTypeSize(int dtype);
// Elements of `shape`, or an error naming `what` for a negative dim or a
// product above 2^40.
absl::Status CheckedNumElements(const Shape& shape, const std::string& what,
                                int64_t* out);

// Splits `n` floats into chunks of at most `chunk_bytes` wire bytes (rounded
// down to whole elements, at least one) and calls `emit` for each, in order;
// stops early (and returns false) when `emit` returns false. `header`
// supplies table, tensor_name, shape, base_version, worker_id and kind;
// dtype, total_bytes, offset, data and last are filled here. A tensor with no
// elements is sent as one empty chunk with `last` set.
// The chunking both encoders share: calls `chunk_fn(chunk, start, count)`
// for each run of `count` elements from element `start`, in order, with
// every field of `chunk` but data set (header's fields, dtype, total_bytes,
// offset, last); stops early (returning false) when `chunk_fn` does. The
// boundaries: at most chunk_bytes wire bytes (rounded down to whole
// elements, at least one); no elements is one empty chunk with `last`.
bool ForEachTensorChunk(
    const v1::TensorChunk& header, int64_t n, v1::DType dtype,
    int64_t chunk_bytes,
    const std::function<bool(v1::TensorChunk& chunk, int64_t start,
                             int64_t count)>& chunk_fn);

bool EmitTensorChunks(const v1::TensorChunk& header, const float* values,
                      int64_t n, v1::DType dtype, int64_t chunk_bytes,
                      const std::function<bool(const v1::TensorChunk&)>& emit);

// A tensor reassembled from chunks, widened to float32.
struct ReceivedTensor {
  Shape shape;
  v1::DType dtype = v1::FLOAT32;
  v1::TensorKind kind = v1::GRADIENT;
  int64_t total_bytes = 0;
  int64_t received_bytes = 0;
  bool complete = false;
  std::vector<float> values;
};

// Receiving side of a stream of TensorChunks that all belong to one table,
// one sender and one base_version. Each chunk is validated on arrival, so a
// malformed stream is refused before its payload is buffered:
//  - table, worker_id, base_version and push_id equal to the first chunk's;
//  - a known dtype, non-negative shape, total_bytes == prod(shape) * size;
//  - the same header on every chunk of a tensor, offsets contiguous from 0,
//    no byte beyond total_bytes, `last` exactly at total_bytes;
//  - a tensor sent once; the sum of all tensors' float32 sizes within
//    max_total_bytes (RESOURCE_EXHAUSTED otherwise);
//  - `validate_new_tensor` (optional) accepts the first chunk of each tensor
//    (the server checks name, shape and kind against its table there).
class ChunkAssembler {
 public:
  struct Options {
    int64_t max_total_bytes = int64_t{1} << 40;
    std::function<absl::Status(const v1::TensorChunk&)> validate_new_tensor;
  };
  explicit ChunkAssembler(Options options) : options_(std::move(options)) {}

  absl::Status Add(const v1::TensorChunk& chunk);
  // The same for a chunk whose data field (ignored in `chunk`) arrived as
  // `data`, `data_size` bytes in all (see server/tensor_wire.h).
  absl::Status Add(const v1::TensorChunk& chunk,
                   absl::Span<const absl::string_view> data, int64_t data_size);
  // Fails if no chunk arrived or a tensor is incomplete (truncated stream).
  absl::Status Finish() const;

  bool empty() const { return !started_; }
  const std::string& table() const { return table_; }
  const std::string& worker_id() const { return worker_id_; }
  int64_t base_version() const { return base_version_; }
  uint64_t push_id() const { return push_id_; }
  int64_t payload_bytes() const { return payload_bytes_; }  // wire bytes
  std::map<std::string, ReceivedTensor>& tensors() { return tensors_; }

 private:
  Options options_;
  bool started_ = false;
  std::string table_, worker_id_;
  int64_t base_version_ = 0;
  uint64_t push_id_ = 0;
  int64_t reserved_bytes_ = 0;  // float32 bytes of the tensors announced
  int64_t payload_bytes_ = 0;
  std::map<std::string, ReceivedTensor> tensors_;
};

}  // namespace paragan

#endif  // PARAGAN_COMMON_TENSOR_CODEC_H_
