// BigGAN (Brock et al. 2019) at 32, 64 and 128 pixels, as in BigGAN-PyTorch's
// arch tables: shared class embedding and hierarchical z feeding conditional
// BN in residual up-blocks, self-attention at half the output resolution,
// spectral norm in G and D, and a projection discriminator. Layer for layer
// the PyTorch reference in tests/pytorch/paragan_ref.py.

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/check.h"
#include "common/rng.h"
#include "worker/engine/model.h"
#include "worker/engine/model_registration.h"

namespace paragan {
namespace {

constexpr int kSharedDim = 128;

Tensor Sum(Backend* b, const Tensor& x, const Tensor& y) {
  Tensor out = b->Alloc(x.shape());
  b->Axpby(1.0f, x, 1.0f, y, &out);
  return out;
}

// out[n, :] = s[n] * x[n, :]: per-sample scaling through ChannelAffine on a
// [N, 1, F] view.
Tensor ScaleRows(Backend* b, const Tensor& s, const Tensor& x) {
  const int64_t n = x.dim(0), f = x.numel() / n;
  Tensor out = b->Alloc({n, 1, f});
  Tensor zero = b->Zeros({n, 1});
  b->ChannelAffine(x.Reshape({n, 1, f}), s.Reshape({n, 1}), zero, &out);
  return out.Reshape(x.shape());
}

class GBlock {
 public:
  GBlock(ParamStore* s, const std::string& name, int in, int out, int cond_dim)
      : b_(s->backend()),
        cbn1_(s, name + ".bn1", in, cond_dim, true),
        conv1_(s, name + ".conv1", in, out, 3, 1, 1, true, true),
        cbn2_(s, name + ".bn2", out, cond_dim, true),
        conv2_(s, name + ".conv2", out, out, 3, 1, 1, true, true),
        conv_sc_(s, name + ".conv_sc", in, out, 1, 1, 0, true, true),
        relu1_(b_, Activation::kRelu),
        relu2_(b_, Activation::kRelu),
        up_h_(b_),
        up_x_(b_) {}

  Tensor Forward(const Tensor& x, const Tensor& cond, const Mode& mode) {
    Tensor h = up_h_.Forward(relu1_.Forward(cbn1_.Forward(x, cond, mode)));
    h = conv1_.Forward(h, mode);
    h = conv2_.Forward(relu2_.Forward(cbn2_.Forward(h, cond, mode)), mode);
    return Sum(b_, h, conv_sc_.Forward(up_x_.Forward(x), mode));
  }

  Tensor Backward(const Tensor& dy, Tensor* dcond) {
    Tensor dh = cbn2_.Backward(relu2_.Backward(conv2_.Backward(dy)), dcond);
    dh = conv1_.Backward(dh);
    dh = cbn1_.Backward(relu1_.Backward(up_h_.Backward(dh)), dcond);
    b_->AddTo(up_x_.Backward(conv_sc_.Backward(dy)), &dh);
    return dh;
  }

 private:
  Backend* b_;
  ConditionalBatchNorm cbn1_;
  Conv2d conv1_;
  ConditionalBatchNorm cbn2_;
  Conv2d conv2_;
  Conv2d conv_sc_;
  ActivationLayer relu1_, relu2_;
  Upsample2x up_h_, up_x_;
};

// D residual block. `preactivation` is false only for the first block;
// downsampling average-pools both paths; the shortcut is a learned 1x1 conv
// when channels change or the block downsamples, identity otherwise.
class DBlock {
 public:
  DBlock(ParamStore* s, const std::string& name, int in, int out,
         bool preactivation, bool downsample)
      : b_(s->backend()),
        preactivation_(preactivation),
        downsample_(downsample),
        learnable_sc_(in != out || downsample),
        conv1_(s, name + ".conv1", in, out, 3, 1, 1, true, true),
        conv2_(s, name + ".conv2", out, out, 3, 1, 1, true, true),
        relu0_(b_, Activation::kRelu),
        relu1_(b_, Activation::kRelu),
        pool_h_(b_),
        pool_sc_(b_) {
    if (learnable_sc_)
      conv_sc_ = std::make_unique<Conv2d>(s, name + ".conv_sc", in, out, 1, 1,
                                          0, true, true);
  }

