// paragan_data: the data service (paragan.v1.DataService) of a training job:
// one seeded sampler over the dataset, batches dealt to workers with
// credit-based flow control by a DispatchPolicy (--dispatch_policy),
// generated samples relayed from G to D workers, Prometheus metrics.
//
//   paragan_data --port=0 --metrics_port=0 --dataset=fashion_mnist
//
// prints "paragan_data: listening on port <p>" and
// "paragan_data: metrics on port <m>" once serving; stops on SIGTERM/SIGINT
// (exit 0). Bad flags or a missing dataset: exit 1 with the reason.

#include <signal.h>

#include <cstdlib>
#include <iostream>
#include <limits>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/check.h"
#include "common/flags_usage.h"
#include "common/grpc_health.h"
#include "common/malloc_tuning.h"
#include "common/process_metrics.h"
#include "common/security_flags.h"
#include "common/stop_signals.h"
#include "dataloader/data_metrics.h"
#include "dataloader/data_service.h"
#include "dataloader/datasets/dataset.h"
#include "dataloader/dispatch_policy.h"
#include "grpcpp/grpcpp.h"
#include "prometheus/exposer.h"
#include "prometheus/registry.h"
#include "proto/paragan.grpc.pb.h"

ABSL_FLAG(std::string, bind_address, "0.0.0.0", "Address to listen on.");
ABSL_FLAG(int, port, 0, "gRPC port; 0 picks a free port (printed).");
ABSL_FLAG(int, metrics_port, 0,
          "Prometheus /metrics port; 0 picks a free port (printed); -1: off.");
ABSL_FLAG(std::string, dataset, "fashion_mnist",
          "fashion_mnist | folder | synthetic");
ABSL_FLAG(std::string, data_dir, "",
          "Dataset directory (fashion_mnist idx .gz files, or class "
          "sub-folders); empty: $PARAGAN_FASHION_MNIST_DIR, else "
          "/usr/share/datasets/fashion-mnist (the trainer's default).");
ABSL_FLAG(std::string, data_path, "", "Deprecated alias of --data_dir.");
ABSL_FLAG(int, resolution, 32, "Image size (folder, synthetic).");
ABSL_FLAG(int, channels, 1, "Image channels, 1 or 3 (folder, synthetic).");
ABSL_FLAG(int64_t, synthetic_size, 4096, "Images in the synthetic dataset.");
ABSL_FLAG(int, batch_size, 64, "Images per batch (one for all workers).");
ABSL_FLAG(uint64_t, seed, 0,
          "Seed of the data order (and of the synthetic images), as the "
          "trainer's --seed.");
ABSL_FLAG(int, prefetch, 8, "Batches decoded ahead on a background thread.");
ABSL_FLAG(int, max_in_flight, 64,
          "Cap on batches held: prepared + requeued + sent and not acked.");
ABSL_FLAG(int, generated_buffer, 16,
          "Generated batches kept for D-only workers (oldest dropped when "
          "full); 0: publishing off.");
ABSL_FLAG(int, load_threads, 1, "Threads decoding one batch.");
ABSL_FLAG(int, max_streams, 512,
          "StreamBatches streams open at once (a D worker holds two); one "
          "beyond is refused (RESOURCE_EXHAUSTED, counted in "
          "paragan_data_limit_refusals_total).");
ABSL_FLAG(double, max_mbit_per_s, 0,
          "Cap on the data bytes (images and labels as sent) put on the wire "
          "per second over all streams, in megabits, so data cannot starve "
          "the gradient traffic sharing the hosts' links; 0: no cap. Held "
          "back time is paragan_data_budget_wait_seconds_total.");
ABSL_FLAG(double, link_max_mbit_per_s, 0,
          "The same cap per stream (each worker's link); 0: no cap.");
ABSL_FLAG(double, budget_burst_ms, 50,
          "What an idle cap lets through at once, in milliseconds of its "
          "rate.");
ABSL_FLAG(int, max_message_bytes, 256 << 20,
          "Largest gRPC message accepted or sent (one batch is one message).");
ABSL_FLAG(double, role_report_s, 5,
          "Role auto workers: seconds between their reports to the role "
          "coordinator.");
