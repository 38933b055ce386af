#include "worker/distributed/table_sync.h"

#include "absl/strings/str_cat.h"
#include "common/check.h"
#include "common/placement.h"

namespace paragan {

absl::StatusOr<TableLayout> TableLayout::Create(const std::string& table,
                                                ParamStore& store,
                                                int num_shards) {
  const std::vector<TableTensorSpec> specs = NetworkSpecs(store);
  PG_ASSIGN_OR_RETURN(auto place, PlaceNetwork(specs, num_shards));
  TableLayout layout;
  layout.table_ = table;
  layout.shards_.resize(num_shards);
  for (const TableTensorSpec& s : specs) {
    layout.shards_[place.at(s.name)].push_back(s);
  }
  return layout;
}

absl::Status TableLayout::CheckShardInfo(int s,
                                         const v1::TableInfo& info) const {
  const std::vector<TableTensorSpec>& want = shards_[s];
  if (info.tensors_size() != static_cast<int>(want.size())) {
    return absl::FailedPreconditionError(absl::StrCat(
        "table ", table_, " on shard ", s, " holds ", info.tensors_size(),
        " tensors, this worker's model places ", want.size(), " there"));
  }
  for (size_t i = 0; i < want.size(); ++i) {
    const v1::TensorSpec& t = info.tensors(static_cast<int>(i));
    const Shape shape(t.shape().begin(), t.shape().end());
    if (t.name() != want[i].name || shape != want[i].shape ||
        t.trainable() != want[i].trainable) {
      return absl::FailedPreconditionError(absl::StrCat(
          "table ", table_, " on shard ", s, ": tensor ", i, " is '", t.name(),
          "' ", ShapeToString(shape), ", this worker's model has '",
          want[i].name, "' ", ShapeToString(want[i].shape)));
    }
  }
  return absl::OkStatus();
}

absl::Status MergePulled(const std::vector<TableTensorSpec>& expected,
                         const PulledTable& pulled, ParamStore* store) {
  if (pulled.tensors.size() != expected.size()) {
    return absl::DataLossError(absl::StrCat("pulled ", pulled.tensors.size(),
                                            " tensors, expected ",
                                            expected.size()));
  }
  std::vector<std::pair<const PulledTensor*, Tensor*>> writes;
  for (const TableTensorSpec& spec : expected) {
    auto it = pulled.tensors.find(spec.name);
    if (it == pulled.tensors.end()) {
      return absl::DataLossError(
          absl::StrCat("pulled slice lacks tensor '", spec.name, "'"));
    }
    if (it->second.shape != spec.shape ||
        static_cast<int64_t>(it->second.values.size()) !=
            NumElements(spec.shape)) {
      return absl::DataLossError(
          absl::StrCat("pulled tensor '", spec.name, "' has shape ",
                       ShapeToString(it->second.shape), ", expected ",
                       ShapeToString(spec.shape)));
    }
    Tensor* dst = nullptr;
    if (spec.trainable) {
      Param* p = store->FindParam(spec.name);
      if (p != nullptr) dst = &p->value;
    } else {
      dst = store->FindBuffer(spec.name);
    }
    if (dst == nullptr || dst->shape() != spec.shape) {
      return absl::DataLossError(absl::StrCat(
          "model has no ", spec.trainable ? "parameter" : "buffer", " '",
          spec.name, "' of shape ", ShapeToString(spec.shape)));
    }
    writes.emplace_back(&it->second, dst);
  }
  for (auto& [src, dst] : writes) {
    if (dst->numel() > 0) store->backend()->Upload(src->values.data(), dst);
  }
  return absl::OkStatus();
}

void PushStaging::Stage(ParamStore& store) {
  Backend* b = store.backend();
  auto stage = [&](const std::string& name, const Tensor& t) {
    std::shared_ptr<std::vector<float>>& v = values_[name];
    // gRPC may still hold the previous push's bytes (zero-copy slices):
    // reuse the buffer only when nothing else references it.
    if (v == nullptr || v.use_count() > 1) {
      v = std::make_shared<std::vector<float>>();
    }
    v->resize(static_cast<size_t>(t.numel()));
    if (t.numel() > 0) b->Download(t, v->data());
  };
  for (const Param& p : store.params()) stage(p.name, p.grad);
  for (const auto& [name, t] : store.buffers()) stage(name, *t);
}

std::vector<PushTensor> PushStaging::ForShard(
    const std::vector<TableTensorSpec>& specs) const {
  std::vector<PushTensor> out;
  for (const TableTensorSpec& s : specs) {
    PushTensor t;
    t.name = s.name;
    t.shape = s.shape;
    const std::shared_ptr<std::vector<float>>& v = values_.at(s.name);
    t.values = v->data();
    t.owner = v;
    t.kind = s.trainable ? v1::GRADIENT : v1::VALUE;
    out.push_back(std::move(t));
  }
  return out;
}

int64_t PushStaging::bytes(const std::vector<TableTensorSpec>& specs) const {
  int64_t n = 0;
  for (const TableTensorSpec& s : specs) n += 4 * NumElements(s.shape);
  return n;
}

}  // namespace paragan
