#ifndef PARAGAN_SERVER_TENSOR_WIRE_H_
#define PARAGAN_SERVER_TENSOR_WIRE_H_

// TensorChunk messages as grpc::ByteBuffers, without copying tensor bytes
// through protobuf. The bytes on the wire are an ordinary serialized
// paragan.v1.TensorChunk, so clients and servers built from the .proto alone
// interoperate; only the hot paths (Pull, Push) of our own binaries use this.
//
// Sending: the header fields are serialized by protobuf (a few dozen bytes)
// and the data field is appended as its own slice, which references the
// tensor's memory (kept alive by an owner until gRPC releases the slice) or,
// for bfloat16, holds the conversion, written straight into gRPC's memory.
// Receiving: the message's slices are scanned field by field; the data field
// is returned as views into them and copied once, into its destination.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/tensor_codec.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/slice.h"
#include "proto/paragan.pb.h"

namespace paragan {

// "/paragan.v1.ParameterServer/<method>" (as gRPC names the method), from
// the generated descriptor, for the service and the client that carry Pull
// and Push as raw ByteBuffers. Dies naming the method if the .proto has no
// such method. The string lives as long as the process.
const char* ParameterServerMethodPath(const std::string& method);

// Keeps the memory behind zero-copy slices alive; gRPC drops its references
// when it is done with them, possibly after the RPC that sent them returned.
using SliceOwner = std::shared_ptr<const void>;

// `size` bytes at `data` as a slice: referenced when `owner` is set (which
// then must keep them unchanged and alive), else copied.
grpc::Slice DataSlice(const void* data, size_t size, SliceOwner owner);

// `header` (whose data field is ignored) with `data` as its data field.
grpc::ByteBuffer EncodeChunk(const v1::TensorChunk& header, grpc::Slice data);

// Splits `n` float32 values into chunk messages as EmitTensorChunks does
// (same fields, same chunk boundaries) and hands each to `emit`, in order;
// stops early, returning false, when `emit` does. float32 chunks reference
// `values` (see DataSlice for `owner`); bfloat16 chunks carry a conversion.
bool EmitTensorChunkBuffers(
    const v1::TensorChunk& header, const float* values, int64_t n,
    v1::DType dtype, int64_t chunk_bytes, const SliceOwner& owner,
    const std::function<bool(const grpc::ByteBuffer&, int64_t data_bytes)>&
        emit);

// Writes tensors as a stream of TensorChunk messages: each large tensor as
// zero-copy chunks (EmitTensorChunkBuffers), small tensors (at most
// chunk_bytes / 8 on the wire) packed into shared messages of up to
// chunk_bytes (TensorChunk.packed), so that a table of many small tensors
// costs a few messages instead of one each. Tensors leave in the order added.
class ChunkWriter {
 public:
  using Write = std::function<bool(const grpc::ByteBuffer&)>;
  ChunkWriter(int64_t chunk_bytes, Write write)
      : chunk_bytes_(chunk_bytes), write_(std::move(write)) {}

  // One tensor; `header` as for EmitTensorChunks. Returns false once a
  // write failed (the receiver is gone); later calls do nothing.
  bool Add(const v1::TensorChunk& header, const float* values, int64_t n,
           v1::DType dtype, const SliceOwner& owner);
  // Sends what is packed so far; call after the last Add.
  bool Flush();

  int64_t data_bytes() const { return data_bytes_; }  // tensor bytes sent
  int64_t messages() const { return messages_; }

 private:
  const int64_t chunk_bytes_;
  Write write_;
  bool failed_ = false;
  bool has_pending_ = false;
  v1::TensorChunk pending_;  // the first packed chunk; the rest in .packed
  int64_t pending_bytes_ = 0;
  int64_t data_bytes_ = 0;
  int64_t messages_ = 0;
};

// A received TensorChunk: every field but `data` and `packed` in `header`,
// the data field as views into `slices` (in order; empty when the field is
// empty), and the packed chunks (small, parsed whole).
struct ChunkView {
  v1::TensorChunk header;
  std::vector<absl::string_view> data;
  int64_t data_size = 0;
  std::vector<grpc::Slice> slices;  // owns the memory `data` points into
  std::vector<v1::TensorChunk> packed;
};

// Parses a serialized TensorChunk held in `buffer`. InvalidArgument names
// the problem for bytes that are not a TensorChunk (truncated field, length
// beyond the message, unsupported wire type, bad header fields).
absl::Status DecodeChunk(const grpc::ByteBuffer& buffer, ChunkView* out);

// Decodes one message into `view` (reused between messages) and adds its
// chunk and its packed chunks, in order, to `assembler`.
absl::Status AddMessage(const grpc::ByteBuffer& message, ChunkView* view,
                        ChunkAssembler* assembler);

}  // namespace paragan

#endif  // PARAGAN_SERVER_TENSOR_WIRE_H_
