#ifndef PARAGAN_WORKER_DISTRIBUTED_WORKER_H_
#define PARAGAN_WORKER_DISTRIBUTED_WORKER_H_

// The distributed worker: the single-process trainer's gradient math
// (GanTrainer::ComputeDGradients / ComputeGGradients) against the parameter
// servers, which hold the weights and run Adam. All talk with the servers
// goes through a PsSession (ps_session.h): registration, whole-table
// asynchronous push and pull on its I/O pool, versions, retries.
//
// Per G step: d_steps x (have D and G, next real batch, D gradients, push D
// to every shard with the version pulled), then (have G, G gradients, push
// G). Each push is followed, in the same table call, by a pull of that
// table from every shard; with `overlap` the compute thread does not wait
// for a call until it needs the table (WaitSchedule), so a push and the pull
// after it run while the other table's gradients are computed, and the next
// real batch is prefetched. In synchronous mode (sync_workers > 0 on the
// servers) the pull after a push waits for the next version, and every use
// of a table waits for its call: the run is then step for step the
// single-process trainer's.
//
// The decoupled schedule (ParaGAN's asynchronous G/D training) splits the
// loop between roles that never wait for each other's compute:
// - G_ONLY: per G step, wait (pulling D) while G is more than max_g_lead D
//   updates ahead of the ratio d_steps D updates per G update; G gradients
//   through whatever D has arrived; push G; publish that very fake batch
//   (and d_steps - 1 more drawn from the same G, forward only) to the
//   SampleSink with the G version it came from, so that D workers are fed
//   d_steps batches per G update.
// - D_ONLY: per D step, a real batch and a published fake batch (FakeSource;
//   a fake more than max_sample_age G versions behind the newest published
//   one is skipped and counted; time blocked on the source is a stall),
//   D gradients, push D. G is never pulled.
// The ratio is thus held from both sides: D cannot outrun the fakes G
// publishes, and G waits for D. Both roles need asynchronous servers.
//
// Resilience (PsSession): UNAVAILABLE / DEADLINE_EXCEEDED are retried with
// exponential backoff (RetryPolicy) and fail after policy.max_total naming
// the shard; a FAILED_PRECONDITION push (shard restarted from an older
// checkpoint, or registration lost) is dropped, the worker re-registers
// with that shard and pulls again; a push refused by the staleness policy
// (accepted=false) is counted and skipped.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/tls.h"
#include "proto/paragan.pb.h"
#include "worker/distributed/batch_provider.h"
#include "worker/distributed/ps_session.h"
#include "worker/distributed/retry.h"
#include "worker/distributed/sample_exchange.h"
#include "worker/distributed/worker_metrics.h"
#include "worker/engine/backend.h"
#include "worker/train/gan_trainer.h"