  Tensor Forward(const Tensor& x, const Mode& mode) {
    Tensor h = preactivation_ ? relu0_.Forward(x) : x;
    h = conv2_.Forward(relu1_.Forward(conv1_.Forward(h, mode)), mode);
    if (downsample_) h = pool_h_.Forward(h);
    Tensor sc = x;
    if (preactivation_) {  // conv then pool
      if (learnable_sc_) sc = conv_sc_->Forward(sc, mode);
      if (downsample_) sc = pool_sc_.Forward(sc);
    } else {  // pool then conv (the "optimized" first block)
      if (downsample_) sc = pool_sc_.Forward(sc);
      if (learnable_sc_) sc = conv_sc_->Forward(sc, mode);
    }
    return Sum(b_, h, sc);
  }

  Tensor Backward(const Tensor& dy) {
    Tensor dh = downsample_ ? pool_h_.Backward(dy) : dy;
    dh = conv1_.Backward(relu1_.Backward(conv2_.Backward(dh)));
    if (preactivation_) dh = relu0_.Backward(dh);
    Tensor dsc = dy;
    if (preactivation_) {
      if (downsample_) dsc = pool_sc_.Backward(dsc);
      if (learnable_sc_) dsc = conv_sc_->Backward(dsc);
    } else {
      if (learnable_sc_) dsc = conv_sc_->Backward(dsc);
      if (downsample_) dsc = pool_sc_.Backward(dsc);
    }
    return Sum(b_, dh, dsc);
  }

 private:
  Backend* b_;
  bool preactivation_, downsample_, learnable_sc_;
  Conv2d conv1_, conv2_;
  std::unique_ptr<Conv2d> conv_sc_;
  ActivationLayer relu0_, relu1_;
  AvgPool2x pool_h_, pool_sc_;
};

// Channel multipliers per block (times ModelConfig::width), as in
// BigGAN-PyTorch's arch tables, and where self-attention sits: after G block
// g_attn_after (the one whose output is resolution / 2 pixels wide; 16x16 at
// 32) and after D block d_attn_after.
struct BigGanArch {
  std::vector<int> g_in, g_out;
  std::vector<int> d_out;  // d_in is [image channels] + d_out[:-1]
  std::vector<bool> d_down;
  int g_attn_after = 0, d_attn_after = 0;
};

BigGanArch ArchFor(int resolution) {
  switch (resolution) {
    case 64:
      return {{16, 16, 8, 4},
              {16, 8, 4, 2},
              {1, 2, 4, 8, 16},
              {true, true, true, true, false},
              2,
              0};
    case 128:
      return {{16, 16, 8, 4, 2},
              {16, 8, 4, 2, 1},
              {1, 2, 4, 8, 16, 16},
              {true, true, true, true, true, false},
              3,
              0};
    default:  // 32
      return {{4, 4, 4}, {4, 4, 4}, {4, 4, 4, 4}, {true, true, false, false},
              1,         0};
  }
}

class BigGan : public GanModel {
 public:
  BigGan(const ModelConfig& c, Backend* b)
      : GanModel(c, b),
        arch_(ArchFor(c.resolution)),
        blocks_(static_cast<int>(arch_.g_in.size())),
        chunk_(c.z_dim / (blocks_ + 1)),
        g_in0_(arch_.g_in[0] * c.width),
        shared_(&g_, "g.shared", c.num_classes, kSharedDim, false),
        linear_(&g_, "g.linear", chunk_, g_in0_ * 16, true, true),
        bn_out_(&g_, "g.bn_out", arch_.g_out.back() * c.width, true),
        conv_out_(&g_, "g.conv_out", arch_.g_out.back() * c.width,
                  c.image_channels, 3, 1, 1, true, true),
        relu_out_(b, Activation::kRelu),
        tanh_(b, Activation::kTanh),
        drelu_(b, Activation::kRelu),
        dsum_(b) {
    // Registration order defines the order of parameters (and of their
    // initialization): D blocks, D head, G blocks, then attention.
    int in = c.image_channels;
    for (size_t i = 0; i < arch_.d_out.size(); ++i) {
      const int out = arch_.d_out[i] * c.width;
      dblocks_.push_back(std::make_unique<DBlock>(
          &d_, "d.block" + std::to_string(i + 1), in, out,
          /*preactivation=*/i > 0, arch_.d_down[i]));
      in = out;
    }
    dlinear_ = std::make_unique<Linear>(&d_, "d.linear", in, 1, true, true);
    dembed_ =
        std::make_unique<Embedding>(&d_, "d.embed", c.num_classes, in, true);
    for (int i = 0; i < blocks_; ++i) {
      gblocks_.push_back(std::make_unique<GBlock>(
          &g_, "g.block" + std::to_string(i), arch_.g_in[i] * c.width,
          arch_.g_out[i] * c.width, chunk_ + kSharedDim));
    }
    if (c.attention) {
      gattn_ = std::make_unique<SelfAttention>(
          &g_, "g.attn", arch_.g_out[arch_.g_attn_after] * c.width, true);
      dattn_ = std::make_unique<SelfAttention>(
          &d_, "d.attn", arch_.d_out[arch_.d_attn_after] * c.width, true);
    }
  }

