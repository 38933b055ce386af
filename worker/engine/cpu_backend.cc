// CPU backend: oneDNN for convolutions and matrix products, OpenMP loops for
// the memory-bound rest. Everything runs on one OpenMP thread pool (oneDNN is
// built on OpenMP in Debian), so no two pools fight over the cores.

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "common/check.h"
#include "common/optim_kernels.h"
#include "dnnl.hpp"
#include "worker/engine/backend.h"

namespace paragan {
namespace {

using dnnl::memory;
using Tag = memory::format_tag;
using Dt = memory::data_type;

// Spatial size per channel for [N, C, ...] tensors.
int64_t InnerSize(const Tensor& t) {
  int64_t s = 1;
  for (int i = 2; i < t.ndim(); ++i) s *= t.dim(i);
  return s;
}

void CheckSameSize(const Tensor& a, const Tensor& b, const char* what) {
  PG_CHECK(a.numel() == b.numel()) << what << ": " << ShapeToString(a.shape())
                                   << " vs " << ShapeToString(b.shape());
}

struct ConvKey {
  ConvGeometry g;
  bool bias;
  bool operator<(const ConvKey& o) const {
    auto t = [](const ConvKey& k) {
      return std::make_tuple(k.g.n, k.g.in_channels, k.g.in_h, k.g.in_w,
                             k.g.out_channels, k.g.kh(), k.g.kw(), k.g.stride,
                             k.g.ph(), k.g.pw(), k.bias);
    };
    return t(*this) < t(o);
  }
};

// A tensor argument of a primitive: the canonical (plain) layout the engine
// hands over, and the layout the primitive runs on. When they differ the
// argument travels through a scratch buffer with a cached reorder.
struct BoundArg {
  int arg = 0;
  bool input = true;
  memory::desc plain, want;
  memory scratch;
  dnnl::reorder to_want, to_plain;
  bool reordered() const { return plain != want; }
};

struct BoundPrimitive {
  dnnl::primitive prim;
  std::vector<BoundArg> args;
};

enum class ConvPass { kForward, kBackwardData, kBackwardWeights };

// Primitives for one convolution shape, built once and reused every step.
// Each pass is built (and, with kAuto, timed) at its first use, so inference
// never builds, times or holds scratch for the backward passes.
struct ConvPrimitives {
  std::unique_ptr<BoundPrimitive> pass[3];
};

// Size-bucketed free lists of host blocks. Training allocates the same shapes
// every step; reusing blocks avoids mmap/munmap and page faults per step.
// Shared with every live tensor's deleter, so it outlives the backend if a
// tensor does.
class HostPool : public std::enable_shared_from_this<HostPool> {
 public:
  std::shared_ptr<float> Get(int64_t count) {
    const size_t bytes = RoundUp(count);
    float* p = nullptr;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = free_.find(bytes);
      if (it != free_.end() && !it->second.empty()) {
        p = it->second.back();
        it->second.pop_back();
        cached_bytes_ -= bytes;
      }
    }
    if (p == nullptr) {
      p = static_cast<float*>(std::aligned_alloc(64, bytes));
      PG_CHECK(p != nullptr)
          << "out of host memory allocating " << bytes << " bytes";
    }
    std::weak_ptr<HostPool> pool = weak_from_this();
    return std::shared_ptr<float>(p, [pool, bytes](float* q) {
      if (auto self = pool.lock()) {
        self->Put(q, bytes);
      } else {
        std::free(q);
      }
    });
  }
  ~HostPool() {
    for (auto& [bytes, blocks] : free_)
      for (float* p : blocks) std::free(p);
  }

 private:
  static size_t RoundUp(int64_t count) {
    const size_t bytes =
        static_cast<size_t>(std::max<int64_t>(count, 1)) * sizeof(float);
    return (bytes + 63) / 64 * 64;
  }
  void Put(float* p, size_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    // Bound what is kept idle; beyond it blocks go back to the system.
    if (cached_bytes_ + bytes > kMaxCachedBytes) {
      std::free(p);
      return;
    }
    free_[bytes].push_back(p);
    cached_bytes_ += bytes;
  }

  static constexpr size_t kMaxCachedBytes = size_t{4} << 30;
  std::mutex mu_;
  std::map<size_t, std::vector<float*>> free_;
  size_t cached_bytes_ = 0;
};

// Calls f(small, big) for every 2x2 window of `planes` planes whose small
// side is h x w: `small` indexes the h x w planes, `big` the window's
// top-left element in the 2h x 2w planes (the row below it is big + 2w).
template <typename F>
void ForEachWindow2x2(int64_t planes, int64_t h, int64_t w, F f) {
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < planes; ++p) {
    for (int64_t i = 0; i < h; ++i) {
      const int64_t small = (p * h + i) * w;
      const int64_t big = (p * 2 * h + 2 * i) * 2 * w;
      for (int64_t j = 0; j < w; ++j) f(small + j, big + 2 * j);
    }
  }
}

class CpuBackend : public Backend {
 public:
  CpuBackend(int threads, CpuConvLayout layout, bool log_autotune)
      : layout_(layout),
        log_autotune_(log_autotune),
        engine_(dnnl::engine::kind::cpu, 0),
        stream_(engine_) {
    threads_ = threads > 0 ? threads : omp_get_num_procs();
    omp_set_num_threads(threads_);
  }

