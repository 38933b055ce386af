#ifndef PARAGAN_WORKER_DISTRIBUTED_FAKE_SHARD_H_
#define PARAGAN_WORKER_DISTRIBUTED_FAKE_SHARD_H_

// In-memory parameter-server shards for the session and worker tests: each
// holds its slice of the tables of some TableLayouts, a version per table,
// applies pushes as plain SGD (buffers replaced), and answers Register,
// Pull, Push and GetState like a shard (base_version ahead of the table:
// FAILED_PRECONDITION; min_version not reached: DEADLINE_EXCEEDED at once).
// Tests script failures (statuses returned before the real answer), refuse
// pushes, restart a shard at an older version, and read what was called.

#include <algorithm>
#include <cmath>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "proto/paragan.pb.h"
#include "worker/distributed/ps_session.h"
#include "worker/distributed/table_sync.h"

namespace paragan {
namespace fake {

struct PushRecord {
  std::string table;
  int64_t base_version = 0;
  uint64_t push_id = 0;
  std::map<std::string, v1::TensorKind> kinds;
  absl::Status status;  // what the shard answered
};

// Calls in progress over several shards, each held for `hold` first (to see
// how many run at once).
struct Concurrency {
  std::mutex mu;
  int active = 0, max_active = 0;
  absl::Duration hold = absl::ZeroDuration();
};

struct PullRecord {
  std::string table;
  int64_t min_version = 0;
  absl::Status status;
};

class FakeShard {
 public:
  FakeShard(int id, int num_shards, const std::string& model,
            const std::vector<const TableLayout*>& layouts)
      : id_(id), num_shards_(num_shards), model_(model) {
    for (const TableLayout* layout : layouts) {
      Table& t = tables_[layout->table()];
      t.specs = layout->on_shard(id);
      for (const TableTensorSpec& spec : t.specs) {
        std::vector<float>& v = t.values[spec.name];
        v.resize(static_cast<size_t>(NumElements(spec.shape)));
        for (size_t i = 0; i < v.size(); ++i) {
          v[i] = spec.trainable ? 0.02f * std::sin(0.7f * i + id)
                                : 1.0f + 0.01f * (i % 5);
        }
      }
    }
  }

  // ---- Knobs (set before the session uses the shard, or under lock()) ----
  int d_steps_per_g_step = 1;
  int sync_workers = 0;
  int data_plane_port = 0;
  int reported_shard_id = -1;     // >= 0: claims to be this shard
  std::string reported_model;     // non-empty: claims to serve this model
  bool refuse_pushes = false;     // accepted = false (staleness policy)
  bool drop_sync_rounds = false;  // sync: pushes never complete a round
  float lr = 1e-3f;

  // Statuses the next calls return before answering for real.
  std::deque<absl::Status> register_errors, deregister_errors, pull_errors,
      push_errors,
      state_errors;

  // A restart from a checkpoint at `version` of every table.
  void Restart(int64_t version) {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [name, t] : tables_) t.version = version;
  }
  // Another worker's accepted pushes: the table moves ahead.
  void Advance(const std::string& table, int64_t steps) {
    std::lock_guard<std::mutex> lock(mu_);
    tables_.at(table).version += steps;
  }

  // ---- What happened ----
  int registers() const {
    std::lock_guard<std::mutex> lock(mu_);
    return registers_;
  }
  int deregisters() const {
    std::lock_guard<std::mutex> lock(mu_);
    return deregisters_;
  }
  std::vector<PushRecord> pushes() const {
    std::lock_guard<std::mutex> lock(mu_);
    return pushes_;
  }
  std::vector<PullRecord> pulls() const {
    std::lock_guard<std::mutex> lock(mu_);
    return pulls_;
  }
  int64_t version(const std::string& table) const {
    std::lock_guard<std::mutex> lock(mu_);
    return tables_.at(table).version;
  }
  std::vector<float> values(const std::string& table,
                            const std::string& tensor) const {
    std::lock_guard<std::mutex> lock(mu_);
    return tables_.at(table).values.at(tensor);
  }
  bool holds(const std::string& table) const {
    std::lock_guard<std::mutex> lock(mu_);
    return !tables_.at(table).specs.empty();
  }
  std::shared_ptr<Concurrency> concurrency;  // optional

