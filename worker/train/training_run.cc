#include "worker/train/training_run.h"

#include <sys/stat.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/check.h"
#include "common/image_io.h"
#include "common/tensor_io.h"
#include "dataloader/datasets/sampler.h"
#include "worker/engine/model_registry.h"

namespace paragan {
namespace {

constexpr int kGridColumns = 8;
constexpr uint64_t kGridSeed = 1234;

std::string FormatDuration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const int64_t s = static_cast<int64_t>(seconds + 0.5);
  if (s >= 3600) return absl::StrFormat("%dh%02dm", s / 3600, (s % 3600) / 60);
  if (s >= 60) return absl::StrFormat("%dm%02ds", s / 60, s % 60);
  return absl::StrFormat("%ds", s);
}

std::vector<int> GridLabels(const GanTrainer& t) {
  const ModelConfig& m = t.config().model;
  const int rows = t.config().model.num_classes;
  std::vector<int> labels;
  if (!t.model().conditional()) return labels;
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < kGridColumns; ++c) labels.push_back(r % m.num_classes);
  return labels;
}

// Images in [-1, 1] -> uint8 N x H x W (x C), channels last.
std::vector<uint8_t> ToUint8(const Tensor& host) {
  const int64_t n = host.dim(0), c = host.dim(1), h = host.dim(2),
                w = host.dim(3);
  std::vector<uint8_t> out(host.numel());
  for (int64_t i = 0; i < n; ++i)
    for (int64_t y = 0; y < h; ++y)
      for (int64_t x = 0; x < w; ++x)
        for (int64_t ch = 0; ch < c; ++ch) {
          out[((i * h + y) * w + x) * c + ch] =
              PixelFromUnit(host.data()[((i * c + ch) * h + y) * w + x]);
        }
  return out;
}

}  // namespace

Tensor FixedGridZ(const GanTrainer& trainer) {
  Rng rng(kGridSeed, /*stream=*/9);
  const bool cond = trainer.model().conditional();
  const int n = cond ? trainer.config().model.num_classes * kGridColumns
                     : kGridColumns * kGridColumns;
  return trainer.RandomZ(n, &rng);
}

absl::Status WriteGrid(GanTrainer* trainer, const Tensor& z,
                       const std::string& path) {
  Backend* b = trainer->model().backend();
  Tensor images = b->ToHost(trainer->SampleEma(z, GridLabels(*trainer)));
  Image grid = MakeImageGrid(images.data(), static_cast<int>(images.dim(0)),
                             static_cast<int>(images.dim(1)),
                             static_cast<int>(images.dim(2)),
                             static_cast<int>(images.dim(3)), kGridColumns);
  return WritePng(path, grid.pixels.data(), grid.height, grid.width,
                  grid.channels);
}

absl::StatusOr<std::unique_ptr<GanTrainer>> TrainerFromCheckpoint(
    const std::vector<NamedArray>& arrays, Backend* backend) {
  PG_ASSIGN_OR_RETURN(ModelConfig model, ModelConfigFromState(arrays));
  TrainerConfig tc = DefaultTrainerConfig(model.name);
  tc.model = model;
  PG_ASSIGN_OR_RETURN(std::unique_ptr<GanTrainer> trainer,
                      GanTrainer::Create(tc, backend));
  PG_RETURN_IF_ERROR(trainer->RestoreState(arrays));
  return trainer;
}

absl::Status WriteSamples(GanTrainer* trainer, int64_t n, uint64_t seed,
                          const std::string& prefix) {
  if (n < 1)
    return absl::InvalidArgumentError(
        absl::StrCat("num_samples must be >= 1, got ", n));
  const ModelConfig& m = trainer->config().model;
  const bool cond = trainer->model().conditional();
  Rng rng(seed, /*stream=*/11);
  std::vector<uint8_t> pixels;
  std::vector<int32_t> labels;
  constexpr int kChunk = 100;
  for (int64_t done = 0; done < n; done += kChunk) {
    const int k = static_cast<int>(std::min<int64_t>(kChunk, n - done));
    Tensor z = trainer->RandomZ(k, &rng);
    std::vector<int> l;
    for (int i = 0; i < k; ++i) {
      // Balanced classes: sample i has class i mod K.
      l.push_back(cond ? static_cast<int>((done + i) % m.num_classes) : 0);
      labels.push_back(l.back());
    }
    Tensor images =
        trainer->model().backend()->ToHost(trainer->SampleEma(z, l));
    std::vector<uint8_t> q = ToUint8(images);
    pixels.insert(pixels.end(), q.begin(), q.end());
  }
  Shape shape = {n, m.resolution, m.resolution};
  if (m.image_channels > 1) shape.push_back(m.image_channels);
  PG_RETURN_IF_ERROR(WriteNpy(prefix + ".npy", "|u1", shape, pixels.data()));
  if (cond)
    PG_RETURN_IF_ERROR(
        WriteNpy(prefix + "_labels.npy", "<i4", {n}, labels.data()));
  return WriteGrid(trainer, FixedGridZ(*trainer), prefix + ".png");
}

