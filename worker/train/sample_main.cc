// paragan_sample: loads a training checkpoint and writes EMA-generator
// samples (or, with --z, the generator's float images of given z); or, with
// --ps, writes a distributed run's outputs from its parameter-server shards
// (the local launcher runs it so at the end).

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/flags_usage.h"
#include "common/image_io.h"
#include "common/security_flags.h"
#include "common/tensor_io.h"
#include "worker/engine/model_registry.h"
#include "worker/train/server_export.h"
#include "worker/train/training_run.h"

ABSL_FLAG(std::string, checkpoint, "",
          "checkpoint.pgt written by paragan_train");
ABSL_FLAG(int64_t, num_samples, 1000, "number of samples");
ABSL_FLAG(std::string, out, "samples",
          "output prefix: <out>.npy, <out>.png (+ <out>_labels.npy)");
ABSL_FLAG(uint64_t, seed, 1,
          "seed for the samples' z; with --ps, the trainer whose RNG state "
          "checkpoint.pgt records gets seed - 1 (runs sample with their "
          "seed + 1, so --seed=<the run's seed + 1> rebuilds its files)");
ABSL_FLAG(std::string, device, "cpu", "cpu | cuda (--ps: cpu only)");
ABSL_FLAG(int, threads, 2, "CPU threads");
ABSL_FLAG(std::string, ps, "",
          "host:port,host:port: every parameter-server shard of a run; "
          "writes grid_<G step>.png, samples.npy/.png (+ samples_labels.npy) "
          "and checkpoint.pgt into --out_dir from the shards' G, D and G_ema "
          "(G when they keep no EMA) instead of reading --checkpoint");
// Help texts list the registered models (worker/engine/model_registry.h).
ABSL_FLAG(std::string, model, "dcgan32",
          absl::StrCat("--ps: the model the shards hold, ",
                       paragan::ModelFlagHelp()));
ABSL_FLAG(std::string, out_dir, "", "--ps: output directory");
ABSL_FLAG(std::string, z, "",
          "float32 .npy [N, z_dim]: run the generator on these z (eval mode) "
          "and write its images unquantized as <out>.npy, float32 "
          "[N, C, H, W] in [-1, 1] (no PNG); --num_samples and --seed are "
          "unused");
ABSL_FLAG(std::string, labels, "",
          "--z: int32/int64 .npy [N], the class of each z (conditional "
          "models; required for them)");
ABSL_FLAG(std::string, generator, "ema",
          "--z: ema (the EMA generator, as the other outputs) | raw (G)");
ABSL_FLAG(int, batch_size, 64, "--ps: the run's batch size");

