#ifndef PARAGAN_DATALOADER_DATA_CLIENT_H_
#define PARAGAN_DATALOADER_DATA_CLIENT_H_

// DataClient: a worker's end of the data service (data_service.h).
//
//   PG_ASSIGN_OR_RETURN(auto data, DataClient::Connect({.address = "h:p",
//                                                       .worker_id = "w0"}));
//   Tensor images; std::vector<int> labels;
//   while (...) PG_RETURN_IF_ERROR(data->Next(&images, &labels));
//
// Next() keeps one StreamBatches stream open with `credits` batches in
// flight; each call acks the batch the previous call returned and hands the
// service one credit back, so batches arrive ahead of need. A receiver
// thread reads the stream: it reports each batch's arrival at once (the
// service's congestion-aware policy measures the link's round trip from
// these receipts) and decompresses and decodes the batch off the training
// thread; Next pops the oldest decoded batch, and reports how long it waited
// for one (stall) and the decode time with its acks. When the service
// is unreachable or the stream breaks, it reconnects (same worker_id, which
// resumes: the service requeues what was not acked) with exponential backoff
// for up to max_retry_seconds, then fails with UNAVAILABLE naming the
// address. Errors the service gives for a bad request are returned at once.
//
// Threads: Next and Publish may run concurrently with each other (separate
// calls), but each must not run concurrently with itself. Cancel is safe
// from any thread; after it, Next and Publish return CANCELLED.

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/tensor.h"
#include "common/tls.h"
#include "grpcpp/grpcpp.h"
#include "proto/paragan.grpc.pb.h"

namespace paragan {

class DataClient {
 public:
  struct Options {
    std::string address;    // host:port of paragan_data
    std::string worker_id;  // stable across restarts of the worker: resumes
    v1::WorkerRole role = v1::BOTH;
    int batch_size = 0;  // 0: the service's; otherwise must equal it
    // Batches in flight at most (>= 1): the budget within which the
    // service's policy sizes the link's window (congestion_aware).
    int credits = 4;
    bool want_generated = false;  // D_ONLY: generated samples instead of data
    // want_generated: the service skips batches more than this many G
    // versions behind the newest published; < 0: no bound.
    int64_t max_sample_age = -1;
    double max_retry_seconds = 60;
    int initial_backoff_ms = 100;
    int max_backoff_ms = 2000;
    int max_message_bytes = 256 << 20;
    // What this client decodes (the service sends the dataset's UINT8
    // pixels, a quarter of the float bytes, to clients that ask for them)
    // and the compressions it accepts (the service's policy picks one per
    // batch). FLOAT32 and none: today's wire, for measuring against.
    v1::DType image_dtype = v1::UINT8;
    std::vector<v1::Compression> accept_compression = {v1::LZ4, v1::ZSTD};
    // How Publish sends generated images: FLOAT32 (exact), BFLOAT16 or
    // UINT8 (EncodeSampleImages); the service keeps them so and widens
    // UINT8 for D workers that decode FLOAT32 only.
    v1::DType sample_dtype = v1::FLOAT32;
    // The bearer token sent with every call and the channel's TLS
    // (common/tls.h).
    ClientSecurity security;
  };

  // Totals since Connect (Next's thread, after Next returns).
  struct Totals {
    int64_t batches = 0;
    int64_t wire_bytes = 0;     // image + label bytes received
    int64_t decoded_bytes = 0;  // what they decoded to (float32)
    absl::Duration stall;       // Next waited with no batch decoded
    absl::Duration decode;      // the receiver decompressing and decoding
  };

  // What Next returned last (batch_id -1 before the first batch).
  struct BatchInfo {
    int64_t batch_id = -1;
    int64_t epoch = 0;
    bool generated = false;
    int64_t g_version = 0;
    int64_t newest_g_version = 0;  // generated: newest published when dealt
    int64_t sent_unix_micros = 0;
    std::vector<int64_t> example_indices;
  };

  // Checks the options and calls Describe, retrying with backoff for up to
  // max_retry_seconds. The batch stream opens on the first Next.
  static absl::StatusOr<std::unique_ptr<DataClient>> Connect(Options options);
  // Acks the last batch and closes the stream (the service requeues the
  // batches received ahead and not consumed).
  ~DataClient();

  const v1::DescribeResponse& info() const { return info_; }
  const Options& options() const { return options_; }

