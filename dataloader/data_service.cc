#include "dataloader/data_service.h"

#include <algorithm>
#include <iostream>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/check.h"
#include "common/grpc_status.h"
#include "common/log_limit.h"
#include "dataloader/batch_codec.h"

namespace paragan {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "the wire format is little-endian float32");

namespace {

// The policy's choice, unless the client cannot decompress it.
WireEncoding Accepted(const std::vector<v1::Compression>& accepted,
                      const WireEncoding& wanted) {
  if (wanted.codec == v1::NO_COMPRESSION ||
      std::find(accepted.begin(), accepted.end(), wanted.codec) ==
          accepted.end()) {
    return WireEncoding{};
  }
  return wanted;
}

// A stored batch as one stream's client takes it: UINT8 images widened to
// FLOAT32 for clients that decode no UINT8, then compressed. `raw_bytes`:
// what the worker decodes it to (float32 images, labels).
absl::StatusOr<v1::Batch> EncodeForStream(const v1::Batch& stored,
                                          bool decodes_uint8,
                                          const WireEncoding& encoding,
                                          int64_t* raw_bytes) {
  v1::Batch message = stored;
  if (message.images().dtype() == v1::UINT8 && !decodes_uint8) {
    absl::StatusOr<v1::TensorChunk> wide =
        WidenImageChunk(message.images(), "stored batch");
    if (!wide.ok()) return wide.status();
    *message.mutable_images() = std::move(wide).value();
  }
  int64_t pixels = 1;
  for (int64_t d : message.images().shape()) pixels *= d;
  *raw_bytes =
      pixels * 4 + static_cast<int64_t>(message.labels().data().size());
  PG_RETURN_IF_ERROR(CompressImages(encoding, &message));
  return message;
}

}  // namespace

// One open StreamBatches call. Lives on its handler's stack; the service
// refers to it (streams_, by_worker_) only while it is open.
struct DataService::Stream {
  struct Unacked {
    PreparedPtr batch;
    Delivery delivery;  // delivery.sent InfinitePast: not written yet
  };
  struct Outgoing {
    PreparedPtr batch;
    double credit_wait_seconds = 0;
  };

  StreamId id = -1;
  std::string worker_id;
  v1::WorkerRole role = v1::BOTH;
  bool want_generated = false;
  int64_t max_sample_age = -1;  // want_generated: < 0, no bound
  bool decodes_uint8 = false;   // else widen UINT8 images to FLOAT32
  std::vector<v1::Compression> compressions;  // the client decompresses
  int64_t stall_micros = 0;  // the client's totals, last reported
  int64_t decode_micros = 0;
  grpc::ServerContext* context = nullptr;
  std::optional<ByteBudget> budget;    // link_max_bytes_per_s
  std::condition_variable cv;          // outbox or closed changed
  std::deque<absl::Time> credits;      // grant time of each unused credit
  std::deque<Outgoing> outbox;         // dealt, not yet written
  std::map<int64_t, Unacked> unacked;  // by batch_id (outbox included)
  bool closed = false;
  bool reader_done = false;
  absl::Status close_status;
};

absl::StatusOr<std::unique_ptr<DataService>> DataService::Create(
    std::unique_ptr<Dataset> dataset, const DataServiceOptions& options,
    DataMetrics* metrics, std::unique_ptr<DispatchPolicy> policy) {
  if (dataset == nullptr || dataset->info().size < 1) {
    return absl::InvalidArgumentError("the data service needs a dataset");
  }
  auto bad = [](const char* what, int64_t v, const char* need) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " must be ", need, ", got ", v));
  };
  if (options.batch_size < 1)
    return bad("batch_size", options.batch_size, ">= 1");
  if (options.prefetch < 1) return bad("prefetch", options.prefetch, ">= 1");
  if (options.max_in_flight < 1) {
    return bad("max_in_flight", options.max_in_flight, ">= 1");
  }
  if (options.generated_buffer < 0) {
    return bad("generated_buffer", options.generated_buffer, ">= 0");
  }
  if (options.load_threads < 1) {
    return bad("load_threads", options.load_threads, ">= 1");
  }
  if (options.max_credits < 1) {
    return bad("max_credits", options.max_credits, ">= 1");
  }
  for (const auto& [what, rate] :
       {std::make_pair("max_bytes_per_s", options.max_bytes_per_s),
        std::make_pair("link_max_bytes_per_s", options.link_max_bytes_per_s)}) {
    if (rate == 0) continue;  // no cap
    if (absl::StatusOr<ByteBudget> b =
            ByteBudget::Create(rate, options.budget_burst);
        !b.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, " (0: no cap): ", b.status().message()));
    }
  }
  if (policy == nullptr) {
    DispatchPolicyConfig config;
    config.batch_size = options.batch_size;
    config.max_in_flight = options.max_in_flight;
    config.max_credits = options.max_credits;
    PG_ASSIGN_OR_RETURN(policy,
                        CreateDispatchPolicy(options.dispatch_policy, config));
  }
  return std::unique_ptr<DataService>(
      new DataService(std::move(dataset), options, metrics, std::move(policy)));
}

