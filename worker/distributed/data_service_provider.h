#ifndef PARAGAN_WORKER_DISTRIBUTED_DATA_SERVICE_PROVIDER_H_
#define PARAGAN_WORKER_DISTRIBUTED_DATA_SERVICE_PROVIDER_H_

// Real batches from the data service (paragan_data) through DataClient,
// which already keeps `credits` batches in flight (no extra prefetching:
// a batch is acked only when the next one is asked for). The decoupled
// schedule's ends of the service's sample buffer live here too: a G
// worker's SampleSink and a D worker's FakeSource.

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "dataloader/data_client.h"
#include "worker/distributed/batch_provider.h"
#include "worker/distributed/sample_exchange.h"

namespace paragan {

class DataServiceProvider : public BatchProvider {
 public:
  // Connects (retrying for up to max_retry_seconds) and checks the service's
  // batch size against `batch_size`.
  static absl::StatusOr<std::unique_ptr<DataServiceProvider>> Connect(
      const std::string& address, const std::string& worker_id, int batch_size,
      double max_retry_seconds, v1::WorkerRole role = v1::BOTH);

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
  static absl::StatusOr<std::unique_ptr<DataServiceSampleSink>> Connect(
      const std::string& address, const std::string& worker_id,
      double max_retry_seconds);
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

// A D worker's fakes: a want_generated stream of its own (worker id
// "<id>/fakes"), which the service holds to max_sample_age (< 0: no bound).
class DataServiceFakeSource : public FakeSource {
 public:
  static absl::StatusOr<std::unique_ptr<DataServiceFakeSource>> Connect(
      const std::string& address, const std::string& worker_id,
      int batch_size, int64_t max_sample_age, double max_retry_seconds);
  absl::Status Next(Tensor* host_images, std::vector<int>* labels,
                    FakeBatchInfo* info) override;
  void Cancel() override { client_->Cancel(); }

 private:
  explicit DataServiceFakeSource(std::unique_ptr<DataClient> client)
      : client_(std::move(client)) {}
  std::unique_ptr<DataClient> client_;
};

}  // namespace paragan

#endif  // PARAGAN_WORKER_DISTRIBUTED_DATA_SERVICE_PROVIDER_H_
