#include "common/tensor_codec.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "the wire format is little-endian; add byte swaps for this host");

namespace paragan {
namespace {

constexpr int64_t kMaxElements = int64_t{1} << 40;

bool SameShape(const google::protobuf::RepeatedField<int64_t>& a,
               const Shape& b) {
  return static_cast<size_t>(a.size()) == b.size() &&
         std::equal(a.begin(), a.end(), b.begin());
}

}  // namespace

uint16_t FloatToBFloat16(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  if ((bits & 0x7f800000u) == 0x7f800000u && (bits & 0x007fffffu) != 0) {
    return static_cast<uint16_t>((bits >> 16) | 0x0040u);  // quiet NaN
  }
  const uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

float BFloat16ToFloat(uint16_t value) {
  const uint32_t bits = static_cast<uint32_t>(value) << 16;
  float out;
  std::memcpy(&out, &bits, sizeof(out));
  return out;
}

void FloatsToBFloat16(const float* values, int64_t count, char* out) {
  // Branch-free FloatToBFloat16, so that the loop vectorizes. memcpy in and
  // out: `out` may be odd (a wire buffer), and a float is no uint32_t; both
  // compile to plain loads and stores (UBSan found the misaligned store).
#pragma omp simd
  for (int64_t i = 0; i < count; ++i) {
    uint32_t b;
    std::memcpy(&b, values + i, 4);
    const uint32_t rounded = (b + 0x7fffu + ((b >> 16) & 1u)) >> 16;
    const uint32_t quiet_nan = (b >> 16) | 0x0040u;
    const bool nan = (b & 0x7fffffffu) > 0x7f800000u;
    const uint16_t v = static_cast<uint16_t>(nan ? quiet_nan : rounded);
    std::memcpy(out + 2 * i, &v, 2);
  }
}

void CopyWireToFloats(v1::DType dtype,
                      absl::Span<const absl::string_view> pieces, float* dst) {
  if (dtype == v1::FLOAT32) {
    char* out = reinterpret_cast<char*>(dst);
    for (absl::string_view p : pieces) {
      std::memcpy(out, p.data(), p.size());
      out += p.size();
    }
    return;
  }
  // bfloat16: a piece may end in the middle of an element.
  int64_t k = 0;
  bool have_low = false;
  uint8_t low = 0;
  for (absl::string_view piece : pieces) {
    const uint8_t* p = reinterpret_cast<const uint8_t*>(piece.data());
    size_t i = 0;
    if (have_low && !piece.empty()) {
      dst[k++] = BFloat16ToFloat(static_cast<uint16_t>(low | (p[0] << 8)));
      i = 1;
      have_low = false;
    }
    const int64_t whole = static_cast<int64_t>((piece.size() - i) / 2);
    const uint8_t* src = p + i;
    float* out = dst + k;
#pragma omp simd
    for (int64_t j = 0; j < whole; ++j) {
      const uint32_t bits =
          (static_cast<uint32_t>(src[2 * j]) | (src[2 * j + 1] << 8)) << 16;
      std::memcpy(out + j, &bits, 4);
    }
    k += whole;
    i += 2 * static_cast<size_t>(whole);
    if (i < piece.size()) {
      low = p[i];
      have_low = true;
    }
  }
}

int64_t WireDTypeSize(int dtype) {
  switch (dtype) {
    case v1::FLOAT32:
      return 4;
    case v1::BFLOAT16:
      return 2;
    default:
      return 0;
  }
}

absl::Status CheckedNumElements(const Shape& shape, const std::string& what,
                                int64_t* out) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          what, ": negative dimension in shape ", ShapeToString(shape)));
    }
    if (d != 0 && n > kMaxElements / d) {
      return absl::InvalidArgumentError(absl::StrCat(
          what, ": shape ", ShapeToString(shape), " is too large"));
    }
    n *= d;
  }
  *out = n;
  return absl::OkStatus();
}

bool ForEachTensorChunk(
    const v1::TensorChunk& header, int64_t n, v1::DType dtype,
    int64_t chunk_bytes,
    const std::function<bool(v1::TensorChunk& chunk, int64_t start,
                             int64_t count)>& chunk_fn) {
  const int64_t elem = WireDTypeSize(dtype);
  const int64_t per_chunk = std::max<int64_t>(1, chunk_bytes / elem);
  v1::TensorChunk chunk = header;
  chunk.clear_data();
  chunk.set_dtype(dtype);
  chunk.set_total_bytes(n * elem);
  int64_t start = 0;
  do {
    const int64_t count = std::min(per_chunk, n - start);
    chunk.set_offset(start * elem);
    chunk.set_last(start + count == n);
    if (!chunk_fn(chunk, start, count)) return false;
    start += count;
  } while (start < n);
  return true;
}

bool EmitTensorChunks(const v1::TensorChunk& header, const float* values,
                      int64_t n, v1::DType dtype, int64_t chunk_bytes,
                      const std::function<bool(const v1::TensorChunk&)>& emit) {
  const int64_t elem = WireDTypeSize(dtype);
  return ForEachTensorChunk(
      header, n, dtype, chunk_bytes,
      [&](v1::TensorChunk& chunk, int64_t start, int64_t count) {
        std::string* data = chunk.mutable_data();
        if (dtype == v1::FLOAT32) {
          data->assign(reinterpret_cast<const char*>(values + start),
                       static_cast<size_t>(count * elem));
        } else {
          data->resize(static_cast<size_t>(count * elem));
          FloatsToBFloat16(values + start, count, data->data());
        }
        return emit(chunk);
      });
}