namespace {

int Fail(const absl::Status& st) {
  std::fprintf(stderr, "error: %s\n", std::string(st.message()).c_str());
  return 1;
}

// --ps mode: one "wrote <path>" line per file (the launcher lists them).
int ExportFromShards() {
  if (!absl::GetFlag(FLAGS_checkpoint).empty()) {
    return Fail(absl::InvalidArgumentError(
        "--ps and --checkpoint exclude each other: sample from the shards "
        "(--ps) or from a checkpoint file (--checkpoint)"));
  }
  if (absl::GetFlag(FLAGS_device) != "cpu") {
    return Fail(
        absl::InvalidArgumentError("--ps runs on the CPU only (--device=cpu)"));
  }
  paragan::ServerExportOptions o;
  o.ps = absl::StrSplit(absl::GetFlag(FLAGS_ps), ',', absl::SkipWhitespace());
  o.model = absl::GetFlag(FLAGS_model);
  absl::StatusOr<paragan::ClientSecurity> security =
      paragan::ClientSecurityFromFlags();
  if (!security.ok()) return Fail(security.status());
  o.security = *std::move(security);
  if (absl::Status st = paragan::GetModelSpec(o.model).status(); !st.ok()) {
    return Fail(
        absl::InvalidArgumentError(absl::StrCat("--model: ", st.message())));
  }
  o.out_dir = absl::GetFlag(FLAGS_out_dir);
  o.num_samples = absl::GetFlag(FLAGS_num_samples);
  o.samples_seed = absl::GetFlag(FLAGS_seed);
  // See --seed: the trainer's seed is the run's, samples use it + 1.
  o.trainer_seed = o.samples_seed - 1;
  o.batch_size = absl::GetFlag(FLAGS_batch_size);
  o.threads = absl::GetFlag(FLAGS_threads);
  if (o.out_dir.empty()) {
    return Fail(absl::InvalidArgumentError("--ps needs --out_dir"));
  }
  std::error_code ec;
  std::filesystem::create_directories(o.out_dir, ec);
  if (ec) {
    return Fail(absl::InternalError("cannot create " + o.out_dir + ": " +
                                    ec.message()));
  }
  auto written = paragan::ExportFromServers(o);
  if (!written.ok()) return Fail(written.status());
  for (const std::string& path : *written) {
    std::printf("wrote %s\n", path.c_str());
  }
  std::fflush(stdout);
  return 0;
}

// The z of --z and the labels of --labels (all 0 without).
absl::Status ReadZ(const paragan::GanTrainer& trainer, std::vector<float>* z,
                   int64_t* n, std::vector<int>* labels) {
  const std::string path = absl::GetFlag(FLAGS_z);
  auto a = paragan::ReadNpy(path);
  if (!a.ok()) return a.status();
  const int z_dim = trainer.config().model.z_dim;
  if (a->dtype != "<f4" || a->shape.size() != 2 || a->shape[1] != z_dim ||
      a->shape[0] < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--z ", path, ": need float32 [N, ", z_dim, "], got ",
                     a->dtype, " ", paragan::ShapeToString(a->shape)));
  }
  *n = a->shape[0];
  z->resize(a->bytes.size() / sizeof(float));
  std::memcpy(z->data(), a->bytes.data(), a->bytes.size());
  labels->assign(*n, 0);
  const std::string lpath = absl::GetFlag(FLAGS_labels);
  const bool cond = trainer.model().conditional();
  if (lpath.empty()) {
    if (cond) {
      return absl::InvalidArgumentError(
          absl::StrCat(trainer.config().model.name,
                       " is class-conditional: --z needs --labels"));
    }
    return absl::OkStatus();
  }
  if (!cond) {
    return absl::InvalidArgumentError(absl::StrCat(
        trainer.config().model.name, " is unconditional: drop --labels"));
  }
  auto l = paragan::ReadNpy(lpath);
  if (!l.ok()) return l.status();
  if ((l->dtype != "<i4" && l->dtype != "<i8") || l->shape.size() != 1 ||
      l->shape[0] != *n) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--labels ", lpath, ": need int32 or int64 [", *n, "], got ", l->dtype,
        " ", paragan::ShapeToString(l->shape)));
  }
  const int k = trainer.config().model.num_classes;
  for (int64_t i = 0; i < *n; ++i) {
    int64_t v = 0;
    if (l->dtype == "<i4") {
      int32_t x;
      std::memcpy(&x, l->bytes.data() + 4 * i, 4);
      v = x;
    } else {
      std::memcpy(&v, l->bytes.data() + 8 * i, 8);
    }
    if (v < 0 || v >= k) {
      return absl::InvalidArgumentError(
          absl::StrCat("--labels ", lpath, ": label ", v, " at ", i,
                       " is not in [0, ", k, ")"));
    }
    (*labels)[i] = static_cast<int>(v);
  }
  return absl::OkStatus();
}