  Device device() const override { return Device::kCpu; }
  std::string name() const override {
    switch (layout_) {
      case CpuConvLayout::kBlocked:
        return "cpu (blocked conv layouts)";
      case CpuConvLayout::kCanonical:
        return "cpu (NCHW conv layouts)";
      case CpuConvLayout::kAuto:
        break;
    }
    return "cpu (autotuned conv layouts)";
  }

  Tensor Alloc(const Shape& shape) override {
    return Tensor(shape, pool_->Get(NumElements(shape)), Device::kCpu);
  }
  void Fill(float value, Tensor* t) override {
    float* p = t->data();
    const int64_t n = t->numel();
#pragma omp parallel for if (n > 65536) schedule(static)
    for (int64_t i = 0; i < n; ++i) p[i] = value;
  }
  void Copy(const Tensor& src, Tensor* dst) override {
    CheckSameSize(src, *dst, "Copy");
    std::memcpy(dst->data(), src.data(), src.numel() * sizeof(float));
  }
  void Upload(const float* host, Tensor* dst) override {
    std::memcpy(dst->data(), host, dst->numel() * sizeof(float));
  }
  void Download(const Tensor& src, float* host) override {
    std::memcpy(host, src.data(), src.numel() * sizeof(float));
  }

  void Gemm(bool ta, bool tb, int m, int n, int k, float alpha, const float* a,
            const float* b, float beta, float* c) override {
    if (m == 0 || n == 0) return;
    if (k == 0) {
      for (int64_t i = 0; i < int64_t{m} * n; ++i) c[i] *= beta;
      return;
    }
    const dnnl_dim_t lda = ta ? m : k, ldb = tb ? k : n;
    dnnl_status_t st = dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k,
                                  alpha, a, lda, b, ldb, beta, c, n);
    PG_CHECK(st == dnnl_success) << "dnnl_sgemm failed: " << st;
  }
  void BatchedGemm(int batch, bool ta, bool tb, int m, int n, int k,
                   float alpha, const float* a, int64_t sa, const float* b,
                   int64_t sb, float beta, float* c, int64_t sc) override {
    // Each product is small (attention maps); parallelize across the batch.
    const dnnl_dim_t lda = ta ? m : k, ldb = tb ? k : n;
#pragma omp parallel for schedule(static)
    for (int i = 0; i < batch; ++i) {
      // dnnl_sgemm called inside a parallel region runs single-threaded.
      dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, alpha, a + i * sa,
                 lda, b + i * sb, ldb, beta, c + i * sc, n);
    }
  }
  float Dot(const Tensor& a, const Tensor& b) override {
    CheckSameSize(a, b, "Dot");
    double s = 0;
    const float* x = a.data();
    const float* y = b.data();
    const int64_t n = a.numel();
#pragma omp parallel for reduction(+ : s) if (n > 65536)
    for (int64_t i = 0; i < n; ++i) s += double{x[i]} * y[i];
    return static_cast<float>(s);
  }

  void ConvForward(const ConvGeometry& g, const Tensor& x, const Tensor& w,
                   const Tensor* bias, Tensor* y) override {
    Run(&Conv(g, bias != nullptr, ConvPass::kForward),
        {{DNNL_ARG_SRC, x.data()},
         {DNNL_ARG_WEIGHTS, w.data()},
         {DNNL_ARG_BIAS, bias ? bias->data() : nullptr},
         {DNNL_ARG_DST, y->data()}});
  }
  void ConvBackwardData(const ConvGeometry& g, const Tensor& dy,
                        const Tensor& w, Tensor* dx) override {
    Run(&Conv(g, false, ConvPass::kBackwardData),
        {{DNNL_ARG_DIFF_DST, dy.data()},
         {DNNL_ARG_WEIGHTS, w.data()},
         {DNNL_ARG_DIFF_SRC, dx->data()}});
  }
  void ConvBackwardWeights(const ConvGeometry& g, const Tensor& x,
                           const Tensor& dy, Tensor* dw, Tensor* db) override {
    Run(&Conv(g, db != nullptr, ConvPass::kBackwardWeights),
        {{DNNL_ARG_SRC, x.data()},
         {DNNL_ARG_DIFF_DST, dy.data()},
         {DNNL_ARG_DIFF_WEIGHTS, dw->data()},
         {DNNL_ARG_DIFF_BIAS, db ? db->data() : nullptr}});
  }

  void BatchNormStats(const Tensor& x, float eps, Tensor* mean, Tensor* inv_std,
                      Tensor* xhat) override {
    const int64_t n = x.dim(0), c = x.dim(1), hw = InnerSize(x);
    const float* px = x.data();
    float* pm = mean->data();
    float* ps = inv_std->data();
    float* py = xhat->data();
#pragma omp parallel for schedule(static)
    for (int64_t ch = 0; ch < c; ++ch) {
      double sum = 0, sq = 0;
      for (int64_t i = 0; i < n; ++i) {
        const float* row = px + (i * c + ch) * hw;
        float s = 0, q = 0;
        for (int64_t j = 0; j < hw; ++j) s += row[j];
        sum += s;
        const float mu_row = s / hw;
        for (int64_t j = 0; j < hw; ++j) {
          const float d = row[j] - mu_row;
          q += d * d;
        }
        // Chan et al. pairwise combination keeps the variance accurate.
        sq += q + double{mu_row} * mu_row * hw;
      }
      const double count = double(n) * hw;
      const double mu = sum / count;
      const double var = std::max(0.0, sq / count - mu * mu);
      const float is = static_cast<float>(1.0 / std::sqrt(var + eps));
      pm[ch] = static_cast<float>(mu);
      ps[ch] = is;
      const float fmu = static_cast<float>(mu);
      for (int64_t i = 0; i < n; ++i) {
        const float* row = px + (i * c + ch) * hw;
        float* out = py + (i * c + ch) * hw;
        for (int64_t j = 0; j < hw; ++j) out[j] = (row[j] - fmu) * is;
      }
    }
  }
  void BatchNormApply(const Tensor& x, const Tensor& mean,
                      const Tensor& inv_std, Tensor* xhat) override {
    const int64_t n = x.dim(0), c = x.dim(1), hw = InnerSize(x);
    const float* px = x.data();
    const float* pm = mean.data();
    const float* ps = inv_std.data();
    float* py = xhat->data();
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t i = 0; i < n; ++i)
      for (int64_t ch = 0; ch < c; ++ch) {
        const float* row = px + (i * c + ch) * hw;
        float* out = py + (i * c + ch) * hw;
        const float mu = pm[ch], is = ps[ch];
        for (int64_t j = 0; j < hw; ++j) out[j] = (row[j] - mu) * is;
      }
  }
  void ChannelAffine(const Tensor& xhat, const Tensor& gamma,
                     const Tensor& beta, Tensor* y) override {
    const int64_t n = xhat.dim(0), c = xhat.dim(1), hw = InnerSize(xhat);
    const bool per_sample = gamma.numel() == n * c && gamma.ndim() == 2;
    const float* px = xhat.data();
    const float* pg = gamma.data();
    const float* pb = beta.data();
    float* py = y->data();
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t i = 0; i < n; ++i)
      for (int64_t ch = 0; ch < c; ++ch) {
        const int64_t k = per_sample ? i * c + ch : ch;
        const float gg = pg[k], bb = pb[k];
        const float* row = px + (i * c + ch) * hw;
        float* out = py + (i * c + ch) * hw;
        for (int64_t j = 0; j < hw; ++j) out[j] = row[j] * gg + bb;
      }
  }
  void ChannelAffineBackward(const Tensor& dy, const Tensor& xhat,
                             const Tensor& gamma, Tensor* dxhat, Tensor* dgamma,
                             Tensor* dbeta) override {
    const int64_t n = xhat.dim(0), c = xhat.dim(1), hw = InnerSize(xhat);
    const bool per_sample = gamma.numel() == n * c && gamma.ndim() == 2;
    const float* pdy = dy.data();
    const float* px = xhat.data();
    const float* pg = gamma.data();
    float* pdx = dxhat->data();
    float* pdg = dgamma->data();
    float* pdb = dbeta->data();
#pragma omp parallel for schedule(static)
    for (int64_t ch = 0; ch < c; ++ch) {
      float sg = 0, sb = 0;
      for (int64_t i = 0; i < n; ++i) {
        const int64_t k = per_sample ? i * c + ch : ch;
        const float gg = pg[k];
        const float* d = pdy + (i * c + ch) * hw;
        const float* xr = px + (i * c + ch) * hw;
        float* o = pdx + (i * c + ch) * hw;
        float rg = 0, rb = 0;
        for (int64_t j = 0; j < hw; ++j) {
          rg += d[j] * xr[j];
          rb += d[j];
          o[j] = d[j] * gg;
        }
        if (per_sample) {
          pdg[k] = rg;
          pdb[k] = rb;
        } else {
          sg += rg;
          sb += rb;
        }
      }
      if (!per_sample) {
        pdg[ch] = sg;
        pdb[ch] = sb;
      }
    }
  }
  void BatchNormBackward(const Tensor& dxhat, const Tensor& xhat,
                         const Tensor& inv_std, Tensor* dx) override {
    const int64_t n = xhat.dim(0), c = xhat.dim(1), hw = InnerSize(xhat);
    const float* pd = dxhat.data();
    const float* px = xhat.data();
    const float* ps = inv_std.data();
    float* po = dx->data();
    const float inv_count = 1.0f / static_cast<float>(n * hw);
#pragma omp parallel for schedule(static)
    for (int64_t ch = 0; ch < c; ++ch) {
      float s1 = 0, s2 = 0;
      for (int64_t i = 0; i < n; ++i) {
        const float* d = pd + (i * c + ch) * hw;
        const float* xr = px + (i * c + ch) * hw;
        for (int64_t j = 0; j < hw; ++j) {
          s1 += d[j];
          s2 += d[j] * xr[j];
        }
      }
      const float m1 = s1 * inv_count, m2 = s2 * inv_count, is = ps[ch];
      for (int64_t i = 0; i < n; ++i) {
        const float* d = pd + (i * c + ch) * hw;
        const float* xr = px + (i * c + ch) * hw;
        float* o = po + (i * c + ch) * hw;
        for (int64_t j = 0; j < hw; ++j) o[j] = is * (d[j] - m1 - xr[j] * m2);
      }
    }
  }
  void UpdateRunningStats(const Tensor& batch_mean, const Tensor& batch_inv_std,
                          float eps, int64_t count, float momentum,
                          Tensor* running_mean, Tensor* running_var) override {
    const int64_t c = batch_mean.numel();
    const double unbias = count > 1 ? double(count) / (count - 1) : 1.0;
    for (int64_t i = 0; i < c; ++i) {
      const double is = batch_inv_std.data()[i];
      const double var = 1.0 / (is * is) - eps;
      running_mean->data()[i] =
          static_cast<float>((1 - momentum) * running_mean->data()[i] +
                             momentum * batch_mean.data()[i]);
      running_var->data()[i] = static_cast<float>(
          (1 - momentum) * running_var->data()[i] + momentum * var * unbias);
    }
  }
  void InvStd(const Tensor& var, float eps, Tensor* inv_std) override {
    for (int64_t i = 0; i < var.numel(); ++i)
      inv_std->data()[i] = 1.0f / std::sqrt(var.data()[i] + eps);
  }

  void ActivationForward(Activation act, float slope, const Tensor& x,
                         Tensor* y) override {
    CheckSameSize(x, *y, "ActivationForward");
    const float* px = x.data();
    float* py = y->data();
    const int64_t n = x.numel();
    switch (act) {
      case Activation::kIdentity:
        if (px != py) std::memcpy(py, px, n * sizeof(float));
        break;
      case Activation::kRelu:
#pragma omp parallel for if (n > 32768) schedule(static)
        for (int64_t i = 0; i < n; ++i) py[i] = px[i] > 0 ? px[i] : 0.0f;
        break;
      case Activation::kLeakyRelu:
#pragma omp parallel for if (n > 32768) schedule(static)
        for (int64_t i = 0; i < n; ++i)
          py[i] = px[i] > 0 ? px[i] : px[i] * slope;
        break;
      case Activation::kTanh:
#pragma omp parallel for if (n > 8192) schedule(static)
        for (int64_t i = 0; i < n; ++i) py[i] = std::tanh(px[i]);
        break;
    }
  }
  void ActivationBackward(Activation act, float slope, const Tensor& x,
                          const Tensor& y, const Tensor& dy,
                          Tensor* dx) override {
    const int64_t n = dy.numel();
    const float* pd = dy.data();
    float* po = dx->data();
    switch (act) {
      case Activation::kIdentity:
        if (pd != po) std::memcpy(po, pd, n * sizeof(float));
        break;
      case Activation::kRelu: {
        const float* px = x.data();
#pragma omp parallel for if (n > 32768) schedule(static)
        for (int64_t i = 0; i < n; ++i) po[i] = px[i] > 0 ? pd[i] : 0.0f;
        break;
      }
      case Activation::kLeakyRelu: {
        const float* px = x.data();
#pragma omp parallel for if (n > 32768) schedule(static)
        for (int64_t i = 0; i < n; ++i)
          po[i] = px[i] > 0 ? pd[i] : pd[i] * slope;
        break;
      }
      case Activation::kTanh: {
        const float* py = y.data();
#pragma omp parallel for if (n > 32768) schedule(static)
        for (int64_t i = 0; i < n; ++i) po[i] = pd[i] * (1 - py[i] * py[i]);
        break;
      }
    }
  }
  void Axpby(float alpha, const Tensor& a, float beta, const Tensor& b,
             Tensor* y) override {
    CheckSameSize(a, b, "Axpby");
    CheckSameSize(a, *y, "Axpby");
    const float* pa = a.data();
    const float* pb = b.data();
    float* py = y->data();
    const int64_t n = a.numel();
#pragma omp parallel for if (n > 32768) schedule(static)
    for (int64_t i = 0; i < n; ++i) py[i] = alpha * pa[i] + beta * pb[i];
  }
  void Scale(float alpha, Tensor* x) override {
    float* p = x->data();
    const int64_t n = x->numel();
#pragma omp parallel for if (n > 32768) schedule(static)
    for (int64_t i = 0; i < n; ++i) p[i] *= alpha;
  }
  void AddRowBias(const Tensor& bias, Tensor* y) override {
    const int64_t f = bias.numel(), rows = y->numel() / f;
    const float* pb = bias.data();
    float* py = y->data();
#pragma omp parallel for if (rows * f > 32768) schedule(static)
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < f; ++j) py[r * f + j] += pb[j];
  }
  void RowBiasGrad(const Tensor& dy, Tensor* db) override {
    const int64_t f = db->numel(), rows = dy.numel() / f;
    const float* pd = dy.data();
    float* pb = db->data();
    std::fill(pb, pb + f, 0.0f);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < f; ++j) pb[j] += pd[r * f + j];
  }

  void AddChannelBias(const Tensor& bias, Tensor* y) override {
    const int64_t n = y->dim(0), c = y->dim(1), hw = InnerSize(*y);
    const float* pb = bias.data();
    float* py = y->data();
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t i = 0; i < n; ++i)
      for (int64_t ch = 0; ch < c; ++ch) {
        float* row = py + (i * c + ch) * hw;
        for (int64_t j = 0; j < hw; ++j) row[j] += pb[ch];
      }
  }
  void ChannelBiasGrad(const Tensor& dy, Tensor* db) override {
    const int64_t n = dy.dim(0), c = dy.dim(1), hw = InnerSize(dy);
    const float* pd = dy.data();
    float* pb = db->data();
#pragma omp parallel for schedule(static)
    for (int64_t ch = 0; ch < c; ++ch) {
      float s = 0;
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < hw; ++j) s += pd[(i * c + ch) * hw + j];
      pb[ch] = s;
    }
  }

  // The 2x2-window ops: `w2` is the row stride of the large (2h x 2w) side.
  void Upsample2xForward(const Tensor& x, Tensor* y) override {
    const float* px = x.data();
    float* py = y->data();
    const int64_t w2 = 2 * x.dim(3);
    ForEachWindow2x2(x.dim(0) * x.dim(1), x.dim(2), x.dim(3),
                     [=](int64_t small, int64_t big) {
                       py[big] = py[big + 1] = py[big + w2] = py[big + w2 + 1] =
                           px[small];
                     });
  }
  void Upsample2xBackward(const Tensor& dy, Tensor* dx) override {
    const float* pd = dy.data();
    float* po = dx->data();
    const int64_t w2 = 2 * dx->dim(3);
    ForEachWindow2x2(dx->dim(0) * dx->dim(1), dx->dim(2), dx->dim(3),
                     [=](int64_t small, int64_t big) {
                       po[small] = pd[big] + pd[big + 1] + pd[big + w2] +
                                   pd[big + w2 + 1];
                     });
  }
  void AvgPool2xForward(const Tensor& x, Tensor* y) override {
    const float* px = x.data();
    float* py = y->data();
    const int64_t w2 = 2 * y->dim(3);
    ForEachWindow2x2(y->dim(0) * y->dim(1), y->dim(2), y->dim(3),
                     [=](int64_t small, int64_t big) {
                       py[small] = 0.25f * (px[big] + px[big + 1] +
                                            px[big + w2] + px[big + w2 + 1]);
                     });
  }
  void AvgPool2xBackward(const Tensor& dy, Tensor* dx) override {
    const float* pd = dy.data();
    float* po = dx->data();
    const int64_t w2 = 2 * dy.dim(3);
    ForEachWindow2x2(dy.dim(0) * dy.dim(1), dy.dim(2), dy.dim(3),
                     [=](int64_t small, int64_t big) {
                       po[big] = po[big + 1] = po[big + w2] = po[big + w2 + 1] =
                           0.25f * pd[small];
                     });
  }
  void MaxPool2xForward(const Tensor& x, Tensor* y) override {
    const float* px = x.data();
    float* py = y->data();
    const int64_t w2 = 2 * y->dim(3);
    ForEachWindow2x2(y->dim(0) * y->dim(1), y->dim(2), y->dim(3),
                     [=](int64_t small, int64_t big) {
                       py[small] =
                           std::max(std::max(px[big], px[big + 1]),
                                    std::max(px[big + w2], px[big + w2 + 1]));
                     });
  }
  void MaxPool2xBackward(const Tensor& x, const Tensor& dy,
                         Tensor* dx) override {
    const float* px = x.data();
    const float* pd = dy.data();
    float* po = dx->data();
    const int64_t w2 = 2 * dy.dim(3);
    ForEachWindow2x2(
        dy.dim(0) * dy.dim(1), dy.dim(2), dy.dim(3),
        [=](int64_t small, int64_t big) {
          // Gradient goes to the first maximum, as in PyTorch.
          const int64_t cand[4] = {big, big + 1, big + w2, big + w2 + 1};
          int64_t best = cand[0];
          for (int k = 1; k < 4; ++k)
            if (px[cand[k]] > px[best]) best = cand[k];
          for (int k = 0; k < 4; ++k) po[cand[k]] = 0;
          po[best] = pd[small];
        });
  }
  void SpatialSumForward(const Tensor& x, Tensor* y) override {
    const int64_t planes = x.dim(0) * x.dim(1), hw = InnerSize(x);
    const float* px = x.data();
    float* py = y->data();
#pragma omp parallel for schedule(static)
    for (int64_t p = 0; p < planes; ++p) {
      float s = 0;
      for (int64_t j = 0; j < hw; ++j) s += px[p * hw + j];
      py[p] = s;
    }
  }
  void SpatialSumBackward(const Tensor& dy, Tensor* dx) override {
    const int64_t planes = dx->dim(0) * dx->dim(1), hw = InnerSize(*dx);
    const float* pd = dy.data();
    float* po = dx->data();
#pragma omp parallel for schedule(static)
    for (int64_t p = 0; p < planes; ++p)
      for (int64_t j = 0; j < hw; ++j) po[p * hw + j] = pd[p];
  }

  void Pool2dForward(const PoolGeometry& g, const Tensor& x,
                     Tensor* y) override {
    CheckPool2d(g, x, *y);
    const int64_t planes = int64_t{g.n} * g.channels;
    const int h = g.in_h, w = g.in_w, ho = g.out_h(), wo = g.out_w();
    const int k = g.kernel, s = g.stride, pad = g.padding;
    const PoolMode mode = g.mode;
    const float* px = x.data();
    float* py = y->data();
#pragma omp parallel for schedule(static)
    for (int64_t p = 0; p < planes; ++p) {
      const float* in = px + p * h * w;
      float* out = py + p * ho * wo;
      for (int i = 0; i < ho; ++i) {
        const int r0 = std::max(i * s - pad, 0);
        const int r1 = std::min(i * s - pad + k, h);
        for (int j = 0; j < wo; ++j) {
          const int c0 = std::max(j * s - pad, 0);
          const int c1 = std::min(j * s - pad + k, w);
          if (mode == PoolMode::kMax) {
            float m = in[r0 * w + c0];
            for (int r = r0; r < r1; ++r)
              for (int c = c0; c < c1; ++c) m = std::max(m, in[r * w + c]);
            out[i * wo + j] = m;
          } else {
            float sum = 0;
            for (int r = r0; r < r1; ++r)
              for (int c = c0; c < c1; ++c) sum += in[r * w + c];
            const int count =
                mode == PoolMode::kAvgInclude ? k * k : (r1 - r0) * (c1 - c0);
            out[i * wo + j] = sum / static_cast<float>(count);
          }
        }
      }
    }
  }

  void ResizeBilinearForward(const Tensor& x, Tensor* y) override {
    CheckResizeBilinear(x, *y);
    const int64_t planes = x.dim(0) * x.dim(1);
    const int h = static_cast<int>(x.dim(2)), w = static_cast<int>(x.dim(3));
    const int ho = static_cast<int>(y->dim(2)),
              wo = static_cast<int>(y->dim(3));
    // Per output row and column: the two source indices and weights.
    const std::vector<BilinearTap> rows = BilinearTaps(h, ho);
    const std::vector<BilinearTap> cols = BilinearTaps(w, wo);
    const float* px = x.data();
    float* py = y->data();
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t p = 0; p < planes; ++p)
      for (int i = 0; i < ho; ++i) {
        const BilinearTap& r = rows[i];
        const float* in0 = px + (p * h + r.i0) * w;
        const float* in1 = px + (p * h + r.i1) * w;
        float* out = py + (p * ho + i) * wo;
        for (int j = 0; j < wo; ++j) {
          const BilinearTap& c = cols[j];
          out[j] = r.w0 * (c.w0 * in0[c.i0] + c.w1 * in0[c.i1]) +
                   r.w1 * (c.w0 * in1[c.i0] + c.w1 * in1[c.i1]);
        }
      }
  }

  void ConcatChannels(const std::vector<const Tensor*>& parts,
                      Tensor* y) override {
    const int64_t n = y->dim(0), row = y->numel() / n;
    int64_t offset = 0;
    for (const Tensor* t : parts) {
      const int64_t len = t->numel() / n;
      for (int64_t i = 0; i < n; ++i)
        std::memcpy(y->data() + i * row + offset, t->data() + i * len,
                    len * sizeof(float));
      offset += len;
    }
    PG_CHECK_EQ(offset, row);
  }
  void SplitChannels(const Tensor& y,
                     const std::vector<Tensor*>& parts) override {
    const int64_t n = y.dim(0), row = y.numel() / n;
    int64_t offset = 0;
    for (Tensor* t : parts) {
      const int64_t len = t->numel() / n;
      for (int64_t i = 0; i < n; ++i)
        std::memcpy(t->data() + i * len, y.data() + i * row + offset,
                    len * sizeof(float));
      offset += len;
    }
    PG_CHECK_EQ(offset, row);
  }

  void SoftmaxForward(const Tensor& x, Tensor* y) override {
    const int64_t cols = x.dim(x.ndim() - 1), rows = x.numel() / cols;
    const float* px = x.data();
    float* py = y->data();
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const float* in = px + r * cols;
      float* out = py + r * cols;
      float mx = in[0];
      for (int64_t j = 1; j < cols; ++j) mx = std::max(mx, in[j]);
      float s = 0;
      for (int64_t j = 0; j < cols; ++j) {
        out[j] = std::exp(in[j] - mx);
        s += out[j];
      }
      const float inv = 1.0f / s;
      for (int64_t j = 0; j < cols; ++j) out[j] *= inv;
    }
  }
  void SoftmaxBackward(const Tensor& y, const Tensor& dy, Tensor* dx) override {
    const int64_t cols = y.dim(y.ndim() - 1), rows = y.numel() / cols;
    const float* py = y.data();
    const float* pd = dy.data();
    float* po = dx->data();
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      float dot = 0;
      for (int64_t j = 0; j < cols; ++j)
        dot += py[r * cols + j] * pd[r * cols + j];
      for (int64_t j = 0; j < cols; ++j)
        po[r * cols + j] = py[r * cols + j] * (pd[r * cols + j] - dot);
    }
  }

  void GatherRows(const Tensor& table, const std::vector<int>& ids,
                  Tensor* y) override {
    const int64_t d = table.dim(1);
    for (size_t i = 0; i < ids.size(); ++i) {
      PG_CHECK(ids[i] >= 0 && ids[i] < table.dim(0)) << "row id " << ids[i];
      std::memcpy(y->data() + i * d, table.data() + ids[i] * d,
                  d * sizeof(float));
    }
  }
  void ScatterAddRows(const Tensor& dy, const std::vector<int>& ids,
                      Tensor* dtable) override {
    const int64_t d = dtable->dim(1);
    for (size_t i = 0; i < ids.size(); ++i) {
      float* dst = dtable->data() + ids[i] * d;
      const float* src = dy.data() + i * d;
      for (int64_t j = 0; j < d; ++j) dst[j] += src[j];
    }
  }
  void RowDot(const Tensor& a, const Tensor& b, Tensor* out) override {
    const int64_t n = a.dim(0), f = a.numel() / n;
    for (int64_t i = 0; i < n; ++i) {
      float s = 0;
      for (int64_t j = 0; j < f; ++j)
        s += a.data()[i * f + j] * b.data()[i * f + j];
      out->data()[i] = s;
    }
  }

  void AdamUpdate(float lr, float beta1, float beta2, float eps, int64_t step,
                  const Tensor& grad, Tensor* param, Tensor* m,
                  Tensor* v) override {
    AdamUpdateHost(lr, beta1, beta2, eps, step, grad.data(), param->data(),
                   m->data(), v->data(), grad.numel());
  }
  void EmaUpdate(float decay, const Tensor& param, Tensor* ema) override {
    EmaUpdateHost(decay, param.data(), ema->data(), param.numel());
  }
  bool AllFinite(const Tensor& t) override {
    return AllFiniteHost(t.data(), t.numel());
  }

 private:
  // Executes a bound primitive on plain buffers, reordering arguments whose
  // chosen layout is not the plain one.
  void Run(BoundPrimitive* bp,
           const std::vector<std::pair<int, float*>>& buffers) {
    std::unordered_map<int, memory> exec_args;
    std::vector<std::pair<BoundArg*, memory>> outputs;
    for (BoundArg& a : bp->args) {
      float* ptr = nullptr;
      for (const auto& [id, p] : buffers)
        if (id == a.arg) ptr = p;
      if (ptr == nullptr) continue;
      memory plain(a.plain, engine_, ptr);
      if (!a.reordered()) {
        exec_args.emplace(a.arg, plain);
        continue;
      }
      if (a.input)
        a.to_want.execute(stream_, plain, a.scratch);
      else
        outputs.emplace_back(&a, plain);
      exec_args.emplace(a.arg, a.scratch);
    }
    bp->prim.execute(stream_, exec_args);
    for (auto& [a, plain] : outputs)
      a->to_plain.execute(stream_, a->scratch, plain);
    stream_.wait();
  }

  BoundArg Bind(int arg, bool input, const memory::desc& plain,
                const memory::desc& want) {
    BoundArg a;
    a.arg = arg;
    a.input = input;
    a.plain = plain;
    a.want = want;
    if (a.reordered()) {
      a.scratch = memory(want, engine_);
      memory p(plain, engine_, DNNL_MEMORY_NONE);
      if (input)
        a.to_want = dnnl::reorder(p, a.scratch);
      else
        a.to_plain = dnnl::reorder(a.scratch, p);
    }
    return a;
  }

  // The primitive of one pass of one shape, built at first use.
  BoundPrimitive& Conv(const ConvGeometry& g, bool bias, ConvPass pass) {
    std::lock_guard<std::mutex> lock(mu_);
    std::unique_ptr<BoundPrimitive>& slot =
        convs_[ConvKey{g, bias}].pass[static_cast<int>(pass)];
    if (slot == nullptr)
      slot = std::make_unique<BoundPrimitive>(
          layout_ == CpuConvLayout::kAuto
              ? Autotune(g, bias, pass)
              : BuildConv(g, bias, layout_ == CpuConvLayout::kBlocked, pass));
    return *slot;
  }

  // Times one convolution pass in both layouts on this shape and keeps the
  // faster one: which wins depends on channels, spatial size and batch
  // (blocked formats pay reorders at the edges, which dominate for few
  // channels).
  BoundPrimitive Autotune(const ConvGeometry& g, bool bias, ConvPass pass) {
    BoundPrimitive canonical = BuildConv(g, bias, false, pass);
    BoundPrimitive blocked = BuildConv(g, bias, true, pass);
    const int64_t nx = int64_t{g.n} * g.in_channels * g.in_h * g.in_w;
    const int64_t nw =
        int64_t{g.out_channels} * g.in_channels * g.kh() * g.kw();
    const int64_t ny = int64_t{g.n} * g.out_channels * g.out_h() * g.out_w();
    std::vector<float> x(nx, 0.01f), w(nw, 0.01f), y(ny, 0.01f),
        b(g.out_channels, 0.01f);
    std::vector<std::pair<int, float*>> args;
    const char* name = "";
    switch (pass) {
      case ConvPass::kForward:
        name = "fwd";
        args = {{DNNL_ARG_SRC, x.data()},
                {DNNL_ARG_WEIGHTS, w.data()},
                {DNNL_ARG_BIAS, bias ? b.data() : nullptr},
                {DNNL_ARG_DST, y.data()}};
        break;
      case ConvPass::kBackwardData:
        name = "bwd_data";
        args = {{DNNL_ARG_DIFF_DST, y.data()},
                {DNNL_ARG_WEIGHTS, w.data()},
                {DNNL_ARG_DIFF_SRC, x.data()}};
        break;
      case ConvPass::kBackwardWeights:
        name = "bwd_weights";
        args = {{DNNL_ARG_SRC, x.data()},
                {DNNL_ARG_DIFF_DST, y.data()},
                {DNNL_ARG_DIFF_WEIGHTS, w.data()},
                {DNNL_ARG_DIFF_BIAS, bias ? b.data() : nullptr}};
        break;
    }
    auto time_ms = [&](BoundPrimitive* bp) {
      Run(bp, args);  // warm-up (first execution allocates and JITs)
      double best = 1e30;
      for (int i = 0; i < 2; ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        Run(bp, args);
        best = std::min(best, std::chrono::duration<double, std::milli>(
                                  std::chrono::steady_clock::now() - t0)
                                  .count());
      }
      return best;
    };
    const double tc = time_ms(&canonical);
    const double tb = time_ms(&blocked);
    const bool use_blocked = tb < tc;
    if (log_autotune_)
      std::fprintf(stderr,
                   "cpu conv autotune n%d c%d->%d %dx%d k%dx%d s%d p%dx%d%s: "
                   "%s %s (blocked %.2f ms, nchw %.2f ms)\n",
                   g.n, g.in_channels, g.out_channels, g.in_h, g.in_w, g.kh(),
                   g.kw(), g.stride, g.ph(), g.pw(), bias ? " +bias" : "", name,
                   use_blocked ? "blocked" : "nchw", tb, tc);
    return use_blocked ? std::move(blocked) : std::move(canonical);
  }

  BoundPrimitive BuildConv(const ConvGeometry& g, bool bias, bool any,
                           ConvPass pass) {
    PG_CHECK(g.kh() > 0 && g.kw() > 0 && g.stride > 0 && g.ph() >= 0 &&
             g.pw() >= 0 && g.out_h() > 0 && g.out_w() > 0)
        << "bad convolution geometry: kernel " << g.kh() << "x" << g.kw()
        << " stride " << g.stride << " padding " << g.ph() << "x" << g.pw()
        << " on " << g.in_h << "x" << g.in_w;
    const memory::dims xd = {g.n, g.in_channels, g.in_h, g.in_w};
    const memory::dims wd = {g.out_channels, g.in_channels, g.kh(), g.kw()};
    const memory::dims yd = {g.n, g.out_channels, g.out_h(), g.out_w()};
    const memory::desc x_plain(xd, Dt::f32, Tag::nchw);
    const memory::desc w_plain(wd, Dt::f32, Tag::oihw);
    const memory::desc b_md({g.out_channels}, Dt::f32, Tag::x);
    const memory::desc y_plain(yd, Dt::f32, Tag::nchw);
    // Canonical layout pins the primitives to NCHW/OIHW; blocked (any) lets
    // oneDNN pick its native layouts (nChw16c & co.), paid for with reorders.
    const memory::desc x_md =
        any ? memory::desc(xd, Dt::f32, Tag::any) : x_plain;
    const memory::desc w_md =
        any ? memory::desc(wd, Dt::f32, Tag::any) : w_plain;
    const memory::desc y_md =
        any ? memory::desc(yd, Dt::f32, Tag::any) : y_plain;
    const memory::dims strides = {g.stride, g.stride};
    const memory::dims pad = {g.ph(), g.pw()};
    const auto algo = dnnl::algorithm::convolution_direct;
    // The forward descriptor is also the backward passes' hint.
    auto fwd_d = bias ? dnnl::convolution_forward::desc(
                            dnnl::prop_kind::forward_training, algo, x_md, w_md,
                            b_md, y_md, strides, pad, pad)
                      : dnnl::convolution_forward::desc(
                            dnnl::prop_kind::forward_training, algo, x_md, w_md,
                            y_md, strides, pad, pad);
    dnnl::convolution_forward::primitive_desc fwd_pd(fwd_d, engine_);
    BoundPrimitive p;
    switch (pass) {
      case ConvPass::kForward:
        p.prim = dnnl::convolution_forward(fwd_pd);
        p.args = {Bind(DNNL_ARG_SRC, true, x_plain, fwd_pd.src_desc()),
                  Bind(DNNL_ARG_WEIGHTS, true, w_plain, fwd_pd.weights_desc()),
                  Bind(DNNL_ARG_BIAS, true, b_md, b_md),
                  Bind(DNNL_ARG_DST, false, y_plain, fwd_pd.dst_desc())};
        break;
      case ConvPass::kBackwardData: {
        dnnl::convolution_backward_data::desc bd_d(algo, x_md, w_md, y_md,
                                                   strides, pad, pad);
        dnnl::convolution_backward_data::primitive_desc bd_pd(bd_d, engine_,
                                                              fwd_pd);
        p.prim = dnnl::convolution_backward_data(bd_pd);
        p.args = {
            Bind(DNNL_ARG_DIFF_DST, true, y_plain, bd_pd.diff_dst_desc()),
            Bind(DNNL_ARG_WEIGHTS, true, w_plain, bd_pd.weights_desc()),
            Bind(DNNL_ARG_DIFF_SRC, false, x_plain, bd_pd.diff_src_desc())};
        break;
      }
      case ConvPass::kBackwardWeights: {
        auto bw_d = bias ? dnnl::convolution_backward_weights::desc(
                               algo, x_md, w_md, b_md, y_md, strides, pad, pad)
                         : dnnl::convolution_backward_weights::desc(
                               algo, x_md, w_md, y_md, strides, pad, pad);
        dnnl::convolution_backward_weights::primitive_desc bw_pd(bw_d, engine_,
                                                                 fwd_pd);
        p.prim = dnnl::convolution_backward_weights(bw_pd);
        p.args = {Bind(DNNL_ARG_SRC, true, x_plain, bw_pd.src_desc()),
                  Bind(DNNL_ARG_DIFF_DST, true, y_plain, bw_pd.diff_dst_desc()),
                  Bind(DNNL_ARG_DIFF_WEIGHTS, false, w_plain,
                       bw_pd.diff_weights_desc()),
                  Bind(DNNL_ARG_DIFF_BIAS, false, b_md, b_md)};
        break;
      }
    }
    return p;
  }

  std::shared_ptr<HostPool> pool_ = std::make_shared<HostPool>();
  int threads_;
  CpuConvLayout layout_;
  bool log_autotune_;
  dnnl::engine engine_;
  dnnl::stream stream_;
  std::mutex mu_;
  std::map<ConvKey, ConvPrimitives> convs_;
};

}  // namespace

std::unique_ptr<Backend> MakeCpuBackend(int threads, CpuConvLayout layout,
                                        bool log_autotune) {
  return std::make_unique<CpuBackend>(threads, layout, log_autotune);
}

absl::StatusOr<CpuConvLayout> ParseCpuConvLayout(const std::string& name) {
  if (name == "auto") return CpuConvLayout::kAuto;
  if (name == "blocked") return CpuConvLayout::kBlocked;
  if (name == "canonical" || name == "nchw") return CpuConvLayout::kCanonical;
  return absl::InvalidArgumentError("unknown CPU conv layout '" + name +
                                    "': expected auto, blocked or canonical");
}

}  // namespace paragan
