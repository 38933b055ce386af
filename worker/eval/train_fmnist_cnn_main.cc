// Trains "fmnist-cnn", the in-domain feature network for evaluation on
// Fashion-MNIST (fmnist_cnn.h), with the engine's Adam on the 60k training
// images, then reports accuracy on the 10k test images and writes the weights
// (with that accuracy in their metadata):
//   bazel-bin/worker/eval/paragan_train_fmnist_cnn --epochs=4 --threads=2
//     --lr=1e-3 --out=worker/eval/fmnist_cnn.pgt
// (how the committed weights were made: test accuracy 0.8923). --epochs=0
// --init=FILE only evaluates and times.
// With --time_features it also times Features() on the 10k test images and
// FID (via worker/eval/metrics) between their statistics and those of the
// first 10k training images.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "common/flags_usage.h"
#include "common/optim_kernels.h"
#include "common/rng.h"
#include "dataloader/datasets/dataset.h"
#include "worker/engine/backend.h"
#include "worker/engine/optimizer.h"
#include "worker/eval/fmnist_cnn.h"
#include "worker/eval/metrics.h"

ABSL_FLAG(int, epochs, 4, "passes over the 60k training images");
ABSL_FLAG(int, batch_size, 128, "images per Adam step");
ABSL_FLAG(int, threads, 2, "CPU threads (oneDNN/OpenMP)");
ABSL_FLAG(std::string, out, "fmnist_cnn.pgt", "weights file to write");
ABSL_FLAG(std::string, data_dir, "",
          "Fashion-MNIST directory (default: $PARAGAN_FASHION_MNIST_DIR or "
          "/usr/share/datasets/fashion-mnist)");
ABSL_FLAG(double, lr, 1e-3, "Adam learning rate (betas 0.9, 0.999)");
ABSL_FLAG(int64_t, seed, 1, "init and data-order seed");
ABSL_FLAG(int, log_every, 100, "steps between progress lines");
ABSL_FLAG(int64_t, max_train, 0, "use only the first N training images (0: all)");
ABSL_FLAG(bool, time_features, true,
          "time Features() on the 10k test images and FID at the end");
ABSL_FLAG(std::string, init, "",
          "start from these weights (with --epochs=0: evaluate/time only)");

namespace {

using paragan::Tensor;
using Clock = std::chrono::steady_clock;

double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

struct Split {
  Tensor images;  // host [N, 1, 32, 32]
  std::vector<int> labels;
};

Split LoadSplit(const std::string& dir, bool train, int64_t limit) {
  auto ds = paragan::OpenFashionMnist(dir, train);
  if (!ds.ok()) {
    std::fprintf(stderr, "error: %s\n", ds.status().ToString().c_str());
    std::exit(1);
  }
  const auto& info = (*ds)->info();
  int64_t n = info.size;
  if (limit > 0 && limit < n) n = limit;
  Split s;
  s.images = Tensor::Host({n, 1, info.height, info.width});
  s.labels.resize(n);
  const int64_t pix = info.channels * info.height * info.width;
  for (int64_t i = 0; i < n; ++i)
    (*ds)->Get(i, s.images.data() + i * pix, &s.labels[i]);
  return s;
}

double Accuracy(paragan::eval::FmnistCnn* net, const Split& s) {
  auto logits = net->Logits(s.images);
  if (!logits.ok()) {
    std::fprintf(stderr, "error: %s\n", logits.status().ToString().c_str());
    std::exit(1);
  }
  const std::vector<int> pred = paragan::eval::Argmax(*logits);
  int64_t correct = 0;
  for (size_t i = 0; i < pred.size(); ++i) correct += pred[i] == s.labels[i];
  return static_cast<double>(correct) / static_cast<double>(pred.size());
}

}  // namespace

