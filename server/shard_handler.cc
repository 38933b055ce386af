#include "server/shard_handler.h"

#include <algorithm>
#include <iostream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/check.h"
#include "common/tensor_codec.h"

namespace paragan {
namespace {

v1::AdamSettings ToProto(const AdamConfig& a) {
  v1::AdamSettings out;
  out.set_lr(a.lr);
  out.set_beta1(a.beta1);
  out.set_beta2(a.beta2);
  out.set_eps(a.eps);
  return out;
}

// The enum predates the policy registry and names only the first three
// policies; UpdateRuleInfo.staleness_policy_name names any.
v1::StalenessPolicy PolicyEnum(const std::string& name) {
  const absl::StatusOr<const StalenessPolicy*> p = FindStalenessPolicy(name);
  const absl::string_view canonical = p.ok() ? (*p)->name() : "";
  if (canonical == "reject_above_bound") return v1::REJECT_ABOVE_BOUND;
  if (canonical == "scale_by_inverse_staleness") {
    return v1::SCALE_BY_INVERSE_STALENESS;
  }
  return v1::ACCEPT;
}

}  // namespace

ShardHandler::ShardHandler(const ServiceOptions& options,
                           const std::vector<ParameterTable*>& tables,
                           ServerMetrics* metrics)
    : options_(options),
      metrics_(metrics),
      auth_(options.auth_token,
            absl::StrCat("paragan_server shard ", options.shard_id)) {
  for (ParameterTable* t : tables) {
    tables_[t->name()] = t;
    max_push_bytes_ = std::max(max_push_bytes_, 4 * t->num_elements());
    if (metrics_ != nullptr) metrics_->SetVersion(t->name(), t->version());
  }
  if (options_.max_push_bytes > 0) max_push_bytes_ = options_.max_push_bytes;
}

ParameterTable* ShardHandler::FindTable(const std::string& name) const {
  auto it = tables_.find(name);
  return it == tables_.end() ? nullptr : it->second;
}

void ShardHandler::RenewLeases(const std::string& worker_id) {
  if (worker_id.empty()) return;
  for (const auto& [name, table] : tables_) table->RenewLease(worker_id);
}

void ShardHandler::UpdateWorkerGauges() {
  if (metrics_ == nullptr) return;
  for (const auto& [name, table] : tables_) {
    metrics_->SetRegisteredWorkers(
        name, static_cast<int64_t>(table->Stats().registered_workers.size()));
  }
}

void ShardHandler::ReportDropped(const std::string& table,
                                 const LeaseExpiry& e, bool expired) {
  std::cerr << "paragan_server: shard " << options_.shard_id << " table "
            << table << ": dropped worker(s) " << absl::StrJoin(e.dropped, ", ")
            << (expired
                    ? " (lease expired: silent for longer than the lease)"
                    : " (left the job: deregistered)");
  if (e.round_completed) {
    std::cerr << "; the pending synchronous round completed with its "
              << e.round_contributions << " contribution(s), version now "
              << e.new_version;
  }
  std::cerr << std::endl;
  if (metrics_ == nullptr) return;
  const int64_t n = static_cast<int64_t>(e.dropped.size());
  if (expired) {
    metrics_->RecordExpiredLeases(table, n, e.round_completed);
  } else {
    metrics_->RecordDeregistered(table, n, e.round_completed);
  }
  metrics_->SetVersion(table, e.new_version);
}

std::vector<LeaseExpiry> ShardHandler::ExpireLeases() {
  std::vector<LeaseExpiry> out;
  bool changed = false;
  for (const auto& [name, table] : tables_) {
    LeaseExpiry e = table->ExpireLeases();
    if (!e.dropped.empty()) {
      changed = true;
      ReportDropped(name, e, /*expired=*/true);
    }
    out.push_back(std::move(e));
  }
  if (changed) UpdateWorkerGauges();
  return out;
}

absl::StatusOr<v1::DeregisterResponse> ShardHandler::Deregister(
    const v1::DeregisterRequest& request) {
  if (request.worker_id().empty()) {
    return absl::InvalidArgumentError("worker_id is empty");
  }
  v1::DeregisterResponse response;
  std::lock_guard<std::mutex> registering(register_mu_);
  for (const auto& [name, table] : tables_) {
    const LeaseExpiry e = table->DeregisterWorker(request.worker_id());
    if (e.dropped.empty()) continue;
    response.add_left_tables(name);
    ReportDropped(name, e, /*expired=*/false);
  }
  if (response.left_tables_size() > 0) UpdateWorkerGauges();
  return response;
}

absl::StatusOr<v1::RegisterResponse> ShardHandler::Register(
    const v1::RegisterRequest& request) {
  v1::RegisterResponse out;
  v1::RegisterResponse* response = &out;
  if (request.worker_id().empty()) {
    return absl::InvalidArgumentError("worker_id is empty");
  }
  if (!v1::WorkerRole_IsValid(request.role())) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown role ", request.role()));
  }
  response->set_shard_id(options_.shard_id);
  response->set_num_shards(options_.num_shards);
  response->set_model(options_.model);
  response->set_d_steps_per_g_step(options_.d_steps_per_g_step);
  response->set_data_plane_port(data_plane_port_.load());
  std::lock_guard<std::mutex> registering(register_mu_);
  if (options_.max_workers > 0) {
    for (const auto& [name, table] : tables_) {
      if (!RolePushes(request.role(), name) ||
          table->IsRegistered(request.worker_id())) {
        continue;
      }
      const size_t registered = table->Stats().registered_workers.size();
      if (registered >= static_cast<size_t>(options_.max_workers)) {
        if (metrics_ != nullptr) metrics_->RecordLimitHit("workers");
        return absl::ResourceExhaustedError(absl::StrCat(
            "shard ", options_.shard_id, ": table ", name, " has ", registered,
            " registered workers, the limit (--max_workers); ", "worker '",
            request.worker_id(),
            "' may register once one leaves or its lease expires"));
      }
    }
  }
  for (const auto& [name, table] : tables_) {
    if (RolePushes(request.role(), name)) {
      table->RegisterWorker(request.worker_id());
      response->add_push_tables(name);
    } else {
      table->RenewLease(request.worker_id());
    }
    v1::TableInfo* info = response->add_tables();
    info->set_name(name);
    info->set_version(table->version());
    for (const TableTensorSpec& spec : table->specs()) {
      v1::TensorSpec* s = info->add_tensors();
      s->set_name(spec.name);
      for (int64_t d : spec.shape) s->add_shape(d);
      s->set_trainable(spec.trainable);
    }
    *info->mutable_adam() = ToProto(table->config().adam);
    const UpdateRule& rule = table->config().rule;
    info->mutable_update_rule()->set_staleness_policy(
        PolicyEnum(rule.staleness_policy));
    info->mutable_update_rule()->set_staleness_policy_name(std::string(
        FindStalenessPolicy(rule.staleness_policy).value()->name()));
    info->mutable_update_rule()->set_staleness_bound(rule.staleness_bound);
    info->mutable_update_rule()->set_sync_workers(rule.sync_workers);
    info->mutable_update_rule()->set_momentum_compensation(
        rule.momentum_compensation);
  }
  UpdateWorkerGauges();
  return out;
}