DataService::DataService(std::unique_ptr<Dataset> dataset,
                         const DataServiceOptions& options,
                         DataMetrics* metrics,
                         std::unique_ptr<DispatchPolicy> policy)
    : dataset_(std::move(dataset)),
      options_(options),
      metrics_(metrics),
      auth_(options.auth_token, "paragan_data"),
      policy_(std::move(policy)),
      roles_(options.roles) {
  if (options_.max_bytes_per_s > 0) {  // validated by Create
    total_budget_.emplace(
        *ByteBudget::Create(options_.max_bytes_per_s, options_.budget_burst));
  }
  if (metrics_ != nullptr) {
    metrics_->SetEpoch(0);
    UpdateGauges();
  }
  producer_ = std::thread([this] { ProduceLoop(); });
}

DataService::~DataService() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  producer_cv_.notify_all();
  producer_.join();
}

DataService::PreparedPtr DataService::MakeBatch(
    const std::vector<int64_t>& indices, int64_t epoch) {
  const DatasetInfo& info = dataset_->info();
  const auto n = static_cast<int64_t>(indices.size());
  const Shape shape = {n, info.channels, info.height, info.width};
  // Exactly the trainer's BatchSource: labels start at 0 and LoadBatch fills
  // them from the dataset.
  std::vector<int> labels(static_cast<size_t>(n), 0);
  auto p = std::make_shared<Prepared>();
  p->batch.set_epoch(epoch);
  if (dataset_->has_pixels()) {
    // Kept as the dataset's pixels: a quarter of the float bytes in memory
    // and on the wire; writers widen them for clients that decode FLOAT32.
    const int64_t per_image = NumElements(shape) / n;
    std::vector<uint8_t> pixels(static_cast<size_t>(NumElements(shape)));
    for (int64_t i = 0; i < n; ++i) {
      dataset_->GetPixels(indices[i], pixels.data() + i * per_image,
                          &labels[i]);
    }
    *p->batch.mutable_images() =
        EncodePixelChunk("images", shape, pixels.data());
  } else {
    std::vector<float> images(static_cast<size_t>(NumElements(shape)));
    LoadBatch(*dataset_, indices, images.data(), labels.data(),
              options_.load_threads);
    *p->batch.mutable_images() =
        EncodeFloatChunk("images", shape, images.data());
  }
  std::vector<float> label_values(labels.begin(), labels.end());
  *p->batch.mutable_labels() =
      EncodeFloatChunk("labels", {n}, label_values.data());
  for (int64_t i : indices) p->batch.add_example_indices(i);
  p->payload_bytes = static_cast<int64_t>(p->batch.images().data().size() +
                                          p->batch.labels().data().size());
  return p;
}

void DataService::ProduceLoop() {
  EpochSampler sampler(dataset_->info().size, options_.seed);
  std::vector<int64_t> indices;
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    producer_cv_.wait(lock, [this] {
      return stopping_ ||
             (static_cast<int64_t>(ready_.size()) < options_.prefetch &&
              Live() < options_.max_in_flight);
    });
    if (stopping_) return;
    // Only this thread touches the sampler.
    const int64_t epoch = sampler.state().epoch;
    sampler.NextBatch(options_.batch_size, &indices);
    lock.unlock();
    PreparedPtr p = MakeBatch(indices, epoch);
    lock.lock();
    p->batch.set_batch_id(next_batch_id_++);
    ready_.push_back(std::move(p));
    ++totals_.produced;
    Dispatch();
    UpdateGauges();
  }
}

