#ifndef PARAGAN_SERVER_TABLE_H_
#define PARAGAN_SERVER_TABLE_H_

// One parameter-server table (G or D) as held by one shard: its slice of the
// network's tensors (canonical float32), a version counter, the table's own
// Adam state and update rule (staleness policy, synchronous or asynchronous).

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/network_tensors.h"
#include "common/optim_kernels.h"
#include "common/tensor.h"
#include "common/tensor_io.h"
#include "server/staleness_policy.h"
#include "server/table_names.h"

namespace paragan {

// How pushes become optimizer steps.
//  - Asynchronous (sync_workers == 0): every accepted push is one Adam step.
//    staleness = version at arrival - base_version; the staleness policy
//    (server/staleness_policy.h) decides: "accept" steps with lr,
//    "scale_by_inverse_staleness" with lr / (1 + s), "reject_above_bound"
//    refuses s > staleness_bound (no state change).
//  - Synchronous (sync_workers == N > 0): a round collects one push per
//    worker; when N distinct workers have contributed, their gradients are
//    averaged (sum / N) and one Adam step is taken with lr. A second push of
//    the same worker in a round is refused as a duplicate. A late push (base
//    version older than the current one) is refused by the policy
//    (reject_above_bound: when s > staleness_bound); otherwise it counts as
//    that worker's contribution to the current round, weighted as the policy
//    says (scale_by_inverse_staleness: 1 / (1 + s)). The baseline
//    configuration is bound 0 with reject_above_bound.
struct UpdateRule {
  // A registered policy's name or alias (FindStalenessPolicy); Create
  // refuses an unknown one.
  std::string staleness_policy = "accept";
  int64_t staleness_bound = 0;
  int sync_workers = 0;
  // Asynchronous mode: a gradient s versions stale is applied with Adam's
  // beta1 lowered by s / (1 + s) (not below 0), the momentum that staleness
  // itself adds. Asynchronous SGD whose gradients lag s steps behaves like
  // SGD with momentum s / (1 + s) (Mitliagkas et al., "Asynchrony begets
  // momentum", 2016); GANs train badly with too much momentum, so two async
  // workers on DCGAN's beta1 = 0.5 lose class balance without it
  // (BENCHMARKS.md, "Ten minutes of the README's main command").
  bool momentum_compensation = false;
};

// Adam's beta1 for a gradient `staleness` versions old under `rule`.
float EffectiveBeta1(const UpdateRule& rule, float beta1, int64_t staleness);

struct TableConfig {
  std::string name;  // kGeneratorTable / kDiscriminatorTable
  AdamConfig adam;
  UpdateRule rule;
  // EMA of the trainable tensors, updated after every optimizer step as the
  // single-process trainer does (worker/train/gan_trainer.cc):
  //   ema = d_t * ema + (1 - d_t) * value,  d_t = min(ema_decay, (1+t)/(10+t))
  // with t the number of optimizer steps taken before this one (0 for the
  // first). It starts as a copy of the initial values. 0: no EMA.
  float ema_decay = 0.0f;
  // Leases of registered workers (see ExpireLeases). Zero or infinite: a
  // registered worker stays registered forever.
  absl::Duration worker_lease = absl::InfiniteDuration();
};

// Workers that ExpireLeases (silent too long) or DeregisterWorker (left)
// dropped, and what that did to the synchronous round.
struct LeaseExpiry {
  std::vector<std::string> dropped;
  bool round_completed = false;  // a pending round stepped with what it had
  int round_contributions = 0;   // contributions of that round
  int64_t new_version = 0;
};

using TensorMap = std::map<std::string, std::vector<float>>;

struct PushResult {
  bool accepted = false;  // false: refused by policy or a duplicate
  bool applied = false;   // this push completed an optimizer step
  // A repeat of the worker's last push id: the fields are that push's
  // result, and nothing changed.
  bool duplicate = false;
  int64_t new_version = 0;
  int64_t staleness = 0;
  std::string reason;  // why not accepted, or why pending (sync mode)
};

struct TableSnapshot {
  int64_t version = 0;
  std::vector<TableTensor> tensors;
};

// A version's tensors without a copy: each shares its buffer with the table,
// and the table writes its next step into a fresh buffer while a shared
// snapshot still holds the old one (copy-on-write). Read-only.
struct SharedTableTensor {
  TableTensorSpec spec;
  std::shared_ptr<const float> values;  // prod(spec.shape) floats
};
struct SharedTableSnapshot {
  int64_t version = 0;
  std::vector<SharedTableTensor> tensors;
};

struct TableStats {
  int64_t version = 0;
  int64_t num_updates = 0;  // optimizer steps taken
  int64_t adam_step = 0;
  int64_t accepted_pushes = 0;
  int64_t rejected_pushes = 0;
  int pending_contributions = 0;
  std::vector<std::string> registered_workers;
  int64_t expired_leases = 0;  // workers dropped by ExpireLeases
  int64_t deregistered_workers = 0;  // workers that left (DeregisterWorker)
  int64_t num_elements = 0;
};

// Thread-safe. The layout (names, shapes, trainable flags) is fixed at
// creation; values, Adam state, counters and the sync round change under one
// mutex. Every mutation validates all its inputs first and changes nothing
// when it fails.
class ParameterTable {
 public:
  // Per worker: its last push id and that push's result.
  using LastPushes = std::map<std::string, std::pair<uint64_t, PushResult>>;

