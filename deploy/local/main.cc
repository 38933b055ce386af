// paragan_local: ParaGAN's services on one machine. Starts --num_shards
// parameter-server shards, the data service and --num_workers workers on
// free localhost ports, prints one progress line every few seconds, and at
// the end (G step --steps, --minutes, or Ctrl-C / SIGTERM) stops the workers,
// the data service and the shards in that order and writes the EMA
// generator's grid and samples, a combined checkpoint and summary.txt/json
// to --out_dir. Rerunning with the same --out_dir resumes from the shards'
// checkpoints (<out_dir>/ps).
//
// paragan_local --out_dir=DIR --scale_workers=N changes the worker count of
// the run training in DIR (deploy/local/worker_control.h) and exits.

#include <signal.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <system_error>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "common/flags_usage.h"
#include "deploy/local/launcher.h"
#include "deploy/local/worker_control.h"

ABSL_FLAG(std::string, model, "dcgan32",
          "a model paragan_init knows (`paragan_init --help` lists them)");
ABSL_FLAG(std::string, schedule, "coupled",
          "coupled: every worker runs D and G steps | decoupled: ParaGAN's "
          "schedule, G workers and D workers that trade generated samples "
          "through the data service and never wait for each other's compute");
ABSL_FLAG(int, num_workers, 2,
          "worker processes (decoupled: split into G and D workers unless "
          "--g_workers/--d_workers say)");
ABSL_FLAG(int, g_workers, 0, "decoupled: G workers (g0, g1, ...)");
ABSL_FLAG(int, d_workers, 0, "decoupled: D workers (d0, d1, ...)");
ABSL_FLAG(bool, auto_roles, false,
          "decoupled: --num_workers workers whose roles the data service "
          "assigns and rebalances from their measured step rates");
// The asymmetric policy per table (unset: the shared flag or the model's).
ABSL_FLAG(double, g_lr, -1, "G's Adam learning rate; unset: the model's");
ABSL_FLAG(double, d_lr, -1, "D's Adam learning rate; unset: the model's");
ABSL_FLAG(std::string, g_betas, "", "G's Adam betas 'beta1,beta2'");
ABSL_FLAG(std::string, d_betas, "", "D's Adam betas 'beta1,beta2'");
ABSL_FLAG(std::string, g_staleness_policy, "", "G's, over --staleness_policy");
ABSL_FLAG(std::string, d_staleness_policy, "", "D's, over --staleness_policy");
ABSL_FLAG(int64_t, g_staleness_bound, -1, "G's, over --staleness_bound");
ABSL_FLAG(int64_t, d_staleness_bound, -1, "D's, over --staleness_bound");
ABSL_FLAG(std::string, g_push_dtype, "", "G's pushes, over --push_dtype");
ABSL_FLAG(std::string, d_push_dtype, "", "D's pushes, over --push_dtype");
ABSL_FLAG(int64_t, max_sample_age, 4,
          "decoupled: D workers skip generated batches more than this many "
          "G versions behind the newest");
ABSL_FLAG(int, num_shards, 2, "parameter-server shards");
ABSL_FLAG(std::string, mode, "async",
          "async: every push is an optimizer step | sync: rounds of "
          "--num_workers averaged gradients");
ABSL_FLAG(std::string, staleness_policy, "reject_above_bound",
          "the shards' policy for stale pushes, e.g. accept | "
          "reject_above_bound | scale_by_inverse_staleness (paragan_server "
          "--help lists them); a name the shards do not know stops the run "
          "before any worker starts");
ABSL_FLAG(bool, momentum_compensation, true,
          "async: the servers apply a gradient s versions stale with Adam's "
          "beta1 lowered by s/(1+s), the momentum staleness adds by itself "
          "(server/table.h)");
ABSL_FLAG(int64_t, staleness_bound, 4,
          "largest staleness accepted by reject_above_bound");
ABSL_FLAG(int64_t, steps, 3000,
          "stop when the G table reaches this version (total G steps, across "
          "reruns); 0: no step limit");
ABSL_FLAG(double, minutes, 0,
          "stop after this many minutes of training; 0: "
          "no time limit");
ABSL_FLAG(int, batch_size, 64, "images per D and G step of each worker");
ABSL_FLAG(int, threads_per_worker, 1, "CPU threads of each worker");
ABSL_FLAG(std::string, out_dir, "runs/local", "output directory");
ABSL_FLAG(std::string, dataset, "fashion_mnist",
          "data service dataset: fashion_mnist | folder | synthetic");
ABSL_FLAG(std::string, data_dir, "/usr/share/datasets/fashion-mnist",
          "dataset directory (the data service's --data_dir)");
ABSL_FLAG(std::string, data_path, "/usr/share/datasets/fashion-mnist",
          "deprecated alias of --data_dir");