ABSL_FLAG(double, role_lease_s, 15,
          "Role auto workers: one silent this long is forgotten and its role "
          "refilled from the others.");
ABSL_FLAG(double, role_min_dwell_s, 10,
          "Role auto workers: the least time a worker keeps a role.");
ABSL_FLAG(std::string, dispatch_policy, "round_robin",
          "Which stream gets the next batch and how many each may hold "
          "unacked (dataloader/dispatch_policy.h); the known policies are "
          "listed at the top of --help.");

namespace paragan {
namespace {

constexpr char kName[] = "paragan_data";

absl::Status CheckFlags() {
  auto range = [](const char* flag, int64_t v, int64_t lo, int64_t hi) {
    if (v >= lo && v <= hi) return absl::OkStatus();
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, " must be in [", lo, ", ", hi, "], got ", v));
  };
  PG_RETURN_IF_ERROR(range("port", absl::GetFlag(FLAGS_port), 0, 65535));
  PG_RETURN_IF_ERROR(
      range("metrics_port", absl::GetFlag(FLAGS_metrics_port), -1, 65535));
  PG_RETURN_IF_ERROR(
      range("batch_size", absl::GetFlag(FLAGS_batch_size), 1, 1 << 20));
  PG_RETURN_IF_ERROR(
      range("prefetch", absl::GetFlag(FLAGS_prefetch), 1, 1 << 16));
  PG_RETURN_IF_ERROR(
      range("max_in_flight", absl::GetFlag(FLAGS_max_in_flight), 1, 1 << 20));
  PG_RETURN_IF_ERROR(range("generated_buffer",
                           absl::GetFlag(FLAGS_generated_buffer), 0, 1 << 20));
  PG_RETURN_IF_ERROR(
      range("load_threads", absl::GetFlag(FLAGS_load_threads), 1, 256));
  PG_RETURN_IF_ERROR(
      range("max_streams", absl::GetFlag(FLAGS_max_streams), 1, 1 << 20));
  PG_RETURN_IF_ERROR(range("synthetic_size",
                           absl::GetFlag(FLAGS_synthetic_size), 1,
                           int64_t{1} << 40));
  PG_RETURN_IF_ERROR(range("max_message_bytes",
                           absl::GetFlag(FLAGS_max_message_bytes), 1 << 16,
                           std::numeric_limits<int>::max()));
  for (const auto& [name, v] :
       {std::make_pair("--role_report_s", absl::GetFlag(FLAGS_role_report_s)),
        std::make_pair("--role_lease_s", absl::GetFlag(FLAGS_role_lease_s)),
        std::make_pair("--role_min_dwell_s",
                       absl::GetFlag(FLAGS_role_min_dwell_s))}) {
    if (!(v > 0 && v < 1e6)) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, " must be in (0, 1e6) seconds, got ", v));
    }
  }
  for (const auto& [name, v] :
       {std::make_pair("--max_mbit_per_s", absl::GetFlag(FLAGS_max_mbit_per_s)),
        std::make_pair("--link_max_mbit_per_s",
                       absl::GetFlag(FLAGS_link_max_mbit_per_s))}) {
    if (!(v >= 0 && v < 1e9)) {
      return absl::InvalidArgumentError(absl::StrCat(
          name, " must be in [0, 1e9) megabits per second (0: no cap), got ",
          v));
    }
  }
  if (const double burst = absl::GetFlag(FLAGS_budget_burst_ms);
      !(burst >= 0 && burst <= 60000)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--budget_burst_ms must be in [0, 60000] milliseconds, got ", burst));
  }
  // Before the dataset is read: a typo should not cost a load.
  const std::string policy = absl::GetFlag(FLAGS_dispatch_policy);
  if (absl::Status st = CheckDispatchPolicyName(policy); !st.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--dispatch_policy=", policy, ": ", st.message()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> DataDir() {
  PG_ASSIGN_OR_RETURN(
      std::string dir,
      RenamedFlagValue("data_dir", absl::GetFlag(FLAGS_data_dir), "data_path",
                       absl::GetFlag(FLAGS_data_path)));
  if (!dir.empty()) return dir;
  const char* env = std::getenv("PARAGAN_FASHION_MNIST_DIR");
  return env != nullptr && *env != '\0' ? env
                                        : "/usr/share/datasets/fashion-mnist";
}

