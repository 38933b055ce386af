#include "server/table.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/check.h"
#include "common/optim_kernels.h"

namespace paragan {
namespace {

constexpr int64_t kStateFormat = 1;
// meta: format, version, adam_step, num_updates, accepted, rejected.
constexpr int kMetaSize = 6;

Tensor HostCopy(const Shape& shape, const float* values) {
  const int64_t n = NumElements(shape);
  Tensor t(shape, AllocateHostFloats(n, /*zero=*/false), Device::kCpu);
  if (n > 0) std::memcpy(t.data(), values, static_cast<size_t>(n) * 4);
  return t;
}

NamedArray FloatArray(std::string name, const Tensor& t) {
  NamedArray a;
  a.name = std::move(name);
  a.dtype = kDTypeFloat32;
  a.dims = t.shape();
  a.bytes.assign(reinterpret_cast<const char*>(t.data()),
                 static_cast<size_t>(t.numel()) * 4);
  return a;
}

}  // namespace

float EffectiveBeta1(const UpdateRule& rule, float beta1, int64_t staleness) {
  if (!rule.momentum_compensation || rule.sync_workers > 0 || staleness <= 0) {
    return beta1;
  }
  const float s = static_cast<float>(staleness);
  return std::max(0.0f, beta1 - s / (1.0f + s));
}

absl::StatusOr<std::unique_ptr<ParameterTable>> ParameterTable::Create(
    const TableConfig& config, std::vector<TableTensor> tensors) {
  if (config.name.empty() || config.name.find('/') != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid table name '", config.name, "'"));
  }
  const AdamConfig& a = config.adam;
  if (!(a.lr > 0) || !(a.beta1 >= 0 && a.beta1 < 1) ||
      !(a.beta2 >= 0 && a.beta2 < 1) || !(a.eps > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("table ", config.name, ": invalid Adam settings lr=", a.lr,
                     " betas=(", a.beta1, ", ", a.beta2, ") eps=", a.eps));
  }
  if (!(config.ema_decay >= 0 && config.ema_decay < 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("table ", config.name,
                     ": ema_decay must be in [0, 1), got ", config.ema_decay));
  }
  if (config.worker_lease < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("table ", config.name, ": negative worker lease"));
  }
  if (config.rule.staleness_bound < 0 || config.rule.sync_workers < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("table ", config.name,
                     ": staleness_bound and sync_workers must be "
                     ">= 0"));
  }
  absl::StatusOr<const StalenessPolicy*> policy =
      FindStalenessPolicy(config.rule.staleness_policy);
  if (!policy.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("table ", config.name, ": ", policy.status().message()));
  }
  auto table = std::unique_ptr<ParameterTable>(new ParameterTable(config));
  table->policy_ = *policy;
  absl::MutexLock lock(&table->mu_);
  for (TableTensor& t : tensors) {
    const std::string& name = t.spec.name;
    if (name.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("table ", config.name, ": empty tensor name"));
    }
    for (int64_t d : t.spec.shape) {
      if (d < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("table ", config.name, ": tensor ", name,
                         " has negative dimension"));
      }
    }
    const int64_t n = NumElements(t.spec.shape);
    if (static_cast<int64_t>(t.values.size()) != n) {
      return absl::InvalidArgumentError(absl::StrCat(
          "table ", config.name, ": tensor ", name, " has ", t.values.size(),
          " values for shape ", ShapeToString(t.spec.shape)));
    }
    if (!table->index_.emplace(name, table->specs_.size()).second) {
      return absl::InvalidArgumentError(absl::StrCat(
          "table ", config.name, ": duplicate tensor name ", name));
    }
    table->specs_.push_back(t.spec);
    table->num_elements_ += n;
    Slot slot;
    slot.spec = t.spec;
    slot.value = HostCopy(t.spec.shape, t.values.data());
    if (t.spec.trainable) {
      slot.m = Tensor::Host(t.spec.shape);
      slot.v = Tensor::Host(t.spec.shape);
      // The EMA starts as a copy of the initial values.
      if (config.ema_decay > 0)
        slot.ema = HostCopy(t.spec.shape, t.values.data());
    }
    table->slots_.push_back(std::move(slot));
    std::vector<float>().swap(t.values);  // release the caller's copy early
  }
  table->clock_ = [] { return absl::Now(); };
  return table;
}