  // ---- The shard's API ----
  absl::StatusOr<v1::DeregisterResponse> Deregister() {
    std::lock_guard<std::mutex> lock(mu_);
    ++deregisters_;
    if (absl::Status st = Scripted(&deregister_errors); !st.ok()) return st;
    return v1::DeregisterResponse();
  }
  absl::StatusOr<v1::RegisterResponse> Register() {
    Active a(this);
    std::lock_guard<std::mutex> lock(mu_);
    ++registers_;
    if (absl::Status st = Scripted(&register_errors); !st.ok()) return st;
    v1::RegisterResponse r;
    r.set_shard_id(reported_shard_id >= 0 ? reported_shard_id : id_);
    r.set_num_shards(num_shards_);
    r.set_model(reported_model.empty() ? model_ : reported_model);
    r.set_d_steps_per_g_step(d_steps_per_g_step);
    r.set_data_plane_port(data_plane_port);
    for (const auto& [name, t] : tables_) {
      v1::TableInfo* info = r.add_tables();
      info->set_name(name);
      info->set_version(t.version);
      info->mutable_update_rule()->set_sync_workers(sync_workers);
      for (const TableTensorSpec& spec : t.specs) {
        v1::TensorSpec* s = info->add_tensors();
        s->set_name(spec.name);
        for (int64_t d : spec.shape) s->add_shape(d);
        s->set_trainable(spec.trainable);
      }
    }
    return r;
  }

  absl::StatusOr<PulledTable> Pull(const std::string& table,
                                   int64_t min_version, PulledTable* recycle) {
    Active a(this);
    std::lock_guard<std::mutex> lock(mu_);
    if (recycle != nullptr) recycle->tensors.clear();
    PullRecord rec{table, min_version, absl::OkStatus()};
    rec.status = Scripted(&pull_errors);
    auto it = tables_.find(table);
    if (rec.status.ok() && it == tables_.end()) {
      rec.status = absl::NotFoundError(absl::StrCat("no table ", table));
    }
    if (rec.status.ok() && min_version > it->second.version) {
      rec.status = absl::DeadlineExceededError(
          absl::StrCat("version ", it->second.version, " < ", min_version));
    }
    pulls_.push_back(rec);
    if (!rec.status.ok()) return rec.status;
    const Table& t = it->second;
    PulledTable out;
    out.version = t.specs.empty() ? -1 : t.version;
    for (const TableTensorSpec& spec : t.specs) {
      out.tensors[spec.name] = {spec.shape, t.values.at(spec.name)};
    }
    return out;
  }

  absl::StatusOr<v1::PushResponse> Push(const std::string& table,
                                        int64_t base_version,
                                        const std::vector<PushTensor>& tensors,
                                        uint64_t push_id) {
    Active a(this);
    std::lock_guard<std::mutex> lock(mu_);
    PushRecord rec;
    rec.table = table;
    rec.base_version = base_version;
    rec.push_id = push_id;
    for (const PushTensor& pt : tensors) rec.kinds[pt.name] = pt.kind;
    rec.status = Scripted(&push_errors);
    Table& t = tables_.at(table);
    if (rec.status.ok() && base_version > t.version) {
      rec.status = absl::FailedPreconditionError(
          absl::StrCat("base_version ", base_version, " is ahead of table ",
                       table, " at ", t.version));
    }
    if (rec.status.ok() && tensors.size() != t.specs.size()) {
      rec.status = absl::InvalidArgumentError("wrong tensors");
    }
    pushes_.push_back(rec);
    if (!rec.status.ok()) return rec.status;
    v1::PushResponse r;
    r.set_staleness(t.version - base_version);
    r.set_accepted(!refuse_pushes);
    if (!refuse_pushes && !(sync_workers > 0 && drop_sync_rounds)) {
      for (const PushTensor& pt : tensors) {
        std::vector<float>& v = t.values.at(pt.name);
        for (size_t i = 0; i < v.size(); ++i) {
          v[i] =
              pt.kind == v1::GRADIENT ? v[i] - lr * pt.values[i] : pt.values[i];
        }
      }
      ++t.version;
      r.set_applied(true);
    }
    r.set_new_version(t.version);
    return r;
  }