// --z: the generator's float images of the given z.
int SampleGivenZ(paragan::GanTrainer* trainer, const std::string& out) {
  const std::string which = absl::GetFlag(FLAGS_generator);
  if (which != "ema" && which != "raw") {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat("--generator '", which, "': ema or raw")));
  }
  std::vector<float> z;
  int64_t n = 0;
  std::vector<int> labels;
  if (absl::Status st = ReadZ(*trainer, &z, &n, &labels); !st.ok())
    return Fail(st);
  const paragan::ModelConfig& m = trainer->config().model;
  const int z_dim = m.z_dim;
  paragan::GanModel& g =
      which == "ema" ? trainer->ema_model() : trainer->model();
  paragan::Backend* b = g.backend();
  std::vector<float> images;
  constexpr int64_t kChunk = 100;
  for (int64_t done = 0; done < n; done += kChunk) {
    const int64_t k = std::min(kChunk, n - done);
    paragan::Tensor zt = b->Alloc({k, z_dim});
    b->Upload(z.data() + done * z_dim, &zt);
    std::vector<int> l(labels.begin() + done, labels.begin() + done + k);
    paragan::Tensor x =
        b->ToHost(g.Generate(zt, l, paragan::Mode::Inference()));
    images.insert(images.end(), x.data(), x.data() + x.numel());
  }
  const paragan::Shape shape = {n, m.image_channels, m.resolution,
                                m.resolution};
  if (absl::Status st =
          paragan::WriteNpy(out + ".npy", "<f4", shape, images.data());
      !st.ok())
    return Fail(st);
  std::printf(
      "wrote %s.npy (%lld float32 images of %s's %s generator at "
      "step %lld)\n",
      out.c_str(), static_cast<long long>(n), m.name.c_str(), which.c_str(),
      static_cast<long long>(trainer->step()));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  paragan::SetUsage(
      absl::StrCat(
          "Writes samples from a checkpoint, or a run's outputs from its "
          "parameter servers (--ps). Example:\n  paragan_sample "
          "--checkpoint=runs/dcgan32/checkpoint.pgt --num_samples=1000 "
          "--out=/tmp/samples\nor, from a run's parameter servers:\n  "
          "paragan_sample --ps=localhost:5000,localhost:5001 --model=dcgan32 "
          "--out_dir=/tmp/run\nModels:\n",
          paragan::ModelDescriptions()),
      "worker/train/sample_main.cc");
  absl::ParseCommandLine(argc, argv);
  if (!absl::GetFlag(FLAGS_ps).empty()) return ExportFromShards();
  const std::string path = absl::GetFlag(FLAGS_checkpoint);
  if (path.empty())
    return Fail(
        absl::InvalidArgumentError("--checkpoint (or --ps) is required"));
  auto arrays = paragan::ReadTensorFile(path);
  if (!arrays.ok()) return Fail(arrays.status());
  auto backend = paragan::MakeBackend(absl::GetFlag(FLAGS_device),
                                      absl::GetFlag(FLAGS_threads));
  if (!backend.ok()) return Fail(backend.status());
  auto trainer = paragan::TrainerFromCheckpoint(*arrays, backend->get());
  if (!trainer.ok()) return Fail(trainer.status());
  const std::string out = absl::GetFlag(FLAGS_out);
  if (!absl::GetFlag(FLAGS_z).empty()) return SampleGivenZ(trainer->get(), out);
  if (!absl::GetFlag(FLAGS_labels).empty() ||
      absl::GetFlag(FLAGS_generator) != "ema") {
    return Fail(
        absl::InvalidArgumentError("--labels and --generator need --z"));
  }
  if (auto st = paragan::WriteSamples(trainer->get(),
                                      absl::GetFlag(FLAGS_num_samples),
                                      absl::GetFlag(FLAGS_seed), out);
      !st.ok())
    return Fail(st);
  std::printf("wrote %s.npy and %s.png (%lld samples of %s at step %lld)\n",
              out.c_str(), out.c_str(),
              static_cast<long long>(absl::GetFlag(FLAGS_num_samples)),
              (*trainer)->config().model.name.c_str(),
              static_cast<long long>((*trainer)->step()));
  return 0;
}
