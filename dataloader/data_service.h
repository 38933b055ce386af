#ifndef PARAGAN_DATALOADER_DATA_SERVICE_H_
#define PARAGAN_DATALOADER_DATA_SERVICE_H_

// The data service (paragan.v1.DataService): one process serves a dataset to
// every worker of a training job.
//
// Order. One global EpochSampler(dataset size, seed) cuts the data into
// batches of `batch_size`; the batches are dealt, in that order, to the
// streams that have credit. Which stream gets the next batch is the
// DispatchPolicy's decision (dispatch_policy.h, `dispatch_policy`); the
// default, round_robin, deals in the order the streams asked (round robin
// among waiting streams). Each epoch therefore reaches the workers exactly
// once in total, and a single worker sees exactly EpochSampler(seed)'s order:
// the order of the single-process trainer (worker/train/training_run.cc).
//
// Flow control. A stream's first BatchRequest names the worker and grants
// credits (>= 1); later requests grant more (>= 0) and ack batch_ids. One
// batch is sent per credit, never more (the policy's Window may hold a stream
// to fewer unacked batches). Memory is bounded: batches prepared
// ahead (at most `prefetch`) plus requeued plus sent-and-unacked batches
// never exceed `max_in_flight`; when the cap is reached the producer waits
// for acks. (Generated batches are bounded separately: the buffer plus the
// D_ONLY streams' credits.)
//
// Delivery. A background thread decodes batches ahead. Batches a stream was
// sent and did not ack when it ended (error, cancel, half-close, or a new
// stream of the same worker_id, which supersedes it) go back to the front of
// the queue and are dealt to the next stream that asks. Acks naming requeued
// batches of the same worker (a reconnecting worker acking what it consumed
// before the break) remove them. Delivery is at least once: a batch consumed
// but unacked when a stream broke may be delivered again. worker_id must be
// unique among live workers: two live streams with one id supersede each
// other.
//
// Roles. AssignRole is the role coordinator of --role=auto workers
// (role_coordinator.h), fed with the buffer's fill.
//
// Generated samples. PublishSamples (G workers) appends batches to a bounded
// buffer (the oldest is dropped when full, counted); streams opened with
// want_generated (role D_ONLY) receive those instead of dataset batches,
// oldest first. A stream that set max_sample_age never receives a batch whose
// g_version is more than that behind the newest g_version published: such
// batches are dropped from the buffer when reached (counted as stale). A D
// worker opens two streams: one of real batches, one of generated ones.

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/auth.h"
#include "dataloader/byte_budget.h"
#include "dataloader/data_metrics.h"
#include "dataloader/datasets/dataset.h"
#include "dataloader/datasets/sampler.h"
#include "dataloader/dispatch_policy.h"
#include "dataloader/role_coordinator.h"
#include "grpcpp/grpcpp.h"
#include "proto/paragan.grpc.pb.h"

namespace paragan {

struct DataServiceOptions {
  std::string dataset_name;  // reported by Describe (defaults to info().name)
  int batch_size = 64;
  uint64_t seed = 0;          // EpochSampler seed
  int prefetch = 8;           // batches decoded ahead
  int max_in_flight = 64;     // prepared + requeued + sent-and-unacked
  int generated_buffer = 16;  // generated batches kept; 0: publishing off
  int load_threads = 1;       // LoadBatch threads of the producer
  // Largest credit balance a stream may hold (a guard against bad clients).
  int max_credits = 4096;
  // StreamBatches streams open at once (a D worker holds two); one beyond is
  // refused with RESOURCE_EXHAUSTED, counted and logged. A worker's new
  // stream replacing its old one always fits.
  int max_streams = 512;
  // Caps on the image and label bytes put on the wire per second (byte
  // budget.h), so data cannot starve gradient traffic on shared links: over
  // all streams, and per stream. 0: no cap. A batch the cap holds back waits
  // before its write (counted in paragan_data_budget_wait_seconds_total), and
  // its delivery is timed from the write, so a policy that estimates the
  // link sees the budget as the link's rate.
  double max_bytes_per_s = 0;
  double link_max_bytes_per_s = 0;
  // How much an idle cap lets through at once, in seconds of its rate.
  absl::Duration budget_burst = absl::Milliseconds(50);
  // The registered DispatchPolicy that deals batches to streams.
  std::string dispatch_policy = "round_robin";
  // Role balancing of --role=auto workers (AssignRole).
  RoleCoordinatorOptions roles;
  // Every call must present this bearer token (common/auth.h); empty: no
  // authentication.
  std::string auth_token;
};

class DataService final : public v1::DataService::Service {
 public:
  // Counters for tests and logs.
  struct Stats {
    int64_t prepared = 0;   // decoded, waiting to be dealt
    int64_t requeued = 0;   // waiting at the front of the queue
    int64_t in_flight = 0;  // dealt to a stream, not acked
    int64_t streams = 0;
    int64_t produced = 0;  // real batches drawn from the sampler
    int64_t requeued_total = 0;
    int64_t generated_buffered = 0;
    int64_t generated_accepted = 0;
    int64_t generated_dropped = 0;
    int64_t generated_stale = 0;   // skipped: older than a stream's bound
    int64_t newest_g_version = 0;  // of the samples published
    int64_t epoch = 0;
  };

