#ifndef PARAGAN_WORKER_DISTRIBUTED_PS_SESSION_H_
#define PARAGAN_WORKER_DISTRIBUTED_PS_SESSION_H_

// A worker's session with the parameter servers: who it is (worker id, role,
// push dtype: given once), one client per shard, the layout of each table it
// syncs (table_sync.h), the versions it holds, and asynchronous calls on a
// whole table over every shard holding it, run on one I/O thread pool the
// session owns (io_pool.h). This is the seam for workers that push only G
// or only D (ParaGAN's decoupled schedule) and for changing shard sets.
//
// Per shard and table the session keeps the version the worker's local
// values came from (the base of its next push), the min_version of the next
// synchronous pull, and whether the shard must be registered with again or
// its next slice merged even at an unchanged version (after a restart).
//
// Failures (per shard call, exactly as the worker has always done them):
// UNAVAILABLE / DEADLINE_EXCEEDED are retried with backoff (retry.h) up to
// retry.max_total, naming the shard; a FAILED_PRECONDITION push (shard
// restarted from an older checkpoint, or registration lost) is dropped and
// the shard re-registered before the next pull, whose slice is merged; a
// pull that met UNAVAILABLE registers again before its next attempt; a
// pulled version lower than the one held is reported, re-registered and
// merged; a synchronous pull whose round cannot complete (GetState) falls
// back to a plain pull; a push refused by the staleness policy is counted.

#include <atomic>
#include <cstdint>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/tls.h"
#include "proto/paragan.pb.h"
#include "server/ps_client.h"
#include "worker/distributed/io_pool.h"
#include "worker/distributed/push_journal.h"
#include "worker/distributed/retry.h"
#include "worker/distributed/table_sync.h"
#include "worker/distributed/worker_metrics.h"

namespace paragan {

// One shard, as a session calls it: server/ps_client.h's calls for the
// session's worker (id, role and push dtype are the client's, not
// arguments). MakeShardClient wraps a ParameterServerClient; tests use
// fakes.
class ShardClient {
 public:
  virtual ~ShardClient() = default;
  virtual absl::StatusOr<v1::RegisterResponse> Register() = 0;
  // Leaves the job on this shard (ParameterServerClient::Deregister).
  virtual absl::StatusOr<v1::DeregisterResponse> Deregister(
      absl::Duration timeout) = 0;
  // The shard's slice of `table`; min_version > 0: once the table has
  // reached it. `recycle` lends its memory (ParameterServerClient::Pull).
  virtual absl::StatusOr<PulledTable> Pull(const std::string& table,
                                           int64_t min_version,
                                           PulledTable* recycle) = 0;
  virtual absl::StatusOr<v1::PushResponse> Push(
      const std::string& table, int64_t base_version,
      const std::vector<PushTensor>& tensors, uint64_t push_id) = 0;
  virtual absl::StatusOr<v1::StateResponse> GetState() = 0;
  // The data-plane port calls use now; 0: gRPC only.
  virtual int data_plane_port() const = 0;
};

struct PsSessionOptions;
// Makes the client of shard `s` at `address` (tests: a fake).
using ShardConnector = std::function<std::unique_ptr<ShardClient>(
    int s, const std::string& address, const PsSessionOptions& options)>;

struct PsSessionOptions {
  std::string worker_id;
  v1::WorkerRole role = v1::BOTH;
  std::string model;            // every shard must serve it
  std::vector<std::string> ps;  // host:port; index = shard id
  v1::DType push_dtype = v1::FLOAT32;
  // Per table ("G", "D"), over push_dtype: e.g. bfloat16 for D only.
  std::map<std::string, v1::DType> push_dtype_by_table;
  v1::DType PushDtype(const std::string& table) const {
    auto it = push_dtype_by_table.find(table);
    return it == push_dtype_by_table.end() ? push_dtype : it->second;
  }
  // Tensors over the shards' data planes where offered; false: gRPC only.
  // A shard whose data plane cannot be reached while its gRPC port can is
  // used over gRPC, said once on stderr (ParameterServerClient).
  bool data_plane = true;
  absl::Duration rpc_timeout = absl::Seconds(20);
  ClientSecurity security;  // token and TLS (common/tls.h)
  RetryPolicy retry;
  RetryEnv retry_env;  // clock and sleep of the retries (tests)
  int io_threads = 0;  // 0: 2 per shard (both tables at every shard at once)
  // null: a ParameterServerClient per shard (MakeShardClient).
  ShardConnector connect;
  // Not owned; null: no journal. Every push and its answer (push_journal.h).
  PushJournal* journal = nullptr;
};

// A ParameterServerClient for `address` (64 MiB messages, the data plane as
// options say, on the same host) with the session's identity.
std::unique_ptr<ShardClient> MakeShardClient(const std::string& address,
                                             const PsSessionOptions& options);

// What the shards told a session at registration.
struct ShardAgreement {
  int d_steps_per_g_step = 1;  // shard 0's RegisterResponse
  int sync_workers = 0;        // 0: asynchronous
  int on_data_plane = 0;       // shards whose tensors use their data plane
};

// The end of one whole-table call.
struct TableCallResult {
  absl::Status status;  // the first failing shard's, in shard order
  double push_seconds = 0, pull_seconds = 0;  // per stage, all shards
};
using TableCall = std::future<TableCallResult>;

// Pushes a table got since the last TakePushStats.
struct PushStats {
  double mean_staleness = 0;  // 0 when none
  int64_t pushes = 0;
  int64_t rejected_total = 0;  // refused by the staleness policy, ever
};

class PsSession {
 public:
  // Makes the shard clients (no RPC yet). `layouts`: the tables the worker
  // syncs (G and D), each placed over options.ps.size() shards.
  static absl::StatusOr<std::unique_ptr<PsSession>> Create(
      PsSessionOptions options, std::vector<TableLayout> layouts,
      WorkerMetrics* metrics = nullptr);
  // Waits for the calls in flight.
  ~PsSession();