grpc::Status DataService::Describe(grpc::ServerContext* context,
                                   const v1::DescribeRequest*,
                                   v1::DescribeResponse* response) {
  if (grpc::Status auth = auth_.Check(*context, "Describe"); !auth.ok()) {
    return auth;
  }
  const DatasetInfo& info = dataset_->info();
  response->set_dataset(options_.dataset_name.empty() ? info.name
                                                      : options_.dataset_name);
  response->set_num_examples(info.size);
  response->add_image_shape(info.channels);
  response->add_image_shape(info.height);
  response->add_image_shape(info.width);
  response->set_num_classes(info.num_classes);
  response->set_image_dtype(v1::FLOAT32);
  response->set_batch_size(options_.batch_size);
  response->set_seed(options_.seed);
  response->set_uint8_images(dataset_->has_pixels());
  response->add_compressions(v1::LZ4);
  response->add_compressions(v1::ZSTD);
  std::lock_guard<std::mutex> lock(mu_);
  response->set_epoch(last_epoch_);
  return grpc::Status::OK;
}

absl::Status DataService::ValidateOpen(const v1::BatchRequest& r) const {
  if (r.worker_id().empty()) {
    return absl::InvalidArgumentError(
        "the first BatchRequest of a stream must set worker_id");
  }
  if (!v1::WorkerRole_IsValid(r.role())) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown role ", static_cast<int>(r.role()),
                     " (BOTH = 0, G_ONLY = 1, D_ONLY = 2)"));
  }
  if (r.credits() < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the first BatchRequest must grant credits >= 1, got ", r.credits(),
        ": a stream without credit would never receive a batch"));
  }
  if (r.batch_size() != 0 && r.batch_size() != options_.batch_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "batch_size ", r.batch_size(), " differs from the service's ",
        options_.batch_size,
        " (all workers share one sampler): ask for 0 or start paragan_data "
        "with --batch_size=",
        r.batch_size()));
  }
  if (r.want_generated()) {
    if (r.role() != v1::D_ONLY) {
      return absl::InvalidArgumentError(
          "want_generated is for D_ONLY workers; got another role");
    }
    if (options_.generated_buffer == 0) {
      return absl::FailedPreconditionError(
          "want_generated: this data service does not buffer generated "
          "samples (--generated_buffer=0)");
    }
  }
  if (r.image_dtype() != v1::FLOAT32 && r.image_dtype() != v1::BFLOAT16 &&
      r.image_dtype() != v1::UINT8) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown image_dtype ", static_cast<int>(r.image_dtype()),
                     " (FLOAT32 = 0, BFLOAT16 = 1, UINT8 = 2)"));
  }
  for (int c : r.accept_compression()) {
    if (!v1::Compression_IsValid(c)) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown compression ", c,
                       " in accept_compression (none = 0, "
                       "LZ4 = 1, ZSTD = 2)"));
    }
  }
  if (r.has_max_sample_age() &&
      (!r.want_generated() || r.max_sample_age() < 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_sample_age ", r.max_sample_age(),
                     ": set it >= 0, and on want_generated streams only"));
  }
  return absl::OkStatus();
}

