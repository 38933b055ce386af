#include "worker/distributed/data_service_provider.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace paragan {

absl::StatusOr<std::unique_ptr<DataServiceProvider>>
DataServiceProvider::Connect(const DataServiceEndpoint& service,
                             const std::string& worker_id, int batch_size,
                             double max_retry_seconds, v1::WorkerRole role) {
  DataClient::Options o;
  o.address = service.address;
  o.security = service.security;
  o.worker_id = worker_id;
  o.role = role;
  o.batch_size = batch_size;
  o.max_retry_seconds = max_retry_seconds;
  absl::StatusOr<std::unique_ptr<DataClient>> client = DataClient::Connect(o);
  if (!client.ok()) return client.status();
  const v1::DescribeResponse& info = (*client)->info();
  if (info.image_shape_size() != 3) {
    return absl::FailedPreconditionError(absl::StrCat(
        "data service ", service.address, " describes images of rank ",
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

absl::StatusOr<std::unique_ptr<DataServiceSampleSink>>
DataServiceSampleSink::Connect(const DataServiceEndpoint& service,
                               const std::string& worker_id,
                               double max_retry_seconds,
                               v1::DType sample_dtype) {
  DataClient::Options o;
  o.address = service.address;
  o.security = service.security;
  o.worker_id = worker_id;
  o.role = v1::G_ONLY;
  o.sample_dtype = sample_dtype;
  o.max_retry_seconds = max_retry_seconds;
  absl::StatusOr<std::unique_ptr<DataClient>> client = DataClient::Connect(o);
  if (!client.ok()) return client.status();
  return std::unique_ptr<DataServiceSampleSink>(
      new DataServiceSampleSink(std::move(client).value()));
}

absl::Status DataServiceSampleSink::Publish(const Tensor& images,
                                            const std::vector<int>& labels,
                                            int64_t g_version) {
  absl::Status st = client_->Publish(images, labels, g_version);
  if (!st.ok()) return st;
  buffered_ = client_->last_publish().buffered_batches();
  dropped_ += client_->last_publish().dropped_batches();
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<DataServiceRoleClient>>
DataServiceRoleClient::Connect(const DataServiceEndpoint& service,
                               const std::string& worker_id,
                               double max_retry_seconds) {
  DataClient::Options o;
  o.address = service.address;
  o.security = service.security;
  o.worker_id = worker_id;
  o.max_retry_seconds = max_retry_seconds;
  absl::StatusOr<std::unique_ptr<DataClient>> client = DataClient::Connect(o);
  if (!client.ok()) return client.status();
  return std::unique_ptr<DataServiceRoleClient>(
      new DataServiceRoleClient(std::move(client).value()));
}

absl::StatusOr<std::unique_ptr<DataServiceFakeSource>>
DataServiceFakeSource::Connect(const DataServiceEndpoint& service,
                               const std::string& worker_id, int batch_size,
                               int64_t max_sample_age,
                               double max_retry_seconds) {
  DataClient::Options o;
  o.address = service.address;
  o.security = service.security;
  o.worker_id = absl::StrCat(worker_id, "/fakes");
  o.role = v1::D_ONLY;
  o.want_generated = true;
  o.max_sample_age = max_sample_age;
  o.batch_size = batch_size;
  // Generated batches are few and fresh ones matter: one at a time rather
  // than hoarding the buffer.
  o.credits = 1;  // plus the one the reader holds
  o.max_retry_seconds = max_retry_seconds;
  absl::StatusOr<std::unique_ptr<DataClient>> client = DataClient::Connect(o);
  if (!client.ok()) return client.status();
  return std::unique_ptr<DataServiceFakeSource>(
      new DataServiceFakeSource(std::move(client).value()));  // reads now
}

DataServiceFakeSource::DataServiceFakeSource(std::unique_ptr<DataClient> client)
    : client_(std::move(client)), reader_([this] { ReadLoop(); }) {}

DataServiceFakeSource::~DataServiceFakeSource() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  client_->Cancel();
  reader_.join();
}

void DataServiceFakeSource::ReadLoop() {
  for (;;) {
    Item item;
    item.status = client_->Next(&item.images, &item.labels);
    if (item.status.ok()) {
      if (item.labels.empty()) item.labels.assign(item.images.dim(0), 0);
      item.info.g_version = client_->last_batch().g_version;
      item.info.newest_g_version = client_->last_batch().newest_g_version;
    }
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return stopping_ || !next_.has_value(); });
    if (stopping_) return;
    const bool failed = !item.status.ok();
    next_ = std::move(item);
    cv_.notify_all();
    if (failed) return;  // DataClient has retried already: the error stays
  }
}

absl::Status DataServiceFakeSource::Next(Tensor* host_images,
                                         std::vector<int>* labels,
                                         FakeBatchInfo* info,
                                         absl::Time deadline) {
  std::unique_lock<std::mutex> lock(mu_);
  const auto ready = [&] { return next_.has_value(); };
  if (deadline == absl::InfiniteFuture()) {
    cv_.wait(lock, ready);
  } else if (!cv_.wait_for(lock,
                           absl::ToChronoNanoseconds(std::max(
                               absl::ZeroDuration(), deadline - absl::Now())),
                           ready)) {
    return absl::DeadlineExceededError("no generated batch in time");
  }
  if (!next_->status.ok()) return next_->status;  // kept for later calls
  *host_images = std::move(next_->images);
  *labels = std::move(next_->labels);
  *info = next_->info;
  next_.reset();
  cv_.notify_all();
  return absl::OkStatus();
}

}  // namespace paragan