absl::Status ChunkAssembler::Add(const v1::TensorChunk& chunk) {
  const absl::string_view data = chunk.data();
  return Add(chunk, absl::MakeConstSpan(&data, 1),
             static_cast<int64_t>(data.size()));
}

absl::Status ChunkAssembler::Add(const v1::TensorChunk& chunk,
                                 absl::Span<const absl::string_view> data,
                                 int64_t data_size) {
  const std::string& name = chunk.tensor_name();
  if (!started_) {
    started_ = true;
    table_ = chunk.table();
    worker_id_ = chunk.worker_id();
    base_version_ = chunk.base_version();
    push_id_ = chunk.push_id();
  } else if (chunk.table() != table_ || chunk.worker_id() != worker_id_ ||
             chunk.base_version() != base_version_ ||
             chunk.push_id() != push_id_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "chunk of tensor '", name,
        "' has table/worker_id/base_version/push_id (", chunk.table(), ", ",
        chunk.worker_id(), ", ", chunk.base_version(), ", ", chunk.push_id(),
        ") differing from the stream's (", table_, ", ", worker_id_, ", ",
        base_version_, ", ", push_id_, ")"));
  }
  if (name.empty()) {
    return absl::InvalidArgumentError("chunk without a tensor_name");
  }
  const int64_t elem = WireDTypeSize(chunk.dtype());
  if (elem == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor '", name, "': unknown dtype ",
                     static_cast<int>(chunk.dtype())));
  }
  const Shape shape(chunk.shape().begin(), chunk.shape().end());
  auto it = tensors_.find(name);
  if (it == tensors_.end()) {
    int64_t n = 0;
    absl::Status st =
        CheckedNumElements(shape, absl::StrCat("tensor '", name, "'"), &n);
    if (!st.ok()) return st;
    if (chunk.total_bytes() != n * elem) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor '", name, "': total_bytes ", chunk.total_bytes(),
          " does not match shape ", ShapeToString(shape), " of ",
          v1::DType_Name(chunk.dtype()), " (", n * elem, " bytes)"));
    }
    if (options_.validate_new_tensor) {
      st = options_.validate_new_tensor(chunk);
      if (!st.ok()) return st;
    }
    if (reserved_bytes_ + 4 * n > options_.max_total_bytes) {
      return absl::ResourceExhaustedError(
          absl::StrCat("tensor '", name, "': the stream would hold ",
                       reserved_bytes_ + 4 * n, " bytes, over the limit of ",
                       options_.max_total_bytes));
    }
    reserved_bytes_ += 4 * n;
    ReceivedTensor t;
    t.shape = shape;
    t.dtype = chunk.dtype();
    t.kind = chunk.kind();
    t.total_bytes = chunk.total_bytes();
    // Grown chunk by chunk below: zero-filling the whole tensor up front
    // would be a second pass over it through memory, not cache.
    t.values.reserve(static_cast<size_t>(n));
    it = tensors_.emplace(name, std::move(t)).first;
  }
  ReceivedTensor& t = it->second;
  if (t.complete) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor '", name, "' sent twice in one stream"));
  }
  if (chunk.dtype() != t.dtype || chunk.kind() != t.kind ||
      chunk.total_bytes() != t.total_bytes ||
      !SameShape(chunk.shape(), t.shape)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor '", name,
        "': dtype, kind, shape or total_bytes changed between chunks"));
  }
  if (chunk.offset() != t.received_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor '", name, "': chunk at offset ", chunk.offset(),
                     ", expected offset ", t.received_bytes,
                     " (chunks missing or out of order)"));
  }
  const int64_t size = data_size;
  if (size > t.total_bytes - t.received_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor '", name, "': chunk of ", size, " bytes at offset ",
        chunk.offset(), " overruns total_bytes ", t.total_bytes));
  }
  if (size % elem != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor '", name, "': chunk of ", size,
                     " bytes is not a whole number of ",
                     v1::DType_Name(t.dtype), " elements"));
  }
  if (size == 0 && !chunk.last()) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor '", name, "': empty chunk that is not the last"));
  }
  if (size > 0) {
    const size_t at = t.values.size();  // == received_bytes / elem
    t.values.resize(at + static_cast<size_t>(size / elem));
    CopyWireToFloats(t.dtype, data, t.values.data() + at);
  }
  t.received_bytes += size;
  payload_bytes_ += size;
  if (chunk.last()) {
    if (t.received_bytes != t.total_bytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor '", name, "' truncated: last chunk ends at ",
                       t.received_bytes, " of ", t.total_bytes, " bytes"));
    }
    t.complete = true;
  }
  return absl::OkStatus();
}

absl::Status ChunkAssembler::Finish() const {
  if (!started_) return absl::InvalidArgumentError("empty stream: no chunks");
  for (const auto& [name, t] : tensors_) {
    if (!t.complete) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor '", name, "' truncated: stream ended after ",
                       t.received_bytes, " of ", t.total_bytes, " bytes"));
    }
  }
  return absl::OkStatus();
}

}  // namespace paragan