absl::Status DataService::ApplyRequest(Stream* s, const v1::BatchRequest& r,
                                       bool first) {
  if (!first && !r.worker_id().empty() && r.worker_id() != s->worker_id) {
    return absl::InvalidArgumentError(
        absl::StrCat("BatchRequest for worker '", r.worker_id(),
                     "' on the stream of worker '", s->worker_id, "'"));
  }
  if (r.credits() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("credits must be >= 0, got ", r.credits()));
  }
  if (r.stall_micros() < s->stall_micros ||
      r.decode_micros() < s->decode_micros) {
    if (r.stall_micros() != 0 || r.decode_micros() != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "stall_micros and decode_micros are totals and cannot fall: got ",
          r.stall_micros(), " and ", r.decode_micros(), " after ",
          s->stall_micros, " and ", s->decode_micros));
    }
  }
  if (static_cast<int64_t>(s->credits.size()) + r.credits() >
      options_.max_credits) {
    return absl::InvalidArgumentError(
        absl::StrCat("worker '", s->worker_id, "' would hold ",
                     s->credits.size() + r.credits(), " credits; at most ",
                     options_.max_credits, " are allowed"));
  }
  const absl::Time now = absl::Now();
  for (int64_t id : r.received()) {
    auto u = s->unacked.find(id);
    if (u == s->unacked.end() ||
        u->second.delivery.received != absl::InfinitePast()) {
      continue;  // acked already, or of a stream before this one
    }
    u->second.delivery.received = now;
    policy_->OnReceived(s->id, u->second.delivery, LinkOf(*s));
    PublishEstimate(*s);
  }
  if (r.stall_micros() > s->stall_micros ||
      r.decode_micros() > s->decode_micros) {
    ClientReport report;
    report.at = now;
    report.stall = absl::Microseconds(r.stall_micros() - s->stall_micros);
    report.decode = absl::Microseconds(r.decode_micros() - s->decode_micros);
    s->stall_micros = r.stall_micros();
    s->decode_micros = r.decode_micros();
    if (metrics_ != nullptr) {
      metrics_->RecordClientReport(s->worker_id,
                                   absl::ToDoubleSeconds(report.stall),
                                   absl::ToDoubleSeconds(report.decode));
    }
    policy_->OnClientReport(s->id, report, LinkOf(*s));
  }
  for (int64_t id : r.acks()) Ack(s, id);
  for (int i = 0; i < r.credits(); ++i) s->credits.push_back(now);
  if (r.credits() > 0) policy_->OnCredits(s->id, r.credits(), now, LinkOf(*s));
  Dispatch();
  producer_cv_.notify_all();  // acks may have made room
  UpdateGauges();
  return absl::OkStatus();
}

void DataService::Ack(Stream* s, int64_t batch_id) {
  auto it = s->unacked.find(batch_id);
  if (it != s->unacked.end()) {
    Delivery delivery = it->second.delivery;
    delivery.acked = absl::Now();
    if (metrics_ != nullptr && delivery.sent != absl::InfinitePast()) {
      metrics_->RecordAcked(
          s->worker_id, absl::ToDoubleSeconds(delivery.acked - delivery.sent));
    }
    if (it->second.batch->batch.generated()) {
      --generated_in_flight_;
    } else {
      --in_flight_;
    }
    s->unacked.erase(it);
    policy_->OnAcked(s->id, delivery, LinkOf(*s));
    PublishEstimate(*s);
    return;
  }
  // A reconnecting worker acks what it consumed before its old stream broke.
  for (auto r = requeued_.begin(); r != requeued_.end(); ++r) {
    if ((*r)->batch.batch_id() == batch_id && (*r)->owner == s->worker_id) {
      requeued_.erase(r);
      return;
    }
  }
  // Unknown ids (acked twice, or from before a server restart) are harmless.
}

bool DataService::Stale(const Stream& s, const Prepared& p) const {
  return s.max_sample_age >= 0 &&
         newest_g_version_ - p.batch.g_version() > s.max_sample_age;
}

bool DataService::HasBatchFor(const Stream& s) const {
  if (!s.want_generated) return !(requeued_.empty() && ready_.empty());
  for (const PreparedPtr& p : generated_) {
    if (!Stale(s, *p)) return true;
  }
  return false;
}

DataService::PreparedPtr DataService::TakeFor(const Stream& s) {
  if (s.want_generated) {
    // Oldest first; those too old for this stream are dropped on the way.
    while (!generated_.empty()) {
      PreparedPtr p = std::move(generated_.front());
      generated_.pop_front();
      if (!Stale(s, *p)) {
        p->batch.set_newest_g_version(newest_g_version_);
        return p;
      }
      ++totals_.generated_stale;
      if (metrics_ != nullptr) metrics_->AddGeneratedStale(1);
    }
    return nullptr;
  }
  std::deque<PreparedPtr>* from = !requeued_.empty() ? &requeued_ : &ready_;
  if (from->empty()) return nullptr;
  PreparedPtr p = std::move(from->front());
  from->pop_front();
  if (from == &ready_) producer_cv_.notify_all();
  return p;
}

bool DataService::CanDeal(StreamId id) const {
  auto it = streams_.find(id);
  if (it == streams_.end()) return false;
  const Stream& s = *it->second;
  return !s.closed && !s.credits.empty() &&
         static_cast<int64_t>(s.unacked.size()) < policy_->Window(id) &&
         HasBatchFor(s);
}

