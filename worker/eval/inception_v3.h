#ifndef PARAGAN_WORKER_EVAL_INCEPTION_V3_H_
#define PARAGAN_WORKER_EVAL_INCEPTION_V3_H_

// "inception-v3": InceptionV3 as pytorch-fid defines it for FID
// (src/pytorch_fid/inception.py, use_fid_inception=True), inference only, on
// any Backend (CPU and CUDA): the 2048-d pool3 features (FID, KID) and the
// 1008-way fc (IS).
//
//   input [N, 1 or 3, H, W] in [-1, 1]; one channel is repeated to three
//   bilinear resize to 299 x 299 (align_corners=False, as F.interpolate)
//   Conv2d_1a_3x3 (stride 2), 2a_3x3, 2b_3x3 (pad 1), max pool 3/2,
//   Conv2d_3b_1x1, 4a_3x3, max pool 3/2                    -> 192 x 35 x 35
//   Mixed_5b, 5c, 5d (InceptionA), Mixed_6a (B)            -> 768 x 17 x 17
//   Mixed_6b..6e (C), Mixed_7a (D), Mixed_7b, 7c (E)       -> 2048 x 8 x 8
//   global average                                         -> pool3 [2048]
//   fc 2048 -> 1008                                        -> logits
// Every conv is a BasicConv2d: bias-free conv, BatchNorm (eps 0.001, running
// statistics) and ReLU; the BatchNorm is folded into the conv at load time.
// The FID variant's pooling: the pool branches of Mixed_5b-5d, 6b-6e and 7b
// average 3x3 windows (stride 1, pad 1) over the in-bounds pixels only
// (count_include_pad=False, TensorFlow's rule), Mixed_7c's pool branch is a
// 3x3 max pool (stride 1, pad 1); Mixed_6a and 7a max-pool 3x3 stride 2.
// About 5.7 GFLOP per image.
//
// pytorch-fid feeds [0, 1] images, resizes them and maps them to [-1, 1]
// (normalize_input); a bilinear resize commutes with that affine map, so
// resizing our [-1, 1] images directly is the same computation.
//
// IS: FeatureOutputs::logits are the fc's "unbiased" logits, pool3 @ W^T
// without the fc bias. That is what the original Inception Score code
// (Salimans et al., improved-gan's inception_score.py: matmul of pool3 with
// the softmax/logits weights, no bias) and torch-fidelity's IS
// (feature 'logits_unbiased') compute on these same 2015-12-05 weights, so
// IS numbers stay comparable with published ones. Outputs()
// also returns the biased logits.
//
// Weights: the user converts pytorch-fid's pt_inception-2015-12-05-6726825d.pth
// once with tools/convert_pytorch_fid_weights.py into a PGTENS01 file: every
// tensor under its PyTorch name (InceptionV3TensorSpecs()), float32, plus
// "meta/network" = "inception-v3" and "meta/weights" (uint8 text; e.g.
// "pytorch-fid"), which names the weights in stats_network().

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/tensor.h"
#include "common/tensor_io.h"
#include "worker/engine/backend.h"
#include "worker/eval/feature_network.h"

