#include "worker/engine/backend.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace paragan {

Tensor Backend::Zeros(const Shape& shape) {
  Tensor t = Alloc(shape);
  Fill(0.0f, &t);
  return t;
}

Tensor Backend::Clone(const Tensor& src) {
  Tensor t = Alloc(src.shape());
  Copy(src, &t);
  return t;
}

Tensor Backend::FromHost(const Tensor& host) {
  Tensor t = Alloc(host.shape());
  Upload(host.data(), &t);
  return t;
}

Tensor Backend::ToHost(const Tensor& t) {
  Tensor h = Tensor::Host(t.shape());
  Download(t, h.data());
  return h;
}

#ifdef PARAGAN_WITH_CUDA
std::unique_ptr<Backend> MakeCudaBackend();
#endif

absl::StatusOr<std::unique_ptr<Backend>> MakeBackend(const std::string& name,
                                                     int threads,
                                                     CpuConvLayout cpu_layout,
                                                     bool log_autotune) {
  if (name == "cpu") return MakeCpuBackend(threads, cpu_layout, log_autotune);
#ifdef PARAGAN_WITH_CUDA
  if (name == "cuda") return MakeCudaBackend();
  return absl::InvalidArgumentError(
      absl::StrCat("unknown device '", name, "': expected cpu or cuda"));
#else
  if (name == "cuda")
    return absl::FailedPreconditionError(
        "device 'cuda' requested but this binary was built without CUDA "
        "(rebuild with --config=cuda)");
  return absl::InvalidArgumentError(
      absl::StrCat("unknown device '", name, "': expected cpu"));
#endif
}

}  // namespace paragan