absl::Duration DataService::HoldForBudgets(Stream* s, int64_t wire_bytes,
                                           absl::Time now) {
  absl::Duration hold = absl::ZeroDuration();
  if (total_budget_.has_value()) {
    hold = std::max(hold, total_budget_->Reserve(wire_bytes, now));
  }
  if (s->budget.has_value()) {
    hold = std::max(hold, s->budget->Reserve(wire_bytes, now));
  }
  return hold;
}

LinkState DataService::LinkOf(const Stream& s) const {
  LinkState link;
  link.credits = static_cast<int64_t>(s.credits.size());
  link.unacked = static_cast<int64_t>(s.unacked.size());
  link.queued = static_cast<int64_t>(s.outbox.size());
  link.available = static_cast<int64_t>(
      s.want_generated ? generated_.size() : requeued_.size() + ready_.size());
  return link;
}

void DataService::Dispatch() {
  for (;;) {
    const std::optional<StreamId> pick =
        policy_->PickStream([this](StreamId id) { return CanDeal(id); });
    if (!pick.has_value()) return;
    // A policy dealing to a stream without credit would break flow control.
    PG_CHECK(CanDeal(*pick))
        << "dispatch policy '" << policy_->name() << "' picked stream " << *pick
        << ", which cannot take a batch now";
    Stream* s = streams_.at(*pick);
    PreparedPtr p = TakeFor(*s);
    const absl::Time now = absl::Now();
    Delivery delivery;
    delivery.batch_id = p->batch.batch_id();
    delivery.payload_bytes = p->payload_bytes;
    delivery.generated = p->batch.generated();
    delivery.redelivered = !p->owner.empty();
    delivery.credit_granted = s->credits.front();
    delivery.dealt = now;
    const double wait = absl::ToDoubleSeconds(now - s->credits.front());
    s->credits.pop_front();
    if (p->batch.generated()) {
      ++generated_in_flight_;
    } else {
      ++in_flight_;
      last_epoch_ = std::max(last_epoch_, p->batch.epoch());
      if (metrics_ != nullptr) metrics_->SetEpoch(last_epoch_);
    }
    p->owner.clear();
    s->unacked[p->batch.batch_id()] = Stream::Unacked{p, delivery};
    s->outbox.push_back(Stream::Outgoing{std::move(p), wait});
    s->cv.notify_all();
    policy_->OnDealt(s->id, delivery, LinkOf(*s));
  }
}

void DataService::PublishEstimate(const Stream& s) {
  if (metrics_ == nullptr) return;
  std::optional<LinkEstimate> estimate = policy_->Estimate(s.id);
  if (!estimate.has_value()) return;
  estimate->window = std::min<int64_t>(
      estimate->window, static_cast<int64_t>(s.credits.size()) +
                            static_cast<int64_t>(s.unacked.size()));
  metrics_->SetLink(s.worker_id, *estimate);
}

void DataService::CloseStream(Stream* s, const absl::Status& why) {
  if (s->closed) return;
  s->closed = true;
  s->close_status = why;
  streams_.erase(s->id);
  auto w = by_worker_.find(s->worker_id);
  if (w != by_worker_.end() && w->second == s) by_worker_.erase(w);
  // Unacked batches go back to the front, oldest first, so nothing is lost.
  int64_t requeued = 0;
  for (auto it = s->unacked.rbegin(); it != s->unacked.rend(); ++it) {
    PreparedPtr p = std::move(it->second.batch);
    if (p->batch.generated()) {
      --generated_in_flight_;
      generated_.push_front(std::move(p));
    } else {
      --in_flight_;
      p->owner = s->worker_id;
      requeued_.push_front(std::move(p));
      ++requeued;
    }
  }
  s->unacked.clear();
  s->outbox.clear();
  s->credits.clear();
  --totals_.streams;
  totals_.requeued_total += requeued;
  if (metrics_ != nullptr && requeued > 0) metrics_->AddRequeued(requeued);
  policy_->OnStreamClosed(s->id, why, requeued);
  // Unless the worker already reconnected: its new link's gauges stay.
  if (metrics_ != nullptr && by_worker_.count(s->worker_id) == 0) {
    metrics_->RemoveLink(s->worker_id);
  }
  s->cv.notify_all();
  Dispatch();
  producer_cv_.notify_all();
  UpdateGauges();
}