const TableTensorSpec* ParameterTable::FindSpec(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &specs_[it->second];
}

void ParameterTable::RegisterWorker(const std::string& worker_id) {
  absl::MutexLock lock(&mu_);
  registered_[worker_id] = clock_();
  expired_.erase(worker_id);
  if (config_.rule.sync_workers > 0 &&
      static_cast<int>(registered_.size()) >= config_.rule.sync_workers) {
    quorum_full_once_ = true;
  }
}

bool ParameterTable::IsRegistered(const std::string& worker_id) const {
  absl::ReaderMutexLock lock(&mu_);
  return registered_.count(worker_id) > 0;
}

bool ParameterTable::LeasesOn() const {
  const absl::Duration lease = config_.worker_lease;
  return lease > absl::ZeroDuration() && lease != absl::InfiniteDuration();
}

bool ParameterTable::RenewLease(const std::string& worker_id) {
  absl::MutexLock lock(&mu_);
  auto it = registered_.find(worker_id);
  if (it != registered_.end()) {
    it->second = clock_();
    return true;
  }
  if (!expired_.count(worker_id)) return false;
  // Dropped for silence and back: register again.
  expired_.erase(worker_id);
  registered_[worker_id] = clock_();
  if (config_.rule.sync_workers > 0 &&
      static_cast<int>(registered_.size()) >= config_.rule.sync_workers) {
    quorum_full_once_ = true;
  }
  return true;
}

void ParameterTable::SetClockForTesting(std::function<absl::Time()> clock) {
  absl::MutexLock lock(&mu_);
  clock_ = std::move(clock);
}

int ParameterTable::QuorumLocked() const {
  const int n = config_.rule.sync_workers;
  if (!quorum_full_once_) return n;
  return std::max(1, std::min(n, static_cast<int>(registered_.size())));
}

LeaseExpiry ParameterTable::ExpireLeases() {
  LeaseExpiry out;
  if (!LeasesOn()) return out;
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_();
  for (auto it = registered_.begin(); it != registered_.end();) {
    if (now - it->second > config_.worker_lease) {
      out.dropped.push_back(it->first);
      expired_.insert(it->first);
      ++expired_leases_;
      it = registered_.erase(it);
    } else {
      ++it;
    }
  }
  FinishDropLocked(&out);
  return out;
}

LeaseExpiry ParameterTable::DeregisterWorker(const std::string& worker_id) {
  LeaseExpiry out;
  absl::MutexLock lock(&mu_);
  // Left for good: a later pull or push does not register it again.
  expired_.erase(worker_id);
  if (registered_.erase(worker_id) > 0) {
    out.dropped.push_back(worker_id);
    ++deregistered_workers_;
  }
  FinishDropLocked(&out);
  return out;
}

void ParameterTable::FinishDropLocked(LeaseExpiry* out) {
  out->new_version = version_;
  if (out->dropped.empty() || config_.rule.sync_workers == 0) return;
  const int have = static_cast<int>(round_workers_.size());
  if (have > 0 && have >= QuorumLocked()) {
    out->round_completed = true;
    out->round_contributions = have;
    CompleteRoundLocked();
    out->new_version = version_;
  }
}

int64_t ParameterTable::version() const {
  absl::ReaderMutexLock lock(&mu_);
  return version_;
}