absl::Status RunTraining(const TrainingRunOptions& o,
                         const std::atomic<bool>* stop) {
  // Checked up front: a zero log_every would divide by zero mid-run, and a
  // bad num_samples would only surface after the whole training. An unknown
  // model would otherwise show as a dataset of the wrong size.
  PG_RETURN_IF_ERROR(GetModelSpec(o.trainer.model.name).status());
  if (o.steps < 0)
    return absl::InvalidArgumentError(
        absl::StrCat("steps must be >= 0, got ", o.steps));
  if (o.log_every < 1)
    return absl::InvalidArgumentError(
        absl::StrCat("log_every must be >= 1, got ", o.log_every));
  if (o.sample_every < 0 || o.checkpoint_every < 0)
    return absl::InvalidArgumentError(absl::StrCat(
        "sample_every and checkpoint_every must be >= 0 (0: off), got ",
        o.sample_every, " and ", o.checkpoint_every));
  if (o.num_samples < 1)
    return absl::InvalidArgumentError(
        absl::StrCat("num_samples must be >= 1, got ", o.num_samples));
  BackendOptions backend_options;
  backend_options.threads = o.threads;
  backend_options.cpu_layout = o.cpu_layout;
  backend_options.gpu_layout = o.gpu_layout;
  backend_options.gpu_precision = o.gpu_precision;
  backend_options.log_autotune = true;
  PG_ASSIGN_OR_RETURN(std::unique_ptr<Backend> backend,
                      MakeBackend(o.device, backend_options));
  PG_ASSIGN_OR_RETURN(std::unique_ptr<Dataset> dataset, OpenDataset(o.dataset));
  const DatasetInfo& info = dataset->info();
  TrainerConfig tc = o.trainer;
  tc.model.image_channels = info.channels;
  tc.model.num_classes = info.num_classes;
  if (info.height != tc.model.resolution || info.width != tc.model.resolution)
    return absl::InvalidArgumentError(absl::StrFormat(
        "dataset '%s' has %dx%d images but model '%s' needs %dx%d", info.name,
        info.height, info.width, tc.model.name, tc.model.resolution,
        tc.model.resolution));
  PG_ASSIGN_OR_RETURN(std::unique_ptr<GanTrainer> trainer,
                      GanTrainer::Create(tc, backend.get()));

  std::error_code ec;
  std::filesystem::create_directories(o.out_dir, ec);
  if (ec)
    return absl::PermissionDeniedError(absl::StrCat(
        "cannot create output directory '", o.out_dir, "': ", ec.message()));
  const std::string ckpt = o.out_dir + "/checkpoint.pgt";
  EpochSampler sampler(info.size, tc.seed);
  if (o.resume && std::filesystem::exists(ckpt)) {
    PG_ASSIGN_OR_RETURN(std::vector<NamedArray> arrays, ReadTensorFile(ckpt));
    PG_RETURN_IF_ERROR(trainer->RestoreState(arrays));
    const NamedArray* s = FindArray(arrays, "meta/sampler");
    if (!s)
      return absl::DataLossError(absl::StrCat(ckpt, ": lacks meta/sampler"));
    PG_ASSIGN_OR_RETURN(std::vector<int64_t> sv, ToInt64Vector(*s));
    if (sv.size() != 2)
      return absl::DataLossError(absl::StrCat(ckpt, ": bad meta/sampler"));
    PG_RETURN_IF_ERROR(sampler.SetState({sv[0], sv[1]}));
    std::printf("resumed from %s at step %lld\n", ckpt.c_str(),
                static_cast<long long>(trainer->step()));
  }
  auto save = [&]() -> absl::Status {
    PG_ASSIGN_OR_RETURN(std::vector<NamedArray> arrays, trainer->SaveState());
    const EpochSampler::State st = sampler.state();
    PG_ASSIGN_OR_RETURN(NamedArray s, MakeInt64Array("meta/sampler", {2},
                                                     {st.epoch, st.cursor}));
    arrays.push_back(std::move(s));
    return WriteCheckpoint(ckpt, std::move(arrays));
  };

  const int b = tc.batch_size;
  Tensor host_batch = Tensor::Host({b, info.channels, info.height, info.width});
  std::vector<int64_t> indices;
  BatchSource source = [&](Tensor* images, std::vector<int>* labels) {
    sampler.NextBatch(b, &indices);
    labels->assign(b, 0);
    LoadBatch(*dataset, indices, host_batch.data(), labels->data(), o.threads);
    *images = backend->FromHost(host_batch);
  };

  std::printf(
      "training %s on %s (%lld images, %d classes) | device %s, %d threads | "
      "batch %d, %d D step(s) per G step, loss %s, lr G %.1e D %.1e | "
      "G %lld params, D %lld params | out %s\n",
      tc.model.name.c_str(), info.name.c_str(),
      static_cast<long long>(info.size), info.num_classes,
      backend->name().c_str(), o.threads, b, tc.d_steps,
      GanLossName(tc.loss).c_str(), tc.g_adam.lr, tc.d_adam.lr,
      static_cast<long long>(trainer->model().generator().NumParameters()),
      static_cast<long long>(trainer->model().discriminator().NumParameters()),
      o.out_dir.c_str());
  std::fflush(stdout);

  const Tensor grid_z = FixedGridZ(*trainer);
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  auto window_start = start;
  int64_t window_steps = 0;
  const int64_t first_step = trainer->step();
  StepStats stats;
  double avg_d = 0, avg_g = 0;
  bool stopped = false;
  double next_eval = o.eval_every_s;
  while (trainer->step() < o.steps) {
    if (stop && stop->load()) {
      stopped = true;
      break;
    }
    stats = trainer->Step(source);
    if (!std::isfinite(stats.d_loss) || !std::isfinite(stats.g_loss))
      return absl::InternalError(absl::StrFormat(
          "training diverged at step %d: D loss %f, G loss %f (last good "
          "checkpoint: %s)",
          trainer->step(), stats.d_loss, stats.g_loss, ckpt));
    ++window_steps;
    avg_d += stats.d_loss;
    avg_g += stats.g_loss;
    const int64_t step = trainer->step();
    const double elapsed =
        std::chrono::duration<double>(Clock::now() - start).count();
    if (step % o.log_every == 0 || step == o.steps) {
      const double wsec =
          std::chrono::duration<double>(Clock::now() - window_start).count();
      const double ips = window_steps * b * tc.d_steps / std::max(wsec, 1e-9);
      const double sps = (step - first_step) / std::max(elapsed, 1e-9);
      double eta = (o.steps - step) / std::max(sps, 1e-9);
      if (o.max_seconds > 0) eta = std::min(eta, o.max_seconds - elapsed);
      std::printf(
          "step %6lld/%lld | %7.1f img/s | D loss %.3f  G loss %.3f | "
          "D(real) %+.2f D(fake) %+.2f | elapsed %s ETA %s\n",
          static_cast<long long>(step), static_cast<long long>(o.steps), ips,
          avg_d / window_steps, avg_g / window_steps, stats.d_real,
          stats.d_fake, FormatDuration(elapsed).c_str(),
          FormatDuration(eta).c_str());
      std::fflush(stdout);
      window_start = Clock::now();
      window_steps = 0;
      avg_d = avg_g = 0;
    }
    if (o.sample_every > 0 && step % o.sample_every == 0) {
      PG_RETURN_IF_ERROR(
          WriteGrid(trainer.get(), grid_z,
                    absl::StrFormat("%s/grid_%06d.png", o.out_dir, step)));
    }
    if (o.checkpoint_every > 0 && step % o.checkpoint_every == 0)
      PG_RETURN_IF_ERROR(save());
    // (The last step's state is the final evaluation's.)
    if (o.quality && o.eval_every_s > 0 && elapsed >= next_eval &&
        step < o.steps && o.quality->Ready()) {
      PG_ASSIGN_OR_RETURN(std::vector<NamedArray> state, trainer->SaveState());
      o.quality->Observe(std::move(state), step, elapsed);
      next_eval = elapsed + o.eval_every_s;
    }
    if (o.max_seconds > 0 && elapsed >= o.max_seconds) break;
  }
  PG_RETURN_IF_ERROR(save());
  if (o.quality && !stopped) {
    // Training's clock stops here: the final score is not training time.
    const double train_s =
        std::chrono::duration<double>(Clock::now() - start).count();
    PG_ASSIGN_OR_RETURN(std::vector<NamedArray> state, trainer->SaveState());
    if (absl::Status st =
            o.quality->Finish(std::move(state), trainer->step(), train_s);
        !st.ok()) {
      std::fprintf(stderr, "warning: the final evaluation failed: %s\n",
                   std::string(st.message()).c_str());
    }
  }
  if (stopped) {
    std::printf(
        "stopped at step %lld; checkpoint saved to %s (rerun to resume)\n",
        static_cast<long long>(trainer->step()), ckpt.c_str());
    return absl::OkStatus();
  }
  PG_RETURN_IF_ERROR(WriteSamples(trainer.get(), o.num_samples, tc.seed + 1,
                                  o.out_dir + "/samples"));
  const double total =
      std::chrono::duration<double>(Clock::now() - start).count();
  const int64_t trained = trainer->step() - first_step;
  std::ofstream summary(o.out_dir + "/summary.txt");
  summary << "model " << tc.model.name << "\ndataset " << info.name
          << "\nsteps " << trainer->step() << "\nsteps_this_run " << trained
          << "\nseconds_this_run " << total << "\nimages_per_second "
          << trained * b * tc.d_steps / std::max(total, 1e-9)
          << "\nfinal_d_loss " << stats.d_loss << "\nfinal_g_loss "
          << stats.g_loss << "\n";
  std::printf(
      "done: %lld steps in %s | wrote %s/samples.png (EMA generator grid), "
      "%s/samples.npy (%lld samples), %s, %s/summary.txt\n",
      static_cast<long long>(trainer->step()), FormatDuration(total).c_str(),
      o.out_dir.c_str(), o.out_dir.c_str(),
      static_cast<long long>(o.num_samples), ckpt.c_str(), o.out_dir.c_str());
  return absl::OkStatus();
}

}  // namespace paragan