  // Tensor names must be unique. The Adam, EMA and finiteness kernels are
  // common/optim_kernels.h (OpenMP threads: SetKernelThreads).
  static absl::StatusOr<std::unique_ptr<ParameterTable>> Create(
      const TableConfig& config, std::vector<TableTensor> tensors);

  const std::string& name() const { return config_.name; }
  const TableConfig& config() const { return config_; }
  const std::vector<TableTensorSpec>& specs() const { return specs_; }
  // nullptr if unknown.
  const TableTensorSpec* FindSpec(const std::string& name) const;
  int64_t num_elements() const { return num_elements_; }

  // Idempotent. Only registered workers may push. Starts (or renews) the
  // worker's lease.
  void RegisterWorker(const std::string& worker_id);
  bool IsRegistered(const std::string& worker_id) const;
  int64_t version() const;
  bool has_ema() const { return config_.ema_decay > 0; }

  // Leases. Every pull and push of a registered worker renews its lease
  // (RenewLease; the service calls it, also periodically while a pull waits
  // for a version). A worker dropped by ExpireLeases that comes back (pull or
  // push) is registered again by RenewLease; a worker that never registered
  // is not. Returns whether the worker is registered afterwards.
  bool RenewLease(const std::string& worker_id);
  // Drops every registered worker silent for longer than the lease (now -
  // last renewal > worker_lease). Synchronous mode: the quorum of a round is
  // sync_workers until that many workers have been registered at the same
  // time once (so that a round never starts short while workers are still
  // joining); from then on it is min(sync_workers, registered workers), at
  // least 1. When dropping workers lowers the quorum to or below the
  // contributions the pending round already has, the round completes now with
  // the mean of those contributions (sum / count, as any round). A dropped
  // worker's own contribution to the pending round is kept.
  LeaseExpiry ExpireLeases();
  // A worker leaving for good (it asked): dropped at once, whatever its
  // lease, with ExpireLeases' effect on the pending synchronous round (its
  // own contribution kept; the round completes when the smaller quorum is
  // met), so no round waits for it. Unlike an expired worker, a later pull
  // or push does not register it again (RegisterWorker does). Not
  // registered: nothing changes (dropped is empty).
  LeaseExpiry DeregisterWorker(const std::string& worker_id);
  // The clock of the leases (absl::Now by default); tests inject a fake.
  void SetClockForTesting(std::function<absl::Time()> clock);

  // One push: a gradient for every trainable tensor, optionally new values
  // for buffers. Errors (nothing changes):
  //   InvalidArgument: unknown tensor, gradient for a buffer or value for a
  //     trainable tensor, wrong element count, NaN/Inf, missing gradient,
  //     negative base_version;
  //   FailedPrecondition: unregistered worker, base_version ahead of the
  //     table (e.g. the shard restarted from an older checkpoint: pull again).
  // A push refused by the staleness policy or as a duplicate is not an
  // error: accepted == false, and nothing changes but the rejected count.
  //
  // push_id (0: none) makes retries safe: the table remembers each worker's
  // last push id and that push's result. The same id again returns that
  // result with duplicate == true and changes nothing; a smaller id (a
  // push overtaken by a later one) is refused (accepted == false). The ids
  // are part of the saved state: a retry reaching a shard restarted from a
  // checkpoint that holds the push is answered as a duplicate, and one the
  // checkpoint lost is applied, once.
  absl::StatusOr<PushResult> ApplyGradients(const std::string& worker_id,
                                            int64_t base_version,
                                            const TensorMap& gradients,
                                            const TensorMap& buffers = {},
                                            uint64_t push_id = 0);

