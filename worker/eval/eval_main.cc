// paragan_eval: scores generated samples with a feature network (FID, KID,
// IS) against Fashion-MNIST train reference statistics (evaluate.h).
//   paragan_eval --samples=runs/x/samples.npy --reference=/tmp/fmnist_train.pgt
//   paragan_eval --images=dir/ | --checkpoint=runs/x/checkpoint.pgt | --ps=...
// With --ps and --every_s > 0 it is the live evaluator (live_eval.h) the
// local launcher runs beside the workers.
// Exit status: 0 ok, 1 bad input / failure, 2 bad flags.

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/flags_usage.h"
#include "common/optim_kernels.h"
#include "common/process_metrics.h"
#include "common/security_flags.h"
#include "common/tensor_io.h"
#include "prometheus/exposer.h"
#include "prometheus/registry.h"
#include "worker/engine/backend.h"
#include "worker/eval/background_priority.h"
#include "worker/eval/evaluate.h"
#include "worker/eval/feature_networks.h"
#include "worker/eval/fid_log.h"
#include "worker/eval/generated_samples.h"
#include "worker/eval/live_eval.h"

ABSL_FLAG(std::string, samples, "",
          ".npy of samples: uint8 [N,H,W] / [N,C,H,W] / [N,H,W,C] (as "
          "paragan_sample and paragan_train write) or float32 in [-1, 1]");
ABSL_FLAG(std::string, images, "",
          "a folder of .png/.jpg images, all of one size (instead of "
          "--samples)");
ABSL_FLAG(std::string, checkpoint, "",
          "paragan_train checkpoint.pgt: generate --num_samples with the EMA "
          "generator as paragan_sample does (instead of --samples)");
ABSL_FLAG(std::string, ps, "",
          "comma-separated parameter-server shards (host:port): pull G_ema "
          "and G's buffers and generate --num_samples (instead of --samples)");
ABSL_FLAG(std::string, model, "dcgan32", "--ps: the servers' model");
ABSL_FLAG(double, every_s, 0,
          "--ps: > 0 evaluates every this many seconds until SIGTERM (the "
          "live evaluator), appending to --csv and redrawing --plot");
ABSL_FLAG(std::string, csv, "", "append each result to this fid.csv");
ABSL_FLAG(std::string, plot, "", "--csv: redraw this fid.png after each row");
ABSL_FLAG(double, row_wall_s, -1,
          "--csv: the row's wall time in seconds, for samples another "
          "trainer saved at a known time (default: now, on the log's clock)");
ABSL_FLAG(double, origin_unix_s, 0,
          "--csv: when the log has no rows yet, the unix time its clock "
          "starts at (0: the row's wall time is 0)");
ABSL_FLAG(int64_t, row_g_step, -1,
          "--csv: the row's G step (default: the checkpoint's or servers', "
          "else 0)");
ABSL_FLAG(int, metrics_port, -1,
          "serve paragan_eval_* gauges on this port (0: any free; -1: none)");
ABSL_FLAG(std::string, metrics_bind, "127.0.0.1", "metrics address");
ABSL_FLAG(std::string, metrics_port_file, "",
          "write the metrics port here once serving");
ABSL_FLAG(double, escalate_after_s, -1,
          "--every_s: a round still waiting for idle CPU after this many "
          "seconds finishes at nice 19 (-1: twice --every_s; 0: never)");
// Not idle by default: an idle-priority thread pulling over gRPC starves
// the handshake of the channels it creates on a saturated box, and an
// unprivileged thread can never leave SCHED_IDLE again.
ABSL_FLAG(std::string, priority, "nice",
          "--every_s: how the rounds yield the CPU to training: nice (19), "
          "idle (SCHED_IDLE: only cycles nothing else wants; can starve "
          "rounds and their gRPC connections entirely) or normal");
ABSL_FLAG(int64_t, num_samples, 10000,
          "--checkpoint / --ps: samples to generate");
ABSL_FLAG(uint64_t, seed, 1, "the generated samples' z seed; KID subsets");
ABSL_FLAG(std::string, network, "fmnist-cnn",
          "feature network (see --help for the list)");
ABSL_FLAG(std::string, weights, "",
          "the feature network's weights (default: its own, where it has one)");
ABSL_FLAG(std::string, reference, "",
          "reference FeatureStats .pgt of --network (default: a per-user "
          "cache, $XDG_CACHE_HOME or ~/.cache/paragan/reference/"
          "<network>.fashion_mnist-train.pgt); computed from the "
          "Fashion-MNIST train images and saved there when missing (with "
          "<reference>.features.pgt, which KID needs)");
