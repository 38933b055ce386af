#include "server/shard.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
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
  return checkpoint_path(0);
}

std::string ParameterShard::checkpoint_path(int age) const {
  if (options_.checkpoint_dir.empty()) return "";
  std::string path =
      absl::StrCat(options_.checkpoint_dir, "/shard-", options_.shard_id,
                   "-of-", options_.num_shards, ".pgt");
  if (age > 0) absl::StrAppend(&path, ".", age);
  return path;
}

std::string ParameterShard::Signature() const {
  return absl::StrCat(options_.network.signature, " shard=", options_.shard_id,
                      "/", options_.num_shards);
}

namespace {

absl::Status Rename(const std::string& from, const std::string& to) {
  if (std::rename(from.c_str(), to.c_str()) == 0 || errno == ENOENT) {
    return absl::OkStatus();
  }
  return absl::UnavailableError(absl::StrCat("cannot rename ", from, " to ", to,
                                             ": ", std::strerror(errno)));
}

bool Exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

}  // namespace

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
  // Complete and synced under its own name before any older file moves.
  const std::string fresh = path + ".new";
  PG_RETURN_IF_ERROR(WriteTensorFile(fresh, arrays));
  for (int age = std::max(1, options_.keep_checkpoints) - 1; age >= 1; --age) {
    PG_RETURN_IF_ERROR(Rename(checkpoint_path(age - 1), checkpoint_path(age)));
  }
  PG_RETURN_IF_ERROR(Rename(fresh, path));
  // The renames are durable once the directory is.
  return SyncDirectory(options_.checkpoint_dir);
}

absl::StatusOr<ParameterShard::Restored> ParameterShard::RestoreNewestIntact() {
  Restored restored;
  if (checkpoint_path().empty()) return restored;
  // Newest first. A ".new" file exists only complete (written to a
  // temporary name and renamed): one left by a crash before the rotation
  // finished is the newest checkpoint.
  std::vector<std::string> candidates = {checkpoint_path() + ".new"};
  for (int age = 0; age < std::max(1, options_.keep_checkpoints); ++age) {
    candidates.push_back(checkpoint_path(age));
  }
  bool any = false;
  for (const std::string& path : candidates) {
    if (!Exists(path)) continue;
    any = true;
    absl::StatusOr<std::vector<NamedArray>> arrays = ReadTensorFile(path);
    if (absl::IsDataLoss(arrays.status())) {
      restored.skipped.push_back(arrays.status().ToString());
      continue;
    }
    if (!arrays.ok()) return arrays.status();
    const NamedArray* sig = FindArray(*arrays, "shard/signature");
    if (sig == nullptr || sig->bytes != Signature()) {
      return absl::FailedPreconditionError(
          absl::StrCat(path, " was written by '", sig ? sig->bytes : "?",
                       "', this shard is '", Signature(), "'"));
    }
    // Validate both tables before changing either.
    PG_RETURN_IF_ERROR(g_->ValidateState(*arrays));
    PG_RETURN_IF_ERROR(d_->ValidateState(*arrays));
    PG_RETURN_IF_ERROR(g_->RestoreState(*arrays));
    PG_RETURN_IF_ERROR(d_->RestoreState(*arrays));
    restored.path = path;
    return restored;
  }
  if (any) {
    return absl::DataLossError(
        absl::StrCat("every checkpoint is corrupt or torn: ",
                     absl::StrJoin(restored.skipped, "; ")));
  }
  return restored;
}

}  // namespace paragan