ABSL_FLAG(std::string, bin_dir, "",
          "directory holding server/paragan_server, dataloader/paragan_data, "
          "worker/distributed/paragan_worker, worker/train/paragan_init and "
          "worker/train/paragan_sample; empty: the bazel-bin this launcher "
          "was built in, else ./bazel-bin");
ABSL_FLAG(uint64_t, seed, 0,
          "initial weights (shards); worker i uses seed+1+i");
ABSL_FLAG(double, progress_s, 5, "seconds between progress lines");
ABSL_FLAG(int64_t, log_every, 10,
          "workers print a progress line to their logs every N steps (the "
          "launcher's own line reads their /metrics)");
ABSL_FLAG(int64_t, num_samples, 1000, "samples written to samples.npy");
ABSL_FLAG(double, ema_decay, 0.999, "EMA decay of G on the shards; 0: off");
ABSL_FLAG(double, worker_lease_s, -1,
          "shards drop a worker silent for this long (0: never); < 0: the "
          "shards' default, the lease the network file from paragan_init "
          "suggests for the model (longer for BigGAN, whose steps on a few "
          "CPU threads leave tens of seconds between two RPCs)");
ABSL_FLAG(std::string, push_dtype, "float32", "float32 | bfloat16 pushes");
ABSL_FLAG(std::string, worker_data, "service",
          "service: workers stream batches from the data service | local: "
          "each worker reads --dataset/--data_dir itself");
ABSL_FLAG(std::string, ps_flags, "",
          "extra flags for every shard, e.g. \"--g_lr=2e-4\"");
ABSL_FLAG(std::string, data_flags, "", "extra flags for the data service");
ABSL_FLAG(std::string, worker_flags, "", "extra flags for every worker");
ABSL_FLAG(double, eval_every_s, -1,
          "seconds between live FID evaluations of the shards' EMA generator "
          "(fid.csv, fid.png, the progress line); 0: no evaluator; -1: 60 "
          "with --dataset=fashion_mnist, else 0");
ABSL_FLAG(int64_t, eval_samples, 2000,
          "samples per live evaluation (few, so rounds are frequent: FID "
          "is biased upward at small N, compare curves at equal N)");
ABSL_FLAG(int64_t, eval_final_samples, 10000,
          "samples of the final evaluation after training (0: none)");
ABSL_FLAG(std::string, eval_network, "fmnist-cnn",
          "feature network of the live evaluator (paragan_eval --network)");
ABSL_FLAG(std::string, eval_reference, "",
          "reference statistics of the evaluator (computed there before "
          "training when missing); default: paragan_eval's per-user cache, "
          "$XDG_CACHE_HOME or ~/.cache/paragan/reference/"
          "<network>.fashion_mnist-train.pgt");
ABSL_FLAG(std::string, eval_flags, "", "extra flags for the live evaluator");
ABSL_FLAG(bool, auth, false,
          "Every service requires a bearer token: the launcher writes a fresh "
          "one to <out_dir>/secrets/auth_token (mode 0600) and passes it to "
          "every process with --auth_token_file.");
ABSL_FLAG(bool, tls, false,
          "Every service serves gRPC over mutual TLS only, with no shard data "
          "planes (tensors over gRPC/TLS): the launcher makes a throwaway CA "
          "and certificates in <out_dir>/secrets/tls and passes them to every "
          "process with --tls_cert_file, --tls_key_file and --tls_ca_file.");
ABSL_FLAG(std::string, kill_process, "",
          "test hook: SIGKILL this child (w1, shard0, data) after "
          "--kill_after_s seconds of training");
ABSL_FLAG(double, kill_after_s, 20, "see --kill_process");
ABSL_FLAG(int, scale_workers, -1,
          "a control command, not a run: asks the paragan_local training in "
          "--out_dir to have this many workers now (coupled or --auto_roles "
          "runs; new workers join at the next version, the newest leave "
          "first: SIGTERM, they deregister from the shards), prints what it "
          "did and exits. -1: train.");

namespace {
std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop.store(true); }

}  // namespace