  // Registers with every shard in order (retried) and checks that each
  // agrees with this worker (CheckRegistration) and with the others on
  // synchronous mode.
  absl::StatusOr<ShardAgreement> Register();

  // Leaves the job: asks every shard at once (one try each, within
  // `timeout`) to drop this worker now rather than at its lease's end, so
  // no synchronous round waits for it. Call it once no push of this
  // session is in flight, or when abandoning one (its late arrival is then
  // refused: the worker is no longer registered). Returns how many shards
  // confirmed; the error names the first that did not.
  absl::StatusOr<int> Deregister(absl::Duration timeout);

  // Asynchronous calls on a whole table (every shard holding it, in
  // parallel on the I/O pool), at most one in flight per table. Push sends
  // `staging` (its tensors are taken at the call) to each shard at the
  // version held from it; PushThenPull pulls once every push is done (in
  // synchronous mode waiting for the version after the push). A role that
  // may not push the table (RolePushes) fails at once, FAILED_PRECONDITION.
  // `done` runs on an I/O thread (on the caller's, at once, for a refused
  // role); the future forms complete a TableCall instead. TableCallResult's
  // times count from when the first shard call began.
  void Pull(const std::string& table,
            std::function<void(TableCallResult)> done);
  void Push(const std::string& table, const PushStaging& staging,
            std::function<void(TableCallResult)> done);
  void PushThenPull(const std::string& table, const PushStaging& staging,
                    std::function<void(TableCallResult)> done);
  TableCall Pull(const std::string& table);
  TableCall Push(const std::string& table, const PushStaging& staging);
  TableCall PushThenPull(const std::string& table, const PushStaging& staging);

  // After a pull completed (and before the next call on the table): calls
  // merge(s, slice) for each shard whose new slice must be written into the
  // model (MustMerge), then holds the pulled versions. Shards not pulled
  // since are left alone. The slices keep their memory for the next pull.
  absl::Status TakePulled(
      const std::string& table,
      const std::function<absl::Status(int s, const PulledTable&)>& merge);

  // The version held of `table`: the minimum over the shards holding it
  // (-1 before the first TakePulled).
  int64_t held_version(const std::string& table) const;
  const TableLayout& layout(const std::string& table) const;
  PushStats TakePushStats(const std::string& table);
  // Pushes of `table` each shard accepted, ever (index: shard), for the
  // accounting of what the shards applied.
  std::vector<int64_t> AcceptedPushes(const std::string& table) const;

