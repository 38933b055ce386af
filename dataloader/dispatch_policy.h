#ifndef PARAGAN_DATALOADER_DISPATCH_POLICY_H_
#define PARAGAN_DATALOADER_DISPATCH_POLICY_H_

// DispatchPolicy: the data service's per-link controller, the seam of
// congestion-aware delivery. The service (data_service.h) owns the batches,
// the clients' credits and the wire; a policy sees every link (one open
// StreamBatches call) and makes the decisions that shape delivery:
//   (a) observations: a stream opened, was granted credit, was dealt a batch,
//       started writing it, acked it, closed; with batch bytes, times and
//       queue depths (LinkState);
//   (b) decisions: which stream that can take a batch gets the next one
//       (PickStream), and how many batches a stream may hold unacked
//       (Window). The client's credits stay a hard limit on top: a policy can
//       hold a stream back, never send it more than it asked for.
// (c) Encoding per link is not a decision yet: batches are encoded once, on
// the producer thread, before any stream is chosen. It will be a hook with a
// FLOAT32 default (so existing policies need no change) once the writer can
// re-encode per stream.
//
// Threads. The service calls every method with its own lock held, one call
// at a time (from the producer thread, the streams' reader and writer threads
// and PublishSamples, never concurrently). A policy needs no lock for state
// it only touches from these calls, but it must not block, sleep or do I/O
// (every stream waits on that lock), and must not call into the DataService.
// `eligible` in PickStream calls Window() on the same thread: do not hold a
// non-recursive lock of your own across it. Anything read from other threads
// (an exporter, a test) needs the policy's own synchronization.
//
// Adding a policy: one .cc file defining the class (with kName and a
// constructor from DispatchPolicyConfig) and ending in
// PARAGAN_REGISTER_DISPATCH_POLICY(Class); one line adding that file to
// :dispatch_policies in dataloader/BUILD.bazel. `paragan_data
// --dispatch_policy=<kName>` selects it. See dataloader/README.md.

#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/check.h"
#include "proto/paragan.pb.h"

namespace paragan {

// One StreamBatches call, unique for the life of the service. A worker that
// reconnects gets a new id (same worker_id).
using StreamId = int64_t;

// What a policy may size itself by (from DataServiceOptions).
struct DispatchPolicyConfig {
  int batch_size = 64;
  int max_in_flight = 64;  // the service's cap: prepared + requeued + unacked
  int max_credits = 4096;  // largest credit balance a client may hold
};

struct StreamInfo {
  StreamId id = -1;
  std::string worker_id;
  v1::WorkerRole role = v1::BOTH;
  bool want_generated = false;  // draws from the generated buffer
  absl::Time opened = absl::InfinitePast();
};

// A stream's queues right after an event.
struct LinkState {
  int64_t credits = 0;  // granted by the client and not yet used
  int64_t unacked = 0;  // dealt, not acked: queued + on the wire + at worker
  int64_t queued = 0;   // dealt, not yet written (the stream's outbox)
  // Batches waiting in the queue this stream draws from: requeued + prepared
  // (dataset streams) or generated (want_generated streams).
  int64_t available = 0;
};

// One batch on one link; the times fill in as it goes (InfinitePast: not
// yet, or not known).
struct Delivery {
  int64_t batch_id = -1;
  int64_t payload_bytes = 0;  // image + label bytes on the wire
  bool generated = false;
  bool redelivered = false;  // a dataset batch requeued from a broken stream
  absl::Time credit_granted = absl::InfinitePast();  // of the credit it used
  absl::Time dealt = absl::InfinitePast();
  absl::Time sent = absl::InfinitePast();  // Write began (sent_unix_micros)
  // Write returned: how long the link pushed back. InfinitePast in OnSent,
  // and in OnAcked when the client's ack beat the writer back to the lock.
  absl::Time written = absl::InfinitePast();
  absl::Time acked = absl::InfinitePast();
};

class DispatchPolicy {
 public:
  // Window(): only the client's credits limit the stream.
  static constexpr int64_t kNoWindow = std::numeric_limits<int64_t>::max();

  virtual ~DispatchPolicy() = default;

  // The registered name (what --dispatch_policy selects).
  virtual absl::string_view name() const = 0;

