// paragan_server: one parameter-server shard (G and D table slices) behind
// the paragan.v1.ParameterServer gRPC service, with Prometheus metrics and
// checkpoints (on an interval and on SIGTERM/SIGINT; restored on start).
//
//   paragan_init --model=dcgan32 --seed=0 --out=/tmp/ps/init.pgt
//   paragan_server --port=0 --shard_id=0 --num_shards=2
//       --init=/tmp/ps/init.pgt --checkpoint_dir=/tmp/ps --metrics_port=0
//
// prints "paragan_server: shard 0/2 listening on port <p>" (and
// "... metrics on port <m>") once serving.

#include <signal.h>
#include <time.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/check.h"
#include "common/flags_usage.h"
#include "common/grpc_health.h"
#include "common/malloc_tuning.h"
#include "common/network_init.h"
#include "common/process_metrics.h"
#include "common/security_flags.h"
#include "common/stop_signals.h"
#include "common/transport_args.h"
#include "grpcpp/grpcpp.h"
#include "prometheus/exposer.h"
#include "prometheus/registry.h"
#include "proto/paragan.grpc.pb.h"
#include "server/data_plane_server.h"
#include "server/metrics.h"
#include "server/parameter_server_service.h"
#include "server/shard.h"
#include "server/shard_handler.h"

ABSL_FLAG(std::string, bind_address, "0.0.0.0", "Address to listen on.");
ABSL_FLAG(int, port, 0, "gRPC port; 0 picks a free port (printed).");
ABSL_FLAG(int, data_plane_port, 0,
          "TCP port of the tensor data plane (Pull and Push beside gRPC, "
          "server/data_plane.h), advertised to workers when they register; "
          "0 picks a free port (printed), -1 turns it off (tensors go "
          "through gRPC). It has no TLS: with --tls_cert_file it is off.");
ABSL_FLAG(std::string, port_file, "",
          "If set, the chosen gRPC port is written to this file once serving.");
ABSL_FLAG(int, shard_id, 0, "This shard's id in [0, num_shards).");
ABSL_FLAG(int, num_shards, 1, "Number of parameter-server shards.");
ABSL_FLAG(std::string, init, "",
          "Required: the networks' file written by paragan_init (tensor "
          "layout, initial values, the model's default optimizer settings); "
          "the same file for every shard.");
ABSL_FLAG(double, g_lr, -1, "G Adam learning rate; < 0: the model's default.");
ABSL_FLAG(double, d_lr, -1, "D Adam learning rate; < 0: the model's default.");
ABSL_FLAG(std::string, betas, "",
          "Adam betas 'beta1,beta2' for both tables; empty: model default.");
ABSL_FLAG(std::string, g_betas, "", "G's Adam betas, over --betas.");
ABSL_FLAG(std::string, d_betas, "", "D's Adam betas, over --betas.");
ABSL_FLAG(double, adam_eps, -1, "Adam epsilon; < 0: the model's default.");
ABSL_FLAG(int, d_steps_per_g_step, 0,
          "D updates per G update, advertised to workers at registration "
          "(workers follow it; the server does not gate G pushes on it); 0: "
          "the model's default.");
ABSL_FLAG(std::string, staleness_policy, "accept",
          "Staleness policy of both tables unless --g_/--d_staleness_policy "
          "say otherwise: a policy registered in server/staleness_policy.h "
          "(accept, reject_above_bound, scale_by_inverse_staleness, ...; an "
          "unknown name is refused with the list).");
ABSL_FLAG(std::string, g_staleness_policy, "", "G's policy override.");
ABSL_FLAG(std::string, d_staleness_policy, "", "D's policy override.");
ABSL_FLAG(int64_t, staleness_bound, 0,
          "Largest staleness accepted by reject_above_bound.");
ABSL_FLAG(int64_t, g_staleness_bound, -1, "G's bound; < 0: --staleness_bound.");
ABSL_FLAG(int64_t, d_staleness_bound, -1, "D's bound; < 0: --staleness_bound.");
ABSL_FLAG(int, sync_workers, 0,
          "0: asynchronous. N > 0: synchronous rounds of N workers (average, "
          "then one step).");