  // Retries end early (CANCELLED) when *stop becomes true; null: never.
  void set_stop(const std::atomic<bool>* stop) { stop_ = stop; }
  bool synchronous() const { return sync_workers_ > 0; }
  const PsSessionOptions& options() const { return options_; }
  int num_shards() const { return static_cast<int>(shards_.size()); }
  const std::string& address(int s) const { return options_.ps[s]; }
  int io_threads() const { return pool_->threads(); }

  struct Table;  // per-table, per-shard state (ps_session.cc)
  struct Call;   // one whole-table call in flight

 private:
  PsSession() = default;
  Table& table(const std::string& name) const;
  void Start(const std::string& table, const PushStaging* staging, bool push,
             bool pull, std::function<void(TableCallResult)> done);
  void RunStage(const std::shared_ptr<Call>& call, bool push_stage);
  void StageDone(const std::shared_ptr<Call>& call, bool push_stage);

  absl::Status Retry(const std::string& what,
                     const std::function<absl::Status()>& attempt);
  absl::StatusOr<v1::RegisterResponse> RegisterShard(int s);
  absl::Status CheckShard(int s, const v1::RegisterResponse& r) const;
  absl::Status PushShard(Table& t, int s,
                         const std::vector<PushTensor>& tensors);
  absl::Status PullShard(Table& t, int s);
  absl::Status PullAttempt(Table& t, int s, int64_t* min_version,
                           bool* was_down, absl::StatusOr<PulledTable>* out);
  uint64_t NextPushId();

  PsSessionOptions options_;
  WorkerMetrics* metrics_ = nullptr;
  std::atomic<const std::atomic<bool>*> stop_{nullptr};
  std::atomic<bool> never_{false};
  std::vector<std::unique_ptr<ShardClient>> shards_;
  std::map<std::string, std::unique_ptr<Table>> tables_;
  int sync_workers_ = 0;
  std::atomic<uint64_t> last_push_id_{0};
  // Last: destroyed first, so no task outlives the state above.
  std::unique_ptr<IoPool> pool_;
};

// ---- The decisions the session makes, apart for tests. ----

// Which tables a role pushes: RolePushes (server/table_names.h), the rule
// the shards apply too; every role pulls both.

// OK when shard `s`'s RegisterResponse matches this worker: its shard id
// and count, model, and for each layout its slice of the table; else
// FAILED_PRECONDITION naming `address` and the first difference.
absl::Status CheckRegistration(int s, int num_shards,
                               const std::string& address,
                               const std::string& model,
                               const std::vector<const TableLayout*>& layouts,
                               const v1::RegisterResponse& response);

// The shards' common sync_workers (over the tables a shard holds tensors
// of; 0 when none), or FAILED_PRECONDITION when they disagree.
absl::StatusOr<int> AgreedSyncWorkers(
    const std::vector<v1::RegisterResponse>& responses);

// What a push's final status (after retries) means for the shard.
enum class PushOutcome {
  kDone,    // sent (accepted or refused by the policy)
  kResync,  // FAILED_PRECONDITION: drop it, register again, pull and merge
  kFailed,  // the call fails with this status
};
PushOutcome ClassifyPush(const absl::Status& status);

// Whether a pulled slice is written into the model: when its version
// differs from the one held, or the shard restarted (force). Otherwise the
// local buffers (BN running statistics that moved) stay.
bool MustMerge(int64_t pulled_version, int64_t held_version, bool force);

// A synchronous pull that timed out waiting for min_version of `table`:
// the version the shard is stuck at when the round cannot complete (the
// table is below min_version - 1, or at min_version - 1 with no
// contribution pending: restarted, or lost the round), else nullopt.
std::optional<int64_t> StuckSyncVersion(const v1::StateResponse& state,
                                        const std::string& table,
                                        int64_t min_version);

}  // namespace paragan

#endif  // PARAGAN_WORKER_DISTRIBUTED_PS_SESSION_H_
