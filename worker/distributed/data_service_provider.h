#ifndef PARAGAN_WORKER_DISTRIBUTED_DATA_SERVICE_PROVIDER_H_
#define PARAGAN_WORKER_DISTRIBUTED_DATA_SERVICE_PROVIDER_H_

// Real batches from the data service (paragan_data) through DataClient,
// which already keeps `credits` batches in flight (no extra prefetching:
// a batch is acked only when the next one is asked for).

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "dataloader/data_client.h"
#include "worker/distributed/batch_provider.h"

namespace paragan {

class DataServiceProvider : public BatchProvider {
 public:
  // Connects (retrying for up to max_retry_seconds) and checks the service's
  // batch size against `batch_size`.
  static absl::StatusOr<std::unique_ptr<DataServiceProvider>> Connect(
      const std::string& address, const std::string& worker_id, int batch_size,
      double max_retry_seconds);

  absl::Status Next(Tensor* host_images, std::vector<int>* labels) override;
  void Cancel() override { client_->Cancel(); }
  const v1::DescribeResponse& info() const { return client_->info(); }

 private:
  explicit DataServiceProvider(std::unique_ptr<DataClient> client)
      : client_(std::move(client)) {}
  std::unique_ptr<DataClient> client_;
};

}  // namespace paragan

#endif  // PARAGAN_WORKER_DISTRIBUTED_DATA_SERVICE_PROVIDER_H_