ABSL_FLAG(bool, momentum_compensation, false,
          "Asynchronous mode: apply a gradient s versions stale with Adam's "
          "beta1 lowered by s/(1+s) (not below 0), the momentum staleness "
          "adds by itself; both tables.");
ABSL_FLAG(std::string, checkpoint_dir, "",
          "Where shard-<id>-of-<n>.pgt is written and restored from; empty: "
          "no checkpoints.");
ABSL_FLAG(int, checkpoint_interval_s, 300,
          "Seconds between checkpoints; 0: only on SIGTERM/SIGINT.");
ABSL_FLAG(int, keep_checkpoints, 3,
          "Checkpoint files kept (the newest, then .1, .2, ...); on start the "
          "newest intact one is restored, a corrupt or torn newer one "
          "skipped. At least 1.");
ABSL_FLAG(int, checkpoint_retry_s, 30,
          "After a failed interval checkpoint (a full disk), the next try "
          "comes this many seconds later instead of a whole interval.");
ABSL_FLAG(int, max_message_bytes, 16 << 20,
          "Largest gRPC message accepted or sent.");
ABSL_FLAG(int, chunk_bytes, 1 << 20, "Payload bytes per pulled chunk.");
ABSL_FLAG(int64_t, max_push_bytes, 0,
          "Largest push in float32 bytes; 0: the pushed table's size.");
ABSL_FLAG(int, max_workers, 1024,
          "Workers registered at once; a new one beyond is refused "
          "(RESOURCE_EXHAUSTED, counted in paragan_ps_limit_refusals_total) "
          "until one leaves or its lease expires. 0: no limit.");
ABSL_FLAG(int, data_plane_max_connections, 512,
          "Data-plane connections open at once; one beyond is closed at once "
          "(its client goes over gRPC) and counted.");
ABSL_FLAG(int, data_plane_max_connections_per_peer, 64,
          "Data-plane connections open at once from one client address.");
ABSL_FLAG(double, data_plane_frame_timeout_s, 30,
          "A data-plane frame (or a reply being taken) must complete within "
          "this + its bytes / --data_plane_min_bytes_per_s of its first byte, "
          "or the connection is cut and counted: a client trickling bytes "
          "cannot hold a thread.");
ABSL_FLAG(double, data_plane_min_bytes_per_s, 1 << 20,
          "See --data_plane_frame_timeout_s.");
ABSL_FLAG(int, metrics_port, -1,
          "Prometheus /metrics port; 0 picks a free port (printed); < 0: off.");
ABSL_FLAG(int, threads, 1, "CPU threads of the optimizer kernels.");
ABSL_FLAG(double, ema_decay, 0.999,
          "EMA decay of G's weights (warm-up min(decay, (1+t)/(10+t)), t = G "
          "steps before this one), pullable as table G_ema; 0: off.");
ABSL_FLAG(double, worker_lease_s, -1,
          "A registered worker silent (no register, pull or push) for this "
          "many seconds is dropped; a pending synchronous round whose missing "
          "contributors are all gone completes with what it has. 0: never; "
          "< 0: the network file's (--init) hint, which paragan_init takes "
          "from the model (a BigGAN step on a few CPU threads can take tens "
          "of seconds); 30 for files without one.");