  // (a) Observations; ignored unless overridden. For one stream they come in
  // this order: OnStreamOpened, then OnCredits / OnDealt / OnSent / OnAcked
  // as they happen (a batch is dealt, then sent, then acked), then
  // OnStreamClosed; no call names the id after that.

  // A stream passed validation; its first credits follow.
  virtual void OnStreamOpened(const StreamInfo& /*stream*/) {}
  // The client granted `granted` >= 1 credits at `now` (acks of the same
  // request come first).
  virtual void OnCredits(StreamId /*id*/, int64_t /*granted*/,
                         absl::Time /*now*/, const LinkState& /*link*/) {}
  // `batch` was dealt to the stream: one credit used, queued for writing.
  virtual void OnDealt(StreamId /*id*/, const Delivery& /*batch*/,
                       const LinkState& /*link*/) {}
  // The stream's writer began writing `batch` to the wire.
  virtual void OnSent(StreamId /*id*/, const Delivery& /*batch*/,
                      const LinkState& /*link*/) {}
  // The client acked `batch`. (Acks of batches requeued from the worker's
  // previous stream are not reported: that link is gone.)
  virtual void OnAcked(StreamId /*id*/, const Delivery& /*batch*/,
                       const LinkState& /*link*/) {}
  // The stream ended (`why`: OK for a clean half-close); its `requeued`
  // unacked dataset batches went back to the front of the queue.
  virtual void OnStreamClosed(StreamId /*id*/, const absl::Status& /*why*/,
                              int64_t /*requeued*/) {}

  // (b) Decisions.

  // The stream that gets the next batch: one for which `eligible(id)` is
  // true (open, holds a credit, below its Window, and a batch of its kind is
  // waiting), or nullopt to deal nothing now. The service asks again after
  // each deal and after every event that may make a stream eligible (credit,
  // ack, new batch, a stream closing); returning an ineligible id is a bug
  // (the service aborts naming the policy).
  virtual std::optional<StreamId> PickStream(
      absl::FunctionRef<bool(StreamId)> eligible) = 0;
  // At most this many batches dealt to the stream and unacked (kNoWindow:
  // no limit; 0 holds the stream back). Read through `eligible`, i.e. when
  // the service deals after the events above, so it may change with
  // observations; a stream whose window is full waits for its acks. (No
  // timer: a window that widens with time alone, or after OnSent, takes
  // effect at the next credit, ack, batch or close.)
  virtual int64_t Window(StreamId id) const = 0;
};

// The registry. Names are lower case letters, digits and '_'.
using DispatchPolicyFactory =
    std::function<std::unique_ptr<DispatchPolicy>(const DispatchPolicyConfig&)>;

// Registers `factory` under `name`; returns true. A malformed or duplicate
// name aborts: registration runs at start-up (PARAGAN_REGISTER_...).
bool RegisterDispatchPolicy(absl::string_view name,
                            DispatchPolicyFactory factory);
// The registered names, sorted.
std::vector<std::string> DispatchPolicyNames();
// OK if `name` is registered; otherwise InvalidArgument listing the known.
absl::Status CheckDispatchPolicyName(absl::string_view name);
absl::StatusOr<std::unique_ptr<DispatchPolicy>> CreateDispatchPolicy(
    absl::string_view name, const DispatchPolicyConfig& config);

// At namespace scope in the policy's .cc file: registers `Class` (a
// DispatchPolicy with `static constexpr char kName[]` and a constructor
// taking const DispatchPolicyConfig&) under Class::kName. Its library must
// be alwayslink (:dispatch_policies is), or the linker drops the file.
#define PARAGAN_REGISTER_DISPATCH_POLICY(Class)               \
  [[maybe_unused]] static const bool PG_CONCAT(               \
      paragan_dispatch_policy_registered_, __LINE__) =        \
      ::paragan::RegisterDispatchPolicy(                      \
          Class::kName,                                       \
          [](const ::paragan::DispatchPolicyConfig& config)   \
              -> std::unique_ptr<::paragan::DispatchPolicy> { \
            return std::make_unique<Class>(config);           \
          })

}  // namespace paragan

#endif  // PARAGAN_DATALOADER_DISPATCH_POLICY_H_
