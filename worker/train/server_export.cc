#include "worker/train/server_export.h"

#include <algorithm>
#include <iostream>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/check.h"
#include "common/tensor.h"
#include "common/tensor_io.h"
#include "server/table_names.h"
#include "worker/engine/backend.h"
#include "worker/engine/params.h"
#include "worker/train/gan_trainer.h"
#include "worker/train/training_run.h"

namespace paragan {
namespace {

// Pulls `table` from every shard into one name -> tensor map.
absl::StatusOr<std::map<std::string, PulledTensor>> PullAll(
    std::vector<std::unique_ptr<ParameterServerClient>>& clients,
    const std::vector<std::string>& ps, const std::string& table,
    const std::string& worker_id, int64_t* version) {
  std::map<std::string, PulledTensor> out;
  *version = -1;
  for (size_t i = 0; i < clients.size(); ++i) {
    absl::StatusOr<PulledTable> p = clients[i]->Pull(table, worker_id);
    if (!p.ok()) {
      return absl::Status(p.status().code(),
                          absl::StrCat("pull ", table, " from shard ", i, " (",
                                       ps[i], "): ", p.status().message()));
    }
    if (p->version >= 0) *version = std::max(*version, p->version);
    for (auto& [name, t] : p->tensors) out[name] = std::move(t);
  }
  return out;
}

// Copies pulled tensors into a store; every tensor of the store must be
// covered (params from `params`, buffers from `buffers`).
absl::Status Load(const std::map<std::string, PulledTensor>& params,
                  const std::map<std::string, PulledTensor>& buffers,
                  ParamStore* store, const std::string& what) {
  Backend* b = store->backend();
  auto put = [&](const std::map<std::string, PulledTensor>& from,
                 const std::string& name, Tensor* t) -> absl::Status {
    auto it = from.find(name);
    if (it == from.end()) {
      return absl::DataLossError(
          absl::StrCat(what, ": no shard returned tensor '", name, "'"));
    }
    if (it->second.shape != t->shape()) {
      return absl::DataLossError(
          absl::StrCat(what, ": tensor '", name, "' has shape ",
                       ShapeToString(it->second.shape), ", the model has ",
                       ShapeToString(t->shape())));
    }
    if (t->numel() > 0) b->Upload(it->second.values.data(), t);
    return absl::OkStatus();
  };
  for (Param& p : store->params()) {
    PG_RETURN_IF_ERROR(put(params, p.name, &p.value));
  }
  for (auto& [name, t] : store->buffers()) {
    PG_RETURN_IF_ERROR(put(buffers, name, t));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ServerTables> PullServerTables(
    const std::vector<std::string>& ps, absl::Duration timeout,
    const std::string& worker_id, bool with_discriminator,
    const ClientSecurity& security) {
  if (ps.empty()) {
    return absl::InvalidArgumentError("no parameter-server addresses");
  }
  std::vector<std::unique_ptr<ParameterServerClient>> clients;
  for (const std::string& target : ps) {
    if (target.empty()) {
      return absl::InvalidArgumentError(
          "empty parameter-server address in the list");
    }
    ParameterServerClient::Options co;
    co.timeout = timeout;
    co.security = security;
    // gRPC only, as the launcher pulled: a one-off read needs no data plane
    // (that would need a Register first).
    clients.push_back(std::make_unique<ParameterServerClient>(
        ParameterServerClient::Connect(target, co.max_message_bytes, security),
        co));
  }
  ServerTables t;
  PG_ASSIGN_OR_RETURN(
      t.g, PullAll(clients, ps, kGeneratorTable, worker_id, &t.g_version));
  if (with_discriminator) {
    PG_ASSIGN_OR_RETURN(t.d, PullAll(clients, ps, kDiscriminatorTable,
                                     worker_id, &t.d_version));
  }
  int64_t v = 0;
  absl::StatusOr<std::map<std::string, PulledTensor>> ema =
      PullAll(clients, ps, kGeneratorEmaTable, worker_id, &v);
  if (ema.ok()) {
    t.g_ema = std::move(*ema);
    t.have_ema = true;
  } else {
    t.no_ema_reason = std::string(ema.status().message());
  }
  return t;
}

absl::StatusOr<std::unique_ptr<GanTrainer>> TrainerFromServerTables(
    const std::string& model_name, int batch_size, uint64_t seed,
    const ServerTables& f, Backend* backend) {
  TrainerConfig tc = DefaultTrainerConfig(model_name);
  tc.batch_size = batch_size;
  tc.seed = seed;
  PG_ASSIGN_OR_RETURN(std::unique_ptr<GanTrainer> trainer,
                      GanTrainer::Create(tc, backend));
  GanModel& model = trainer->model();
  PG_RETURN_IF_ERROR(Load(f.g, f.g, &model.generator(), "G"));
  if (!f.d.empty()) {
    PG_RETURN_IF_ERROR(Load(f.d, f.d, &model.discriminator(), "D"));
  }
  // The EMA generator: EMA weights, G's buffers (as the trainer keeps them).
  PG_RETURN_IF_ERROR(Load(f.have_ema ? f.g_ema : f.g, f.g,
                          &trainer->ema_model().generator(), "G_ema"));
  return trainer;
}

absl::StatusOr<std::vector<std::string>> WriteServerOutputs(
    const ServerExportOptions& o, const ServerTables& f) {
  std::vector<std::string> written;
  std::unique_ptr<Backend> backend = MakeCpuBackend(std::max(1, o.threads));
  PG_ASSIGN_OR_RETURN(
      std::unique_ptr<GanTrainer> trainer,
      TrainerFromServerTables(o.model, o.batch_size, o.trainer_seed, f,
                              backend.get()));
  GanModel& model = trainer->model();
  const std::string grid =
      absl::StrFormat("%s/grid_%06d.png", o.out_dir, f.g_version);
  PG_RETURN_IF_ERROR(WriteGrid(trainer.get(), FixedGridZ(*trainer), grid));
  written.push_back(grid);
  PG_RETURN_IF_ERROR(WriteSamples(trainer.get(), o.num_samples, o.samples_seed,
                                  o.out_dir + "/samples"));
  written.push_back(o.out_dir + "/samples.npy");
  written.push_back(o.out_dir + "/samples.png");
  if (model.conditional()) {
    written.push_back(o.out_dir + "/samples_labels.npy");
  }
  // One file paragan_sample loads: weights, buffers and EMA from the shards
  // (Adam moments and counters are those of a fresh trainer: resume training
  // from the shard checkpoints, not from this file).
  PG_ASSIGN_OR_RETURN(std::vector<NamedArray> arrays, trainer->SaveState());
  PG_RETURN_IF_ERROR(
      WriteCheckpoint(o.out_dir + "/checkpoint.pgt", std::move(arrays)));
  written.push_back(o.out_dir + "/checkpoint.pgt");
  return written;
}

absl::StatusOr<std::vector<std::string>> ExportFromServers(
    const ServerExportOptions& o) {
  // Checked before pulling (WriteSamples checks too, but after the grid).
  if (o.out_dir.empty())
    return absl::InvalidArgumentError("no output directory");
  if (o.num_samples < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_samples must be >= 1, got ", o.num_samples));
  }
  PG_ASSIGN_OR_RETURN(
      ServerTables tables,
      PullServerTables(o.ps, o.timeout, "paragan_sample",
                       /*with_discriminator=*/true, o.security));
  if (!tables.have_ema) {
    std::cerr << "warning: no EMA of G on the shards (" << tables.no_ema_reason
              << "): samples come from G itself" << std::endl;
  }
  return WriteServerOutputs(o, tables);
}

}  // namespace paragan