namespace paragan {
namespace {

absl::Status Fail(const std::string& what) {
  return absl::InvalidArgumentError(what);
}

absl::StatusOr<ShardOptions> OptionsFromFlags(int* d_steps) {
  ShardOptions o;
  o.shard_id = absl::GetFlag(FLAGS_shard_id);
  o.num_shards = absl::GetFlag(FLAGS_num_shards);
  if (o.num_shards < 1 || o.shard_id < 0 || o.shard_id >= o.num_shards) {
    return Fail(absl::StrCat("need 0 <= --shard_id < --num_shards, got ",
                             o.shard_id, " and ", o.num_shards));
  }
  const std::string init = absl::GetFlag(FLAGS_init);
  if (init.empty()) {
    return Fail(
        "--init is required: the networks' file, written once per job by "
        "`paragan_init --model=<name> --seed=<s> --out=<file>`");
  }
  PG_ASSIGN_OR_RETURN(o.network, ReadNetworkInit(init));
  o.g.adam = o.network.g_adam;
  o.d.adam = o.network.d_adam;
  if (absl::GetFlag(FLAGS_g_lr) >= 0) o.g.adam.lr = absl::GetFlag(FLAGS_g_lr);
  if (absl::GetFlag(FLAGS_d_lr) >= 0) o.d.adam.lr = absl::GetFlag(FLAGS_d_lr);
  if (absl::GetFlag(FLAGS_adam_eps) >= 0) {
    o.g.adam.eps = o.d.adam.eps = absl::GetFlag(FLAGS_adam_eps);
  }
  // Both tables' betas, then each table's own (the asymmetric policy).
  for (auto [flag, value, tables] :
       {std::make_tuple("--betas", absl::GetFlag(FLAGS_betas),
                        std::vector<TableConfig*>{&o.g, &o.d}),
        std::make_tuple("--g_betas", absl::GetFlag(FLAGS_g_betas),
                        std::vector<TableConfig*>{&o.g}),
        std::make_tuple("--d_betas", absl::GetFlag(FLAGS_d_betas),
                        std::vector<TableConfig*>{&o.d})}) {
    if (value.empty()) continue;
    std::vector<std::string> parts = absl::StrSplit(value, ',');
    float b1, b2;
    if (parts.size() != 2 || !absl::SimpleAtof(parts[0], &b1) ||
        !absl::SimpleAtof(parts[1], &b2)) {
      return Fail(absl::StrCat(flag, " must be 'beta1,beta2', got ", value));
    }
    for (TableConfig* t : tables) {
      t->adam.beta1 = b1;
      t->adam.beta2 = b2;
    }
  }
  const std::string policy = absl::GetFlag(FLAGS_staleness_policy);
  for (auto [table, override_flag, bound] :
       {std::make_tuple(&o.g, absl::GetFlag(FLAGS_g_staleness_policy),
                        absl::GetFlag(FLAGS_g_staleness_bound)),
        std::make_tuple(&o.d, absl::GetFlag(FLAGS_d_staleness_policy),
                        absl::GetFlag(FLAGS_d_staleness_bound))}) {
    table->rule.staleness_policy =
        override_flag.empty() ? policy : override_flag;
    PG_RETURN_IF_ERROR(
        FindStalenessPolicy(table->rule.staleness_policy).status());
    table->rule.staleness_bound =
        bound >= 0 ? bound : absl::GetFlag(FLAGS_staleness_bound);
    table->rule.momentum_compensation =
        absl::GetFlag(FLAGS_momentum_compensation);
    table->rule.sync_workers = absl::GetFlag(FLAGS_sync_workers);
  }
  const double ema = absl::GetFlag(FLAGS_ema_decay);
  if (!(ema >= 0 && ema < 1)) {
    return Fail(absl::StrCat("--ema_decay must be in [0, 1), got ", ema));
  }
  o.g.ema_decay = static_cast<float>(ema);
  const double lease_flag = absl::GetFlag(FLAGS_worker_lease_s);
  if (std::isnan(lease_flag)) {
    return Fail("--worker_lease_s must be a number (< 0: the network file's)");
  }
  // ReadNetworkInit has checked the hint (finite, >= 0).
  const double lease = lease_flag >= 0 ? lease_flag : o.network.worker_lease_s;
  o.g.worker_lease = o.d.worker_lease =
      lease > 0 ? absl::Seconds(lease) : absl::InfiniteDuration();
  o.checkpoint_dir = absl::GetFlag(FLAGS_checkpoint_dir);
  o.keep_checkpoints = absl::GetFlag(FLAGS_keep_checkpoints);
  if (o.keep_checkpoints < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--keep_checkpoints must be at least 1, got ", o.keep_checkpoints));
  }
  o.threads = absl::GetFlag(FLAGS_threads);
  *d_steps = absl::GetFlag(FLAGS_d_steps_per_g_step) > 0
                 ? absl::GetFlag(FLAGS_d_steps_per_g_step)
                 : o.network.d_steps_per_g_step;
  return o;
}

// False when the checkpoint failed; training goes on either way, and the
// earlier checkpoint files stay as they were.
bool Checkpoint(const ParameterShard& shard, const char* why,
                ServerMetrics* metrics) {
  if (shard.checkpoint_path().empty()) return true;
  const absl::Time start = absl::Now();
  absl::Status st = shard.Checkpoint();
  if (metrics != nullptr) {
    metrics->RecordCheckpoint(
        st.ok(), absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch()));
  }
  if (st.ok()) {
    std::cout << "paragan_server: checkpoint (" << why << ") "
              << shard.checkpoint_path() << " in "
              << absl::ToDoubleMilliseconds(absl::Now() - start) << " ms"
              << std::endl;
    return true;
  }
  std::cerr << "paragan_server: checkpoint (" << why << ") failed: " << st
            << "; training goes on from memory, the previous checkpoint "
               "files are kept"
            << std::endl;
  return false;
}

int Run() {
  // Before any thread starts: only the wait below receives stop requests.
  const sigset_t stop_signals = BlockStopSignals();

  int d_steps = 1;
  absl::StatusOr<ShardOptions> options = OptionsFromFlags(&d_steps);
  if (!options.ok()) {
    std::cerr << "paragan_server: " << options.status() << std::endl;
    return 2;
  }
  const std::string model = options->network.model;
  absl::StatusOr<std::unique_ptr<ParameterShard>> shard =
      ParameterShard::Create(*std::move(options));
  if (!shard.ok()) {
    std::cerr << "paragan_server: " << shard.status() << std::endl;
    return 2;
  }
  absl::StatusOr<ParameterShard::Restored> restored =
      (*shard)->RestoreNewestIntact();
  if (!restored.ok()) {
    // Refuse to start rather than silently train from scratch.
    std::cerr << "paragan_server: cannot restore "
              << (*shard)->checkpoint_path() << ": " << restored.status()
              << std::endl;
    return 1;
  }
  for (const std::string& why : restored->skipped) {
    std::cerr << "paragan_server: skipped a checkpoint: " << why << std::endl;
  }
  const ShardOptions& so = (*shard)->options();
  ParameterTable& g = (*shard)->g();
  ParameterTable& d = (*shard)->d();
  std::cout << "paragan_server: shard " << so.shard_id << "/" << so.num_shards
            << " model=" << model << " G: " << g.specs().size() << " tensors, "
            << g.num_elements() << " floats, version " << g.version()
            << "; D: " << d.specs().size() << " tensors, " << d.num_elements()
            << " floats, version " << d.version()
            << (restored->path.empty()
                    ? std::string()
                    : absl::StrCat(" (restored from checkpoint ",
                                   restored->path, ")"))
            << "; EMA of G "
            << (g.has_ema() ? absl::StrCat("decay ", g.config().ema_decay)
                            : std::string("off"))
            << "; worker lease "
            << (g.config().worker_lease == absl::InfiniteDuration()
                    ? std::string("off")
                    : absl::StrCat(
                          absl::ToDoubleSeconds(g.config().worker_lease), " s"))
            << std::endl;

  auto registry = std::make_shared<prometheus::Registry>();
  std::unique_ptr<ServerMetrics> metrics;
  std::unique_ptr<prometheus::Exposer> exposer;
  // The exposer keeps weak pointers: these must live as long as it does.
  const std::shared_ptr<prometheus::Collectable> process_metrics =
      MakeProcessCollectable();
  if (absl::GetFlag(FLAGS_metrics_port) >= 0) {
    metrics = std::make_unique<ServerMetrics>(registry.get(), so.shard_id);
    // Checkpoint age counts from the start until the first one is written.
    if (!(*shard)->checkpoint_path().empty()) {
      metrics->RecordCheckpoint(
          true, absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch()));
    }
    try {
      exposer = std::make_unique<prometheus::Exposer>(
          absl::StrCat(absl::GetFlag(FLAGS_bind_address), ":",
                       absl::GetFlag(FLAGS_metrics_port)));
    } catch (const std::exception& e) {
      std::cerr << "paragan_server: cannot serve metrics on "
                << absl::GetFlag(FLAGS_bind_address) << ":"
                << absl::GetFlag(FLAGS_metrics_port) << ": " << e.what()
                << " (--metrics_port=-1: no metrics)" << std::endl;
      return 1;
    }
    exposer->RegisterCollectable(registry);
    exposer->RegisterCollectable(process_metrics);
  }