  bool conditional() const override { return true; }

  void Initialize(uint64_t seed) override {
    Rng rng(seed, /*stream=*/2);
    for (ParamStore* store : {&g_, &d_}) {
      for (Param& p : store->params()) {
        const std::string& n = p.name;
        const bool is_weight = absl::EndsWith(n, ".weight");
        if (n.find("bn_out") != std::string::npos) {
          InitConstant(backend_, &p, is_weight ? 1.0f : 0.0f);
        } else if (absl::EndsWith(n, ".gamma")) {
          InitConstant(backend_, &p, 0.0f);
        } else if (is_weight) {
          InitOrthogonal(backend_, &p, &rng);
        } else {
          InitConstant(backend_, &p, 0.0f);
        }
      }
      InitSpectralNormVectors(store, &rng);
    }
  }

  Tensor Generate(const Tensor& z, const std::vector<int>& labels,
                  const Mode& mode) override {
    PG_CHECK(z.ndim() == 2 && z.dim(1) == config_.z_dim)
        << "z must be [N, " << config_.z_dim << "]";
    const int64_t n = z.dim(0);
    PG_CHECK_EQ(static_cast<int64_t>(labels.size()), n);
    std::vector<Tensor> chunks;
    std::vector<Tensor*> chunk_ptrs;
    for (int i = 0; i <= blocks_; ++i)
      chunks.push_back(backend_->Alloc({n, chunk_}));
    for (Tensor& t : chunks) chunk_ptrs.push_back(&t);
    backend_->SplitChannels(z, chunk_ptrs);
    Tensor shared = shared_.Forward(labels, mode);
    conds_.clear();
    for (int i = 0; i < blocks_; ++i) {
      Tensor cond = backend_->Alloc({n, chunk_ + kSharedDim});
      backend_->ConcatChannels({&chunks[i + 1], &shared}, &cond);
      conds_.push_back(cond);
    }
    Tensor h = linear_.Forward(chunks[0], mode).Reshape({n, g_in0_, 4, 4});
    for (int i = 0; i < blocks_; ++i) {
      h = gblocks_[i]->Forward(h, conds_[i], mode);
      if (i == arch_.g_attn_after && gattn_) h = gattn_->Forward(h, mode);
    }
    h = relu_out_.Forward(bn_out_.Forward(h, mode));
    return tanh_.Forward(conv_out_.Forward(h, mode));
  }

  void GenerateBackward(const Tensor& dimages) override {
    const int64_t n = dimages.dim(0);
    Tensor d = conv_out_.Backward(tanh_.Backward(dimages));
    d = bn_out_.Backward(relu_out_.Backward(d));
    Tensor dshared = backend_->Zeros({n, kSharedDim});
    for (int i = blocks_ - 1; i >= 0; --i) {
      if (i == arch_.g_attn_after && gattn_) d = gattn_->Backward(d);
      Tensor dcond = backend_->Zeros({n, chunk_ + kSharedDim});
      d = gblocks_[i]->Backward(d, &dcond);
      Tensor dchunk = backend_->Alloc({n, chunk_});
      Tensor dsh = backend_->Alloc({n, kSharedDim});
      backend_->SplitChannels(dcond, {&dchunk, &dsh});
      backend_->AddTo(dsh, &dshared);
    }
    linear_.Backward(d.Reshape({n, g_in0_ * 16}));
    shared_.Backward(dshared);
  }

  Tensor Discriminate(const Tensor& x, const std::vector<int>& labels,
                      const Mode& mode) override {
    const int64_t n = x.dim(0);
    PG_CHECK_EQ(static_cast<int64_t>(labels.size()), n);
    // Every layer here feeds another, so all compute input gradients.
    Mode inner = mode;
    inner.input_grads = true;
    Tensor h = x;
    for (size_t i = 0; i < dblocks_.size(); ++i) {
      h = dblocks_[i]->Forward(h, inner);
      if (static_cast<int>(i) == arch_.d_attn_after && dattn_)
        h = dattn_->Forward(h, inner);
    }
    features_ = dsum_.Forward(drelu_.Forward(h));
    Tensor out = dlinear_->Forward(features_, inner);
    embed_ = dembed_->Forward(labels, inner);
    Tensor proj = backend_->Alloc({n, 1});
    backend_->RowDot(embed_, features_, &proj);
    backend_->AddTo(proj, &out);
    return out;
  }