  // Starts the producer thread. `metrics` may be null and must outlive the
  // service. Invalid options (an unknown dispatch_policy included) are
  // InvalidArgument errors. `policy`, when set, is used instead of the one
  // options.dispatch_policy names (tests).
  static absl::StatusOr<std::unique_ptr<DataService>> Create(
      std::unique_ptr<Dataset> dataset, const DataServiceOptions& options,
      DataMetrics* metrics, std::unique_ptr<DispatchPolicy> policy = nullptr);
  // Stops the producer. Shut the grpc::Server down first.
  ~DataService() override;

  grpc::Status Describe(grpc::ServerContext* context,
                        const v1::DescribeRequest* request,
                        v1::DescribeResponse* response) override;
  grpc::Status StreamBatches(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<v1::Batch, v1::BatchRequest>* stream) override;
  grpc::Status PublishSamples(grpc::ServerContext* context,
                              grpc::ServerReader<v1::SampleBatch>* reader,
                              v1::PublishResponse* response) override;
  grpc::Status AssignRole(grpc::ServerContext* context,
                          const v1::RoleReport* request,
                          v1::RoleAssignment* response) override;

  // Ends every open stream (UNAVAILABLE: workers reconnect to the next
  // service) and refuses new ones, so that grpc::Server::Shutdown need not
  // wait for its deadline. Call before it.
  void Shutdown();

  // Message size limits and keepalive pings DataClient sends (by default
  // gRPC servers refuse pings more often than every 5 minutes).
  static void ConfigureServer(grpc::ServerBuilder* builder,
                              int max_message_bytes);

  Stats stats() const;
  const DatasetInfo& info() const { return dataset_->info(); }
  // The policy's name (reported at start-up).
  absl::string_view dispatch_policy() const { return policy_->name(); }
  const RoleCoordinator& roles() const { return roles_; }

 private:
  // A batch ready to send: the message minus the send time.
  struct Prepared {
    v1::Batch batch;
    int64_t payload_bytes = 0;
    std::string owner;  // requeued: the worker it was sent to
  };
  using PreparedPtr = std::shared_ptr<Prepared>;
  struct Stream;

  DataService(std::unique_ptr<Dataset> dataset,
              const DataServiceOptions& options, DataMetrics* metrics,
              std::unique_ptr<DispatchPolicy> policy);
  void ProduceLoop();
  PreparedPtr MakeBatch(const std::vector<int64_t>& indices, int64_t epoch);

  // All below with mu_ held.
  absl::Status ValidateOpen(const v1::BatchRequest& request) const;
  absl::Status ApplyRequest(Stream* s, const v1::BatchRequest& request,
                            bool first);
  void Ack(Stream* s, int64_t batch_id);
  // A generated batch older than `s`'s max_sample_age allows.
  bool Stale(const Stream& s, const Prepared& p) const;
  // Whether a batch of the kind `s` wants is waiting.
  bool HasBatchFor(const Stream& s) const;
  PreparedPtr TakeFor(const Stream& s);
  // The policy's `eligible`: open, holds credit, below its window, and
  // HasBatchFor.
  bool CanDeal(StreamId id) const;
  LinkState LinkOf(const Stream& s) const;
  // Reserves `wire_bytes` of the total and the stream's byte budgets at
  // `now`; returns how long the write must wait for both.
  absl::Duration HoldForBudgets(Stream* s, int64_t wire_bytes, absl::Time now);
  // The policy's estimate of the stream's link, to the per-link gauges.
  void PublishEstimate(const Stream& s);
  // Deals batches to the streams the policy picks until it picks none.
  void Dispatch();
  void CloseStream(Stream* s, const absl::Status& why);
  void UpdateGauges();
  int64_t Live() const {
    return static_cast<int64_t>(ready_.size() + requeued_.size()) + in_flight_;
  }

  std::unique_ptr<Dataset> dataset_;
  const DataServiceOptions options_;
  std::optional<ByteBudget> total_budget_;  // max_bytes_per_s
  DataMetrics* const metrics_;
  const CallAuthenticator auth_;
  // Called with mu_ held only (its contract: dispatch_policy.h).
  const std::unique_ptr<DispatchPolicy> policy_;
  RoleCoordinator roles_;  // thread-safe on its own

  mutable std::mutex mu_;
  std::condition_variable producer_cv_;
  bool stopping_ = false;
  bool shutting_down_ = false;  // Shutdown(): no new streams
  int64_t next_batch_id_ = 0;
  std::deque<PreparedPtr> ready_;     // sampler order
  std::deque<PreparedPtr> requeued_;  // dealt before ready_
  std::deque<PreparedPtr> generated_;
  int64_t newest_g_version_ = 0;     // highest g_version published
  int64_t in_flight_ = 0;            // real batches dealt and not acked
  int64_t generated_in_flight_ = 0;  // outside the max_in_flight cap
  StreamId next_stream_id_ = 0;
  int64_t stream_limit_hits_ = 0;        // streams refused by max_streams
  std::map<StreamId, Stream*> streams_;  // open streams
  std::map<std::string, Stream*> by_worker_;
  int64_t last_epoch_ = 0;
  Stats totals_;

  std::thread producer_;  // last: started once the rest is constructed
};

}  // namespace paragan

#endif  // PARAGAN_DATALOADER_DATA_SERVICE_H_