int main(int argc, char** argv) {
  paragan::SetUsage(
      "Trains the fmnist-cnn evaluation network on Fashion-MNIST.",
      "worker/eval/train_fmnist_cnn_main.cc");
  absl::ParseCommandLine(argc, argv);
  const int threads = absl::GetFlag(FLAGS_threads);
  const int batch = absl::GetFlag(FLAGS_batch_size);
  const int epochs = absl::GetFlag(FLAGS_epochs);
  if (batch < 1 || epochs < 0) {
    std::fprintf(stderr, "error: --batch_size >= 1 and --epochs >= 0\n");
    return 2;
  }
  std::string dir = absl::GetFlag(FLAGS_data_dir);
  if (dir.empty()) {
    const char* env = std::getenv("PARAGAN_FASHION_MNIST_DIR");
    dir = env && *env ? env : "/usr/share/datasets/fashion-mnist";
  }
  paragan::SetKernelThreads(threads);
  std::unique_ptr<paragan::Backend> backend =
      paragan::MakeCpuBackend(threads, paragan::CpuConvLayout::kAuto);

  const auto t_load = Clock::now();
  Split train = LoadSplit(dir, true, absl::GetFlag(FLAGS_max_train));
  Split test = LoadSplit(dir, false, 0);
  std::printf("loaded %lld train / %lld test images from %s in %.1f s\n",
              static_cast<long long>(train.labels.size()),
              static_cast<long long>(test.labels.size()), dir.c_str(),
              Since(t_load));

  paragan::eval::FmnistCnn net(backend.get());
  const uint64_t seed = static_cast<uint64_t>(absl::GetFlag(FLAGS_seed));
  net.Init(seed);
  paragan::eval::FmnistCnnInfo info;
  if (!absl::GetFlag(FLAGS_init).empty()) {
    auto loaded = net.Load(absl::GetFlag(FLAGS_init));
    if (!loaded.ok()) {
      std::fprintf(stderr, "error: %s\n", loaded.status().ToString().c_str());
      return 1;
    }
    info = *loaded;
  }
  std::printf("fmnist-cnn: %lld parameters\n",
              static_cast<long long>(net.params()->NumParameters()));

  paragan::AdamConfig adam_config;
  adam_config.lr = static_cast<float>(absl::GetFlag(FLAGS_lr));
  adam_config.beta1 = 0.9f;
  adam_config.beta2 = 0.999f;
  paragan::Adam adam(net.params(), adam_config);

  const int64_t n = static_cast<int64_t>(train.labels.size());
  constexpr int64_t kPix = 32 * 32;
  std::vector<int64_t> order(n);
  for (int64_t i = 0; i < n; ++i) order[i] = i;
  paragan::SplitMix64 shuffle_rng(seed * 0x9e3779b97f4a7c15ULL + 1);
  Tensor xb = Tensor::Host({batch, 1, 32, 32});
  std::vector<int> yb(batch);
  std::vector<float> logits_host, dlogits;
  const paragan::Mode mode{true, false, true, false};
  const auto t_train = Clock::now();
  int64_t step = 0;
  for (int epoch = 0; epoch < epochs; ++epoch) {
    for (int64_t i = n - 1; i > 0; --i)
      std::swap(order[i], order[shuffle_rng.Bounded(i + 1)]);
    double loss_sum = 0;
    int64_t loss_count = 0, correct = 0, seen = 0;
    for (int64_t start = 0; start + batch <= n; start += batch) {
      for (int j = 0; j < batch; ++j) {
        const int64_t idx = order[start + j];
        std::copy(train.images.data() + idx * kPix,
                  train.images.data() + (idx + 1) * kPix, xb.data() + j * kPix);
        yb[j] = train.labels[idx];
      }
      Tensor x = backend->FromHost(xb);
      Tensor logits = net.Forward(x, mode);
      logits_host.resize(logits.numel());
      backend->Download(logits, logits_host.data());
      const double loss = paragan::eval::SoftmaxCrossEntropy(
          logits_host, paragan::eval::kFmnistCnnClasses, yb, &dlogits);
      for (int j = 0; j < batch; ++j) {
        const float* z = logits_host.data() + j * 10;
        correct += (std::max_element(z, z + 10) - z) == yb[j];
      }
      seen += batch;
      Tensor dl = backend->Alloc(logits.shape());
      backend->Upload(dlogits.data(), &dl);
      net.params()->ZeroGrads();
      net.Backward(dl);
      adam.Step();
      ++step;
      loss_sum += loss;
      ++loss_count;
      if (step % absl::GetFlag(FLAGS_log_every) == 0) {
        std::printf(
            "[%6.1fs] epoch %d step %lld | loss %.4f | train acc %.4f | %.0f "
            "img/s\n",
            Since(t_train), epoch + 1, static_cast<long long>(step),
            loss_sum / loss_count, static_cast<double>(correct) / seen,
            step * batch / Since(t_train));
        std::fflush(stdout);
        loss_sum = 0;
        loss_count = 0;
        correct = seen = 0;
      }
    }
    const auto t_eval = Clock::now();
    const double acc = Accuracy(&net, test);
    std::printf("epoch %d done at %.1f s: TEST ACCURACY %.4f (eval %.1f s)\n",
                epoch + 1, Since(t_train), acc, Since(t_eval));
    std::fflush(stdout);
  }
  const double train_s = Since(t_train);
  const double acc = Accuracy(&net, test);
  info.test_accuracy = acc;
  if (epochs > 0) {
    info.epochs = epochs;
    info.steps = step;
    info.seed = static_cast<int64_t>(seed);
  }
  std::printf("training: %d epochs, %lld steps of %d in %.1f s; TEST ACCURACY "
              "%.4f (10k test images)\n",
              epochs, static_cast<long long>(step), batch, train_s, acc);
  if (epochs > 0) {
    const absl::Status st = net.Save(absl::GetFlag(FLAGS_out), info);
    if (!st.ok()) {
      std::fprintf(stderr, "error: %s\n", st.ToString().c_str());
      return 1;
    }
    std::printf("wrote %s\n", absl::GetFlag(FLAGS_out).c_str());
  }

  if (absl::GetFlag(FLAGS_time_features)) {
    namespace ev = paragan::eval;
    const int64_t m = std::min<int64_t>(10000, n);
    Tensor ref_images = train.images.Reshape({n, 1, 32, 32});
    Tensor ref = Tensor::Host({m, 1, 32, 32});
    std::copy(ref_images.data(), ref_images.data() + m * kPix, ref.data());
    auto ref_feat = net.Features(ref);
    const auto t0 = Clock::now();
    auto feat = net.Features(test.images);
    const double feat_s = Since(t0);
    if (!feat.ok() || !ref_feat.ok()) {
      std::fprintf(stderr, "error: features failed\n");
      return 1;
    }
    auto fm = ev::FeatureMatrixOf(*feat);
    auto rm = ev::FeatureMatrixOf(*ref_feat);
    auto ref_stats = ev::ComputeFeatureStats(
        *rm, {ev::kFmnistCnnFeatureNetwork, "fashion_mnist/train[:10k]", 32});
    const auto t1 = Clock::now();
    auto stats = ev::ComputeFeatureStats(
        *fm, {ev::kFmnistCnnFeatureNetwork, "fashion_mnist/test", 32});
    const double stats_s = Since(t1);
    const auto t2 = Clock::now();
    auto fid = ev::Fid(*stats, *ref_stats);
    const double fid_s = Since(t2);
    if (!stats.ok() || !ref_stats.ok() || !fid.ok()) {
      std::fprintf(stderr, "error: stats/FID failed\n");
      return 1;
    }
    std::printf(
        "scoring %lld images on %d threads: features %.2f s (%.0f img/s), "
        "stats %.3f s, FID %.3f s, total %.2f s; FID(test, train[:%lld]) = "
        "%.4f\n",
        static_cast<long long>(test.labels.size()), threads, feat_s,
        test.labels.size() / feat_s, stats_s, fid_s, feat_s + stats_s + fid_s,
        static_cast<long long>(m), *fid);
  }
  return 0;
}
