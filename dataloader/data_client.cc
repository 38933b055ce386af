#include "dataloader/data_client.h"

#include <algorithm>
#include <chrono>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/auth.h"
#include "common/check.h"
#include "common/grpc_status.h"
#include "dataloader/batch_codec.h"

namespace paragan {
namespace {

// Failures worth retrying: the service is down, restarting or overloaded,
// or the call was cut. Anything else is the service refusing the request.
bool Retryable(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kCancelled:  // ours are caught before this
    case absl::StatusCode::kAborted:
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kInternal:
    case absl::StatusCode::kUnknown:
      return true;
    default:
      return false;
  }
}

std::chrono::system_clock::time_point DeadlineIn(absl::Duration d) {
  return std::chrono::system_clock::now() + absl::ToChronoMilliseconds(d);
}

}  // namespace

absl::StatusOr<std::unique_ptr<DataClient>> DataClient::Connect(
    Options options) {
  auto bad = [](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat("DataClient: ", what));
  };
  if (options.address.empty()) return bad("address must be set");
  if (options.worker_id.empty()) return bad("worker_id must be set");
  if (!v1::WorkerRole_IsValid(options.role)) return bad("unknown role");
  if (options.credits < 1) {
    return bad(absl::StrCat("credits must be >= 1, got ", options.credits));
  }
  if (options.max_sample_age >= 0 && !options.want_generated) {
    return bad("max_sample_age is for want_generated clients");
  }
  auto image_dtype = [](v1::DType d) {
    return d == v1::FLOAT32 || d == v1::BFLOAT16 || d == v1::UINT8;
  };
  if (!image_dtype(options.image_dtype)) {
    return bad("image_dtype must be FLOAT32, BFLOAT16 or UINT8");
  }
  if (!image_dtype(options.sample_dtype)) {
    return bad("sample_dtype must be FLOAT32, BFLOAT16 or UINT8");
  }
  for (v1::Compression c : options.accept_compression) {
    if (!v1::Compression_IsValid(c)) {
      return bad(absl::StrCat("unknown compression ", static_cast<int>(c),
                              " in accept_compression"));
    }
  }
  if (options.batch_size < 0) {
    return bad(
        absl::StrCat("batch_size must be >= 0, got ", options.batch_size));
  }
  if (options.initial_backoff_ms < 1 ||
      options.max_backoff_ms < options.initial_backoff_ms ||
      options.max_retry_seconds < 0) {
    return bad(
        "need 1 <= initial_backoff_ms <= max_backoff_ms and "
        "max_retry_seconds >= 0");
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(options.max_message_bytes);
  args.SetMaxSendMessageSize(options.max_message_bytes);
  // Reconnect on our schedule, not gRPC's default (1 s growing to 120 s).
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
              options.initial_backoff_ms);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, options.initial_backoff_ms);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, options.max_backoff_ms);
  // Notice a dead service while blocked in Read (the service allows these
  // pings: DataService::ConfigureServer).
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 20000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  options.security.ApplyTo(&args);
  auto channel = grpc::CreateCustomChannel(
      options.address, options.security.ChannelCredentials(), args);
  std::unique_ptr<DataClient> client(
      new DataClient(std::move(options), std::move(channel)));
  if (absl::Status st = client->Describe(); !st.ok()) return st;
  const int want = client->options_.batch_size;
  if (want != 0 && want != client->info_.batch_size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "DataClient: batch_size ", want, " differs from the data service's ",
        client->info_.batch_size(), " at ", client->options_.address));
  }
  return client;
}

DataClient::DataClient(Options options, std::shared_ptr<grpc::Channel> channel)
    : options_(std::move(options)),
      channel_(std::move(channel)),
      stub_(v1::DataService::NewStub(channel_)) {}

DataClient::~DataClient() { CloseStream(/*graceful=*/true); }

bool DataClient::Track(grpc::ClientContext* context) {
  std::lock_guard<std::mutex> lock(mu_);
  if (cancelled_.load()) return false;
  contexts_.push_back(context);
  return true;
}

void DataClient::Untrack(grpc::ClientContext* context) {
  std::lock_guard<std::mutex> lock(mu_);
  contexts_.erase(std::remove(contexts_.begin(), contexts_.end(), context),
                  contexts_.end());
}

void DataClient::Cancel() {
  std::lock_guard<std::mutex> lock(mu_);
  cancelled_.store(true);
  for (grpc::ClientContext* c : contexts_) c->TryCancel();
  cancel_cv_.notify_all();
}