int main(int argc, char** argv) {
  paragan::SetUsage(
      "ParaGAN on one machine: shards + data service + workers. Example:\n"
      "  paragan_local --model=dcgan32 --num_workers=2 --minutes=10 "
      "--out_dir=runs/local",
      "deploy/local/main.cc");
  absl::ParseCommandLine(argc, argv);
  if (const int want = absl::GetFlag(FLAGS_scale_workers); want != -1) {
    const absl::StatusOr<std::string> done = paragan::local::RequestScale(
        absl::GetFlag(FLAGS_out_dir), want, absl::Seconds(60));
    if (!done.ok()) {
      std::cerr << "paragan_local: " << done.status().message() << std::endl;
      return 1;
    }
    std::cout << "paragan_local: " << *done << std::endl;
    return 0;
  }
  struct sigaction sa = {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);

  paragan::local::LauncherOptions o;
  o.model = absl::GetFlag(FLAGS_model);
  o.schedule = absl::GetFlag(FLAGS_schedule);
  o.num_workers = absl::GetFlag(FLAGS_num_workers);
  o.g_workers = absl::GetFlag(FLAGS_g_workers);
  o.d_workers = absl::GetFlag(FLAGS_d_workers);
  o.auto_roles = absl::GetFlag(FLAGS_auto_roles);
  if (o.g_workers > 0 || o.d_workers > 0) {
    o.num_workers = o.g_workers + o.d_workers;
  }
  o.max_sample_age = absl::GetFlag(FLAGS_max_sample_age);
  o.g_table.lr = absl::GetFlag(FLAGS_g_lr);
  o.d_table.lr = absl::GetFlag(FLAGS_d_lr);
  o.g_table.betas = absl::GetFlag(FLAGS_g_betas);
  o.d_table.betas = absl::GetFlag(FLAGS_d_betas);
  o.g_table.staleness_policy = absl::GetFlag(FLAGS_g_staleness_policy);
  o.d_table.staleness_policy = absl::GetFlag(FLAGS_d_staleness_policy);
  o.g_table.staleness_bound = absl::GetFlag(FLAGS_g_staleness_bound);
  o.d_table.staleness_bound = absl::GetFlag(FLAGS_d_staleness_bound);
  o.g_table.push_dtype = absl::GetFlag(FLAGS_g_push_dtype);
  o.d_table.push_dtype = absl::GetFlag(FLAGS_d_push_dtype);
  o.num_shards = absl::GetFlag(FLAGS_num_shards);
  o.mode = absl::GetFlag(FLAGS_mode);
  o.staleness_policy = absl::GetFlag(FLAGS_staleness_policy);
  o.momentum_compensation = absl::GetFlag(FLAGS_momentum_compensation);
  o.staleness_bound = absl::GetFlag(FLAGS_staleness_bound);
  o.steps = absl::GetFlag(FLAGS_steps);
  o.minutes = absl::GetFlag(FLAGS_minutes);
  o.batch_size = absl::GetFlag(FLAGS_batch_size);
  o.threads_per_worker = absl::GetFlag(FLAGS_threads_per_worker);
  o.out_dir = absl::GetFlag(FLAGS_out_dir);
  o.dataset = absl::GetFlag(FLAGS_dataset);
  absl::StatusOr<std::string> data_dir =
      paragan::RenamedFlagValue("data_dir", absl::GetFlag(FLAGS_data_dir),
                                "data_path", absl::GetFlag(FLAGS_data_path));
  if (!data_dir.ok()) {
    std::cerr << "paragan_local: " << data_dir.status().message() << std::endl;
    return 2;
  }
  o.data_dir = *data_dir;
  o.bin_dir = absl::GetFlag(FLAGS_bin_dir);
  o.seed = absl::GetFlag(FLAGS_seed);
  o.progress_s = absl::GetFlag(FLAGS_progress_s);
  o.log_every = absl::GetFlag(FLAGS_log_every);
  o.num_samples = absl::GetFlag(FLAGS_num_samples);
  o.ema_decay = absl::GetFlag(FLAGS_ema_decay);
  o.worker_lease_s = absl::GetFlag(FLAGS_worker_lease_s);
  o.push_dtype = absl::GetFlag(FLAGS_push_dtype);
  o.worker_data = absl::GetFlag(FLAGS_worker_data);
  o.ps_flags = absl::GetFlag(FLAGS_ps_flags);
  o.data_flags = absl::GetFlag(FLAGS_data_flags);
  o.worker_flags = absl::GetFlag(FLAGS_worker_flags);
  o.eval_every_s = absl::GetFlag(FLAGS_eval_every_s);
  if (o.eval_every_s < 0)
    o.eval_every_s = o.dataset == "fashion_mnist" ? 60 : 0;
  o.eval_samples = absl::GetFlag(FLAGS_eval_samples);
  o.eval_final_samples = absl::GetFlag(FLAGS_eval_final_samples);
  o.eval_network = absl::GetFlag(FLAGS_eval_network);
  o.eval_reference = absl::GetFlag(FLAGS_eval_reference);
  o.eval_flags = absl::GetFlag(FLAGS_eval_flags);
  o.auth = absl::GetFlag(FLAGS_auth);
  o.tls = absl::GetFlag(FLAGS_tls);
  o.kill_process = absl::GetFlag(FLAGS_kill_process);
  o.kill_after_s = absl::GetFlag(FLAGS_kill_after_s);

  paragan::local::RunSummary summary;
  const absl::Status st = paragan::local::RunLocal(o, &g_stop, &summary);
  if (!summary.model.empty() && !summary.processes.empty()) {
    std::cout << "\n" << paragan::local::SummaryText(summary);
  }
  if (!st.ok()) {
    std::cerr << "paragan_local: ERROR: " << st.message() << std::endl;
    return 1;
  }
  return 0;
}