namespace paragan::eval {

inline constexpr char kInceptionV3Name[] = "inception-v3";
inline constexpr int kInceptionV3FeatureDim = 2048;
inline constexpr int kInceptionV3Classes = 1008;
inline constexpr int kInceptionV3Resolution = 299;
inline constexpr double kInceptionV3BatchNormEps = 1e-3;
// The largest batch run at once (activations of one 299 x 299 image take
// ~30 MB at the widest layer): Evaluate splits bigger batch sizes.
inline constexpr int kInceptionV3MaxBatch = 32;

// The command that makes a weights file (printed when --weights is missing).
inline constexpr char kInceptionV3WeightsHelp[] =
    "pytorch-fid's FID Inception weights, converted once: download "
    "pt_inception-2015-12-05-6726825d.pth (pytorch-fid's FID_WEIGHTS_URL, "
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
    "pt_inception-2015-12-05-6726825d.pth, or ~/.cache/torch/hub/checkpoints/ "
    "where pytorch-fid cached it), then run "
    "'/usr/bin/python3 tools/convert_pytorch_fid_weights.py "
    "pt_inception-2015-12-05-6726825d.pth inception_v3_fid.pgt' and pass "
    "--weights=inception_v3_fid.pgt";

struct InceptionTensorSpec {
  std::string name;
  Shape shape;
};
// Every tensor of the weights file (meta/ entries aside), in the converter's
// EXPECTED_SHAPES order (torchvision's registration order).
const std::vector<InceptionTensorSpec>& InceptionV3TensorSpecs();

// Fixed random weights for tests (no pretrained weights are shipped): the
// counter-based splitmix64 generator that tests/eval/make_inception_fixture.py
// documents and uses, value i overall in InceptionV3TensorSpecs() order.
// Returns a weights file's arrays, meta/weights "random-seed<seed>".
std::vector<NamedArray> InceptionV3RandomWeights(uint64_t seed);

struct InceptionOutputs {
  Tensor pool3;            // host [N, 2048]
  Tensor logits;           // host [N, 1008]: fc(pool3), with its bias
  Tensor logits_unbiased;  // host [N, 1008]: pool3 @ fc.weight^T (IS)
};

class InceptionV3 : public FeatureNetwork {
 public:
  explicit InceptionV3(Backend* backend);
  InceptionV3(const InceptionV3&) = delete;
  InceptionV3& operator=(const InceptionV3&) = delete;

  // Refuse a file of another network, a missing, unexpected or misshapen
  // tensor, a non-float32 or non-finite one, naming it; the network is left
  // unloaded then. On success the BatchNorms are folded and uploaded.
  absl::Status Load(const std::string& path);
  absl::Status LoadArrays(const std::vector<NamedArray>& arrays,
                          const std::string& source);
  bool loaded() const { return loaded_; }
  // meta/weights of the loaded file ("pytorch-fid" from the converter).
  const std::string& weights_tag() const { return weights_tag_; }

  // FeatureNetwork. Host images [N, 1 or 3, H, W] or [N, H, W], any H, W.
  std::string name() const override { return kInceptionV3Name; }
  // "inception-v3.<meta/weights>.pool3", e.g. "inception-v3.pytorch-fid.pool3".
  std::string stats_network() const override;
  int feature_dim() const override { return kInceptionV3FeatureDim; }
  int resolution() const override { return kInceptionV3Resolution; }
  absl::Status CheckInput(const Shape& shape) const override;
  // features = pool3, logits = logits_unbiased (see the file comment).
  absl::StatusOr<FeatureOutputs> Evaluate(const Tensor& images,
                                          int batch_size) override;
  // All outputs, in batches of at most min(batch_size, kInceptionV3MaxBatch).
  absl::StatusOr<InceptionOutputs> Outputs(const Tensor& images,
                                           int batch_size);

 private:
  struct Conv {
    int cin = 0, cout = 0, kh = 0, kw = 0, stride = 1, ph = 0, pw = 0;
    Tensor w, b;  // backend tensors, BatchNorm folded in
  };
  Tensor ConvBnRelu(const std::string& name, const Tensor& x);
  Tensor Pool(const Tensor& x, int kernel, int stride, int padding,
              PoolMode mode);
  Tensor Concat(const std::vector<const Tensor*>& parts);
  Tensor BlockA(const std::string& p, const Tensor& x);
  Tensor BlockB(const std::string& p, const Tensor& x);
  Tensor BlockC(const std::string& p, const Tensor& x);
  Tensor BlockD(const std::string& p, const Tensor& x);
  Tensor BlockE(const std::string& p, const Tensor& x, PoolMode pool);
  // x: backend [m, 3, 299, 299] -> pool3 [m, 2048] (backend).
  Tensor Trunk(const Tensor& x);

  Backend* b_;
  std::map<std::string, Conv> convs_;
  Tensor fc_w_, fc_b_;
  bool loaded_ = false;
  std::string weights_tag_;
};

}  // namespace paragan::eval

#endif  // PARAGAN_WORKER_EVAL_INCEPTION_V3_H_