  // Blocks until the next batch arrives: images as a host tensor [N, C, H, W]
  // (float32, in [-1, 1] for dataset batches), labels (N ints; empty for
  // generated batches published without labels).
  absl::Status Next(Tensor* host_images, std::vector<int>* labels);
  const BatchInfo& last_batch() const { return last_; }
  Totals totals() const;

  // Hands generated samples (images [N, C, H, W] of the dataset's C, H, W;
  // labels empty or N classes) to the service for D_ONLY workers. Retries
  // like Next while the service is unreachable.
  absl::Status Publish(const Tensor& images, const std::vector<int>& labels,
                       int64_t g_version);
  const v1::PublishResponse& last_publish() const { return last_publish_; }

  // Role auto: reports to the service's role coordinator and returns the
  // role to run. Retries like Publish while the service is unreachable.
  absl::StatusOr<v1::RoleAssignment> AssignRole(const v1::RoleReport& report);

  // Unblocks Next/Publish (they return CANCELLED) and stops retries.
  void Cancel();
  bool cancelled() const { return cancelled_.load(); }
  // Streams opened after the first one (reconnects).
  int64_t reconnects() const { return reconnects_; }

 private:
  using BatchStream = grpc::ClientReaderWriter<v1::BatchRequest, v1::Batch>;
  // Retry bookkeeping shared by Connect, Next and Publish.
  struct Retry {
    absl::Time first_failure = absl::InfinitePast();
    int backoff_ms = 0;
  };

  DataClient(Options options, std::shared_ptr<grpc::Channel> channel);
  absl::Status Describe();
  // A batch the receiver read and decoded (or failed to).
  struct Received {
    absl::Status status;
    Tensor images;
    std::vector<int> labels;
    BatchInfo info;
    int64_t wire_bytes = 0;
  };

  absl::Status OpenStream();
  void CloseStream(bool graceful);
  // The receiver thread's loop over one stream; ends when Read fails,
  // after the stream's Finish.
  void Receive();
  Received Decode(v1::Batch batch) const;
  // Writes on the open stream, unless it finished or its writes are done.
  void WriteRequest(const v1::BatchRequest& request);
  // After a retryable failure: sleeps the backoff (or returns CANCELLED /
  // UNAVAILABLE when cancelled / out of time); other errors come back as is.
  absl::Status Backoff(const absl::Status& error, Retry* retry);
  // Registers the context Cancel must cancel; false if already cancelled.
  bool Track(grpc::ClientContext* context);
  void Untrack(grpc::ClientContext* context);
  absl::Status Cancelled() const;

  const Options options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::DataService::Stub> stub_;
  v1::DescribeResponse info_;

  // The batch stream: opened, closed and read from Next's thread; written
  // by Next and the receiver under write_mu_.
  std::unique_ptr<grpc::ClientContext> stream_context_;
  std::unique_ptr<BatchStream> stream_;
  std::thread receiver_;
  bool ack_pending_ = false;  // last_.batch_id consumed, ack not yet written
  int64_t streams_opened_ = 0;
  int64_t reconnects_ = 0;
  BatchInfo last_;
  // This stream's stall and decode totals (what BatchRequest reports).
  int64_t stream_stall_micros_ = 0;
  std::atomic<int64_t> stream_decode_micros_{0};
  int64_t reported_stall_micros_ = 0;
  int64_t reported_decode_micros_ = 0;
  Totals totals_;  // Next's thread; decode from decode_micros_total_
  std::atomic<int64_t> decode_micros_total_{0};

  std::mutex write_mu_;
  bool writes_closed_ = false;  // WritesDone or Finish called (write_mu_)

  std::mutex queue_mu_;
  std::condition_variable queue_cv_;
  std::deque<Received> queue_;  // decoded, not yet returned by Next
  bool stream_ended_ = false;   // the receiver saw Read fail
  absl::Status stream_status_;  // its Finish

  v1::PublishResponse last_publish_;

  std::atomic<bool> cancelled_{false};
  std::mutex mu_;  // guards contexts_ and wakes backoff sleeps
  std::condition_variable cancel_cv_;
  std::vector<grpc::ClientContext*> contexts_;
};

}  // namespace paragan

#endif  // PARAGAN_DATALOADER_DATA_CLIENT_H_