void DataService::UpdateGauges() {
  if (metrics_ == nullptr) return;
  metrics_->SetInFlight(in_flight_ + generated_in_flight_);
  metrics_->SetPrepared(static_cast<int64_t>(ready_.size()));
  metrics_->SetStreams(totals_.streams);
}

grpc::Status DataService::StreamBatches(
    grpc::ServerContext* context,
    grpc::ServerReaderWriter<v1::Batch, v1::BatchRequest>* stream) {
  if (grpc::Status auth = auth_.Check(*context, "StreamBatches"); !auth.ok()) {
    return auth;
  }
  v1::BatchRequest first;
  if (!stream->Read(&first)) return grpc::Status::OK;  // closed at once
  Stream s;
  s.worker_id = first.worker_id();
  s.role = first.role();
  s.want_generated = first.want_generated();
  if (first.has_max_sample_age()) s.max_sample_age = first.max_sample_age();
  s.decodes_uint8 = first.image_dtype() == v1::UINT8;
  for (int c : first.accept_compression()) {
    if (v1::Compression_IsValid(c) && c != v1::NO_COMPRESSION) {
      s.compressions.push_back(static_cast<v1::Compression>(c));
    }
  }
  s.context = context;
  if (options_.link_max_bytes_per_s > 0) {
    s.budget.emplace(*ByteBudget::Create(options_.link_max_bytes_per_s,
                                         options_.budget_burst));
  }
  std::unique_lock<std::mutex> lock(mu_);
  if (shutting_down_) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        "the data service is shutting down");
  }
  if (absl::Status st = ValidateOpen(first); !st.ok()) {
    return ToGrpcStatus(st);
  }
  auto old = by_worker_.find(s.worker_id);
  if (old != by_worker_.end()) {
    // The worker reconnected before we noticed its old stream broke: the new
    // stream takes over, the old one's unacked batches are requeued.
    Stream* o = old->second;
    CloseStream(
        o, absl::AbortedError(absl::StrCat(
               "superseded by a new stream of worker '", s.worker_id, "'")));
    o->context->TryCancel();
  }
  if (by_worker_.count(s.worker_id) == 0 &&
      static_cast<int>(streams_.size()) >= options_.max_streams) {
    const int64_t n = ++stream_limit_hits_;
    lock.unlock();
    if (metrics_ != nullptr) metrics_->RecordLimitHit("streams");
    if (ShouldLogOccurrence(n)) {
      std::cerr << "paragan_data: refused a stream of worker '" << s.worker_id
                << "' from " << context->peer() << ": " << options_.max_streams
                << " streams open, the limit (--max_streams) [" << n
                << " refused so far]" << std::endl;
    }
    return grpc::Status(
        grpc::StatusCode::RESOURCE_EXHAUSTED,
        absl::StrCat("the data service has ", options_.max_streams,
                     " streams open, the limit (--max_streams)"));
  }
  s.id = next_stream_id_++;
  by_worker_[s.worker_id] = &s;
  streams_[s.id] = &s;
  ++totals_.streams;
  StreamInfo info{s.id,        s.worker_id,     s.role,        s.want_generated,
                  absl::Now(), s.decodes_uint8, s.compressions};
  policy_->OnStreamOpened(info);
  if (absl::Status st = ApplyRequest(&s, first, /*first=*/true); !st.ok()) {
    CloseStream(&s, st);
    return ToGrpcStatus(st);
  }

  std::thread reader([this, &s, stream, context] {
    v1::BatchRequest request;
    for (;;) {
      const bool got = stream->Read(&request);
      std::lock_guard<std::mutex> l(mu_);
      // reader_done is set in the same critical section that closes the
      // stream, so the writer never cancels a call ending with our status.
      if (!got) {
        s.reader_done = true;
        // A half-close is a clean end; a failed read is a cancelled call.
        CloseStream(&s, context->IsCancelled()
                            ? absl::CancelledError("stream cancelled")
                            : absl::OkStatus());
        return;
      }
      if (s.closed) {
        s.reader_done = true;
        return;
      }
      if (absl::Status st = ApplyRequest(&s, request, /*first=*/false);
          !st.ok()) {
        s.reader_done = true;
        CloseStream(&s, st);
        return;
      }
    }
  });

  // This thread writes; the reader thread applies credits and acks.
  for (;;) {
    s.cv.wait(lock, [&s] { return s.closed || !s.outbox.empty(); });
    if (s.closed) break;
    Stream::Outgoing out = std::move(s.outbox.front());
    s.outbox.pop_front();
    const int64_t id = out.batch->batch.batch_id();
    const WireEncoding encoding =
        Accepted(s.compressions, policy_->Encoding(s.id));
    lock.unlock();
    // Prepared batches are immutable once dealt: encode without the lock.
    const absl::Time encode_start = absl::Now();
    int64_t raw_bytes = 0;
    absl::StatusOr<v1::Batch> message = EncodeForStream(
        out.batch->batch, s.decodes_uint8, encoding, &raw_bytes);
    const absl::Time encoded = absl::Now();
    lock.lock();
    if (!message.ok()) {
      CloseStream(&s, absl::InternalError(absl::StrCat(
                          "cannot encode batch ", id, " for worker '",
                          s.worker_id, "': ", message.status().message())));
      break;
    }
    if (s.closed) break;
    const int64_t wire_bytes = static_cast<int64_t>(
        message->images().data().size() + message->labels().data().size());
    absl::Time now = encoded;
    if (const absl::Duration hold = HoldForBudgets(&s, wire_bytes, now);
        hold > absl::ZeroDuration()) {
      s.cv.wait_for(lock, absl::ToChronoNanoseconds(hold),
                    [&s] { return s.closed; });
      if (s.closed) break;
      now = absl::Now();
      if (metrics_ != nullptr) {
        metrics_->AddBudgetWait(s.worker_id,
                                absl::ToDoubleSeconds(now - encoded));
      }
    }
    // find, not []: a client may ack a batch before it is written.
    if (auto u = s.unacked.find(id); u != s.unacked.end()) {
      Delivery& d = u->second.delivery;
      d.sent = now;
      d.wire_bytes = wire_bytes;
      d.raw_bytes = raw_bytes;
      d.encoding = encoding;
      d.encode_time = encoded - encode_start;
      policy_->OnSent(s.id, d, LinkOf(s));
      PublishEstimate(s);
    }
    lock.unlock();
    message->set_sent_unix_micros(absl::ToUnixMicros(now));
    const bool ok = stream->Write(*message);
    const absl::Time written = absl::Now();
    if (ok && metrics_ != nullptr) {
      metrics_->RecordSent(s.worker_id, wire_bytes, raw_bytes,
                           out.credit_wait_seconds,
                           absl::ToDoubleSeconds(encoded - encode_start));
    }
    lock.lock();
    if (!ok) {
      CloseStream(&s, absl::UnavailableError(absl::StrCat(
                          "cannot write to worker '", s.worker_id, "'")));
      break;
    }
    // For OnAcked: how long the write was held back (unless already acked).
    if (auto u = s.unacked.find(id); u != s.unacked.end()) {
      u->second.delivery.written = written;
    }
  }
  // The reader may still block in Read (closed by a write error or a newer
  // stream): cancelling the call wakes it.
  if (!s.reader_done) context->TryCancel();
  lock.unlock();
  reader.join();
  lock.lock();
  return ToGrpcStatus(s.close_status);
}