namespace paragan {

// Scaling measurements without the compute: each D and G step waits its
// duration instead of running the gradient math (e.g. a GPU's measured step
// time). Pushes still carry every tensor of the table (zero gradients, so
// the weights do not move), pulls, batches and published samples are real.
struct SimulatedCompute {
  absl::Duration d_step = absl::ZeroDuration();
  absl::Duration g_step = absl::ZeroDuration();
  bool on() const {
    return d_step > absl::ZeroDuration() || g_step > absl::ZeroDuration();
  }
};

struct WorkerOptions {
  std::string worker_id;
  std::vector<std::string> ps;  // host:port; index = shard id
  v1::WorkerRole role = v1::BOTH;
  std::string model = "dcgan32";
  int image_channels = 1;  // from the batch source
  int num_classes = 10;
  // Steps of the role to run (G steps; D steps for D_ONLY); 0: until *stop.
  int64_t steps = 0;
  int batch_size = 64;
  int threads = 1;
  std::string device = "cpu";
  CpuConvLayout cpu_layout = CpuConvLayout::kBlocked;
  GpuConvLayout gpu_layout = GpuConvLayout::kAuto;
  GpuPrecision gpu_precision = GpuPrecision::kTf32;
  // z draws and fake labels (GanTrainer's RNG); each worker should get its
  // own. The initial weights come from the servers.
  uint64_t seed = 0;
  int64_t log_every = 50;  // 0: no progress lines
  v1::DType push_dtype = v1::FLOAT32;
  // Per table ("G", "D"), over push_dtype (PsSessionOptions).
  std::map<std::string, v1::DType> push_dtype_by_table;
  int d_steps = 0;  // 0: the servers' d_steps_per_g_step
  // D_ONLY: skip fakes more than this many G versions behind the newest one
  // published; < 0: no bound.
  int64_t max_sample_age = 4;
  // G_ONLY: a G step waits while d_steps x (G updates) - (D updates), both
  // counted since this worker's first pull, exceeds this; < 0: never waits.
  int64_t max_g_lead = 8;
  bool overlap = true;
  SimulatedCompute simulated;  // off by default
  // Role auto: the data service's role coordinator says which role to run
  // (G_ONLY, D_ONLY, or BOTH when this is the only worker) and when to
  // report again; the worker switches without restarting. `role` must
  // then be BOTH (what it registers as: it may push either table).
  bool auto_role = false;
  // Pull and push tensors through the shards' data planes
  // (server/data_plane.h) where they offer one; false: gRPC only.
  bool data_plane = true;
  RetryPolicy retry;
  absl::Duration rpc_timeout = absl::Seconds(20);
  // Bearer token and TLS for the shards (common/tls.h); with TLS on the
  // shards' data planes are not used.
  ClientSecurity security;
  // The session's I/O threads (0: 2 per shard) and shard clients (null:
  // ParameterServerClient; tests pass fakes).
  int io_threads = 0;
  ShardConnector connect;
  // Appends every push and its answer here (push_journal.h); empty: none.
  std::string push_journal;
};

// D steps per G step: the flag when > 0, else the servers' (shard 0's
// RegisterResponse.d_steps_per_g_step), at least 1.
int ResolveDSteps(int flag, int servers);

// "both", "g_only", "d_only": the role's flag and metric label.
std::string RoleLabel(v1::WorkerRole role);

// When Worker::Run waits for a table's call in flight (and merges what it
// pulled) before it uses the table.
struct WaitSchedule {
  bool sync = false;
  bool overlap = true;
  // Before a D step, G (for the fake batch): the latest in synchronous mode,
  // otherwise whatever has arrived, once it has at all. D: always.
  bool g_before_d_step(bool g_merged_once) const {
    return sync || !g_merged_once;
  }
  bool d_before_d_step() const { return true; }
  // Before the G step, D (G's loss goes through it): the updated D in
  // synchronous mode, whatever has arrived otherwise. G: always.
  bool d_before_g_step() const { return sync; }
  bool g_before_g_step() const { return true; }
  // Right after a push starts: wait for it (and its pull) unless overlapping.
  bool after_push() const { return !overlap; }
};

// Where time went, for reporting the overlap of communication and compute.
struct WorkerTimings {
  double wall = 0;            // Run, seconds
  double fake_wait = 0;       // D_ONLY: blocked on the FakeSource
  double d_gate_wait = 0;     // G_ONLY: waiting for D to take its updates
  double compute = 0;         // gradient computation, staging, merging
  double comm = 0;            // push/pull chains, summed (background)
  double push = 0, pull = 0;  // parts of comm (per chain, all shards)
  double exposed_comm = 0;    // compute thread blocked on a chain
  double batch_wait = 0;      // compute thread blocked on the next batch
};

class Worker {
 public:
  // Connects to and registers with every shard and checks that they agree
  // (shard ids, shard count, model, tensor layout). `log` receives the
  // "paragan_worker:" and "progress" lines; `metrics` may be null. Retries
  // end early (CANCELLED) when *stop becomes true.
  static absl::StatusOr<std::unique_ptr<Worker>> Create(
      const WorkerOptions& options, std::unique_ptr<BatchProvider> batches,
      WorkerMetrics* metrics, std::ostream* log,
      const std::atomic<bool>* stop = nullptr);
  // The decoupled roles' ends of the sample buffer: G_ONLY needs `samples`
  // (and no `batches`), D_ONLY `batches` and `fakes`.
  // Role auto needs all of it: `batches`, `samples`, `connect_fakes` (a
  // fresh fakes stream each time it becomes a D worker) and `roles`.
  struct Exchange {
    std::unique_ptr<BatchProvider> batches;
    std::unique_ptr<SampleSink> samples;
    std::unique_ptr<FakeSource> fakes;
    std::function<absl::StatusOr<std::unique_ptr<FakeSource>>()> connect_fakes;
    std::unique_ptr<RoleClient> roles;
  };
  static absl::StatusOr<std::unique_ptr<Worker>> Create(
      const WorkerOptions& options, Exchange exchange, WorkerMetrics* metrics,
      std::ostream* log, const std::atomic<bool>* stop = nullptr);
  ~Worker();

  // What the decoupled roles counted.
  struct DecoupledStats {
    int64_t published = 0;       // G_ONLY: batches handed to the sink
    int64_t fakes_used = 0;      // D_ONLY
    int64_t fakes_skipped = 0;   // D_ONLY: older than max_sample_age
    int64_t stalls = 0;          // D_ONLY: waits for a fake over 2 ms
    int64_t max_sample_age = 0;  // D_ONLY: oldest fake trained on
    double sample_age_sum = 0;   // D_ONLY: over fakes_used
    int64_t gate_waits = 0;      // G_ONLY: G steps that waited for D
    int64_t role_changes = 0;    // role auto
  };
  const DecoupledStats& decoupled_stats() const { return decoupled_; }