  // Version and copies of `names` (all tensors, in table order, if empty).
  absl::StatusOr<TableSnapshot> Snapshot(
      const std::vector<std::string>& names = {}) const;
  // The same for the EMA view: EMA values of the trainable tensors, current
  // values of the buffers (the EMA generator runs on G's statistics).
  // FailedPrecondition when the table keeps no EMA.
  absl::StatusOr<TableSnapshot> EmaSnapshot(
      const std::vector<std::string>& names = {}) const;
  // Snapshot / EmaSnapshot (`ema`) without copying the values: what a pull
  // sends. Holding it costs the table one copy of each tensor at its next
  // step instead.
  absl::StatusOr<SharedTableSnapshot> SharedSnapshot(
      const std::vector<std::string>& names = {}, bool ema = false) const;
  // Blocks until version() >= min_version or `timeout` passes; returns
  // whether the version was reached.
  bool WaitForVersion(int64_t min_version, absl::Duration timeout) const;

  TableStats Stats() const;

  // Checkpoint contents under "<name>/": meta (version, Adam step and
  // counters), registered workers, values and Adam moments, and with an EMA
  // "ema/<tensor>" per trainable tensor. Restoring a checkpoint without EMA
  // arrays into a table with EMA starts the EMA from the restored values;
  // EMA arrays restored into a table without EMA are ignored.
  std::vector<NamedArray> SaveState() const;
  // Checks that `arrays` hold exactly this table's layout (no missing or
  // extra tensor, same shapes, float32) without changing anything.
  absl::Status ValidateState(const std::vector<NamedArray>& arrays) const;
  // ValidateState, then replaces everything SaveState saved and drops the
  // pending synchronous round.
  absl::Status RestoreState(const std::vector<NamedArray>& arrays);
  // SaveState / RestoreState through a file written atomically (temporary
  // file, fsync, rename) with a CRC (common/tensor_io.h).
  absl::Status Checkpoint(const std::string& path) const;
  absl::Status Restore(const std::string& path);

 private:
  struct Slot {
    TableTensorSpec spec;
    Tensor value;
    Tensor m, v;  // trainable only
    Tensor ema;   // trainable only, with an EMA
  };

  explicit ParameterTable(const TableConfig& config) : config_(config) {}
  absl::Status ValidatePush(const TensorMap& gradients,
                            const TensorMap& buffers) const;
  // One Adam step on every trainable slot with `gradients` (all present) and
  // the buffer values given.
  void StepLocked(float lr, float beta1, const TensorMap& gradients,
                  const TensorMap& buffers) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ClearRoundLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // ApplyGradients after its checks: the staleness policy, then an Adam
  // step (asynchronous) or a contribution to the round (synchronous).
  PushResult ApplyLocked(const std::string& worker_id, int64_t base_version,
                         const TensorMap& gradients, const TensorMap& buffers)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Synchronous mode: contributions that complete a round now.
  int QuorumLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Averages the pending round and steps once.
  void CompleteRoundLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // After workers were dropped: the version, and the pending round
  // completed if the quorum fell to what it has.
  void FinishDropLocked(LeaseExpiry* out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool LeasesOn() const;
  absl::StatusOr<TableSnapshot> SnapshotImpl(
      const std::vector<std::string>& names, bool ema) const;
  // Before writing `t` in place: a buffer a SharedSnapshot still holds is
  // replaced by a private copy.
  static void UnshareLocked(Tensor* t);
  std::string Prefix() const { return config_.name + "/"; }

  const TableConfig config_;
  const StalenessPolicy* policy_ = nullptr;  // config_.rule's, resolved
  std::vector<TableTensorSpec> specs_;       // immutable after Create
  std::map<std::string, size_t> index_;
  int64_t num_elements_ = 0;

  mutable absl::Mutex mu_;
  std::vector<Slot> slots_ ABSL_GUARDED_BY(mu_);
  int64_t version_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t adam_step_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t num_updates_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t accepted_pushes_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t rejected_pushes_ ABSL_GUARDED_BY(mu_) = 0;
  // Registered workers and the time of their last renewal.
  std::map<std::string, absl::Time> registered_ ABSL_GUARDED_BY(mu_);
  // Dropped by ExpireLeases; RenewLease registers them again.
  std::set<std::string> expired_ ABSL_GUARDED_BY(mu_);
  // sync_workers workers have been registered at the same time once.
  bool quorum_full_once_ ABSL_GUARDED_BY(mu_) = false;
  std::function<absl::Time()> clock_ ABSL_GUARDED_BY(mu_);
  int64_t expired_leases_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t deregistered_workers_ ABSL_GUARDED_BY(mu_) = 0;
  // Synchronous round for version_: contributors and running sums.
  std::set<std::string> round_workers_ ABSL_GUARDED_BY(mu_);
  TensorMap round_gradients_ ABSL_GUARDED_BY(mu_);
  TensorMap round_buffers_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int> round_buffer_counts_ ABSL_GUARDED_BY(mu_);
  // Per worker: the last push id seen and its result.
  LastPushes last_push_ ABSL_GUARDED_BY(mu_);
};

}  // namespace paragan

#endif  // PARAGAN_SERVER_TABLE_H_