absl::Status ParameterTable::ValidatePush(const TensorMap& gradients,
                                          const TensorMap& buffers) const {
  const std::string& table = config_.name;
  for (const auto* map : {&gradients, &buffers}) {
    const bool grads = map == &gradients;
    for (const auto& [name, values] : *map) {
      const TableTensorSpec* spec = FindSpec(name);
      if (spec == nullptr) {
        return absl::InvalidArgumentError(absl::StrCat(
            "table ", table, ": unknown tensor '", name, "' on this shard"));
      }
      if (spec->trainable != grads) {
        return absl::InvalidArgumentError(absl::StrCat(
            "table ", table, ": tensor '", name, "' is ",
            spec->trainable ? "trainable: push a gradient, not a value"
                            : "a buffer: push a value, not a gradient"));
      }
      const int64_t n = NumElements(spec->shape);
      if (static_cast<int64_t>(values.size()) != n) {
        return absl::InvalidArgumentError(
            absl::StrCat("table ", table, ": tensor '", name, "' has ",
                         values.size(), " elements, expected ", n, " (shape ",
                         ShapeToString(spec->shape), ")"));
      }
      if (!AllFiniteHost(values.data(), n)) {
        return absl::InvalidArgumentError(
            absl::StrCat("table ", table, ": tensor '", name, "' has ",
                         grads ? "a gradient" : "a value", " with NaN or Inf"));
      }
    }
  }
  for (const TableTensorSpec& spec : specs_) {
    if (spec.trainable && !gradients.count(spec.name)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "table ", table, ": missing gradient for tensor '", spec.name, "'"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<PushResult> ParameterTable::ApplyGradients(
    const std::string& worker_id, int64_t base_version,
    const TensorMap& gradients, const TensorMap& buffers, uint64_t push_id) {
  if (base_version < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "table ", config_.name, ": negative base_version ", base_version));
  }
  // The layout is immutable: check the payload before taking the lock.
  absl::Status st = ValidatePush(gradients, buffers);
  if (!st.ok()) return st;

  absl::MutexLock lock(&mu_);
  if (!registered_.count(worker_id)) {
    return absl::FailedPreconditionError(
        absl::StrCat("table ", config_.name, ": worker '", worker_id,
                     "' is not registered (call RegisterWorker)"));
  }
  if (base_version > version_) {
    return absl::FailedPreconditionError(
        absl::StrCat("table ", config_.name, ": base_version ", base_version,
                     " is ahead of the table's version ", version_,
                     " (the shard restarted from a checkpoint?): pull again"));
  }
  if (push_id != 0) {
    auto last = last_push_.find(worker_id);
    if (last != last_push_.end() && push_id <= last->second.first) {
      if (push_id == last->second.first) {
        PushResult r = last->second.second;
        r.duplicate = true;
        return r;
      }
      ++rejected_pushes_;
      PushResult r;
      r.staleness = version_ - base_version;
      r.new_version = version_;
      r.reason = absl::StrCat("push id ", push_id,
                              " is older than the last push of worker '",
                              worker_id, "' (", last->second.first,
                              "): overtaken or repeated, refused");
      return r;
    }
  }
  PushResult r = ApplyLocked(worker_id, base_version, gradients, buffers);
  if (push_id != 0) last_push_[worker_id] = {push_id, r};
  return r;
}

PushResult ParameterTable::ApplyLocked(const std::string& worker_id,
                                       int64_t base_version,
                                       const TensorMap& gradients,
                                       const TensorMap& buffers) {
  PushResult r;
  r.staleness = version_ - base_version;
  r.new_version = version_;
  const UpdateRule& rule = config_.rule;
  const StalenessDecision decision =
      policy_->Decide(r.staleness, rule.staleness_bound);
  if (!decision.accept) {
    ++rejected_pushes_;
    r.reason = decision.reason;
    return r;
  }
  // Weight of a late gradient in a synchronous round.
  const float scale = decision.round_weight;

  if (rule.sync_workers == 0) {
    const float lr = config_.adam.lr / decision.lr_divisor;
    StepLocked(lr, EffectiveBeta1(rule, config_.adam.beta1, r.staleness),
               gradients, buffers);
    ++accepted_pushes_;
    r.accepted = r.applied = true;
    r.new_version = version_;
    return r;
  }

  // Synchronous round.
  if (round_workers_.count(worker_id)) {
    ++rejected_pushes_;
    r.reason = absl::StrCat("duplicate: worker '", worker_id,
                            "' already contributed to the round of version ",
                            version_);
    return r;
  }
  for (const auto& [name, g] : gradients) {
    std::vector<float>& sum = round_gradients_[name];
    if (sum.empty()) sum.assign(g.size(), 0.0f);
    for (size_t i = 0; i < g.size(); ++i) sum[i] += scale * g[i];
  }
  for (const auto& [name, b] : buffers) {
    std::vector<float>& sum = round_buffers_[name];
    if (sum.empty()) sum.assign(b.size(), 0.0f);
    for (size_t i = 0; i < b.size(); ++i) sum[i] += b[i];
    ++round_buffer_counts_[name];
  }
  round_workers_.insert(worker_id);
  ++accepted_pushes_;
  r.accepted = true;
  const int have = static_cast<int>(round_workers_.size());
  const int quorum = QuorumLocked();
  if (have < quorum) {
    r.reason = absl::StrCat("pending: ", have, " of ", quorum,
                            " workers in the round of version ", version_);
    return r;
  }
  CompleteRoundLocked();
  r.applied = true;
  r.new_version = version_;
  return r;
}

void ParameterTable::CompleteRoundLocked() {
  const float inv = static_cast<float>(round_workers_.size());
  for (auto& [name, sum] : round_gradients_) {
    for (float& x : sum) x /= inv;
  }
  for (auto& [name, sum] : round_buffers_) {
    const float count = static_cast<float>(round_buffer_counts_[name]);
    for (float& x : sum) x /= count;
  }
  StepLocked(config_.adam.lr, config_.adam.beta1, round_gradients_,
             round_buffers_);
  ClearRoundLocked();
}

void ParameterTable::StepLocked(float lr, float beta1,
                                const TensorMap& gradients,
                                const TensorMap& buffers) {
  ++adam_step_;
  const AdamConfig& a = config_.adam;
  for (Slot& slot : slots_) {
    if (slot.spec.trainable) {
      UnshareLocked(&slot.value);
      AdamUpdateHost(lr, beta1, a.beta2, a.eps, adam_step_,
                     gradients.at(slot.spec.name).data(), slot.value.data(),
                     slot.m.data(), slot.v.data(), slot.value.numel());
    } else {
      auto it = buffers.find(slot.spec.name);
      if (it != buffers.end() && slot.value.numel() > 0) {
        UnshareLocked(&slot.value);
        std::memcpy(slot.value.data(), it->second.data(),
                    static_cast<size_t>(slot.value.numel()) * 4);
      }
    }
  }
  if (config_.ema_decay > 0) {
    // t = optimizer steps before this one, as GanTrainer::UpdateEma.
    const int64_t t = num_updates_;
    const float decay =
        std::min(config_.ema_decay,
                 static_cast<float>(t + 1) / static_cast<float>(t + 10));
    for (Slot& slot : slots_) {
      if (slot.spec.trainable) {
        UnshareLocked(&slot.ema);
        EmaUpdateHost(decay, slot.value.data(), slot.ema.data(),
                      slot.value.numel());
      }
    }
  }
  ++version_;
  ++num_updates_;
  // A version change wakes WaitForVersion (absl::Mutex re-evaluates
  // conditions on unlock).
}

void ParameterTable::ClearRoundLocked() {
  round_workers_.clear();
  round_gradients_.clear();
  round_buffers_.clear();
  round_buffer_counts_.clear();
}

absl::StatusOr<TableSnapshot> ParameterTable::Snapshot(
    const std::vector<std::string>& names) const {
  return SnapshotImpl(names, /*ema=*/false);
}

absl::StatusOr<TableSnapshot> ParameterTable::EmaSnapshot(
    const std::vector<std::string>& names) const {
  return SnapshotImpl(names, /*ema=*/true);
}

absl::StatusOr<SharedTableSnapshot> ParameterTable::SharedSnapshot(
    const std::vector<std::string>& names, bool ema) const {
  if (ema && !has_ema()) {
    return absl::FailedPreconditionError(
        absl::StrCat("table ", config_.name,
                     " keeps no EMA (the server runs with --ema_decay=0)"));
  }
  std::vector<size_t> which;
  if (names.empty()) {
    for (size_t i = 0; i < specs_.size(); ++i) which.push_back(i);
  } else {
    for (const std::string& name : names) {
      auto it = index_.find(name);
      if (it == index_.end()) {
        return absl::NotFoundError(absl::StrCat("table ", config_.name,
                                                ": unknown tensor '", name,
                                                "' on this shard"));
      }
      which.push_back(it->second);
    }
  }
  SharedTableSnapshot snap;
  absl::ReaderMutexLock lock(&mu_);
  snap.version = version_;
  snap.tensors.reserve(which.size());
  for (size_t i : which) {
    const Slot& slot = slots_[i];
    const Tensor& t = ema && slot.spec.trainable ? slot.ema : slot.value;
    snap.tensors.push_back({slot.spec, t.storage()});
  }
  return snap;
}

void ParameterTable::UnshareLocked(Tensor* t) {
  if (t->storage().use_count() <= 1) {
    // Pairs with the release in the last snapshot's shared_ptr decrement:
    // its readers are done before we write.
    std::atomic_thread_fence(std::memory_order_acquire);
    return;
  }
  *t = HostCopy(t->shape(), t->data());
}

absl::StatusOr<TableSnapshot> ParameterTable::SnapshotImpl(
    const std::vector<std::string>& names, bool ema) const {
  // Copied outside the lock: the shared snapshot already holds one version.
  PG_ASSIGN_OR_RETURN(const SharedTableSnapshot shared,
                      SharedSnapshot(names, ema));
  TableSnapshot snap;
  snap.version = shared.version;
  snap.tensors.reserve(shared.tensors.size());
  for (const SharedTableTensor& t : shared.tensors) {
    snap.tensors.push_back(
        {t.spec,
         std::vector<float>(t.values.get(),
                            t.values.get() + NumElements(t.spec.shape))});
  }
  return snap;
}

bool ParameterTable::WaitForVersion(int64_t min_version,
                                    absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  auto reached = [this, min_version]() { return version_ >= min_version; };
  return mu_.AwaitWithTimeout(absl::Condition(&reached), timeout);
}

TableStats ParameterTable::Stats() const {
  absl::ReaderMutexLock lock(&mu_);
  TableStats s;
  s.version = version_;
  s.num_updates = num_updates_;
  s.adam_step = adam_step_;
  s.accepted_pushes = accepted_pushes_;
  s.rejected_pushes = rejected_pushes_;
  s.pending_contributions = static_cast<int>(round_workers_.size());
  for (const auto& [id, unused] : registered_) {
    s.registered_workers.push_back(id);
  }
  s.expired_leases = expired_leases_;
  s.deregistered_workers = deregistered_workers_;
  s.num_elements = num_elements_;
  return s;
}

namespace {

// One line per worker: "<push id> <accepted> <applied> <new version>
// <staleness> <worker id>"; the id is the rest of the line.
std::string FormatPushIds(const ParameterTable::LastPushes& pushes) {
  std::string out;
  for (const auto& [worker, last] : pushes) {
    if (worker.find('\n') != std::string::npos) continue;  // unsavable id
    const PushResult& r = last.second;
    absl::StrAppend(&out, last.first, " ", r.accepted ? 1 : 0, " ",
                    r.applied ? 1 : 0, " ", r.new_version, " ", r.staleness,
                    " ", worker, "\n");
  }
  return out;
}

absl::StatusOr<ParameterTable::LastPushes> ParsePushIds(
    absl::string_view text) {
  ParameterTable::LastPushes out;
  int n = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++n;
    if (line.empty()) continue;
    std::vector<absl::string_view> f =
        absl::StrSplit(line, absl::MaxSplits(' ', 5));
    uint64_t id = 0;
    int accepted = 0, applied = 0;
    int64_t version = 0, staleness = 0;
    if (f.size() != 6 || f[5].empty() || !absl::SimpleAtoi(f[0], &id) ||
        !absl::SimpleAtoi(f[1], &accepted) ||
        !absl::SimpleAtoi(f[2], &applied) ||
        !absl::SimpleAtoi(f[3], &version) ||
        !absl::SimpleAtoi(f[4], &staleness) || id == 0 || accepted < 0 ||
        accepted > 1 || applied < 0 || applied > 1 || version < 0 ||
        staleness < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("line ", n,
                       " is not '<push id> <accepted> <applied> "
                       "<version> <staleness> <worker>'"));
    }
    PushResult r;
    r.accepted = accepted == 1;
    r.applied = applied == 1;
    r.new_version = version;
    r.staleness = staleness;
    if (!out.emplace(std::string(f[5]), std::make_pair(id, r)).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("line ", n, ": worker '", f[5], "' twice"));
    }
  }
  return out;
}

}  // namespace

