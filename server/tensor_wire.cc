#include "server/tensor_wire.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/check.h"
#include "common/tensor_codec.h"
#include "proto/paragan.grpc.pb.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "the wire format is little-endian; add byte swaps for this host");

namespace paragan {
namespace {

constexpr int kDataField = v1::TensorChunk::kDataFieldNumber;
constexpr int kPackedField = v1::TensorChunk::kPackedFieldNumber;

void AppendVarint(uint64_t value, std::string* out) {
  while (value >= 0x80) {
    out->push_back(static_cast<char>(value | 0x80));
    value >>= 7;
  }
  out->push_back(static_cast<char>(value));
}

void ReleaseOwner(void* owner) { delete static_cast<SliceOwner*>(owner); }

// Reads a message spread over slices, byte by byte or in spans.
class SliceCursor {
 public:
  explicit SliceCursor(const std::vector<grpc::Slice>& slices)
      : slices_(slices) {
    SkipEmpty();
  }

  bool done() const { return index_ == slices_.size(); }
  int64_t position() const { return position_; }

  bool ReadByte(uint8_t* b) {
    if (done()) return false;
    *b = slices_[index_].begin()[offset_];
    Advance(1);
    return true;
  }

  // A base-128 varint of at most 10 bytes; `raw` (if set) gets its bytes.
  bool ReadVarint(uint64_t* value, std::string* raw) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      uint8_t b;
      if (!ReadByte(&b)) return false;
      if (raw != nullptr) raw->push_back(static_cast<char>(b));
      v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if ((b & 0x80) == 0) {
        *value = v;
        return true;
      }
    }
    return false;
  }

  // Hands the next `n` bytes to `piece` in up to one span per slice.
  bool Take(uint64_t n, const std::function<void(absl::string_view)>& piece) {
    while (n > 0) {
      if (done()) return false;
      const grpc::Slice& s = slices_[index_];
      const size_t avail = s.size() - offset_;
      const size_t k = static_cast<size_t>(std::min<uint64_t>(n, avail));
      piece(absl::string_view(
          reinterpret_cast<const char*>(s.begin()) + offset_, k));
      Advance(k);
      n -= k;
    }
    return true;
  }

 private:
  void Advance(size_t k) {
    offset_ += k;
    position_ += static_cast<int64_t>(k);
    if (offset_ == slices_[index_].size()) {
      ++index_;
      offset_ = 0;
      SkipEmpty();
    }
  }
  void SkipEmpty() {
    while (index_ < slices_.size() && slices_[index_].size() == 0) ++index_;
  }

  const std::vector<grpc::Slice>& slices_;
  size_t index_ = 0;
  size_t offset_ = 0;
  int64_t position_ = 0;
};

absl::Status Malformed(const std::string& what, int64_t position) {
  return absl::InvalidArgumentError(absl::StrCat(
      "malformed TensorChunk message: ", what, " at byte ", position));
}

}  // namespace

const char* ParameterServerMethodPath(const std::string& method) {
  static const auto* paths = [] {
    const google::protobuf::ServiceDescriptor* service =
        google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(
            v1::ParameterServer::service_full_name());
    PG_CHECK(service != nullptr);
    auto* out = new std::map<std::string, std::string>;
    for (int i = 0; i < service->method_count(); ++i) {
      const std::string& name = service->method(i)->name();
      (*out)[name] = absl::StrCat("/", service->full_name(), "/", name);
    }
    return out;
  }();
  auto it = paths->find(method);
  if (it == paths->end()) {
    std::fprintf(stderr, "no method '%s' in paragan.v1.ParameterServer\n",
                 method.c_str());
    std::abort();
  }
  return it->second.c_str();
}

grpc::Slice DataSlice(const void* data, size_t size, SliceOwner owner) {
  if (owner == nullptr || size == 0) return grpc::Slice(data, size);
  return grpc::Slice(const_cast<void*>(data), size, ReleaseOwner,
                     new SliceOwner(std::move(owner)));
}

grpc::ByteBuffer EncodeChunk(const v1::TensorChunk& header, grpc::Slice data) {
  std::string head;
  if (header.data().empty()) {
    header.SerializeToString(&head);
  } else {
    v1::TensorChunk copy = header;
    copy.clear_data();
    copy.SerializeToString(&head);
  }
  AppendVarint((static_cast<uint64_t>(kDataField) << 3) | 2, &head);
  AppendVarint(data.size(), &head);
  const grpc::Slice slices[2] = {grpc::Slice(head), std::move(data)};
  return grpc::ByteBuffer(slices, slices[1].size() > 0 ? 2 : 1);
}

bool EmitTensorChunkBuffers(
    const v1::TensorChunk& header, const float* values, int64_t n,
    v1::DType dtype, int64_t chunk_bytes, const SliceOwner& owner,
    const std::function<bool(const grpc::ByteBuffer&, int64_t data_bytes)>&
        emit) {
  const int64_t elem = WireDTypeSize(dtype);
  return ForEachTensorChunk(
      header, n, dtype, chunk_bytes,
      [&](v1::TensorChunk& chunk, int64_t start, int64_t count) {
        const size_t bytes = static_cast<size_t>(count * elem);
        grpc::Slice data;
        if (dtype == v1::FLOAT32) {
          data = DataSlice(values + start, bytes, owner);
        } else {
          data = grpc::Slice(bytes);
          FloatsToBFloat16(
              values + start, count,
              reinterpret_cast<char*>(const_cast<uint8_t*>(data.begin())));
        }
        return emit(EncodeChunk(chunk, std::move(data)),
                    static_cast<int64_t>(bytes));
      });
}

