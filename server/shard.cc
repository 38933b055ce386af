#include "server/shard.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <iterator>

#include "absl/strings/str_cat.h"
#include "common/check.h"
#include "common/tensor_io.h"

namespace paragan {

std::vector<TableTensorSpec> NetworkSpecs(ParamStore& store) {
  std::vector<TableTensorSpec> out;
  for (const Param& p : store.params()) {
    out.push_back({p.name, p.value.shape(), true});
  }
  for (const auto& [name, t] : store.buffers()) {
    out.push_back({name, t->shape(), false});
  }
  return out;
}

absl::StatusOr<std::map<std::string, int>> PlaceNetwork(
    const std::vector<TableTensorSpec>& specs, int num_shards) {
  std::vector<TensorSize> sizes;
  for (const TableTensorSpec& s : specs) {
    sizes.push_back({s.name, NumElements(s.shape)});
  }
  PG_ASSIGN_OR_RETURN(Placement p, PlaceTensors(sizes, num_shards));
  std::map<std::string, int> out;
  for (size_t i = 0; i < specs.size(); ++i) out[specs[i].name] = p.shard_of[i];
  return out;
}

absl::StatusOr<std::vector<TableTensor>> ShardSlice(ParamStore& store,
                                                    int shard_id,
                                                    int num_shards) {
  if (shard_id < 0 || shard_id >= num_shards) {
    return absl::InvalidArgumentError(absl::StrCat(
        "shard_id ", shard_id, " out of range for ", num_shards, " shards"));
  }
  const std::vector<TableTensorSpec> specs = NetworkSpecs(store);
  PG_ASSIGN_OR_RETURN(auto place, PlaceNetwork(specs, num_shards));
  Backend* b = store.backend();
  std::vector<TableTensor> out;
  for (const TableTensorSpec& s : specs) {
    if (place.at(s.name) != shard_id) continue;
    const Tensor& t = s.trainable ? store.FindParam(s.name)->value
                                  : *store.FindBuffer(s.name);
    std::vector<float> values(static_cast<size_t>(t.numel()));
    if (t.numel() > 0) b->Download(t, values.data());
    out.push_back({s, std::move(values)});
  }
  return out;
}

absl::StatusOr<std::unique_ptr<ParameterShard>> ParameterShard::Create(
    const ShardOptions& options) {
  if (options.g.name != kGeneratorTable ||
      options.d.name != kDiscriminatorTable) {
    return absl::InvalidArgumentError("the tables must be named G and D");
  }
  auto shard = std::unique_ptr<ParameterShard>(
      new ParameterShard(options, MakeCpuBackend(options.threads)));
  PG_ASSIGN_OR_RETURN(std::unique_ptr<GanModel> model,
                      MakeModel(options.model, shard->backend_.get()));
  model->Initialize(options.seed);
  PG_ASSIGN_OR_RETURN(
      std::vector<TableTensor> g,
      ShardSlice(model->generator(), options.shard_id, options.num_shards));
  PG_ASSIGN_OR_RETURN(
      std::vector<TableTensor> d,
      ShardSlice(model->discriminator(), options.shard_id, options.num_shards));
  PG_ASSIGN_OR_RETURN(shard->g_, ParameterTable::Create(options.g, std::move(g),
                                                        shard->backend_.get()));
  PG_ASSIGN_OR_RETURN(shard->d_, ParameterTable::Create(options.d, std::move(d),
                                                        shard->backend_.get()));
  return shard;
}

std::string ParameterShard::checkpoint_path() const {
  if (options_.checkpoint_dir.empty()) return "";
  return absl::StrCat(options_.checkpoint_dir, "/shard-", options_.shard_id,
                      "-of-", options_.num_shards, ".pgt");
}

std::string ParameterShard::Signature() const {
  const ModelConfig& m = options_.model;
  return absl::StrCat(m.name, " c=", m.image_channels, " r=", m.resolution,
                      " k=", m.num_classes, " z=", m.z_dim, " w=", m.width,
                      " attn=", m.attention ? 1 : 0,
                      " shard=", options_.shard_id, "/", options_.num_shards);
}

absl::Status ParameterShard::Checkpoint() const {
  const std::string path = checkpoint_path();
  if (path.empty()) return absl::OkStatus();
  if (mkdir(options_.checkpoint_dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return absl::InternalError(absl::StrCat("mkdir ", options_.checkpoint_dir,
                                            ": ", std::strerror(errno)));
  }
  const std::string sig = Signature();
  std::vector<NamedArray> arrays;
  PG_ASSIGN_OR_RETURN(
      NamedArray meta,
      MakeUint8Array("shard/signature", {static_cast<int64_t>(sig.size())},
                     std::vector<uint8_t>(sig.begin(), sig.end())));
  arrays.push_back(std::move(meta));
  for (const ParameterTable* t : {g_.get(), d_.get()}) {
    std::vector<NamedArray> a = t->SaveState();
    std::move(a.begin(), a.end(), std::back_inserter(arrays));
  }
  return WriteTensorFile(path, arrays);
}

absl::StatusOr<bool> ParameterShard::RestoreIfPresent() {
  const std::string path = checkpoint_path();
  if (path.empty()) return false;
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return false;
  PG_ASSIGN_OR_RETURN(std::vector<NamedArray> arrays, ReadTensorFile(path));
  const NamedArray* sig = FindArray(arrays, "shard/signature");
  if (sig == nullptr || sig->bytes != Signature()) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, " was written by '", sig ? sig->bytes : "?",
                     "', this shard is '", Signature(), "'"));
  }
  // Validate both tables before changing either.
  PG_RETURN_IF_ERROR(g_->ValidateState(arrays));
  PG_RETURN_IF_ERROR(d_->ValidateState(arrays));
  PG_RETURN_IF_ERROR(g_->RestoreState(arrays));
  PG_RETURN_IF_ERROR(d_->RestoreState(arrays));
  return true;
}

}  // namespace paragan