std::vector<NamedArray> ParameterTable::SaveState() const {
  const std::string p = Prefix();
  std::vector<NamedArray> out;
  absl::ReaderMutexLock lock(&mu_);
  out.push_back(
      *MakeInt64Array(p + "meta", {kMetaSize},
                      {kStateFormat, version_, adam_step_, num_updates_,
                       accepted_pushes_, rejected_pushes_}));
  std::vector<std::string> ids;
  for (const auto& [id, unused] : registered_) ids.push_back(id);
  const std::string workers = absl::StrJoin(ids, "\n");
  out.push_back(
      *MakeUint8Array(p + "workers", {static_cast<int64_t>(workers.size())},
                      std::vector<uint8_t>(workers.begin(), workers.end())));
  const std::string pushes = FormatPushIds(last_push_);
  out.push_back(
      *MakeUint8Array(p + "push_ids", {static_cast<int64_t>(pushes.size())},
                      std::vector<uint8_t>(pushes.begin(), pushes.end())));
  for (const Slot& slot : slots_) {
    out.push_back(FloatArray(p + "value/" + slot.spec.name, slot.value));
    if (slot.spec.trainable) {
      out.push_back(FloatArray(p + "adam_m/" + slot.spec.name, slot.m));
      out.push_back(FloatArray(p + "adam_v/" + slot.spec.name, slot.v));
      if (has_ema()) {
        out.push_back(FloatArray(p + "ema/" + slot.spec.name, slot.ema));
      }
    }
  }
  return out;
}