grpc::Status DataService::PublishSamples(
    grpc::ServerContext* context, grpc::ServerReader<v1::SampleBatch>* reader,
    v1::PublishResponse* response) {
  if (grpc::Status auth = auth_.Check(*context, "PublishSamples"); !auth.ok()) {
    return auth;
  }
  if (options_.generated_buffer == 0) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        "this data service does not buffer generated samples "
                        "(--generated_buffer=0)");
  }
  const DatasetInfo& info = dataset_->info();
  int64_t accepted = 0, dropped = 0, buffered = 0;
  v1::SampleBatch sample;
  for (int64_t k = 0; reader->Read(&sample); ++k) {
    const std::string what = absl::StrCat("SampleBatch ", k);
    if (sample.worker_id().empty()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          what + ": worker_id must be set");
    }
    absl::StatusOr<Tensor> images = DecodeImages(sample.images(), what);
    if (!images.ok()) return ToGrpcStatus(images.status());
    const Shape& shape = images->shape();
    if (shape[1] != info.channels || shape[2] != info.height ||
        shape[3] != info.width) {
      return grpc::Status(
          grpc::StatusCode::INVALID_ARGUMENT,
          absl::StrCat(what, ": images are ", ShapeToString(shape),
                       " but the dataset's are [N, ", info.channels, ", ",
                       info.height, ", ", info.width, "]"));
    }
    std::vector<int> labels;
    if (absl::Status st = DecodeLabels(sample.labels(), shape[0],
                                       info.num_classes, what, &labels);
        !st.ok()) {
      return ToGrpcStatus(st);
    }
    auto p = std::make_shared<Prepared>();
    p->batch.set_generated(true);
    p->batch.set_g_version(sample.g_version());
    // Kept as published (FLOAT32, BFLOAT16 or UINT8, the G worker's
    // --sample_dtype); writers widen UINT8 for clients that decode FLOAT32.
    *p->batch.mutable_images() = std::move(*sample.mutable_images());
    if (!labels.empty()) {
      std::vector<float> values(labels.begin(), labels.end());
      *p->batch.mutable_labels() =
          EncodeFloatChunk("labels", {shape[0]}, values.data());
    }
    p->payload_bytes = static_cast<int64_t>(p->batch.images().data().size() +
                                            p->batch.labels().data().size());
    std::lock_guard<std::mutex> lock(mu_);
    p->batch.set_batch_id(next_batch_id_++);
    p->batch.set_epoch(last_epoch_);
    newest_g_version_ = std::max(newest_g_version_, sample.g_version());
    generated_.push_back(std::move(p));
    ++accepted;
    while (static_cast<int64_t>(generated_.size()) >
           options_.generated_buffer) {
      generated_.pop_front();  // the oldest samples matter least
      ++dropped;
      ++totals_.generated_dropped;
      if (metrics_ != nullptr) metrics_->AddGenerated(0, 1);
    }
    ++totals_.generated_accepted;
    if (metrics_ != nullptr) metrics_->AddGenerated(1, 0);
    Dispatch();
    UpdateGauges();
    buffered = static_cast<int64_t>(generated_.size());
  }
  response->set_accepted_batches(accepted);
  response->set_dropped_batches(dropped);
  response->set_buffered_batches(buffered);
  return grpc::Status::OK;
}