  // Trains until options.steps G steps are done or *stop becomes true
  // (checked between D and G steps; retries stop early too). Waits for the
  // last pushes before returning.
  absl::Status Run(const std::atomic<bool>* stop);

  // Leaves the job once (PsSession::Deregister, within `timeout`) and says
  // so on the log: after Run, or from another thread when abandoning the
  // step in flight. Later calls do nothing. Thread-safe.
  void Leave(absl::Duration timeout);

  int64_t steps_done() const { return steps_done_.load(); }
  int d_steps() const { return d_steps_; }
  bool synchronous() const { return session_->synchronous(); }
  const WorkerTimings& timings() const { return timings_; }
  GanTrainer& trainer() { return *trainer_; }
  PsSession& session() { return *session_; }
  // The version held of each table (the minimum over shards that hold it).
  int64_t g_version() const;
  int64_t d_version() const;

  struct TableSync;  // a table's store, staging and call in flight

 private:
  Worker();
  absl::Status MakeTrainer();
  absl::Status Connect(const std::atomic<bool>* stop);
  // Starts the table's next call: push the staged gradients (if `push`),
  // then pull.
  void StartCall(TableSync& t, bool push);
  // Waits for the table's call when `block` (otherwise only takes one that
  // is done) and merges the pulled slices into the model.
  absl::Status Ensure(TableSync& t, bool block);
  // One D step, the G step: compute, stage, push.
  absl::Status DStep(const WaitSchedule& when, StepStats* stats);
  absl::Status GStep(const WaitSchedule& when, StepStats* stats);
  // Starts a role: pulls what it needs (G_ONLY: waits for them and takes
  // the versions its wait for D counts from).
  absl::Status BeginRole(v1::WorkerRole role);
  // Steps of `role` until options_.steps steps are done, *stop, or `until`.
  absl::Status RunRole(v1::WorkerRole role,
                       std::chrono::steady_clock::time_point until,
                       const std::atomic<bool>* stop);
  // Role auto: report, take the assigned role, run it until the next
  // report, again.
  absl::Status RunAuto(const std::atomic<bool>* stop);
  absl::Status WaitForD(const std::atomic<bool>* stop);
  bool Simulated() const { return options_.simulated.on(); }
  void Simulate(absl::Duration step) const;
  // A G worker's published batch under simulated compute: a fixed pattern.
  void SimulatedFakes();
  absl::Status GOnlyStep(StepStats* stats);
  absl::Status DOnlyStep(StepStats* stats);
  // Waits for the last pushes; the result Run returns.
  absl::Status Finish(absl::Status result, const std::atomic<bool>* stop);
  void LogDecoupledProgress(int64_t done, const StepStats& stats,
                            double seconds, int64_t images);
  void LogProgress(int64_t done, const StepStats& stats, double seconds,
                   int64_t images);

  WorkerOptions options_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<GanTrainer> trainer_;
  std::unique_ptr<BatchProvider> batches_;
  std::unique_ptr<SampleSink> samples_;
  std::unique_ptr<FakeSource> fakes_;
  std::function<absl::StatusOr<std::unique_ptr<FakeSource>>()> connect_fakes_;
  std::unique_ptr<RoleClient> roles_;
  v1::WorkerRole role_ = v1::BOTH;  // the role running now
  // When the running role's period ends (max: never; role auto reports).
  std::chrono::steady_clock::time_point role_until_ =
      std::chrono::steady_clock::time_point::max();
  WaitSchedule when_;
  StepStats stats_;
  std::chrono::steady_clock::time_point last_line_;
  int64_t images_since_ = 0;
  DecoupledStats decoupled_;
  DecoupledStats decoupled_since_line_;
  int64_t g_base_ = -1, d_base_ = -1;  // versions at the first merge
  Tensor host_fake_;
  std::vector<int> fake_labels_;
  WorkerMetrics* metrics_ = nullptr;
  std::ostream* log_ = nullptr;
  std::mutex leave_mu_;
  bool left_ = false;
  int d_steps_ = 1;
  std::atomic<int64_t> steps_done_{0};
  WorkerTimings timings_;
  std::unique_ptr<TableSync> g_, d_;
  Tensor host_batch_;
  std::vector<int> labels_;
  // Destroyed first: waits for the calls in flight.
  std::unique_ptr<PushJournal> journal_;  // outlives session_
  std::unique_ptr<PsSession> session_;
};

// "host-pid".
std::string DefaultWorkerId();

}  // namespace paragan

#endif  // PARAGAN_WORKER_DISTRIBUTED_WORKER_H_