absl::StatusOr<ShardHandler::PullPlan> ShardHandler::PreparePull(
    const v1::PullRequest& request, absl::Time deadline,
    const std::function<bool()>& cancelled) {
  const bool ema = request.table() == kGeneratorEmaTable;
  ParameterTable* table =
      FindTable(ema ? std::string(kGeneratorTable) : request.table());
  if (ema && table != nullptr && !table->has_ema()) {
    return absl::NotFoundError(
        absl::StrCat("no table 'G_ema' on shard ", options_.shard_id,
                     ": the server keeps no EMA of G (--ema_decay=0)"));
  }
  RenewLeases(request.worker_id());
  if (table == nullptr) {
    return absl::NotFoundError(absl::StrCat("no table '", request.table(),
                                            "' on shard ", options_.shard_id));
  }
  if (WireDTypeSize(request.dtype()) == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown dtype ", request.dtype()));
  }
  if (request.min_version() > 0) {
    deadline = std::min(deadline, absl::Now() + options_.max_pull_wait);
    while (!table->WaitForVersion(request.min_version(),
                                  absl::Milliseconds(100))) {
      if (cancelled()) return absl::CancelledError("pull cancelled");
      // A worker waiting for the round is not silent.
      RenewLeases(request.worker_id());
      if (absl::Now() >= deadline) {
        return absl::DeadlineExceededError(absl::StrCat(
            "table ", table->name(), " did not reach version ",
            request.min_version(), " (now ", table->version(), ")"));
      }
    }
  }
  const std::vector<std::string> names(request.tensors().begin(),
                                       request.tensors().end());
  // The table's own buffers, shared (copy-on-write) with whoever sends them,
  // which may release them after the call returns.
  PG_ASSIGN_OR_RETURN(SharedTableSnapshot snap,
                      table->SharedSnapshot(names, ema));
  return PullPlan{ema ? kGeneratorEmaTable : table->name(), std::move(snap)};
}