grpc::Status DataService::AssignRole(grpc::ServerContext* context,
                                     const v1::RoleReport* request,
                                     v1::RoleAssignment* response) {
  if (grpc::Status auth = auth_.Check(*context, "AssignRole"); !auth.ok()) {
    return auth;
  }
  const v1::RoleReport& r = *request;
  if (r.worker_id().empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "RoleReport: worker_id must be set");
  }
  if (!v1::WorkerRole_IsValid(r.role()) || r.steps() < 0 ||
      !(r.busy_seconds() >= 0) || !(r.wall_seconds() >= 0) ||
      r.d_steps_per_g_step() < 0) {
    return grpc::Status(
        grpc::StatusCode::INVALID_ARGUMENT,
        absl::StrCat("RoleReport of '", r.worker_id(),
                     "': need a known role, steps >= 0, busy and wall "
                     "seconds >= 0, d_steps_per_g_step >= 0"));
  }
  int64_t buffered = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    buffered = static_cast<int64_t>(generated_.size());
  }
  *response = roles_.Report(r, absl::Now(), buffered);
  return grpc::Status::OK;
}

void DataService::Shutdown() {
  std::lock_guard<std::mutex> lock(mu_);
  shutting_down_ = true;
  std::vector<Stream*> open;
  for (const auto& [worker, s] : by_worker_) open.push_back(s);
  for (Stream* s : open) {
    CloseStream(s, absl::UnavailableError("the data service is shutting down"));
  }
}

void DataService::ConfigureServer(grpc::ServerBuilder* builder,
                                  int max_message_bytes) {
  builder->SetMaxReceiveMessageSize(max_message_bytes);
  builder->SetMaxSendMessageSize(max_message_bytes);
  builder->AddChannelArgument(
      GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10000);
  builder->AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder->AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
}

DataService::Stats DataService::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  Stats s = totals_;
  s.prepared = static_cast<int64_t>(ready_.size());
  s.requeued = static_cast<int64_t>(requeued_.size());
  s.in_flight = in_flight_ + generated_in_flight_;
  s.generated_buffered = static_cast<int64_t>(generated_.size());
  s.newest_g_version = newest_g_version_;
  s.epoch = last_epoch_;
  return s;
}

}  // namespace paragan
