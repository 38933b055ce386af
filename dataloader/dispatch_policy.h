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
//       (PickStream), how many batches a stream may hold unacked (Window),
//       and how the next batch written to a stream is compressed
//       (Encoding). The client's credits stay a hard limit on top: a policy
//       can hold a stream back, never send it more than it asked for; and a
//       codec the client did not accept is never used.
// Each stream's writer encodes its batches (dtype the client decodes, then
// the policy's compression) outside the service's lock.
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
#include "dataloader/wire_compression.h"
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
  // What the client decodes: UINT8 images, and these codecs.
  bool decodes_uint8 = false;
  std::vector<v1::Compression> compressions;
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
  // Image + label bytes as stored (before the writer encodes them); after
  // OnSent, wire_bytes are the bytes written (dtype and compression applied)
  // and raw_bytes what they decode to (the FLOAT32 bytes the worker uses).
  int64_t payload_bytes = 0;
  int64_t wire_bytes = 0;
  int64_t raw_bytes = 0;
  WireEncoding encoding;       // what the writer used
  absl::Duration encode_time;  // widening + compressing, CPU
  bool generated = false;
  bool redelivered = false;  // a dataset batch requeued from a broken stream
  absl::Time credit_granted = absl::InfinitePast();  // of the credit it used
  absl::Time dealt = absl::InfinitePast();
  absl::Time sent = absl::InfinitePast();  // Write began (sent_unix_micros)
  // Write returned: how long the link pushed back. InfinitePast in OnSent,
  // and in OnAcked when the client's ack beat the writer back to the lock.
  absl::Time written = absl::InfinitePast();
  // The client's receipt arrived (BatchRequest.received): sent -> received
  // is the link's round trip, without the time the batch waits at the
  // worker to be consumed. InfinitePast for clients that do not report it.
  absl::Time received = absl::InfinitePast();
  absl::Time acked = absl::InfinitePast();
};

// What a client said about itself in a BatchRequest: the increase of its
// totals since its previous request on this stream.
struct ClientReport {
  absl::Time at = absl::InfinitePast();
  absl::Duration stall;   // the worker waited with no batch ready
  absl::Duration decode;  // decompressing and decoding
};

// A policy's picture of one link, for the metrics (data_metrics.h).
struct LinkEstimate {
  double bandwidth_bytes_per_second = 0;
  absl::Duration rtt;             // smoothed send -> receipt
  absl::Duration min_rtt;         // the link's base round trip, recently
  absl::Duration queueing_delay;  // rtt - min_rtt: time spent in queues
  int64_t window = 0;             // Window(), capped at the client's credits
  int compression_level = 0;      // the policy's rung (its own scale)
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
  // The client reported `batch` arrived (batch.received set): before the
  // batch's OnAcked, if at all (clients need not report receipts).
  virtual void OnReceived(StreamId /*id*/, const Delivery& /*batch*/,
                          const LinkState& /*link*/) {}
  // The client reported its stall and decode time (every BatchRequest that
  // carries them; the first message too).
  virtual void OnClientReport(StreamId /*id*/, const ClientReport& /*report*/,
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
  // How the stream's writer compresses the batch it writes next (asked once
  // per batch, just before encoding). A codec the stream's client did not
  // accept (StreamInfo.compressions) is replaced by none. Default: none.
  virtual WireEncoding Encoding(StreamId /*id*/) const { return {}; }
  // For the per-link gauges, read after OnSent, OnReceived and OnAcked;
  // nullopt (the default) publishes none.
  virtual std::optional<LinkEstimate> Estimate(StreamId /*id*/) const {
    return std::nullopt;
  }
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