  ServiceOptions sopts;
  sopts.shard_id = so.shard_id;
  sopts.num_shards = so.num_shards;
  sopts.model = model;
  sopts.d_steps_per_g_step = d_steps;
  sopts.chunk_bytes = absl::GetFlag(FLAGS_chunk_bytes);
  sopts.max_push_bytes = absl::GetFlag(FLAGS_max_push_bytes);
  sopts.max_workers = absl::GetFlag(FLAGS_max_workers);
  if (sopts.max_workers < 0) {
    std::cerr << "paragan_server: --max_workers must be >= 0" << std::endl;
    return 2;
  }
  absl::StatusOr<std::string> token = AuthTokenFromFlag();
  if (!token.ok()) {
    std::cerr << "paragan_server: " << token.status() << std::endl;
    return 2;
  }
  sopts.auth_token = *std::move(token);
  const int max_message = absl::GetFlag(FLAGS_max_message_bytes);
  if (sopts.chunk_bytes < 4 || sopts.chunk_bytes + 65536 > max_message) {
    std::cerr << "paragan_server: need 4 <= --chunk_bytes <= "
                 "--max_message_bytes - 65536"
              << std::endl;
    return 2;
  }
  const TlsFiles tls = TlsFilesFromFlags();
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials =
      ServerCredentialsFromFiles(tls);
  if (!credentials.ok()) {
    std::cerr << "paragan_server: " << credentials.status() << std::endl;
    return 2;
  }
  const bool tls_on = !tls.ServerMode().empty();
  if (tls_on && absl::GetFlag(FLAGS_data_plane_port) > 0) {
    std::cerr << "paragan_server: --data_plane_port has no TLS: with "
                 "--tls_cert_file tensors go over gRPC/TLS only (drop "
                 "--data_plane_port)"
              << std::endl;
    return 2;
  }
  ShardHandler handler(sopts, (*shard)->tables(), metrics.get());
  ParameterServerService service(&handler);

