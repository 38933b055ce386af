#ifndef PARAGAN_COMMON_TENSOR_H_
#define PARAGAN_COMMON_TENSOR_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace paragan {

using Shape = std::vector<int64_t>;

int64_t NumElements(const Shape& shape);
std::string ShapeToString(const Shape& shape);

enum class Device { kCpu, kCuda };

// A float32 tensor: a shape and a reference-counted buffer that lives on one
// device. Copies share the buffer (like a handle); Clone through a backend to
// get a deep copy. Layout is canonical (NCHW activations, OIHW weights) unless
// a layer documents otherwise.
class Tensor {
 public:
  Tensor() = default;
  Tensor(Shape shape, std::shared_ptr<float> storage, Device device);

  // Zero-filled host tensor (64-byte aligned).
  static Tensor Host(const Shape& shape);
  static Tensor HostFrom(const Shape& shape, const std::vector<float>& values);

  const Shape& shape() const { return shape_; }
  int64_t dim(int i) const { return shape_[i]; }
  int ndim() const { return static_cast<int>(shape_.size()); }
  int64_t numel() const { return numel_; }
  bool empty() const { return storage_ == nullptr; }
  Device device() const { return device_; }
  float* data() const { return storage_.get(); }
  // The buffer's owner (its use_count tells whether the buffer is shared).
  const std::shared_ptr<float>& storage() const { return storage_; }

  // Same buffer, different shape; numel must match (checked).
  Tensor Reshape(const Shape& shape) const;
  // Host-only convenience accessors (debug / tests / small tensors).
  std::vector<float> ToVector() const;

 private:
  Shape shape_;
  int64_t numel_ = 0;
  std::shared_ptr<float> storage_;
  Device device_ = Device::kCpu;
};

// Aligned host allocation used by Tensor::Host and the CPU backend.
std::shared_ptr<float> AllocateHostFloats(int64_t count, bool zero);

}  // namespace paragan

#endif  // PARAGAN_COMMON_TENSOR_H_