absl::Status DecodeChunk(const grpc::ByteBuffer& buffer, ChunkView* out) {
  out->header.Clear();
  out->data.clear();
  out->data_size = 0;
  out->slices.clear();
  out->packed.clear();
  if (!buffer.Dump(&out->slices).ok()) {
    return absl::InvalidArgumentError("unreadable TensorChunk message");
  }
  std::string head;  // every field but data, re-serialized as it came
  SliceCursor in(out->slices);
  while (!in.done()) {
    const int64_t field_start = in.position();
    std::string raw;
    uint64_t tag;
    if (!in.ReadVarint(&tag, &raw)) return Malformed("bad tag", field_start);
    const uint64_t field = tag >> 3;
    const int wire_type = static_cast<int>(tag & 7);
    if (field == 0) return Malformed("field number 0", field_start);
    if (field == kDataField && wire_type == 2) {
      uint64_t len;
      if (!in.ReadVarint(&len, nullptr)) {
        return Malformed("bad length of field data", in.position());
      }
      // A repeated singular field: the last occurrence wins (protobuf).
      out->data.clear();
      out->data_size = static_cast<int64_t>(len);
      if (!in.Take(len, [&](absl::string_view piece) {
            out->data.push_back(piece);
          })) {
        return Malformed("field data longer than the message", field_start);
      }
      continue;
    }
    if (field == kPackedField && wire_type == 2) {
      uint64_t len;
      std::string bytes;
      if (!in.ReadVarint(&len, nullptr) ||
          !in.Take(len, [&](absl::string_view piece) {
            bytes.append(piece.data(), piece.size());
          })) {
        return Malformed("truncated packed chunk", field_start);
      }
      out->packed.emplace_back();
      if (!out->packed.back().ParseFromString(bytes)) {
        return Malformed("packed chunk does not parse", field_start);
      }
      if (out->packed.back().packed_size() > 0) {
        return Malformed("packed chunk with packed chunks of its own",
                         field_start);
      }
      continue;
    }
    head += raw;
    auto append = [&](absl::string_view piece) {
      head.append(piece.data(), piece.size());
    };
    bool ok = true;
    switch (wire_type) {
      case 0: {
        uint64_t ignored;
        ok = in.ReadVarint(&ignored, &head);
        break;
      }
      case 1:
        ok = in.Take(8, append);
        break;
      case 2: {
        uint64_t len;
        ok = in.ReadVarint(&len, &head) && in.Take(len, append);
        break;
      }
      case 5:
        ok = in.Take(4, append);
        break;
      default:
        return Malformed(absl::StrCat("unsupported wire type ", wire_type),
                         field_start);
    }
    if (!ok) {
      return Malformed(absl::StrCat("truncated field ", field), field_start);
    }
  }
  if (!out->header.ParseFromString(head)) {
    return absl::InvalidArgumentError(
        "malformed TensorChunk message: its header fields do not parse");
  }
  return absl::OkStatus();
}

absl::Status AddMessage(const grpc::ByteBuffer& message, ChunkView* view,
                        ChunkAssembler* assembler) {
  absl::Status st = DecodeChunk(message, view);
  if (!st.ok()) return st;
  st = assembler->Add(view->header, view->data, view->data_size);
  for (const v1::TensorChunk& chunk : view->packed) {
    if (!st.ok()) break;
    st = assembler->Add(chunk);
  }
  return st;
}

bool ChunkWriter::Add(const v1::TensorChunk& header, const float* values,
                      int64_t n, v1::DType dtype, const SliceOwner& owner) {
  if (failed_) return false;
  const int64_t bytes = n * WireDTypeSize(dtype);
  if (bytes > chunk_bytes_ / 8) {
    if (!Flush()) return false;
    failed_ = !EmitTensorChunkBuffers(
        header, values, n, dtype, chunk_bytes_, owner,
        [&](const grpc::ByteBuffer& message, int64_t data_bytes) {
          data_bytes_ += data_bytes;
          ++messages_;
          return write_(message);
        });
    return !failed_;
  }
  if (has_pending_ && pending_bytes_ + bytes > chunk_bytes_ && !Flush()) {
    return false;
  }
  // One chunk: the tensor is smaller than a chunk.
  EmitTensorChunks(header, values, n, dtype, chunk_bytes_,
                   [&](const v1::TensorChunk& chunk) {
                     if (!has_pending_) {
                       pending_ = chunk;
                       has_pending_ = true;
                     } else {
                       *pending_.add_packed() = chunk;
                     }
                     return true;
                   });
  pending_bytes_ += bytes;
  data_bytes_ += bytes;
  return true;
}

bool ChunkWriter::Flush() {
  if (failed_) return false;
  if (!has_pending_) return true;
  const size_t size = pending_.ByteSizeLong();
  grpc::Slice slice(size);
  pending_.SerializeWithCachedSizesToArray(const_cast<uint8_t*>(slice.begin()));
  has_pending_ = false;
  pending_.Clear();
  pending_bytes_ = 0;
  ++messages_;
  failed_ = !write_(grpc::ByteBuffer(&slice, 1));
  return !failed_;
}

}  // namespace paragan