ABSL_FLAG(bool, reference_only, false,
          "only load (or compute and save) --reference, print what it holds "
          "and exit: the launcher runs this before training, so that the "
          "live evaluator never computes it beside the workers");
ABSL_FLAG(int64_t, reference_images, 0,
          "when computing the reference: the first this many train images "
          "(0: all 60000)");
ABSL_FLAG(std::string, data_dir, "",
          "Fashion-MNIST directory (default: $PARAGAN_FASHION_MNIST_DIR or "
          "/usr/share/datasets/fashion-mnist)");
ABSL_FLAG(std::string, json, "", "also write the metrics as JSON here");
ABSL_FLAG(int, kid_subsets, 100, "KID subsets");
ABSL_FLAG(int64_t, kid_subset_size, 1000, "KID subset size (capped at N)");
ABSL_FLAG(int, is_splits, 10, "IS splits");
ABSL_FLAG(int, batch_size, 500, "feature network batch size");
ABSL_FLAG(std::string, device, "cpu", "--checkpoint: generator backend");
ABSL_FLAG(int, threads, 2, "CPU threads");

namespace {
namespace ev = paragan::eval;
using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}
int Fail(const absl::Status& st) {
  std::fprintf(stderr, "error: %s\n", std::string(st.message()).c_str());
  return 1;
}
int Usage(const std::string& msg) {
  std::fprintf(stderr, "error: %s\n", msg.c_str());
  return 2;
}

// One line for tools that run paragan_eval (the local launcher's final
// evaluation reads it into the run summary).
void PrintResultLine(const ev::FidRow& row) {
  std::printf("result network=%s fid=%.6g g_step=%lld samples=%lld\n",
              row.network.c_str(), row.fid, static_cast<long long>(row.g_step),
              static_cast<long long>(row.num_samples));
  std::fflush(stdout);
}

// A one-shot row's time on the curve's clock: the log's (its first row
// fixes it), else --origin_unix_s's.
double WallSeconds(const ev::FidLog* log, double now_unix) {
  if (log && !log->rows().empty()) return log->WallSecondsAt(now_unix);
  const double origin = absl::GetFlag(FLAGS_origin_unix_s);
  return origin > 0 ? now_unix - origin : 0;
}

std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop.store(true); }

std::vector<std::string> SplitList(const std::string& s) {
  std::vector<std::string> out;
  for (absl::string_view p : absl::StrSplit(s, ',', absl::SkipWhitespace()))
    out.emplace_back(p);
  return out;
}

