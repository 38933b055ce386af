#include "common/tensor.h"

#include <cstdlib>
#include <cstring>

#include "absl/strings/str_join.h"
#include "common/check.h"

namespace paragan {

int64_t NumElements(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string ShapeToString(const Shape& shape) {
  return "[" + absl::StrJoin(shape, ", ") + "]";
}

std::shared_ptr<float> AllocateHostFloats(int64_t count, bool zero) {
  size_t bytes = static_cast<size_t>(count > 0 ? count : 1) * sizeof(float);
  bytes = (bytes + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, bytes);
  PG_CHECK(p != nullptr) << "out of host memory allocating " << bytes
                         << " bytes";
  if (zero) std::memset(p, 0, bytes);
  return std::shared_ptr<float>(static_cast<float*>(p),
                                [](float* q) { std::free(q); });
}

Tensor::Tensor(Shape shape, std::shared_ptr<float> storage, Device device)
    : shape_(std::move(shape)),
      numel_(NumElements(shape_)),
      storage_(std::move(storage)),
      device_(device) {}

Tensor Tensor::Host(const Shape& shape) {
  return Tensor(shape, AllocateHostFloats(NumElements(shape), true),
                Device::kCpu);
}

Tensor Tensor::HostFrom(const Shape& shape, const std::vector<float>& values) {
  PG_CHECK_EQ(NumElements(shape), static_cast<int64_t>(values.size()));
  Tensor t = Host(shape);
  // memcpy with a null pointer is undefined even for 0 bytes.
  if (!values.empty()) {
    std::memcpy(t.data(), values.data(), values.size() * sizeof(float));
  }
  return t;
}

Tensor Tensor::Reshape(const Shape& shape) const {
  PG_CHECK_EQ(NumElements(shape), numel_)
      << "cannot reshape " << ShapeToString(shape_) << " to "
      << ShapeToString(shape);
  return Tensor(shape, storage_, device_);
}

std::vector<float> Tensor::ToVector() const {
  PG_CHECK(device_ == Device::kCpu) << "ToVector on a device tensor";
  return std::vector<float>(data(), data() + numel_);
}

}  // namespace paragan
