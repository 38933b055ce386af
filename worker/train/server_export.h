#ifndef PARAGAN_WORKER_TRAIN_SERVER_EXPORT_H_
#define PARAGAN_WORKER_TRAIN_SERVER_EXPORT_H_

// Writes a distributed run's outputs from its parameter-server shards: pulls
// G, D and G_ema (the servers' EMA of G) from every shard, loads them into a
// GanTrainer and writes grid_<G version>.png, samples.npy/.png (+
// samples_labels.npy for conditional models) and checkpoint.pgt, the files a
// single-process run leaves. paragan_sample --ps runs it for the local
// launcher, which so links no model code itself.

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/tls.h"
#include "server/ps_client.h"
#include "worker/engine/backend.h"
#include "worker/train/gan_trainer.h"

namespace paragan {

// The three tables, each merged over every shard (name -> tensor).
struct ServerTables {
  std::map<std::string, PulledTensor> g, d, g_ema;
  int64_t g_version = 0, d_version = 0;  // max over the shards
  bool have_ema = false;
  // Why g_ema is missing (have_ema false): the G_ema pull's error.
  std::string no_ema_reason;
};

// Pulls G, D and G_ema from the shards at `ps` ("host:port" each). A missing
// EMA (shards run with --ema_decay=0) is not an error: have_ema is false and
// the outputs come from G. `worker_id` is sent with the pulls (the shards
// need no registration to be read).
// `with_discriminator` false skips D (left empty; an evaluator needs only G).
absl::StatusOr<ServerTables> PullServerTables(
    const std::vector<std::string>& ps, absl::Duration timeout,
    const std::string& worker_id = "paragan_sample",
    bool with_discriminator = true, const ClientSecurity& security = {});

// A trainer built from DefaultTrainerConfig(model) (batch size and seed as
// given) with G, D (when pulled; otherwise D keeps its initialization) and the
// EMA generator (G_ema weights with G's buffers, or G when the shards keep no
// EMA) loaded from `tables`. Every tensor must match the model's shape.
absl::StatusOr<std::unique_ptr<GanTrainer>> TrainerFromServerTables(
    const std::string& model, int batch_size, uint64_t seed,
    const ServerTables& tables, Backend* backend);

struct ServerExportOptions {
  std::vector<std::string> ps;  // every shard's "host:port"
  std::string model = "dcgan32";
  std::string out_dir;
  int64_t num_samples = 1000;
  // The trainer's seed: its RNG state is what checkpoint.pgt records (the
  // weights all come from the shards).
  uint64_t trainer_seed = 0;
  // z of samples.npy/.png (the grid uses the trainer's fixed z).
  uint64_t samples_seed = 1;
  int batch_size = 64;
  int threads = 1;                             // CPU threads (< 1: 1)
  absl::Duration timeout = absl::Seconds(60);  // per pull
  ClientSecurity security;  // the shards' token and TLS (common/tls.h)
};

// Loads `tables` into a trainer built from DefaultTrainerConfig(o.model) and
// writes the outputs into o.out_dir (which must exist). Returns the paths
// written, in order.
absl::StatusOr<std::vector<std::string>> WriteServerOutputs(
    const ServerExportOptions& o, const ServerTables& tables);

// PullServerTables + WriteServerOutputs; says on stderr when the shards keep
// no EMA of G.
absl::StatusOr<std::vector<std::string>> ExportFromServers(
    const ServerExportOptions& o);

}  // namespace paragan

#endif  // PARAGAN_WORKER_TRAIN_SERVER_EXPORT_H_
