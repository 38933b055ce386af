#include "worker/distributed/ps_session.h"

#include <algorithm>
#include <chrono>
#include <future>
#include <iostream>
#include <mutex>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/check.h"
#include "server/table_names.h"

namespace paragan {
namespace {

using Clock = std::chrono::steady_clock;

double SecondsBetween(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

int64_t PushBytes(const std::vector<PushTensor>& tensors) {
  int64_t n = 0;
  for (const PushTensor& t : tensors) n += 4 * NumElements(t.shape);
  return n;
}

int64_t PullBytes(const PulledTable& p) {
  int64_t n = 0;
  for (const auto& [name, t] : p.tensors)
    n += 4 * static_cast<int64_t>(t.values.size());
  return n;
}

// ParameterServerClient with the session's identity.
class GrpcShardClient : public ShardClient {
 public:
  GrpcShardClient(const std::string& address, const PsSessionOptions& o)
      : client_(address,
                [&] {
                  ParameterServerClient::Options co;
                  co.timeout = o.rpc_timeout;
                  co.data_plane = o.data_plane;
                  co.max_message_bytes = 64 << 20;
                  co.security = o.security;
                  return co;  // data_plane_host: the host of `address`
                }()),
        worker_id_(o.worker_id),
        role_(o.role),
        options_(o) {}

  absl::StatusOr<v1::RegisterResponse> Register() override {
    return client_.Register(worker_id_, role_);
  }
  absl::StatusOr<v1::DeregisterResponse> Deregister(
      absl::Duration timeout) override {
    return client_.Deregister(worker_id_, timeout);
  }
  absl::StatusOr<PulledTable> Pull(const std::string& table,
                                   int64_t min_version,
                                   PulledTable* recycle) override {
    return client_.Pull(table, worker_id_, {}, v1::FLOAT32, min_version,
                        recycle);
  }
  absl::StatusOr<v1::PushResponse> Push(const std::string& table,
                                        int64_t base_version,
                                        const std::vector<PushTensor>& tensors,
                                        uint64_t push_id) override {
    return client_.Push(table, worker_id_, base_version, tensors,
                        options_.PushDtype(table), push_id);
  }
  absl::StatusOr<v1::StateResponse> GetState() override {
    return client_.GetState();
  }
  int data_plane_port() const override { return client_.data_plane_port(); }

 private:
  ParameterServerClient client_;
  const std::string worker_id_;
  const v1::WorkerRole role_;
  const PsSessionOptions options_;
};

}  // namespace

std::unique_ptr<ShardClient> MakeShardClient(const std::string& address,
                                             const PsSessionOptions& options) {
  return std::make_unique<GrpcShardClient>(address, options);
}

// ---- Decisions ----

absl::Status CheckRegistration(int s, int num_shards,
                               const std::string& address,
                               const std::string& model,
                               const std::vector<const TableLayout*>& layouts,
                               const v1::RegisterResponse& r) {
  if (r.shard_id() != s || r.num_shards() != num_shards) {
    return absl::FailedPreconditionError(absl::StrCat(
        "server ", address, " is shard ", r.shard_id(), " of ", r.num_shards(),
        ", but --ps lists it as shard ", s, " of ", num_shards));
  }
  if (r.model() != model) {
    return absl::FailedPreconditionError(
        absl::StrCat("server ", address, " serves model '", r.model(),
                     "', this worker runs '", model, "'"));
  }
  for (const TableLayout* layout : layouts) {
    const v1::TableInfo* info = nullptr;
    for (const v1::TableInfo& ti : r.tables())
      if (ti.name() == layout->table()) info = &ti;
    if (info == nullptr) {
      return absl::FailedPreconditionError(
          absl::StrCat("server ", address, " has no table ", layout->table()));
    }
    absl::Status st = layout->CheckShardInfo(s, *info);
    if (!st.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat("server ", address, ": ", st.message()));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<int> AgreedSyncWorkers(
    const std::vector<v1::RegisterResponse>& responses) {
  int sync = -1;
  for (const v1::RegisterResponse& r : responses) {
    for (const v1::TableInfo& ti : r.tables()) {
      if (ti.tensors_size() == 0) continue;
      if (sync < 0) sync = ti.update_rule().sync_workers();
      if (ti.update_rule().sync_workers() != sync) {
        return absl::FailedPreconditionError(
            "shards disagree on sync_workers (synchronous mode)");
      }
    }
  }
  return std::max(sync, 0);
}

PushOutcome ClassifyPush(const absl::Status& status) {
  if (status.ok()) return PushOutcome::kDone;
  if (status.code() == absl::StatusCode::kFailedPrecondition) {
    return PushOutcome::kResync;
  }
  return PushOutcome::kFailed;
}

bool MustMerge(int64_t pulled_version, int64_t held_version, bool force) {
  return pulled_version != held_version || force;
}

std::optional<int64_t> StuckSyncVersion(const v1::StateResponse& state,
                                        const std::string& table,
                                        int64_t min_version) {
  for (const v1::TableState& ts : state.tables()) {
    if (ts.name() != table) continue;
    if (ts.version() < min_version - 1 ||
        (ts.version() == min_version - 1 && ts.pending_contributions() == 0)) {
      return ts.version();
    }
  }
  return std::nullopt;
}

// ---- State ----

struct PsSession::Table {
  std::string name;
  TableLayout layout;
  std::vector<int> holders;  // shards holding tensors of the table
  // Per shard (int, not vector<bool>: I/O threads write their own entry).
  std::vector<int64_t> held;      // version of the local values; -1: never
  std::vector<int64_t> wait_for;  // sync: min_version of the next pull
  std::vector<int> resync;        // register again before the next pull
  std::vector<int> force;         // merge the next pull even if same version
  std::vector<PulledTable> pulled;
  std::vector<int> has_pulled;
  std::atomic<bool> in_flight{false};

  std::mutex mu;  // push statistics below
  double staleness_sum = 0;
  int64_t staleness_n = 0;
  int64_t rejected = 0;
  std::vector<int64_t> accepted;  // per shard, ever

  std::string What(const char* op, int s, const std::string& address) const {
    const bool push = std::string(op) == "push";
    return absl::StrCat(op, " ", name, push ? " to" : " from", " shard ", s,
                        " (", address, ")");
  }
};

struct PsSession::Call {
  Table* table = nullptr;
  bool pull = false;
  std::vector<std::vector<PushTensor>> tensors;  // by shard (a push)
  std::vector<absl::Status> results;             // by holder, this stage
  std::atomic<int> pending{0};
  // When the first shard task began (as the worker's chain threads always
  // measured: time on the I/O threads, not in the queue), and the end of
  // the push stage.
  std::atomic<bool> started{false};
  Clock::time_point start, mid;
  TableCallResult result;
  std::function<void(TableCallResult)> done;
};

absl::StatusOr<std::unique_ptr<PsSession>> PsSession::Create(
    PsSessionOptions options, std::vector<TableLayout> layouts,
    WorkerMetrics* metrics) {
  if (options.ps.empty()) {
    return absl::InvalidArgumentError("no parameter servers (--ps)");
  }
  if (options.worker_id.empty()) {
    return absl::InvalidArgumentError("empty worker id");
  }
  const int n = static_cast<int>(options.ps.size());
  auto session = std::unique_ptr<PsSession>(new PsSession());
  PsSession& ps = *session;
  for (TableLayout& layout : layouts) {
    if (layout.num_shards() != n) {
      return absl::InvalidArgumentError(
          absl::StrCat("table ", layout.table(), " is placed over ",
                       layout.num_shards(), " shards, --ps lists ", n));
    }
    auto t = std::make_unique<Table>();
    t->name = layout.table();
    for (int s = 0; s < n; ++s)
      if (!layout.on_shard(s).empty()) t->holders.push_back(s);
    t->layout = std::move(layout);
    t->held.assign(n, -1);
    t->accepted.assign(n, 0);
    t->wait_for.assign(n, 0);
    t->resync.assign(n, 0);
    t->force.assign(n, 1);
    t->pulled.resize(n);
    t->has_pulled.assign(n, 0);
    const std::string name = t->name;
    if (!ps.tables_.emplace(name, std::move(t)).second) {
      return absl::InvalidArgumentError(absl::StrCat("table ", name, " twice"));
    }
  }
  ps.options_ = std::move(options);
  ps.metrics_ = metrics;
  for (int s = 0; s < n; ++s) {
    ps.shards_.push_back(
        ps.options_.connect
            ? ps.options_.connect(s, ps.options_.ps[s], ps.options_)
            : MakeShardClient(ps.options_.ps[s], ps.options_));
  }
  ps.pool_ = std::make_unique<IoPool>(
      ps.options_.io_threads > 0 ? ps.options_.io_threads : 2 * n);
  return session;
}

PsSession::~PsSession() { pool_.reset(); }

PsSession::Table& PsSession::table(const std::string& name) const {
  auto it = tables_.find(name);
  PG_CHECK(it != tables_.end()) << "the session syncs no table " << name;
  return *it->second;
}

absl::Status PsSession::Retry(const std::string& what,
                              const std::function<absl::Status()>& attempt) {
  const std::atomic<bool>* stop = stop_.load();
  if (stop == nullptr) stop = &never_;
  return CallWithRetry(
      options_.retry, what, attempt, stop,
      [this, what](const absl::Status& st, int n) {
        if (metrics_) metrics_->RecordRetry();
        if (n == 1 || n % 10 == 0) {
          std::cerr << "paragan_worker: " << what << ": retrying (" << st << ")"
                    << std::endl;
        }
      },
      options_.retry_env);
}

// ---- Registration ----

absl::StatusOr<v1::RegisterResponse> PsSession::RegisterShard(int s) {
  absl::StatusOr<v1::RegisterResponse> resp;
  absl::Status st = Retry(
      absl::StrCat("register with shard ", s, " (", address(s), ")"), [&] {
        resp = shards_[s]->Register();
        return resp.status();
      });
  if (!st.ok()) return st;
  PG_RETURN_IF_ERROR(CheckShard(s, *resp));
  return resp;
}

absl::Status PsSession::CheckShard(int s, const v1::RegisterResponse& r) const {
  std::vector<const TableLayout*> layouts;
  for (const auto& [name, t] : tables_) layouts.push_back(&t->layout);
  return CheckRegistration(s, num_shards(), address(s), options_.model, layouts,
                           r);
}

absl::StatusOr<ShardAgreement> PsSession::Register() {
  ShardAgreement agreement;
  std::vector<v1::RegisterResponse> responses;
  for (int s = 0; s < num_shards(); ++s) {
    PG_ASSIGN_OR_RETURN(v1::RegisterResponse r, RegisterShard(s));
    if (s == 0) agreement.d_steps_per_g_step = r.d_steps_per_g_step();
    responses.push_back(std::move(r));
    PG_ASSIGN_OR_RETURN(agreement.sync_workers, AgreedSyncWorkers(responses));
  }
  sync_workers_ = agreement.sync_workers;
  for (const auto& shard : shards_) {
    if (shard->data_plane_port() > 0) ++agreement.on_data_plane;
  }
  return agreement;
}

absl::StatusOr<int> PsSession::Deregister(absl::Duration timeout) {
  // Not on the I/O pool: its threads may be busy with the calls abandoned.
  std::vector<std::future<absl::Status>> calls;
  for (const auto& shard : shards_) {
    ShardClient* client = shard.get();
    calls.push_back(std::async(std::launch::async, [client, timeout] {
      return client->Deregister(timeout).status();
    }));
  }
  int confirmed = 0;
  absl::Status first_error;
  for (int s = 0; s < num_shards(); ++s) {
    const absl::Status st = calls[s].get();
    if (st.ok()) {
      ++confirmed;
    } else if (first_error.ok()) {
      first_error = absl::Status(
          st.code(), absl::StrCat("shard ", s, " (", address(s),
                                  ") did not confirm: ", st.message()));
    }
  }
  if (!first_error.ok()) return first_error;
  return confirmed;
}

// ---- Whole-table calls ----

void PsSession::Pull(const std::string& table,
                     std::function<void(TableCallResult)> done) {
  Start(table, nullptr, /*push=*/false, /*pull=*/true, std::move(done));
}

void PsSession::Push(const std::string& table, const PushStaging& staging,
                     std::function<void(TableCallResult)> done) {
  Start(table, &staging, /*push=*/true, /*pull=*/false, std::move(done));
}

void PsSession::PushThenPull(const std::string& table,
                             const PushStaging& staging,
                             std::function<void(TableCallResult)> done) {
  Start(table, &staging, /*push=*/true, /*pull=*/true, std::move(done));
}

namespace {

std::pair<TableCall, std::function<void(TableCallResult)>> Promise() {
  auto p = std::make_shared<std::promise<TableCallResult>>();
  TableCall f = p->get_future();
  return {std::move(f), [p](TableCallResult r) { p->set_value(std::move(r)); }};
}

}  // namespace

TableCall PsSession::Pull(const std::string& table) {
  auto [future, done] = Promise();
  Pull(table, std::move(done));
  return std::move(future);
}

TableCall PsSession::Push(const std::string& table,
                          const PushStaging& staging) {
  auto [future, done] = Promise();
  Push(table, staging, std::move(done));
  return std::move(future);
}

TableCall PsSession::PushThenPull(const std::string& table,
                                  const PushStaging& staging) {
  auto [future, done] = Promise();
  PushThenPull(table, staging, std::move(done));
  return std::move(future);
}

void PsSession::Start(const std::string& name, const PushStaging* staging,
                      bool push, bool pull,
                      std::function<void(TableCallResult)> done) {
  Table& t = table(name);
  if (push && !RolePushes(options_.role, name)) {
    TableCallResult r;
    r.status = absl::FailedPreconditionError(absl::StrCat(
        "worker ", options_.worker_id, " (role ",
        v1::WorkerRole_Name(options_.role), ") does not push table ", name));
    done(std::move(r));
    return;
  }
  PG_CHECK(!t.in_flight.exchange(true))
      << "a call on table " << name << " is already in flight";
  auto call = std::make_shared<Call>();
  call->table = &t;
  call->pull = pull;
  call->done = std::move(done);
  if (push) {
    // The tensors are taken now: they share the staging's buffers
    // (PushTensor::owner), so a later Stage leaves them alone.
    call->tensors.resize(shards_.size());
    for (int s : t.holders) {
      call->tensors[s] = staging->ForShard(t.layout.on_shard(s));
    }
  }
  call->start = Clock::now();
  call->mid = call->start;
  RunStage(call, /*push_stage=*/push);
}

void PsSession::RunStage(const std::shared_ptr<Call>& call, bool push_stage) {
  Table& t = *call->table;
  call->results.assign(t.holders.size(), absl::OkStatus());
  if (t.holders.empty()) {
    StageDone(call, push_stage);
    return;
  }
  call->pending = static_cast<int>(t.holders.size());
  for (size_t i = 0; i < t.holders.size(); ++i) {
    pool_->Submit([this, call, i, push_stage] {
      if (!call->started.exchange(true)) {
        call->start = Clock::now();
        if (!push_stage) call->mid = call->start;  // a pull-only call
      }
      Table& t = *call->table;
      const int s = t.holders[i];
      call->results[i] =
          push_stage ? PushShard(t, s, call->tensors[s]) : PullShard(t, s);
      if (call->pending.fetch_sub(1) == 1) StageDone(call, push_stage);
    });
  }
}

void PsSession::StageDone(const std::shared_ptr<Call>& call, bool push_stage) {
  absl::Status st;
  for (const absl::Status& r : call->results) {
    if (!r.ok()) {
      st = r;
      break;
    }
  }
  const Clock::time_point now = Clock::now();
  if (push_stage) {
    call->mid = now;
    call->result.push_seconds = SecondsBetween(call->start, now);
    if (st.ok() && call->pull) {
      RunStage(call, /*push_stage=*/false);
      return;
    }
  } else {
    call->result.pull_seconds = SecondsBetween(call->mid, now);
  }
  call->result.status = std::move(st);
  std::function<void(TableCallResult)> done = std::move(call->done);
  TableCallResult result = std::move(call->result);
  call->table->in_flight = false;
  done(std::move(result));
}

// ---- One shard ----

uint64_t PsSession::NextPushId() {
  // Microseconds since the epoch, bumped to stay increasing; a restarted
  // worker with the same id starts above its earlier pushes.
  const uint64_t now = static_cast<uint64_t>(absl::ToUnixMicros(absl::Now()));
  uint64_t last = last_push_id_.load();
  uint64_t id;
  do {
    id = std::max(now, last + 1);
  } while (!last_push_id_.compare_exchange_weak(last, id));
  return id;
}

absl::Status PsSession::PushShard(Table& t, int s,
                                  const std::vector<PushTensor>& tensors) {
  const int64_t base = t.held[s];
  const std::string what = t.What("push", s, address(s));
  absl::StatusOr<v1::PushResponse> resp;
  const auto start = Clock::now();
  // One id for every attempt: a retry after a lost response is answered
  // with the first attempt's result instead of being applied twice.
  const uint64_t push_id = NextPushId();
  PushJournal* journal = options_.journal;
  if (journal) journal->Sent(t.name, s, push_id, base);
  absl::Status st = Retry(what, [&] {
    resp = shards_[s]->Push(t.name, base, tensors, push_id);
    return resp.status();
  });
  if (journal) {
    if (st.ok()) {
      journal->Answered(t.name, s, push_id, *resp);
    } else {
      journal->GaveUp(t.name, s, push_id, st);
    }
  }
  switch (ClassifyPush(st)) {
    case PushOutcome::kResync:
      std::cerr << "paragan_worker: " << what << " refused (" << st.message()
                << "); re-registering and pulling again" << std::endl;
      t.resync[s] = 1;
      t.force[s] = 1;
      t.wait_for[s] = 0;
      return absl::OkStatus();
    case PushOutcome::kFailed:
      return st;
    case PushOutcome::kDone:
      break;
  }
  if (metrics_) {
    metrics_->RecordPush(t.name, PushBytes(tensors),
                         SecondsBetween(start, Clock::now()), resp->accepted(),
                         resp->staleness());
  }
  {
    std::lock_guard<std::mutex> lock(t.mu);
    t.staleness_sum += static_cast<double>(resp->staleness());
    ++t.staleness_n;
    if (!resp->accepted()) ++t.rejected;
    if (resp->accepted()) ++t.accepted[s];
  }
  if (synchronous()) t.wait_for[s] = base + 1;
  return absl::OkStatus();
}

absl::Status PsSession::PullAttempt(Table& t, int s, int64_t* min_version,
                                    bool* was_down,
                                    absl::StatusOr<PulledTable>* out) {
  ShardClient& shard = *shards_[s];
  if (*was_down) {
    // The shard may have restarted without our registration.
    absl::StatusOr<v1::RegisterResponse> r = shard.Register();
    if (!r.ok()) return r.status();
    PG_RETURN_IF_ERROR(CheckShard(s, *r));
    *was_down = false;
  }
  // The previous pull's memory (merged already) takes this one.
  *out = shard.Pull(t.name, *min_version, &t.pulled[s]);
  const absl::StatusCode code = out->status().code();
  if (code == absl::StatusCode::kUnavailable) *was_down = true;
  if (code == absl::StatusCode::kDeadlineExceeded && *min_version > 0) {
    // A synchronous round that will not complete: take what the shard has.
    absl::StatusOr<v1::StateResponse> state = shard.GetState();
    if (state.ok()) {
      if (std::optional<int64_t> v =
              StuckSyncVersion(*state, t.name, *min_version)) {
        std::cerr << "paragan_worker: " << t.What("pull", s, address(s))
                  << ": version " << *v << " will not reach " << *min_version
                  << "; pulling what it has" << std::endl;
        *min_version = 0;
        *was_down = true;
      }
    }
  }
  return out->status();
}

absl::Status PsSession::PullShard(Table& t, int s) {
  if (t.resync[s]) {
    PG_RETURN_IF_ERROR(RegisterShard(s).status());
    t.resync[s] = 0;
  }
  int64_t min_version = synchronous() ? t.wait_for[s] : 0;
  bool was_down = false;
  absl::StatusOr<PulledTable> pulled;
  const auto start = Clock::now();
  absl::Status st = Retry(t.What("pull", s, address(s)), [&] {
    return PullAttempt(t, s, &min_version, &was_down, &pulled);
  });
  if (!st.ok()) return st;
  if (metrics_) {
    metrics_->RecordPull(t.name, PullBytes(*pulled),
                         SecondsBetween(start, Clock::now()));
  }
  if (pulled->version < t.held[s]) {
    std::cerr << "paragan_worker: shard " << s << " (" << address(s)
              << ") table " << t.name << " went back from version " << t.held[s]
              << " to " << pulled->version << " (restarted from a checkpoint)"
              << std::endl;
    t.force[s] = 1;
    PG_RETURN_IF_ERROR(RegisterShard(s).status());
  }
  t.pulled[s] = std::move(pulled).value();
  t.has_pulled[s] = 1;
  t.wait_for[s] = 0;
  return absl::OkStatus();
}

// ---- After a call ----

absl::Status PsSession::TakePulled(
    const std::string& name,
    const std::function<absl::Status(int s, const PulledTable&)>& merge) {
  Table& t = table(name);
  PG_CHECK(!t.in_flight.load())
      << "TakePulled of table " << name << " during a call";
  for (int s = 0; s < num_shards(); ++s) {
    if (!t.has_pulled[s]) continue;
    t.has_pulled[s] = 0;
    const PulledTable& p = t.pulled[s];
    if (MustMerge(p.version, t.held[s], t.force[s])) {
      absl::Status st = merge(s, p);
      if (!st.ok()) {
        return absl::Status(
            st.code(), absl::StrCat("table ", name, " from shard ", s, " (",
                                    address(s), "): ", st.message()));
      }
    }
    t.held[s] = p.version;
    t.force[s] = 0;
    // p keeps its tensors: the next pull reads into their memory.
  }
  return absl::OkStatus();
}

int64_t PsSession::held_version(const std::string& name) const {
  const Table& t = table(name);
  int64_t v = -1;
  bool any = false;
  for (int s : t.holders) {
    v = any ? std::min(v, t.held[s]) : t.held[s];
    any = true;
  }
  return v;
}

const TableLayout& PsSession::layout(const std::string& name) const {
  return table(name).layout;
}

std::vector<int64_t> PsSession::AcceptedPushes(const std::string& name) const {
  Table& t = table(name);
  std::lock_guard<std::mutex> lock(t.mu);
  return t.accepted;
}

PushStats PsSession::TakePushStats(const std::string& name) {
  Table& t = table(name);
  std::lock_guard<std::mutex> lock(t.mu);
  PushStats out;
  out.pushes = t.staleness_n;
  out.mean_staleness = t.staleness_n > 0 ? t.staleness_sum / t.staleness_n : 0;
  out.rejected_total = t.rejected;
  t.staleness_sum = 0;
  t.staleness_n = 0;
  return out;
}

}  // namespace paragan