void WritePortFile(const std::string& path, int port) {
  if (path.empty()) return;
  const std::string tmp = path + ".tmp";
  std::ofstream(tmp) << port << "\n";
  std::rename(tmp.c_str(), path.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  paragan::SetUsage(
      absl::StrCat(
          "Scores samples with a feature network: FID, KID, IS. Example:\n"
          "  paragan_eval --samples=runs/dcgan32/samples.npy "
          "--reference=/tmp/fmnist_train.pgt\nFeature networks: ",
          ev::FeatureNetworkNames()),
      "worker/eval/eval_main.cc");
  absl::ParseCommandLine(argc, argv);
  const std::string samples = absl::GetFlag(FLAGS_samples);
  const std::string images_dir = absl::GetFlag(FLAGS_images);
  const std::string checkpoint = absl::GetFlag(FLAGS_checkpoint);
  const std::string ps = absl::GetFlag(FLAGS_ps);
  std::string reference = absl::GetFlag(FLAGS_reference);
  const double every_s = absl::GetFlag(FLAGS_every_s);
  const bool reference_only = absl::GetFlag(FLAGS_reference_only);
  const int sources = !samples.empty() + !images_dir.empty() +
                      !checkpoint.empty() + !ps.empty();
  if (reference_only && sources != 0)
    return Usage("--reference_only takes no samples to score");
  if (!reference_only && sources != 1)
    return Usage(
        "give exactly one of --samples=<file.npy>, --images=<dir>, "
        "--checkpoint=<file.pgt> or --ps=<host:port,...>");
  if (reference.empty())
    reference = ev::DefaultReferencePath(absl::GetFlag(FLAGS_network));
  if (every_s < 0) return Usage("--every_s must be >= 0");
  const auto priority =
      ev::ParseBackgroundPriority(absl::GetFlag(FLAGS_priority));
  if (!priority.ok())
    return Usage(absl::StrCat("--priority: ", priority.status().message()));
  if (!reference_only && every_s > 0 && ps.empty())
    return Usage("--every_s needs --ps (it evaluates a running job)");
  if (!absl::GetFlag(FLAGS_plot).empty() && absl::GetFlag(FLAGS_csv).empty())
    return Usage("--plot needs --csv (the plot is of the CSV's rows)");
  std::string dir = absl::GetFlag(FLAGS_data_dir);
  if (dir.empty()) {
    const char* env = std::getenv("PARAGAN_FASHION_MNIST_DIR");
    dir = env && *env ? env : "/usr/share/datasets/fashion-mnist";
  }
  if (every_s > 0) {
    // A stop while setting up ends the loop before its first round.
    std::signal(SIGINT, OnSignal);
    std::signal(SIGTERM, OnSignal);
  }
  const int threads = absl::GetFlag(FLAGS_threads);
  paragan::SetKernelThreads(threads);
  std::unique_ptr<paragan::Backend> backend =
      paragan::MakeCpuBackend(threads, paragan::CpuConvLayout::kAuto);
  const std::string network = absl::GetFlag(FLAGS_network);
  bool known = false;
  for (const auto& e : ev::FeatureNetworkTable()) known |= network == e.name;
  if (!known)
    return Usage(absl::StrCat("unknown --network=", network,
                              "; known: ", ev::FeatureNetworkNames()));
  auto net = ev::OpenFeatureNetwork(network, absl::GetFlag(FLAGS_weights),
                                    backend.get());
  if (!net.ok()) return Fail(net.status());

  auto ref = ev::LoadOrComputeReference(reference, dir, net->get(),
                                        absl::GetFlag(FLAGS_reference_images));
  if (!ref.ok()) return Fail(ref.status());
  if (ref->computed)
    std::printf(
        "reference %s did not exist: computed from %lld Fashion-MNIST train "
        "images (%s) in %.2f s and saved it (+ %s)\n",
        reference.c_str(), static_cast<long long>(ref->stats.count),
        dir.c_str(), ref->seconds,
        ev::ReferenceFeaturesPath(reference).c_str());
  else
    std::printf("reference %s: %lld images of %s%s\n", reference.c_str(),
                static_cast<long long>(ref->stats.count),
                ref->stats.dataset.c_str(),
                ref->features.numel() ? "" : " (no features file: no KID)");
  if (reference_only) return 0;

  ev::EvalOptions o;
  o.kid_subsets = absl::GetFlag(FLAGS_kid_subsets);
  o.kid_subset_size = absl::GetFlag(FLAGS_kid_subset_size);
  o.is_splits = absl::GetFlag(FLAGS_is_splits);
  o.seed = absl::GetFlag(FLAGS_seed);
  o.batch_size = absl::GetFlag(FLAGS_batch_size);

  std::unique_ptr<ev::FidLog> log;
  if (!absl::GetFlag(FLAGS_csv).empty()) {
    auto l =
        ev::FidLog::Open(absl::GetFlag(FLAGS_csv), absl::GetFlag(FLAGS_plot),
                         absl::StrCat("FID(", network, ") against time"));
    if (!l.ok()) return Fail(l.status());
    log = std::make_unique<ev::FidLog>(std::move(*l));
  }

  if (!ps.empty()) {
    ev::LiveEvalOptions lo;
    lo.ps = SplitList(ps);
    absl::StatusOr<paragan::ClientSecurity> security =
        paragan::ClientSecurityFromFlags();
    if (!security.ok()) return Fail(security.status());
    lo.security = *std::move(security);
    lo.model = absl::GetFlag(FLAGS_model);
    lo.num_samples = absl::GetFlag(FLAGS_num_samples);
    lo.every_s = every_s;
    lo.seed = absl::GetFlag(FLAGS_seed);
    lo.threads = threads;
    lo.eval = o;
    lo.priority = every_s > 0 ? *priority : ev::BackgroundPriority::kNormal;
    const double escalate = absl::GetFlag(FLAGS_escalate_after_s);
    lo.escalate_after_s = escalate < 0 ? 2 * every_s : escalate;
    auto registry = std::make_shared<prometheus::Registry>();
    const auto process_metrics = paragan::MakeProcessCollectable();
    std::unique_ptr<ev::LiveEvalMetrics> metrics;
    std::unique_ptr<prometheus::Exposer> exposer;
    if (absl::GetFlag(FLAGS_metrics_port) >= 0) {
      metrics = std::make_unique<ev::LiveEvalMetrics>(registry.get(), network);
      const std::string addr =
          absl::StrCat(absl::GetFlag(FLAGS_metrics_bind), ":",
                       absl::GetFlag(FLAGS_metrics_port));
      try {
        exposer = std::make_unique<prometheus::Exposer>(addr);
      } catch (const std::exception& e) {
        return Fail(absl::InvalidArgumentError(
            absl::StrCat("cannot serve metrics on ", addr, ": ", e.what())));
      }
      exposer->RegisterCollectable(registry);
      exposer->RegisterCollectable(process_metrics);
      const int port = exposer->GetListeningPorts().at(0);
      std::printf("paragan_eval: metrics on port %d\n", port);
      WritePortFile(absl::GetFlag(FLAGS_metrics_port_file), port);
    }
    ev::LiveEvaluator live(lo, net->get(), &*ref, log.get(), metrics.get(),
                           &std::cout);
    if (every_s > 0) {
      // Only this thread (Linux scheduling is per thread), after the metrics
      // server's threads started: /metrics answers promptly while the
      // rounds run on the cycles training leaves.
      // Checked once here; RoundPriority applies it to every round.
      if (absl::Status st = ev::RunThisThreadAt(*priority); !st.ok())
        std::fprintf(stderr, "warning: --priority=%s: %s\n",
                     ev::BackgroundPriorityName(*priority).c_str(),
                     std::string(st.message()).c_str());
      std::cout << "paragan_eval: evaluating " << lo.ps.size()
                << " shard(s) every " << every_s << " s with " << network
                << ", " << lo.num_samples << " samples" << std::endl;
      live.Run(&g_stop);
      std::cout << "paragan_eval: stopped" << std::endl;
      return 0;
    }
    const double now_unix =
        absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch());
    auto row = live.EvaluateOnce(WallSeconds(log.get(), now_unix));
    if (!row.ok()) return Fail(row.status());
    PrintResultLine(*row);
    return 0;
  }

  auto t0 = Clock::now();
  int64_t checkpoint_step = 0;
  absl::StatusOr<paragan::Tensor> images =
      !samples.empty() ? ev::LoadSamplesNpy(samples)
      : !images_dir.empty()
          ? ev::SamplesFromImageFolder(images_dir)
          : ev::SamplesFromCheckpoint(
                checkpoint, absl::GetFlag(FLAGS_num_samples),
                absl::GetFlag(FLAGS_seed), absl::GetFlag(FLAGS_device), threads,
                &checkpoint_step);
  if (!images.ok()) return Fail(images.status());
  const std::string source = !samples.empty()      ? samples
                             : !images_dir.empty() ? images_dir
                                                   : checkpoint;
  std::printf("%s %lld samples from %s in %.2f s\n",
              checkpoint.empty() ? "loaded" : "generated",
              static_cast<long long>(images->dim(0)), source.c_str(),
              Since(t0));
  o.dataset = source;
  auto r = ev::EvaluateSamples(net->get(), *images, *ref, o);
  if (!r.ok()) return Fail(r.status());
  std::printf("%s", ev::FormatResult(*r).c_str());
  std::printf("time: features %.2f s, metrics %.2f s\n", r->features_seconds,
              r->metrics_seconds);
  const double now_unix =
      absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch());
  const double row_wall_s = absl::GetFlag(FLAGS_row_wall_s);
  const int64_t row_g_step = absl::GetFlag(FLAGS_row_g_step);
  const ev::FidRow row = ev::FidRowFromResult(
      *r, row_wall_s >= 0 ? row_wall_s : WallSeconds(log.get(), now_unix),
      now_unix, row_g_step >= 0 ? row_g_step : checkpoint_step,
      r->features_seconds + r->metrics_seconds);
  if (log) {
    if (auto st = log->Append(row); !st.ok()) return Fail(st);
  }
  PrintResultLine(row);
  const std::string json = absl::GetFlag(FLAGS_json);
  if (!json.empty()) {
    if (auto st = paragan::WriteFileAtomically(json, ev::ResultJson(*r));
        !st.ok())
      return Fail(st);
    std::printf("wrote %s\n", json.c_str());
  }
  return 0;
}