absl::Status DataClient::Cancelled() const {
  return absl::CancelledError(
      absl::StrCat("DataClient for ", options_.address, " was cancelled"));
}

absl::Status DataClient::Backoff(const absl::Status& error, Retry* retry) {
  if (cancelled_.load()) return Cancelled();
  if (!Retryable(error)) {
    return absl::Status(error.code(),
                        absl::StrCat("data service at ", options_.address, ": ",
                                     error.message()));
  }
  const absl::Time now = absl::Now();
  if (retry->first_failure == absl::InfinitePast()) {
    retry->first_failure = now;
    retry->backoff_ms = options_.initial_backoff_ms;
  }
  const absl::Duration limit = absl::Seconds(options_.max_retry_seconds);
  const absl::Duration spent = now - retry->first_failure;
  if (spent >= limit) {
    return absl::UnavailableError(absl::StrCat(
        "data service at ", options_.address, " unreachable for ",
        absl::FormatDuration(spent), " (max_retry_seconds=",
        options_.max_retry_seconds, "); last error: ", error.ToString()));
  }
  const absl::Duration sleep =
      std::min(absl::Milliseconds(retry->backoff_ms), limit - spent);
  retry->backoff_ms = std::min(retry->backoff_ms * 2, options_.max_backoff_ms);
  std::unique_lock<std::mutex> lock(mu_);
  cancel_cv_.wait_for(lock, absl::ToChronoMilliseconds(sleep),
                      [this] { return cancelled_.load(); });
  return cancelled_.load() ? Cancelled() : absl::OkStatus();
}

absl::Status DataClient::Describe() {
  Retry retry;
  for (;;) {
    grpc::ClientContext context;
    AddAuthMetadata(options_.security.auth_token, &context);
    // Short attempts, so that a slow start of the service is retried.
    context.set_deadline(DeadlineIn(absl::Seconds(5)));
    if (!Track(&context)) return Cancelled();
    v1::DescribeResponse response;
    const grpc::Status st =
        stub_->Describe(&context, v1::DescribeRequest(), &response);
    Untrack(&context);
    if (st.ok()) {
      info_ = std::move(response);
      if (info_.image_shape_size() != 3) {
        return absl::DataLossError(absl::StrCat(
            "data service at ", options_.address, " describes images of rank ",
            info_.image_shape_size(), ", expected [C, H, W]"));
      }
      return absl::OkStatus();
    }
    PG_RETURN_IF_ERROR(
        Backoff(options_.security.Explain(FromGrpcStatus(st)), &retry));
  }
}

absl::Status DataClient::OpenStream() {
  stream_context_ = std::make_unique<grpc::ClientContext>();
  AddAuthMetadata(options_.security.auth_token, stream_context_.get());
  if (!Track(stream_context_.get())) {
    stream_context_.reset();
    return Cancelled();
  }
  stream_ = stub_->StreamBatches(stream_context_.get());
  v1::BatchRequest first;
  first.set_worker_id(options_.worker_id);
  first.set_role(options_.role);
  first.set_credits(options_.credits);
  first.set_batch_size(options_.batch_size);
  first.set_want_generated(options_.want_generated);
  if (options_.max_sample_age >= 0) {
    first.set_max_sample_age(options_.max_sample_age);
  }
  first.set_image_dtype(options_.image_dtype);
  for (v1::Compression c : options_.accept_compression) {
    first.add_accept_compression(c);
  }
  // Always re-ack the last consumed batch: if the old stream lost the ack,
  // the service removes it from its requeue instead of sending it again.
  if (last_.batch_id >= 0) first.add_acks(last_.batch_id);
  ack_pending_ = false;
  if (streams_opened_++ > 0) ++reconnects_;
  // The service keeps stall and decode totals per stream.
  stream_stall_micros_ = 0;
  stream_decode_micros_.store(0);
  reported_stall_micros_ = 0;
  reported_decode_micros_ = 0;
  {
    std::lock_guard<std::mutex> lock(queue_mu_);
    queue_.clear();
    stream_ended_ = false;
    stream_status_ = absl::OkStatus();
  }
  writes_closed_ = false;
  // A failed write shows up as a failed Read with the call's status.
  stream_->Write(first);
  receiver_ = std::thread([this] { Receive(); });
  return absl::OkStatus();
}

void DataClient::WriteRequest(const v1::BatchRequest& request) {
  std::lock_guard<std::mutex> lock(write_mu_);
  if (!writes_closed_) stream_->Write(request);
}

