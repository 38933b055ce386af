#ifndef PARAGAN_DEPLOY_LOCAL_LAUNCHER_H_
#define PARAGAN_DEPLOY_LOCAL_LAUNCHER_H_

// The local launcher: on one machine, has paragan_init write the networks'
// initial state, starts the parameter-server shards, the data service and
// the workers as child processes on free localhost ports, shows one progress
// line every few seconds, stops everything in order (workers, data service,
// shards) on Ctrl-C / SIGTERM or when the step or time budget is spent, has
// paragan_sample --ps write the EMA generator's samples and a combined
// checkpoint from the shards before they stop, and writes a summary. The
// model code stays in those tools: the launcher links none.
//
// The pure pieces (line parsing, progress aggregation, summaries) are
// exposed for tests.

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace paragan {
namespace local {

// ---------------------------------------------------------------------------
// Pure pieces
// ---------------------------------------------------------------------------

// The port printed after `marker` in lines such as
// "paragan_server: shard 0/2 listening on port 41234" (marker "listening on
// port") or "paragan_data: metrics on port 9100" (marker "metrics on port").
// nullopt when the line does not have it or the number is not a port.
std::optional<int> ParsePortAfter(absl::string_view line,
                                  absl::string_view marker);

// One worker progress line:
//   progress worker=<id> step=<n> d_version=<v> g_version=<v> img_s=<f>
//   d_loss=<f> g_loss=<f> d_real=<f> d_fake=<f> staleness_d=<f>
//   staleness_g=<f> rejected=<n>
// (key=value pairs in any order after "progress"; unknown keys ignored;
// worker and step required).
struct WorkerProgress {
  std::string worker;
  int64_t step = 0;
  int64_t d_version = 0, g_version = 0;
  double img_s = 0;
  double d_loss = 0, g_loss = 0, d_real = 0, d_fake = 0;
  double staleness_d = 0, staleness_g = 0;
  int64_t rejected = 0;
};
std::optional<WorkerProgress> ParseProgressLine(absl::string_view line);

// What the shards report (GetState): the minimum over shards of each table's
// version (every shard steps once per applied push, so they agree up to
// pushes in flight) and the rejected pushes summed over shards and tables.
struct ShardTotals {
  int64_t g_version = 0;
  int64_t d_version = 0;
  int64_t rejected = 0;
  int registered_workers = 0;  // on shard 0's G table
};

// The latest progress of every worker and their states, folded into one
// line a newcomer can read.
class ProgressAggregator {
 public:
  void Update(const WorkerProgress& p);
  // "running" until told otherwise, e.g. "exited 1", "killed by signal 9".
  void SetState(const std::string& worker, const std::string& state);

  struct Totals {
    int64_t worker_steps = 0;  // sum of the workers' own step counts
    int64_t g_version = 0;     // max over workers' views
    int64_t d_version = 0;
    double img_s = 0;  // sum of running workers' latest rates
    double d_loss = 0, g_loss = 0, d_real = 0, d_fake = 0;  // mean
    double staleness_d = 0, staleness_g = 0;                // mean
    int64_t rejected = 0;                                   // sum
    int workers_reporting = 0;
    // Per worker: latest img/s and state, by worker id.
    std::map<std::string, double> worker_img_s;
    std::map<std::string, std::string> worker_state;
  };
  Totals Compute() const;

  // E.g. "[  1m05s] G step 1234 | D/G versions 1234/1234 | 410 img/s total
  // (w0 205, w1 205) | losses D 1.234 G 0.876 | staleness D 0.9 G 0.8 |
  // rejected 0". `shards`, when given, supplies the versions and rejected
  // counts (the servers' truth); otherwise the workers' views are used.
  static std::string FormatLine(double elapsed_s, const Totals& totals,
                                const std::optional<ShardTotals>& shards);

 private:
  std::map<std::string, WorkerProgress> latest_;
  std::map<std::string, std::string> state_;
};

// One child process at the end of the run.
struct ProcessReport {
  std::string name;  // "shard0", "data", "w1"
  int pid = 0;
  std::string exit;  // "exit 0", "exit 1", "killed by signal 9", "running"
  bool ok = true;    // ended as the launcher asked (or was still fine)
};

struct RunSummary {
  std::string model;
  std::string mode;  // "async" | "sync"
  std::string staleness_policy;
  bool momentum_compensation = false;
  int num_workers = 0, num_shards = 0, batch_size = 0;
  int64_t g_steps = 0;           // G table version at the end (shards)
  int64_t d_steps = 0;           // D table version at the end (shards)
  int64_t g_steps_this_run = 0;  // G steps since the workers started
  int64_t worker_steps = 0;      // sum of the workers' last reported steps
  double wall_s = 0;             // launcher start to end
  double train_s = 0;            // workers started to workers stopped
  // g_steps_this_run * batch_size (* num_workers in sync mode) / train_s
  double img_s = 0;
  double img_s_last = 0;  // sum of the workers' last reported rates
  double d_loss = 0, g_loss = 0, d_real = 0, d_fake = 0;
  double staleness_d = 0, staleness_g = 0;
  int64_t rejected = 0;
  std::map<std::string, double> worker_img_s;
  std::vector<ProcessReport> processes;
  std::vector<std::string> outputs;  // files written
  std::string error;                 // empty: the run ended normally
};
std::string SummaryText(const RunSummary& s);
std::string SummaryJson(const RunSummary& s);

// Human-readable "exit 0" / "killed by signal 9" from a waitpid status.
std::string DescribeWaitStatus(int status);

// Splits "--a=1 --b=2" on whitespace (no quoting).
std::vector<std::string> SplitFlags(absl::string_view flags);

// ---------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------

// A child started with fork/exec in its own process group (Ctrl-C in the
// terminal reaches only the launcher, which stops the children in order),
// killed with SIGTERM if the launcher dies (PR_SET_PDEATHSIG). Its stdout and
// stderr are copied line by line into `log_path` and handed to `on_line`
// (from reader threads); the last stderr lines are kept for error reports.
class ChildProcess {
 public:
  using LineFn = std::function<void(const std::string& line, bool is_stderr)>;

  static absl::StatusOr<std::unique_ptr<ChildProcess>> Start(
      const std::string& name, const std::vector<std::string>& argv,
      const std::string& log_path, LineFn on_line);
  ~ChildProcess();  // SIGKILL if still running, joins the readers

  const std::string& name() const { return name_; }
  pid_t pid() const { return pid_; }
  // Reaps the child if it exited; returns whether it has.
  bool Poll();
  // Polls until exit or timeout; returns whether it exited.
  bool WaitFor(absl::Duration timeout);
  void Signal(int sig);
  bool exited() const { return exited_; }
  int wait_status() const { return status_; }
  std::string ExitDescription() const;
  // After the child exited: waits until its output has all been read (the
  // pipes close once it and anything it started are gone), so that the
  // line callback and LastStderrLines have seen every line.
  void DrainOutput();
  std::vector<std::string> LastStderrLines() const;
  std::string command_line() const { return command_line_; }

 private:
  ChildProcess() = default;
  void ReadLoop(int fd, bool is_stderr);

  std::string name_;
  std::string command_line_;
  pid_t pid_ = -1;
  bool exited_ = false;
  int status_ = 0;
  std::thread out_reader_, err_reader_;
  LineFn on_line_;
  mutable absl::Mutex mu_;
  FILE* log_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::deque<std::string> last_stderr_ ABSL_GUARDED_BY(mu_);
};

// ---------------------------------------------------------------------------
// The launcher
// ---------------------------------------------------------------------------

struct LauncherOptions {
  std::string model = "dcgan32";
  int num_workers = 2;
  int num_shards = 2;
  std::string mode = "async";  // async | sync
  std::string staleness_policy = "reject_above_bound";
  int64_t staleness_bound = 4;
  // Async: stale gradients step with a lower Adam beta1 (server/table.h).
  bool momentum_compensation = true;
  int64_t steps = 2000;  // G steps (G table version); 0: no step limit
  double minutes = 0;    // wall-time limit of training; 0: none
  int batch_size = 64;
  int threads_per_worker = 1;
  std::string out_dir = "runs/local";
  std::string dataset = "fashion_mnist";  // fashion_mnist | folder | synthetic
  std::string data_path = "/usr/share/datasets/fashion-mnist";
  // Holds server/, dataloader/, worker/distributed/ and worker/train/
  // (paragan_init, paragan_sample).
  std::string bin_dir;
  uint64_t seed = 0;
  double progress_s = 5;   // seconds between progress lines
  int64_t log_every = 10;  // workers' progress interval in steps
  int64_t num_samples = 1000;
  double ema_decay = 0.999;
  double worker_lease_s = -1;  // < 0: 30 s for dcgan32, 180 s for BigGAN
  std::string push_dtype = "float32";
  // "service": workers stream batches from the data service (--data);
  // "local": each worker reads the dataset itself (the data service still
  // runs, unused), for workers built without a data-service client.
  std::string worker_data = "service";
  // Extra flags per kind of process, appended last (they win).
  std::string ps_flags, data_flags, worker_flags;
  // Test hook: SIGKILL the process named `kill_process` ("w1", "shard0",
  // "data"; empty: none) after `kill_after_s` seconds of training, to
  // exercise the dead-process paths.
  std::string kill_process;
  double kill_after_s = 0;
};

// Finds the bazel-bin directory that holds the five binaries (server, data
// service, worker, paragan_init, paragan_sample): `flag` if
// set, else derived from this executable's path
// (<bin>/deploy/local/paragan_local), else ./bazel-bin. The error names the
// missing binaries and the bazel command that builds them.
absl::StatusOr<std::string> FindBinDir(const std::string& flag);

// Runs everything; returns when the run ended and the outputs are written.
// `stop` becomes true on SIGINT/SIGTERM (the caller's handler). The status is
// an error when a shard or the data service died, every worker died, or the
// outputs could not be written; summary.txt/json are written in every case
// where out_dir is writable.
absl::Status RunLocal(const LauncherOptions& options,
                      const std::atomic<bool>* stop, RunSummary* summary);

}  // namespace local
}  // namespace paragan

#endif  // PARAGAN_DEPLOY_LOCAL_LAUNCHER_H_
