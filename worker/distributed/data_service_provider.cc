#include "worker/distributed/data_service_provider.h"

#include "absl/strings/str_cat.h"

namespace paragan {

absl::StatusOr<std::unique_ptr<DataServiceProvider>>
DataServiceProvider::Connect(const std::string& address,
                             const std::string& worker_id, int batch_size,
                             double max_retry_seconds) {
  DataClient::Options o;
  o.address = address;
  o.worker_id = worker_id;
  o.role = v1::BOTH;
  o.batch_size = batch_size;
  o.max_retry_seconds = max_retry_seconds;
  absl::StatusOr<std::unique_ptr<DataClient>> client = DataClient::Connect(o);
  if (!client.ok()) return client.status();
  const v1::DescribeResponse& info = (*client)->info();
  if (info.image_shape_size() != 3) {
    return absl::FailedPreconditionError(
        absl::StrCat("data service ", address, " describes images of rank ",
                     info.image_shape_size(), ", expected [C, H, W]"));
  }
  return std::unique_ptr<DataServiceProvider>(
      new DataServiceProvider(std::move(client).value()));
}

absl::Status DataServiceProvider::Next(Tensor* host_images,
                                       std::vector<int>* labels) {
  absl::Status st = client_->Next(host_images, labels);
  if (!st.ok()) return st;
  if (labels->empty()) labels->assign(host_images->dim(0), 0);
  return absl::OkStatus();
}

}  // namespace paragan