int Run() {
  // Before any thread starts: only the wait below receives stop requests.
  const sigset_t stop_signals = BlockStopSignals();

  if (absl::Status st = CheckFlags(); !st.ok()) {
    std::cerr << kName << ": " << st.message() << std::endl;
    return 1;
  }
  absl::StatusOr<std::string> data_dir = DataDir();
  if (!data_dir.ok()) {
    std::cerr << kName << ": " << data_dir.status().message() << std::endl;
    return 1;
  }
  DatasetSpec spec;
  spec.name = absl::GetFlag(FLAGS_dataset);
  spec.path = *data_dir;
  spec.resolution = absl::GetFlag(FLAGS_resolution);
  spec.channels = absl::GetFlag(FLAGS_channels);
  spec.synthetic_size = absl::GetFlag(FLAGS_synthetic_size);
  spec.seed = absl::GetFlag(FLAGS_seed);  // as paragan_train does
  absl::StatusOr<std::unique_ptr<Dataset>> dataset = OpenDataset(spec);
  if (!dataset.ok()) {
    std::cerr << kName << ": cannot open --dataset=" << spec.name
              << (spec.name == "synthetic" ? "" : " --data_dir=" + spec.path)
              << ": " << dataset.status().message() << std::endl;
    return 1;
  }
  const DatasetInfo info = (*dataset)->info();
  std::cout << kName << ": dataset " << info.name << ", " << info.size
            << " images " << info.channels << "x" << info.height << "x"
            << info.width << ", " << info.num_classes << " classes; batch "
            << absl::GetFlag(FLAGS_batch_size) << ", seed "
            << absl::GetFlag(FLAGS_seed) << std::endl;

  auto registry = std::make_shared<prometheus::Registry>();
  // The exposer keeps weak pointers: these must live as long as it does.
  const std::shared_ptr<prometheus::Collectable> process_metrics =
      MakeProcessCollectable();
  std::unique_ptr<DataMetrics> metrics;
  std::unique_ptr<prometheus::Exposer> exposer;
  if (absl::GetFlag(FLAGS_metrics_port) >= 0) {
    metrics = std::make_unique<DataMetrics>(registry.get());
    try {
      exposer = std::make_unique<prometheus::Exposer>(
          absl::StrCat(absl::GetFlag(FLAGS_bind_address), ":",
                       absl::GetFlag(FLAGS_metrics_port)));
    } catch (const std::exception& e) {
      std::cerr << kName << ": cannot serve metrics on --metrics_port="
                << absl::GetFlag(FLAGS_metrics_port) << ": " << e.what()
                << std::endl;
      return 1;
    }
    exposer->RegisterCollectable(registry);
    exposer->RegisterCollectable(process_metrics);
  }

  DataServiceOptions options;
  options.dataset_name = spec.name;
  options.batch_size = absl::GetFlag(FLAGS_batch_size);
  options.seed = absl::GetFlag(FLAGS_seed);
  options.prefetch = absl::GetFlag(FLAGS_prefetch);
  options.max_in_flight = absl::GetFlag(FLAGS_max_in_flight);
  options.generated_buffer = absl::GetFlag(FLAGS_generated_buffer);
  options.max_streams = absl::GetFlag(FLAGS_max_streams);
  options.load_threads = absl::GetFlag(FLAGS_load_threads);
  options.dispatch_policy = absl::GetFlag(FLAGS_dispatch_policy);
  constexpr double kBytesPerMbit = 1e6 / 8;
  options.max_bytes_per_s = absl::GetFlag(FLAGS_max_mbit_per_s) * kBytesPerMbit;
  options.link_max_bytes_per_s =
      absl::GetFlag(FLAGS_link_max_mbit_per_s) * kBytesPerMbit;
  options.budget_burst =
      absl::Milliseconds(absl::GetFlag(FLAGS_budget_burst_ms));
  absl::StatusOr<std::string> token = AuthTokenFromFlag();
  if (!token.ok()) {
    std::cerr << kName << ": " << token.status() << std::endl;
    return 2;
  }
  options.auth_token = *std::move(token);
  options.roles.report_interval =
      absl::Seconds(absl::GetFlag(FLAGS_role_report_s));
  options.roles.lease = absl::Seconds(absl::GetFlag(FLAGS_role_lease_s));
  options.roles.min_dwell =
      absl::Seconds(absl::GetFlag(FLAGS_role_min_dwell_s));
  options.roles.cooldown = options.roles.report_interval;
  options.roles.log = [](const std::string& line) {
    std::cout << kName << ": " << line << std::endl;
  };
  absl::StatusOr<std::unique_ptr<DataService>> service =
      DataService::Create(*std::move(dataset), options, metrics.get());
  if (!service.ok()) {
    std::cerr << kName << ": " << service.status().message() << std::endl;
    return 1;
  }
  std::cout << kName << ": dispatch policy " << (*service)->dispatch_policy()
            << std::endl;
  if (options.max_bytes_per_s > 0 || options.link_max_bytes_per_s > 0) {
    auto cap = [](double mbit) {
      return mbit > 0 ? absl::StrCat(mbit, " Mbit/s") : std::string("no cap");
    };
    std::cout << kName << ": data byte budget "
              << cap(absl::GetFlag(FLAGS_max_mbit_per_s)) << " in all, "
              << cap(absl::GetFlag(FLAGS_link_max_mbit_per_s))
              << " per stream (burst " << absl::GetFlag(FLAGS_budget_burst_ms)
              << " ms)" << std::endl;
  }

  const TlsFiles tls = TlsFilesFromFlags();
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials =
      ServerCredentialsFromFiles(tls);
  if (!credentials.ok()) {
    std::cerr << kName << ": " << credentials.status() << std::endl;
    return 2;
  }
  grpc::ServerBuilder builder;
  EnableHealthService(&builder);
  int port = 0;
  builder.AddListeningPort(absl::StrCat(absl::GetFlag(FLAGS_bind_address), ":",
                                        absl::GetFlag(FLAGS_port)),
                           *credentials, &port);
  DataService::ConfigureServer(&builder,
                               absl::GetFlag(FLAGS_max_message_bytes));
  builder.RegisterService(service->get());
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    std::cerr << kName
              << ": cannot listen on --port=" << absl::GetFlag(FLAGS_port)
              << std::endl;
    return 1;
  }
  MarkServing(server.get(), v1::DataService::service_full_name());
  // A launcher parses these two lines: keep them exact, and flushed.
  std::cout << kName << ": listening on port " << port << std::endl;
  if (!options.auth_token.empty()) {
    std::cout << kName
              << ": every call needs the bearer token in --auth_token_file"
              << std::endl;
  }
  if (!tls.ServerMode().empty()) {
    std::cout << kName << ": " << tls.ServerMode() << " on" << std::endl;
  }
  if (exposer) {
    std::cout << kName << ": metrics on port "
              << exposer->GetListeningPorts().at(0) << std::endl;
  }

  int sig = -1;
  while (sig <= 0) sig = sigwaitinfo(&stop_signals, nullptr);
  std::cout << kName << ": signal " << sig << ", stopping" << std::endl;
  MarkStopping(server.get());
  // Open streams end now (their workers reconnect to the next service);
  // other calls get a short grace period.
  (*service)->Shutdown();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  const DataService::Stats stats = (*service)->stats();
  service->reset();
  std::cout << kName << ": " << stats.produced << " batches produced, epoch "
            << stats.epoch << ", " << stats.requeued_total << " requeued; bye"
            << std::endl;
  return 0;
}

}  // namespace
}  // namespace paragan

int main(int argc, char** argv) {
  paragan::KeepLargeAllocationsInHeap();
  // Built at run time: the policies are whatever registered at start-up.
  paragan::SetUsage(
      absl::StrCat("ParaGAN data service. See dataloader/main.cc and "
                   "dataloader/README.md.\n"
                   "Dispatch policies (--dispatch_policy): ",
                   absl::StrJoin(paragan::DispatchPolicyNames(), ", "), "."),
      "dataloader/main.cc");
  absl::ParseCommandLine(argc, argv);
  return paragan::Run();
}
