#ifndef PARAGAN_WORKER_DISTRIBUTED_DATA_SERVICE_PROVIDER_H_
#define PARAGAN_WORKER_DISTRIBUTED_DATA_SERVICE_PROVIDER_H_

// Real batches from the data service (paragan_data) through DataClient,
// which already keeps `credits` batches in flight (no extra prefetching:
// a batch is acked only when the next one is asked for). The decoupled
// schedule's ends of the service's sample buffer live here too: a G
// worker's SampleSink and a D worker's FakeSource.

#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "dataloader/data_client.h"
#include "worker/distributed/batch_provider.h"
#include "worker/distributed/sample_exchange.h"

namespace paragan {

// Where the data service is and how to authenticate to it.
struct DataServiceEndpoint {
  std::string address;     // host:port
  ClientSecurity security;  // token and TLS (common/tls.h)
};

class DataServiceProvider : public BatchProvider {
 public:
  // Connects (retrying for up to max_retry_seconds) and checks the service's
  // batch size against `batch_size`.
  static absl::StatusOr<std::unique_ptr<DataServiceProvider>> Connect(
      const DataServiceEndpoint& service, const std::string& worker_id,
      int batch_size, double max_retry_seconds, v1::WorkerRole role = v1::BOTH);

  absl::Status Next(Tensor* host_images, std::vector<int>* labels) override;
  void Cancel() override { client_->Cancel(); }
  const v1::DescribeResponse& info() const { return client_->info(); }

 private:
  explicit DataServiceProvider(std::unique_ptr<DataClient> client)
      : client_(std::move(client)) {}
  std::unique_ptr<DataClient> client_;
};

// A G worker's publisher: DataClient::Publish.
class DataServiceSampleSink : public SampleSink {
 public:
  // `sample_dtype`: how the images travel (DataClient::Options).
  static absl::StatusOr<std::unique_ptr<DataServiceSampleSink>> Connect(
      const DataServiceEndpoint& service, const std::string& worker_id,
      double max_retry_seconds, v1::DType sample_dtype = v1::FLOAT32);
  absl::Status Publish(const Tensor& images, const std::vector<int>& labels,
                       int64_t g_version) override;
  int64_t buffered() const override { return buffered_; }
  int64_t dropped() const override { return dropped_; }
  void Cancel() override { client_->Cancel(); }

 private:
  explicit DataServiceSampleSink(std::unique_ptr<DataClient> client)
      : client_(std::move(client)) {}
  std::unique_ptr<DataClient> client_;
  int64_t buffered_ = -1, dropped_ = 0;
};

// Role auto: the data service's role coordinator (DataClient::AssignRole).
class DataServiceRoleClient : public RoleClient {
 public:
  static absl::StatusOr<std::unique_ptr<DataServiceRoleClient>> Connect(
      const DataServiceEndpoint& service, const std::string& worker_id,
      double max_retry_seconds);
  absl::StatusOr<v1::RoleAssignment> Report(
      const v1::RoleReport& report) override {
    return client_->AssignRole(report);
  }

 private:
  explicit DataServiceRoleClient(std::unique_ptr<DataClient> client)
      : client_(std::move(client)) {}
  std::unique_ptr<DataClient> client_;
};

// A D worker's fakes: a want_generated stream of its own (worker id
// "<id>/fakes"), which the service holds to max_sample_age (< 0: no bound).
// A reader thread takes the next batch off the stream (one ahead, acked once
// read: a fake lost with a dying worker costs nothing), so Next can give up
// at a deadline.
class DataServiceFakeSource : public FakeSource {
 public:
  static absl::StatusOr<std::unique_ptr<DataServiceFakeSource>> Connect(
      const DataServiceEndpoint& service, const std::string& worker_id,
      int batch_size, int64_t max_sample_age, double max_retry_seconds);
  // Cancels the stream (the service requeues what it had sent ahead).
  ~DataServiceFakeSource() override;
  absl::Status Next(Tensor* host_images, std::vector<int>* labels,
                    FakeBatchInfo* info, absl::Time deadline) override;
  void Cancel() override { client_->Cancel(); }

 private:
  struct Item {
    absl::Status status;
    Tensor images;
    std::vector<int> labels;
    FakeBatchInfo info;
  };
  explicit DataServiceFakeSource(std::unique_ptr<DataClient> client);
  void ReadLoop();

  std::unique_ptr<DataClient> client_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::optional<Item> next_;  // read, not yet taken
  bool stopping_ = false, failed_ = false;
  std::thread reader_;  // last
};

}  // namespace paragan

#endif  // PARAGAN_WORKER_DISTRIBUTED_DATA_SERVICE_PROVIDER_H_