void DataClient::Receive() {
  v1::Batch batch;
  while (stream_->Read(&batch)) {
    const int64_t id = batch.batch_id();
    // The receipt first: the service times the link by it, not by how long
    // the batch then waits here to be consumed.
    v1::BatchRequest receipt;
    receipt.add_received(id);
    WriteRequest(receipt);
    const absl::Time start = absl::Now();
    Received item = Decode(std::move(batch));
    const int64_t micros = absl::ToInt64Microseconds(absl::Now() - start);
    stream_decode_micros_.fetch_add(micros);
    decode_micros_total_.fetch_add(micros);
    std::lock_guard<std::mutex> lock(queue_mu_);
    queue_.push_back(std::move(item));
    queue_cv_.notify_all();
    batch = v1::Batch();
  }
  grpc::Status st;
  {
    std::lock_guard<std::mutex> lock(write_mu_);
    writes_closed_ = true;
    st = stream_->Finish();
  }
  std::lock_guard<std::mutex> lock(queue_mu_);
  stream_ended_ = true;
  stream_status_ = options_.security.Explain(FromGrpcStatus(st));
  queue_cv_.notify_all();
}

void DataClient::CloseStream(bool graceful) {
  if (stream_ == nullptr) return;
  if (graceful) {
    {
      std::lock_guard<std::mutex> lock(write_mu_);
      if (!writes_closed_) {
        if (ack_pending_) {
          v1::BatchRequest ack;
          ack.add_acks(last_.batch_id);
          stream_->Write(ack);
        }
        stream_->WritesDone();
        writes_closed_ = true;
      }
      ack_pending_ = false;
    }
    // The receiver drains what the service sent ahead (it requeues those:
    // they were not acked) so the call ends cleanly; give up after a while.
    std::unique_lock<std::mutex> lock(queue_mu_);
    if (!queue_cv_.wait_for(lock, std::chrono::seconds(2),
                            [this] { return stream_ended_; })) {
      stream_context_->TryCancel();
    }
  } else {
    stream_context_->TryCancel();
  }
  receiver_.join();
  Untrack(stream_context_.get());
  stream_.reset();
  stream_context_.reset();
  std::lock_guard<std::mutex> lock(queue_mu_);
  queue_.clear();  // unacked: the service deals them again
}

DataClient::Received DataClient::Decode(v1::Batch batch) const {
  Received r;
  const std::string what =
      absl::StrCat("batch ", batch.batch_id(), " from ", options_.address);
  r.wire_bytes = static_cast<int64_t>(batch.images().data().size() +
                                      batch.labels().data().size());
  if (absl::Status st = DecompressImages(&batch, what); !st.ok()) {
    r.status = st;
    return r;
  }
  absl::StatusOr<Tensor> decoded = DecodeImages(batch.images(), what);
  if (!decoded.ok()) {
    r.status = decoded.status();
    return r;
  }
  const Shape& shape = decoded->shape();
  for (int i = 0; i < 3; ++i) {
    if (shape[i + 1] != info_.image_shape(i)) {
      r.status = absl::FailedPreconditionError(absl::StrCat(
          what, ": images are ", ShapeToString(shape),
          " but the service described [C, H, W] = [", info_.image_shape(0),
          ", ", info_.image_shape(1), ", ", info_.image_shape(2),
          "] (was the data service restarted with another dataset?)"));
      return r;
    }
  }
  r.status = DecodeLabels(batch.labels(), shape[0], info_.num_classes(), what,
                          &r.labels);
  if (!r.status.ok()) return r;
  if (!batch.generated() && r.labels.empty()) {
    r.status = absl::DataLossError(
        absl::StrCat(what, ": dataset batch without labels"));
    return r;
  }
  r.images = std::move(*decoded);
  r.info.batch_id = batch.batch_id();
  r.info.epoch = batch.epoch();
  r.info.generated = batch.generated();
  r.info.g_version = batch.g_version();
  r.info.newest_g_version = batch.newest_g_version();
  r.info.sent_unix_micros = batch.sent_unix_micros();
  r.info.example_indices.assign(batch.example_indices().begin(),
                                batch.example_indices().end());
  return r;
}

DataClient::Totals DataClient::totals() const {
  Totals t = totals_;
  t.decode = absl::Microseconds(decode_micros_total_.load());
  return t;
}

