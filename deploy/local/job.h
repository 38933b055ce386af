#ifndef PARAGAN_DEPLOY_LOCAL_JOB_H_
#define PARAGAN_DEPLOY_LOCAL_JOB_H_

// The job description: what a ParaGAN run consists of, as data. A pure
// function of the launcher's options (DescribeJob) gives every process of
// the run with its binary, flags, ports, readiness check, start stage and
// stop order. The local process group (process_group.h) runs it with child
// processes on localhost; the same description is what a Kubernetes
// renderer or an elastic scaler would read. Nothing here starts a process.

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace paragan {
namespace local {

struct LauncherOptions {
  std::string model = "dcgan32";
  // "coupled": every worker runs D and G steps in one loop (role both).
  // "decoupled": ParaGAN's schedule, g_workers G workers ("g0", ...) and
  // d_workers D workers ("d0", ...) trading samples through the data
  // service (worker/distributed/worker.h); num_workers is their sum.
  std::string schedule = "coupled";
  int num_workers = 2;
  // Decoupled: 0 and 0 split num_workers (G gets the smaller half).
  int g_workers = 0, d_workers = 0;
  // Decoupled: num_workers workers "w0", ... with --role=auto, whose roles
  // the data service's coordinator assigns and rebalances from their
  // measured step rates (dataloader/role_coordinator.h).
  bool auto_roles = false;
  // Decoupled: D workers skip samples more than this many G versions old.
  int64_t max_sample_age = 4;
  // The asymmetric policy, per table; unset (empty, < 0) fields leave the
  // shared setting (staleness_policy, staleness_bound, push_dtype) or the
  // model's default (learning rate, betas).
  struct TablePolicy {
    double lr = -1;
    std::string betas;  // "beta1,beta2"
    std::string staleness_policy;
    int64_t staleness_bound = -1;
    std::string push_dtype;  // float32 | bfloat16
  };
  TablePolicy g_table, d_table;
  int num_shards = 2;
  std::string mode = "async";  // async | sync
  // Passed to the shards, which know the policies and refuse a wrong name.
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
  std::string data_dir = "/usr/share/datasets/fashion-mnist";
  // Holds server/, dataloader/, worker/distributed/ and worker/train/
  // (paragan_init, paragan_sample).
  std::string bin_dir;
  uint64_t seed = 0;
  double progress_s = 5;   // seconds between progress lines
  int64_t log_every = 10;  // workers' progress lines (their logs), steps
  int64_t num_samples = 1000;
  double ema_decay = 0.999;
  // >= 0: the shards' --worker_lease_s; < 0: not passed, the shards take
  // the lease the network file suggests for the model.
  double worker_lease_s = -1;
  std::string push_dtype = "float32";
  // "service": workers stream batches from the data service (--data);
  // "local": each worker reads the dataset itself (the data service still
  // runs, unused), for workers built without a data-service client.
  std::string worker_data = "service";
  // The live evaluator (paragan_eval --ps --every_s): scores the shards'
  // EMA generator every eval_every_s seconds (0: no evaluator) with
  // eval_samples samples and the feature network eval_network, against
  // the reference statistics at eval_reference (computed there on first
  // use), into <out_dir>/fid.csv and fid.png. After training, while the
  // shards still hold the final tables, one more evaluation with
  // eval_final_samples (0: none) at full speed: the run's final FID row.
  double eval_every_s = 0;
  int64_t eval_samples = 2000;
  int64_t eval_final_samples = 10000;
  std::string eval_network = "fmnist-cnn";
  std::string eval_reference;  // "": paragan_eval's per-user cache
  // Extra flags per kind of process, appended last (they win).
  std::string ps_flags, data_flags, worker_flags, eval_flags;
  // Every service requires a bearer token (common/auth.h): the launcher
  // writes a fresh one to AuthTokenPath (mode 0600) and gives every
  // process --auth_token_file.
  bool auth = false;
  // gRPC over mutual TLS everywhere, no shard data planes: the launcher
  // makes a throwaway CA and certificates in TlsDir (common/local_ca.h)
  // and gives servers and clients their --tls_* flags.
  bool tls = false;
  // Test hook: SIGKILL the process named `kill_process` ("w1", "shard0",
  // "data"; empty: none) after `kill_after_s` seconds of training, to
  // exercise the dead-process paths.
  std::string kill_process;
  double kill_after_s = 0;
};

// <out_dir>/secrets/auth_token: where a run with `auth` keeps its token.
std::string AuthTokenPath(const LauncherOptions& o);
// <out_dir>/secrets/tls: where a run with `tls` keeps its certificates.
std::string TlsDir(const LauncherOptions& o);

// Errors in the options that need no binary to detect (counts, modes).
absl::Status ValidateOptions(const LauncherOptions& o);

// The decoupled schedule's G and D worker counts (o.g_workers and
// o.d_workers, or num_workers split when both are 0); {0, 0} for coupled.
struct RoleCounts {
  int g = 0, d = 0;
};
RoleCounts DecoupledRoles(const LauncherOptions& o);

enum class Role { kInit, kShard, kData, kWorker, kEval, kExport };

// How the launcher learns a port a process opens (they all pick free ones).
struct PortSpec {
  enum class Source {
    kPortFile,    // the process writes the number to `file` once serving
    kStdoutLine,  // it prints "<marker> <port>" (paragan_data has no file)
  };
  std::string name;  // "grpc", "metrics": referenced as ${<process>.<name>}
  Source source = Source::kPortFile;
  std::string file;    // kPortFile; the group removes it before the start
  std::string marker;  // kStdoutLine, e.g. "listening on port"
};

// When a process counts as ready.
struct Readiness {
  enum class Check {
    kStarted,     // once started
    kPortsKnown,  // every port in ProcessSpec::ports is known
    kShardState,  // ports known and GetState on `port` answers
    kMetrics,     // ports known and GET /metrics on `port` answers
    kExitedZero,  // a one-shot task: it exited with status 0
  };
  Check check = Check::kStarted;
  std::string port;  // the port kShardState / kMetrics talk to
  // Tasks: the longest they may run; services: the longest until ready.
  absl::Duration timeout = absl::Minutes(2);
  // Whether the next stage waits for it. Workers are not waited for: a
  // BigGAN worker can take minutes to its first step, and the progress
  // line shows it "starting" meanwhile.
  bool wait = true;
};

enum class Lifecycle {
  kService,    // runs until the group stops it
  kStartTask,  // one-shot in its start stage; the next stage needs exit 0
  // One-shot during the shutdown, at its stop_order, when everything it
  // depends on still runs (the export reads the live shards).
  kFinalTask,
};

struct ProcessSpec {
  // "init", "shard0", "data", "w0" (coupled) or "g0"/"d0" (decoupled
  // schedule), "export": the log file name, the
  // progress line's and the summary's name, --kill_process's argument.
  std::string name;
  Role role = Role::kWorker;
  // For messages: "parameter-server shard0", "the data service",
  // "initializing the networks" (tasks: what they do).
  std::string description;
  Lifecycle lifecycle = Lifecycle::kService;
  std::string binary;
  // "${<process>.<port>}" in a flag becomes that port's "host:port" once
  // the process is up (here 127.0.0.1:<port>; a Service name in a cluster).
  std::vector<std::string> flags;
  std::vector<PortSpec> ports;
  Readiness readiness;
  // Processes of one stage start together, stages in Job::stages order;
  // empty for final tasks.
  std::string stage;
  // Services/start tasks: ready before this starts. Final tasks: still
  // running when it is due, else it is skipped.
  std::vector<std::string> depends_on;
  bool critical = false;  // an unexpected exit ends the run
  bool stoppable = true;  // tasks: a stop request (Ctrl-C) kills it
  int stop_order = 0;     // lower stops first (final tasks: run there)
  absl::Duration grace = absl::Seconds(20);  // SIGTERM, then SIGKILL
};

struct Job {
  std::vector<ProcessSpec> processes;  // start order
  std::vector<std::string> stages;     // "init", "shards", "data", "workers"
  std::string log_dir;                 // <out_dir>/logs
};

// Stage names of DescribeJob's job.
inline constexpr char kInitStage[] = "init";
inline constexpr char kShardStage[] = "shards";
inline constexpr char kDataStage[] = "data";
inline constexpr char kWorkerStage[] = "workers";

// The run `o` describes, with binaries under `bin_dir` and every file under
// o.out_dir: paragan_init, o.num_shards shards, the data service,
// o.num_workers workers, the live evaluator (when o.eval_every_s > 0) and
// the export (paragan_sample --ps) at the end.
// InvalidArgument when ValidateOptions fails.
absl::StatusOr<Job> DescribeJob(const LauncherOptions& o,
                                const std::string& bin_dir);

// Changing a running job's worker count (paragan_local --scale_workers):
// OK when run `o`, with `live` workers running, may have `workers` workers
// now, else the reason (fixed G/D roles, out of range, a synchronous run
// growing).
inline constexpr int kMaxScaledWorkers = 256;
absl::Status CheckWorkerCount(const LauncherOptions& o, int live, int workers);
// The worker "w<index>" a scale-up adds: the same process DescribeJob
// describes as w<index> (coupled, or --role=auto with auto roles).
ProcessSpec AddedWorkerSpec(const LauncherOptions& o,
                            const std::string& bin_dir, int index);

// The process named `name`, or nullptr.
const ProcessSpec* FindProcess(const Job& job, absl::string_view name);

// "${shard0.grpc}" references in `flag`, in order ("${" without "}" is
// left as it is).
struct PortRef {
  std::string process, port;
  bool operator==(const PortRef& o) const {
    return process == o.process && port == o.port;
  }
};
std::vector<PortRef> PortRefs(absl::string_view flag);

// `flag` with every ${process.port} replaced by address(process, port);
// FailedPrecondition naming the first reference it cannot resolve.
absl::StatusOr<std::string> ResolveFlag(
    absl::string_view flag,
    const std::function<absl::StatusOr<std::string>(const PortRef&)>& address);

// Splits "--a=1 --b=2" on whitespace (no quoting).
std::vector<std::string> SplitFlags(absl::string_view flags);

// The binaries DescribeJob uses, relative to the bin dir.
inline constexpr char kServerBin[] = "server/paragan_server";
inline constexpr char kDataBin[] = "dataloader/paragan_data";
inline constexpr char kWorkerBin[] = "worker/distributed/paragan_worker";
inline constexpr char kInitBin[] = "worker/train/paragan_init";
inline constexpr char kSampleBin[] = "worker/train/paragan_sample";
inline constexpr char kEvalBin[] = "worker/eval/paragan_eval";

}  // namespace local
}  // namespace paragan

#endif  // PARAGAN_DEPLOY_LOCAL_JOB_H_