void ShardHandler::RecordPull(const std::string& table, int64_t wire_bytes) {
  if (metrics_ != nullptr) metrics_->RecordPull(table, wire_bytes);
}

absl::StatusOr<ShardHandler::PushTarget> ShardHandler::BeginPush(
    const std::string& table_name, const std::string& worker_id) {
  if (table_name == kGeneratorEmaTable) {
    return absl::FailedPreconditionError(
        "table G_ema is read-only: it is the server's moving average of G, "
        "updated after every G step; push gradients to table G");
  }
  ParameterTable* table = FindTable(table_name);
  if (table == nullptr) {
    return absl::NotFoundError(absl::StrCat("no table '", table_name,
                                            "' on shard ", options_.shard_id));
  }
  // Renews the lease (and registers a worker dropped for silence again),
  // once per push, on every table.
  if (!table->RenewLease(worker_id)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "worker '", worker_id, "' is not registered to push table ",
        table->name(), " (call RegisterWorker)"));
  }
  for (const auto& [name, other] : tables_) {
    if (other != table) other->RenewLease(worker_id);
  }
  return PushTarget(table, worker_id, options_.shard_id);
}

absl::Status ShardHandler::PushTarget::CheckTensor(const std::string& name,
                                                   const Shape& shape,
                                                   v1::TensorKind kind) const {
  const TableTensorSpec* spec = table_->FindSpec(name);
  if (spec == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("table ", table_->name(),
                                                   ": unknown tensor '", name,
                                                   "' on shard ", shard_id_));
  }
  if (shape != spec->shape) {
    return absl::InvalidArgumentError(absl::StrCat(
        "table ", table_->name(), ": tensor '", spec->name, "' has shape ",
        ShapeToString(shape), ", expected ", ShapeToString(spec->shape)));
  }
  if (spec->trainable != (kind == v1::GRADIENT)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "table ", table_->name(), ": tensor '", spec->name, "' is ",
        spec->trainable ? "trainable and takes a GRADIENT"
                        : "a buffer and takes a VALUE"));
  }
  return absl::OkStatus();
}

absl::Status ShardHandler::RecordInvalidPush(const std::string& table,
                                             int64_t wire_bytes,
                                             const absl::Status& status) {
  // Label invalid pushes only with a real table name (bounded cardinality).
  if (metrics_ != nullptr) {
    metrics_->RecordInvalidPush(FindTable(table) ? table : "unknown",
                                wire_bytes);
  }
  return status;
}

absl::StatusOr<v1::PushResponse> ShardHandler::ApplyPush(
    const PushTarget& target, int64_t base_version, uint64_t push_id,
    const TensorMap& gradients, const TensorMap& buffers, int64_t wire_bytes) {
  ParameterTable* table = target.table_;
  const absl::Time start = absl::Now();
  absl::StatusOr<PushResult> r = table->ApplyGradients(
      target.worker_id_, base_version, gradients, buffers, push_id);
  if (metrics_ != nullptr) {
    metrics_->RecordApplyTime(table->name(),
                              absl::ToDoubleSeconds(absl::Now() - start));
  }
  if (!r.ok()) return RecordInvalidPush(table->name(), wire_bytes, r.status());
  v1::PushResponse response;
  response.set_accepted(r->accepted);
  response.set_applied(r->applied);
  response.set_new_version(r->new_version);
  response.set_staleness(r->staleness);
  response.set_reason(r->reason);
  response.set_duplicate(r->duplicate);
  if (metrics_ != nullptr) {
    metrics_->RecordPush(table->name(), wire_bytes, *r);
    metrics_->SetVersion(table->name(), table->version());
  }
  return response;
}

v1::StateResponse ShardHandler::GetState() const {
  v1::StateResponse out;
  v1::StateResponse* response = &out;
  response->set_shard_id(options_.shard_id);
  response->set_num_shards(options_.num_shards);
  response->set_data_plane_port(data_plane_port_.load());
  for (const auto& [name, table] : tables_) {
    const TableStats s = table->Stats();
    v1::TableState* t = response->add_tables();
    t->set_name(name);
    t->set_version(s.version);
    t->set_num_updates(s.num_updates);
    t->set_accepted_pushes(s.accepted_pushes);
    t->set_rejected_pushes(s.rejected_pushes);
    for (const std::string& w : s.registered_workers) {
      t->add_registered_workers(w);
    }
    t->set_pending_contributions(s.pending_contributions);
    t->set_num_elements(s.num_elements);
  }
  return out;
}

}  // namespace paragan