absl::Status ParameterTable::ValidateState(
    const std::vector<NamedArray>& arrays) const {
  const std::string p = Prefix();
  // Expected name -> (dtype, dims).
  std::map<std::string, std::pair<uint32_t, Shape>> expected;
  // Optional: EMA arrays (absent in checkpoints written without an EMA).
  std::map<std::string, Shape> optional;
  expected[p + "meta"] = {kDTypeInt64, {kMetaSize}};
  for (const TableTensorSpec& spec : specs_) {
    expected[p + "value/" + spec.name] = {kDTypeFloat32, spec.shape};
    if (spec.trainable) {
      expected[p + "adam_m/" + spec.name] = {kDTypeFloat32, spec.shape};
      expected[p + "adam_v/" + spec.name] = {kDTypeFloat32, spec.shape};
      optional[p + "ema/" + spec.name] = spec.shape;
    }
  }
  std::set<std::string> seen;
  for (const NamedArray& a : arrays) {
    if (a.name.compare(0, p.size(), p) != 0) continue;  // another table's
    if (!seen.insert(a.name).second) {
      return absl::FailedPreconditionError(absl::StrCat(
          "table ", config_.name, " state: duplicate array ", a.name));
    }
    absl::Status st = ValidateNamedArray(a);
    if (!st.ok()) return st;
    if (a.name == p + "push_ids") {
      absl::StatusOr<LastPushes> parsed =
          a.dtype == kDTypeUint8 ? ParsePushIds(a.bytes)
                                 : absl::FailedPreconditionError("not uint8");
      if (!parsed.ok()) {
        return absl::FailedPreconditionError(
            absl::StrCat("table ", config_.name, " state: ", a.name, ": ",
                         parsed.status().message()));
      }
      continue;
    }
    if (a.name == p + "workers") {
      if (a.dtype != kDTypeUint8) {
        return absl::FailedPreconditionError(absl::StrCat(
            "table ", config_.name, " state: ", a.name, " is not uint8"));
      }
      continue;
    }
    if (auto o = optional.find(a.name); o != optional.end()) {
      if (a.dtype != kDTypeFloat32 || a.dims != o->second) {
        return absl::FailedPreconditionError(absl::StrCat(
            "table ", config_.name, " state: ", a.name, " is ",
            DTypeName(a.dtype), " ", ShapeToString(a.dims), ", expected ",
            DTypeName(kDTypeFloat32), " ", ShapeToString(o->second)));
      }
      continue;
    }
    auto it = expected.find(a.name);
    if (it == expected.end()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "table ", config_.name, " state has ", a.name,
          ", which this shard's layout does not (different model or "
          "placement?)"));
    }
    if (a.dtype != it->second.first || a.dims != it->second.second) {
      return absl::FailedPreconditionError(absl::StrCat(
          "table ", config_.name, " state: ", a.name, " is ",
          DTypeName(a.dtype), " ", ShapeToString(a.dims), ", expected ",
          DTypeName(it->second.first), " ", ShapeToString(it->second.second)));
    }
  }
  for (const auto& [name, unused] : expected) {
    if (!seen.count(name)) {
      return absl::FailedPreconditionError(
          absl::StrCat("table ", config_.name, " state lacks ", name,
                       " (different model or placement?)"));
    }
  }
  const std::vector<int64_t> meta =
      *ToInt64Vector(*FindArray(arrays, p + "meta"));
  if (meta[0] != kStateFormat) {
    return absl::FailedPreconditionError(
        absl::StrCat("table ", config_.name, " state: format ", meta[0],
                     ", expected ", kStateFormat));
  }
  for (int i = 1; i < kMetaSize; ++i) {
    if (meta[i] < 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "table ", config_.name, " state: negative counter in meta"));
    }
  }
  return absl::OkStatus();
}

