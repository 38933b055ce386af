#include "worker/engine/backend.h"

#include <algorithm>
#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/check.h"

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

void Backend::NormalizeVector(Tensor* v) {
  const float norm = std::sqrt(Dot(*v, *v));
  Scale(1.0f / std::max(norm, 1e-12f), v);
}

void Backend::SpectralNormWeight(const Tensor& u, const Tensor& wv,
                                 const Tensor& w, Tensor* sigma, Tensor* w_sn) {
  const float s = Dot(u, wv);
  Upload(&s, sigma);
  Axpby(1.0f / s, w, 0.0f, w, w_sn);
}

void Backend::SpectralNormBackward(const Tensor& dw_sn, const Tensor& w_sn,
                                   const Tensor& u, const Tensor& v,
                                   const Tensor& sigma, Tensor* dw) {
  float s = 0;
  Download(sigma, &s);
  const float c = Dot(dw_sn, w_sn);
  Axpby(1.0f / s, dw_sn, 0.0f, dw_sn, dw);
  Gemm(false, false, static_cast<int>(u.numel()), static_cast<int>(v.numel()),
       1, -c / s, u.data(), v.data(), 1.0f, dw->data());
}

void Backend::AxpbyScalar(const Tensor& alpha, const Tensor& x, float beta,
                          Tensor* y) {
  float a = 0;
  Download(alpha, &a);
  if (beta == 0.0f) {
    Axpby(a, x, 0.0f, x, y);
  } else {
    Axpby(a, x, beta, *y, y);
  }
}

void Backend::DotAccumulate(const Tensor& a, const Tensor& b, Tensor* out) {
  float g = 0;
  Download(*out, &g);
  g += Dot(a, b);
  Upload(&g, out);
}

void CheckPool2d(const PoolGeometry& g, const Tensor& x, const Tensor& y) {
  PG_CHECK(g.kernel >= 1 && g.stride >= 1 && g.padding >= 0 &&
           2 * g.padding <= g.kernel)
      << "Pool2d: kernel " << g.kernel << " stride " << g.stride << " padding "
      << g.padding
      << " (needs kernel >= 1, stride >= 1, 0 <= padding <= kernel / 2)";
  PG_CHECK(g.out_h() >= 1 && g.out_w() >= 1 &&
           g.in_h + 2 * g.padding >= g.kernel &&
           g.in_w + 2 * g.padding >= g.kernel)
      << "Pool2d: window " << g.kernel << " (padding " << g.padding
      << ") larger than the input " << g.in_h << "x" << g.in_w;
  const Shape want_x = {g.n, g.channels, g.in_h, g.in_w};
  const Shape want_y = {g.n, g.channels, g.out_h(), g.out_w()};
  PG_CHECK(x.shape() == want_x && y.shape() == want_y)
      << "Pool2d: x " << ShapeToString(x.shape()) << " y "
      << ShapeToString(y.shape()) << ", geometry says " << ShapeToString(want_x)
      << " -> " << ShapeToString(want_y);
}

void CheckResizeBilinear(const Tensor& x, const Tensor& y) {
  PG_CHECK(x.ndim() == 4 && y.ndim() == 4 && x.dim(0) == y.dim(0) &&
           x.dim(1) == y.dim(1) && x.dim(2) >= 1 && x.dim(3) >= 1 &&
           y.dim(2) >= 1 && y.dim(3) >= 1)
      << "ResizeBilinear: x " << ShapeToString(x.shape()) << " y "
      << ShapeToString(y.shape()) << " (both [N, C, H, W], same N and C)";
}

std::vector<BilinearTap> BilinearTaps(int in_size, int out_size) {
  std::vector<BilinearTap> taps(out_size);
  const float scale = static_cast<float>(in_size) / out_size;
  for (int o = 0; o < out_size; ++o) {
    float src = scale * (o + 0.5f) - 0.5f;
    if (src < 0) src = 0;
    BilinearTap& t = taps[o];
    t.i0 = std::min(static_cast<int>(src), in_size - 1);
    t.i1 = t.i0 + (t.i0 < in_size - 1 ? 1 : 0);
    t.w1 = std::min(std::max(src - t.i0, 0.0f), 1.0f);
    t.w0 = 1.0f - t.w1;
  }
  return taps;
}

absl::StatusOr<GpuConvLayout> ParseGpuConvLayout(const std::string& name) {
  if (name == "nchw") return GpuConvLayout::kNchw;
  if (name == "nhwc") return GpuConvLayout::kNhwc;
  if (name == "auto") return GpuConvLayout::kAuto;
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown GPU layout '", name, "': expected nchw, nhwc or auto"));
}

absl::StatusOr<GpuPrecision> ParseGpuPrecision(const std::string& name) {
  if (name == "fp32") return GpuPrecision::kFp32;
  if (name == "tf32") return GpuPrecision::kTf32;
  if (name == "bf16") return GpuPrecision::kBf16;
  if (name == "auto") return GpuPrecision::kAuto;
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown GPU precision '", name, "': expected fp32, tf32, bf16 or auto"));
}

std::string GpuConvLayoutName(GpuConvLayout layout) {
  switch (layout) {
    case GpuConvLayout::kNchw:
      return "nchw";
    case GpuConvLayout::kNhwc:
      return "nhwc";
    case GpuConvLayout::kAuto:
      break;
  }
  return "auto";
}

std::string GpuPrecisionName(GpuPrecision precision) {
  switch (precision) {
    case GpuPrecision::kFp32:
      return "fp32";
    case GpuPrecision::kTf32:
      return "tf32";
    case GpuPrecision::kBf16:
      return "bf16";
    case GpuPrecision::kAuto:
      break;
  }
  return "auto";
}

#ifdef PARAGAN_WITH_CUDA
absl::StatusOr<std::unique_ptr<Backend>> MakeCudaBackend(
    const BackendOptions& options);
bool HasCudaBackend() { return true; }
#else
bool HasCudaBackend() { return false; }
#endif

absl::StatusOr<std::unique_ptr<Backend>> MakeBackend(
    const std::string& name, const BackendOptions& options) {
  if (name == "cpu")
    return MakeCpuBackend(options.threads, options.cpu_layout,
                          options.log_autotune);
  if (name == "cuda") {
#ifdef PARAGAN_WITH_CUDA
    return MakeCudaBackend(options);
#else
    return absl::FailedPreconditionError(
        "device 'cuda' requested but this binary was built without CUDA "
        "(rebuild with --config=cuda)");
#endif
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown device '", name, "': expected cpu or cuda"));
}

absl::StatusOr<std::unique_ptr<Backend>> MakeBackend(const std::string& name,
                                                     int threads,
                                                     CpuConvLayout cpu_layout,
                                                     bool log_autotune) {
  BackendOptions options;
  options.threads = threads;
  options.cpu_layout = cpu_layout;
  options.log_autotune = log_autotune;
  return MakeBackend(name, options);
}

}  // namespace paragan
