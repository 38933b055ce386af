#include "server/shard.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <iterator>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/check.h"
#include "common/optim_kernels.h"
#include "common/placement.h"
#include "common/tensor_io.h"

namespace paragan {

absl::StatusOr<std::unique_ptr<ParameterShard>> ParameterShard::Create(
    ShardOptions options) {
  if (options.g.name != kGeneratorTable ||
      options.d.name != kDiscriminatorTable) {
    return absl::InvalidArgumentError("the tables must be named G and D");
  }
  SetKernelThreads(options.threads);
  PG_ASSIGN_OR_RETURN(std::vector<TableTensor> g,
                      TensorsOnShard(std::move(options.network.g),
                                     options.shard_id, options.num_shards));
  PG_ASSIGN_OR_RETURN(std::vector<TableTensor> d,
                      TensorsOnShard(std::move(options.network.d),
                                     options.shard_id, options.num_shards));
  options.network.g.clear();
  options.network.d.clear();
  auto shard =
      std::unique_ptr<ParameterShard>(new ParameterShard(std::move(options)));
  PG_ASSIGN_OR_RETURN(shard->g_,
                      ParameterTable::Create(shard->options_.g, std::move(g)));
  PG_ASSIGN_OR_RETURN(shard->d_,
                      ParameterTable::Create(shard->options_.d, std::move(d)));
  return shard;
}

std::string ParameterShard::checkpoint_path() const {
  if (options_.checkpoint_dir.empty()) return "";
  return absl::StrCat(options_.checkpoint_dir, "/shard-", options_.shard_id,
                      "-of-", options_.num_shards, ".pgt");
}

std::string ParameterShard::Signature() const {
  return absl::StrCat(options_.network.signature, " shard=", options_.shard_id,
                      "/", options_.num_shards);
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