absl::Status ParameterTable::RestoreState(
    const std::vector<NamedArray>& arrays) {
  absl::Status st = ValidateState(arrays);
  if (!st.ok()) return st;
  const std::string p = Prefix();
  const std::vector<int64_t> meta =
      *ToInt64Vector(*FindArray(arrays, p + "meta"));
  std::set<std::string> workers;
  // EMA arrays are all present or all absent; otherwise start from values.
  bool ema_complete = has_ema();
  for (const TableTensorSpec& spec : specs_) {
    if (spec.trainable && !FindArray(arrays, p + "ema/" + spec.name)) {
      ema_complete = false;
    }
  }
  if (const NamedArray* w = FindArray(arrays, p + "workers")) {
    for (absl::string_view id : absl::StrSplit(w->bytes, '\n')) {
      if (!id.empty()) workers.insert(std::string(id));
    }
  }
  // Absent in checkpoints written before push ids were kept: none.
  LastPushes pushes;
  if (const NamedArray* a = FindArray(arrays, p + "push_ids")) {
    pushes = *ParsePushIds(a->bytes);  // validated above
  }
  absl::MutexLock lock(&mu_);
  for (Slot& slot : slots_) {
    const auto copy_in = [&](const std::string& key, Tensor* t) {
      const NamedArray* a = FindArray(arrays, p + key + "/" + slot.spec.name);
      UnshareLocked(t);
      if (t->numel() > 0)
        std::memcpy(t->data(), a->bytes.data(), a->bytes.size());
    };
    copy_in("value", &slot.value);
    if (slot.spec.trainable) {
      copy_in("adam_m", &slot.m);
      copy_in("adam_v", &slot.v);
      if (has_ema()) {
        if (ema_complete) {
          copy_in("ema", &slot.ema);
        } else if (slot.value.numel() > 0) {
          UnshareLocked(&slot.ema);
          std::memcpy(slot.ema.data(), slot.value.data(),
                      static_cast<size_t>(slot.value.numel()) * 4);
        }
      }
    }
  }
  version_ = meta[1];
  adam_step_ = meta[2];
  num_updates_ = meta[3];
  accepted_pushes_ = meta[4];
  rejected_pushes_ = meta[5];
  // Restored workers hold a fresh lease: they expire if they do not return.
  registered_.clear();
  expired_.clear();
  const absl::Time now = clock_();
  for (const std::string& id : workers) registered_[id] = now;
  last_push_ = std::move(pushes);
  quorum_full_once_ =
      config_.rule.sync_workers > 0 &&
      static_cast<int>(registered_.size()) >= config_.rule.sync_workers;
  ClearRoundLocked();
  return absl::OkStatus();
}

absl::Status ParameterTable::Checkpoint(const std::string& path) const {
  return WriteTensorFile(path, SaveState());
}

absl::Status ParameterTable::Restore(const std::string& path) {
  PG_ASSIGN_OR_RETURN(std::vector<NamedArray> arrays, ReadTensorFile(path));
  return RestoreState(arrays);
}

}  // namespace paragan