  absl::StatusOr<v1::StateResponse> GetState() {
    Active a(this);
    std::lock_guard<std::mutex> lock(mu_);
    if (absl::Status st = Scripted(&state_errors); !st.ok()) return st;
    v1::StateResponse r;
    for (const auto& [name, t] : tables_) {
      v1::TableState* ts = r.add_tables();
      ts->set_name(name);
      ts->set_version(t.version);
      ts->set_pending_contributions(0);
    }
    return r;
  }

 private:
  struct Table {
    std::vector<TableTensorSpec> specs;
    int64_t version = 0;
    std::map<std::string, std::vector<float>> values;
  };
  // Counts a call in progress (before the shard's lock).
  struct Active {
    explicit Active(FakeShard* f) : c(f->concurrency.get()) {
      if (c == nullptr) return;
      {
        std::lock_guard<std::mutex> lock(c->mu);
        c->max_active = std::max(c->max_active, ++c->active);
      }
      absl::SleepFor(c->hold);
    }
    ~Active() {
      if (c == nullptr) return;
      std::lock_guard<std::mutex> lock(c->mu);
      --c->active;
    }
    Concurrency* c;
  };
  static absl::Status Scripted(std::deque<absl::Status>* q) {
    if (q->empty()) return absl::OkStatus();
    absl::Status st = q->front();
    q->pop_front();
    return st;
  }

  const int id_, num_shards_;
  const std::string model_;
  mutable std::mutex mu_;
  std::map<std::string, Table> tables_;
  int registers_ = 0;
  int deregisters_ = 0;
  std::vector<PushRecord> pushes_;
  std::vector<PullRecord> pulls_;
};

// The session's view of a FakeShard (which the test keeps).
class FakeShardClient : public ShardClient {
 public:
  explicit FakeShardClient(std::shared_ptr<FakeShard> shard)
      : shard_(std::move(shard)) {}
  absl::StatusOr<v1::RegisterResponse> Register() override {
    return shard_->Register();
  }
  absl::StatusOr<v1::DeregisterResponse> Deregister(
      absl::Duration /*timeout*/) override {
    return shard_->Deregister();
  }
  absl::StatusOr<PulledTable> Pull(const std::string& table,
                                   int64_t min_version,
                                   PulledTable* recycle) override {
    return shard_->Pull(table, min_version, recycle);
  }
  absl::StatusOr<v1::PushResponse> Push(const std::string& table,
                                        int64_t base_version,
                                        const std::vector<PushTensor>& tensors,
                                        uint64_t push_id) override {
    return shard_->Push(table, base_version, tensors, push_id);
  }
  absl::StatusOr<v1::StateResponse> GetState() override {
    return shard_->GetState();
  }
  int data_plane_port() const override { return shard_->data_plane_port; }

 private:
  std::shared_ptr<FakeShard> shard_;
};

// n fake shards holding the tables of `layouts` (placed over n shards).
struct FakeCluster {
  FakeCluster(int n, const std::string& model,
              const std::vector<const TableLayout*>& layouts) {
    for (int s = 0; s < n; ++s) {
      shards.push_back(std::make_shared<FakeShard>(s, n, model, layouts));
      addresses.push_back(absl::StrCat("fake:", 7000 + s));
    }
  }
  ShardConnector connector() {
    return [this](int s, const std::string&, const PsSessionOptions&) {
      return std::make_unique<FakeShardClient>(shards[s]);
    };
  }
  std::vector<std::shared_ptr<FakeShard>> shards;
  std::vector<std::string> addresses;
};

}  // namespace fake
}  // namespace paragan

#endif  // PARAGAN_WORKER_DISTRIBUTED_FAKE_SHARD_H_