  Tensor DiscriminateBackward(const Tensor& dlogits) override {
    Tensor dfeat = dlinear_->Backward(dlogits);
    backend_->AddTo(ScaleRows(backend_, dlogits, embed_), &dfeat);
    dembed_->Backward(ScaleRows(backend_, dlogits, features_));
    Tensor d = drelu_.Backward(dsum_.Backward(dfeat));
    for (int i = static_cast<int>(dblocks_.size()) - 1; i >= 0; --i) {
      if (i == arch_.d_attn_after && dattn_) d = dattn_->Backward(d);
      d = dblocks_[i]->Backward(d);
    }
    return d;
  }

 private:
  BigGanArch arch_;
  int blocks_, chunk_, g_in0_;
  Embedding shared_;
  Linear linear_;
  std::vector<std::unique_ptr<GBlock>> gblocks_;
  std::unique_ptr<SelfAttention> gattn_, dattn_;
  BatchNorm bn_out_;
  Conv2d conv_out_;
  ActivationLayer relu_out_, tanh_;
  std::vector<std::unique_ptr<DBlock>> dblocks_;
  ActivationLayer drelu_;
  SpatialSum dsum_;
  std::unique_ptr<Linear> dlinear_;
  std::unique_ptr<Embedding> dembed_;
  std::vector<Tensor> conds_;
  Tensor features_, embed_;
};

// MakeModel has checked the channels, z_dim >= 1 and that the resolution is
// the registered name's (32, 64 or 128).
absl::StatusOr<std::unique_ptr<GanModel>> MakeBigGan(const ModelConfig& config,
                                                     Backend* backend) {
  const std::string& n = config.name;
  const int res = config.resolution;
  // log2(resolution / 4) G blocks, and one z chunk per block plus one.
  const int chunks = res == 32 ? 4 : res == 64 ? 5 : 6;
  if (config.z_dim % chunks != 0)
    return absl::InvalidArgumentError(absl::StrCat(
        n, " splits z into ", chunks, " chunks: z_dim must be divisible by ",
        chunks, ", got ", config.z_dim));
  if (config.num_classes < 1)
    return absl::InvalidArgumentError(
        absl::StrCat(n, " needs num_classes >= 1"));
  if (config.width < 2 || config.width % 2 != 0)
    return absl::InvalidArgumentError(
        absl::StrCat(n, " width must be even and >= 2, got ", config.width));
  if (config.attention) {
    // Attention splits its channels by 8; at 64 and 128 pixels D attends
    // right after its first block (width channels), G at 4 or 2 x width.
    const int d_attn = (res == 32 ? 4 : 1) * config.width;
    const int g_attn = (res == 128 ? 2 : 4) * config.width;
    if (d_attn % 8 != 0 || g_attn % 8 != 0)
      return absl::InvalidArgumentError(absl::StrCat(
          n, " with attention needs ", res == 32 ? "width" : "a width",
          " giving multiples of 8 channels at the attention layers: width ",
          config.width, " gives ", g_attn, " (G) and ", d_attn,
          " (D); use a multiple of ", res == 32 ? 2 : 8,
          " or --attention=false"));
  }
  return std::make_unique<BigGan>(config, backend);
}

// BigGAN-PyTorch's defaults: dim_z 120 at 64 and 128 pixels (5 / 6 chunks),
// Adam (1e-4, 4e-4) with betas (0, 0.999) and eps 1e-6, two D steps per G
// step. Its steps on a few CPU threads can leave a worker silent for tens of
// seconds, hence the longer lease.
ModelSpec BigGanSpec(int resolution) {
  ModelSpec s;
  s.name = absl::StrCat("biggan", resolution);
  s.description = absl::StrCat("BigGAN at ", resolution, "x", resolution,
                               ", class-conditional (BigGAN-PyTorch's arch)");
  s.config.resolution = resolution;
  if (resolution > 32) s.config.z_dim = 120;
  s.trainer.g_adam = {1e-4f, 0.0f, 0.999f, 1e-6f};
  s.trainer.d_adam = {4e-4f, 0.0f, 0.999f, 1e-6f};
  s.trainer.d_steps = 2;
  s.worker_lease_s = 180;
  s.make = &MakeBigGan;
  return s;
}

const ModelRegistrar kRegisterBigGan32(BigGanSpec(32));
const ModelRegistrar kRegisterBigGan64(BigGanSpec(64));
const ModelRegistrar kRegisterBigGan128(BigGanSpec(128));

}  // namespace
}  // namespace paragan