  grpc::ServerBuilder builder;
  EnableHealthService(&builder);
  int port = 0;
  builder.AddListeningPort(absl::StrCat(absl::GetFlag(FLAGS_bind_address), ":",
                                        absl::GetFlag(FLAGS_port)),
                           *credentials, &port);
  builder.SetMaxReceiveMessageSize(max_message);
  builder.SetMaxSendMessageSize(max_message);
  SetTensorTransportArgs(&builder);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    std::cerr << "paragan_server: cannot listen on port "
              << absl::GetFlag(FLAGS_port) << std::endl;
    return 1;
  }
  MarkServing(server.get(), v1::ParameterServer::service_full_name());
  std::cout << "paragan_server: shard " << so.shard_id << "/" << so.num_shards
            << " listening on port " << port << std::endl;
  if (!sopts.auth_token.empty()) {
    std::cout << "paragan_server: every call"
              << (tls_on ? "" : " and data-plane connection")
              << " needs the bearer token in --auth_token_file" << std::endl;
  }
  if (tls_on) {
    std::cout << "paragan_server: " << tls.ServerMode()
              << " on; no data plane (tensors over gRPC/TLS)" << std::endl;
  }
  std::unique_ptr<DataPlaneServer> data_plane;
  if (!tls_on && absl::GetFlag(FLAGS_data_plane_port) >= 0) {
    DataPlaneServer::Options dopts;
    dopts.bind_address = absl::GetFlag(FLAGS_bind_address);
    dopts.port = absl::GetFlag(FLAGS_data_plane_port);
    dopts.max_connections = absl::GetFlag(FLAGS_data_plane_max_connections);
    dopts.max_connections_per_peer =
        absl::GetFlag(FLAGS_data_plane_max_connections_per_peer);
    dopts.frame_timeout =
        absl::Seconds(absl::GetFlag(FLAGS_data_plane_frame_timeout_s));
    dopts.min_bytes_per_s = absl::GetFlag(FLAGS_data_plane_min_bytes_per_s);
    absl::StatusOr<std::unique_ptr<DataPlaneServer>> dp =
        DataPlaneServer::Start(dopts, &handler);
    if (!dp.ok()) {
      std::cerr << "paragan_server: --data_plane_port: " << dp.status()
                << std::endl;
      return 1;
    }
    data_plane = *std::move(dp);
    std::cout << "paragan_server: shard " << so.shard_id
              << " data plane on port " << data_plane->port() << std::endl;
  }
  if (exposer) {
    std::cout << "paragan_server: shard " << so.shard_id << " metrics on port "
              << exposer->GetListeningPorts().at(0) << std::endl;
  }
  const std::string port_file = absl::GetFlag(FLAGS_port_file);
  if (!port_file.empty()) {
    const std::string tmp = port_file + ".tmp";
    std::ofstream(tmp) << port << "\n";
    std::rename(tmp.c_str(), port_file.c_str());
  }

  // Lease reaper: about once a second (faster for sub-second test leases).
  absl::Notification stop_reaper;
  std::thread reaper;
  if (so.g.worker_lease != absl::InfiniteDuration()) {
    const absl::Duration period =
        std::min(absl::Seconds(1), so.g.worker_lease / 4);
    reaper = std::thread([&handler, &stop_reaper, period] {
      while (!stop_reaper.WaitForNotificationWithTimeout(period)) {
        handler.ExpireLeases();
      }
    });
  }

  const int interval = absl::GetFlag(FLAGS_checkpoint_interval_s);
  const int retry = std::max(1, absl::GetFlag(FLAGS_checkpoint_retry_s));
  int sig = 0;
  int wait_s = interval;
  while (sig <= 0) {
    if (interval > 0) {
      timespec timeout{wait_s, 0};
      sig = sigtimedwait(&stop_signals, nullptr, &timeout);
      if (sig < 0 && errno == EAGAIN) {
        wait_s = Checkpoint(**shard, "interval", metrics.get())
                     ? interval
                     : std::min(interval, retry);
      }
    } else {
      sig = sigwaitinfo(&stop_signals, nullptr);
    }
  }
  std::cout << "paragan_server: signal " << sig << ", stopping" << std::endl;
  MarkStopping(server.get());
  // No push can land after Shutdown returns: the final checkpoint is the
  // last state.
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  if (data_plane) data_plane->Shutdown();
  stop_reaper.Notify();
  if (reaper.joinable()) reaper.join();
  Checkpoint(**shard, "exit", metrics.get());
  std::cout << "paragan_server: G version " << g.version() << ", D version "
            << d.version() << "; bye" << std::endl;
  return 0;
}

}  // namespace
}  // namespace paragan

int main(int argc, char** argv) {
  paragan::KeepLargeAllocationsInHeap();
  paragan::SetUsage("One ParaGAN parameter-server shard. See server/main.cc.",
                    "server/main.cc");
  absl::ParseCommandLine(argc, argv);
  return paragan::Run();
}