absl::Status DataClient::Next(Tensor* host_images, std::vector<int>* labels) {
  Retry retry;
  for (;;) {
    if (cancelled_.load()) return Cancelled();
    if (stream_ == nullptr) PG_RETURN_IF_ERROR(OpenStream());
    const int64_t decode_micros = stream_decode_micros_.load();
    if (ack_pending_ || stream_stall_micros_ > reported_stall_micros_ ||
        decode_micros > reported_decode_micros_) {
      // The previous batch is consumed: ack it and return its credit.
      v1::BatchRequest request;
      if (ack_pending_) {
        request.add_acks(last_.batch_id);
        request.set_credits(1);
      }
      request.set_stall_micros(stream_stall_micros_);
      request.set_decode_micros(decode_micros);
      reported_stall_micros_ = stream_stall_micros_;
      reported_decode_micros_ = decode_micros;
      WriteRequest(request);  // a failure ends the receiver's Read
      ack_pending_ = false;
    }
    std::unique_lock<std::mutex> lock(queue_mu_);
    const absl::Time wait_start = absl::Now();
    queue_cv_.wait(lock, [this] { return !queue_.empty() || stream_ended_; });
    if (!queue_.empty()) {
      // Waiting for the very first batch is start-up, not a stall.
      if (totals_.batches > 0) {
        const absl::Duration waited = absl::Now() - wait_start;
        stream_stall_micros_ += absl::ToInt64Microseconds(waited);
        totals_.stall += waited;
      }
      Received item = std::move(queue_.front());
      queue_.pop_front();
      lock.unlock();
      if (!item.status.ok()) return item.status;
      *host_images = std::move(item.images);
      *labels = std::move(item.labels);
      last_ = std::move(item.info);
      ack_pending_ = true;
      ++totals_.batches;
      totals_.wire_bytes += item.wire_bytes;
      totals_.decoded_bytes +=
          host_images->numel() * 4 + static_cast<int64_t>(labels->size()) * 4;
      return absl::OkStatus();
    }
    const absl::Status st = stream_status_;
    lock.unlock();
    CloseStream(/*graceful=*/false);
    // A stream the service ended normally is also a reason to reconnect.
    PG_RETURN_IF_ERROR(Backoff(
        st.ok() ? absl::UnavailableError("the service closed the stream") : st,
        &retry));
  }
}

absl::StatusOr<v1::RoleAssignment> DataClient::AssignRole(
    const v1::RoleReport& report) {
  Retry retry;
  for (;;) {
    grpc::ClientContext context;
    AddAuthMetadata(options_.security.auth_token, &context);
    context.set_deadline(DeadlineIn(absl::Seconds(30)));
    if (!Track(&context)) return Cancelled();
    v1::RoleAssignment assignment;
    const grpc::Status st = stub_->AssignRole(&context, report, &assignment);
    Untrack(&context);
    if (st.ok()) return assignment;
    PG_RETURN_IF_ERROR(
        Backoff(options_.security.Explain(FromGrpcStatus(st)), &retry));
  }
}

absl::Status DataClient::Publish(const Tensor& images,
                                 const std::vector<int>& labels,
                                 int64_t g_version) {
  if (images.empty() || images.device() != Device::kCpu || images.ndim() != 4) {
    return absl::InvalidArgumentError(
        "DataClient::Publish: images must be a host tensor [N, C, H, W]");
  }
  const int64_t n = images.dim(0);
  if (!labels.empty() && static_cast<int64_t>(labels.size()) != n) {
    return absl::InvalidArgumentError(absl::StrCat(
        "DataClient::Publish: ", labels.size(), " labels for ", n, " images"));
  }
  v1::SampleBatch sample;
  sample.set_worker_id(options_.worker_id);
  sample.set_g_version(g_version);
  absl::StatusOr<v1::TensorChunk> encoded =
      EncodeSampleImages(images.shape(), images.data(), options_.sample_dtype);
  if (!encoded.ok()) return encoded.status();
  *sample.mutable_images() = *std::move(encoded);
  if (!labels.empty()) {
    std::vector<float> values(labels.begin(), labels.end());
    *sample.mutable_labels() = EncodeFloatChunk("labels", {n}, values.data());
  }
  Retry retry;
  for (;;) {
    grpc::ClientContext context;
    AddAuthMetadata(options_.security.auth_token, &context);
    context.set_deadline(DeadlineIn(absl::Seconds(30)));
    if (!Track(&context)) return Cancelled();
    v1::PublishResponse response;
    std::unique_ptr<grpc::ClientWriter<v1::SampleBatch>> writer =
        stub_->PublishSamples(&context, &response);
    writer->Write(sample);
    writer->WritesDone();
    const grpc::Status st = writer->Finish();
    Untrack(&context);
    if (st.ok()) {
      last_publish_ = response;
      return absl::OkStatus();
    }
    PG_RETURN_IF_ERROR(
        Backoff(options_.security.Explain(FromGrpcStatus(st)), &retry));
  }
}

}  // namespace paragan
