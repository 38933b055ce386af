// paragan_worker: one distributed training worker. It pulls G and D from the
// parameter servers, computes gradients with the single-process trainer's
// math, and pushes them back (worker.h).
//
//   paragan_worker --ps=host:7001,host:7002 --model=dcgan32 --steps=0
//       --dataset=fashion_mnist --data_dir=/usr/share/datasets/fashion-mnist
//
// Prints "paragan_worker: <id> registered with N shards", optionally
// "paragan_worker: metrics on port M" (and writes M to --metrics_port_file),
// one "progress ..." line every --log_every G steps, and
// "paragan_worker: <id> done after S steps".
// SIGTERM/SIGINT: stops within a few seconds with exit status 0.

#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "common/flags_usage.h"
#include "common/malloc_tuning.h"
#include "common/process_metrics.h"
#include "common/security_flags.h"
#include "common/stop_signals.h"
#include "dataloader/datasets/dataset.h"
#include "prometheus/exposer.h"
#include "prometheus/registry.h"
#include "server/table_names.h"
#include "worker/distributed/batch_provider.h"
#include "worker/distributed/data_service_provider.h"
#include "worker/distributed/worker.h"
#include "worker/distributed/worker_metrics.h"
#include "worker/engine/model_registry.h"

ABSL_FLAG(std::string, worker_id, "", "Worker id; empty: <hostname>-<pid>.");
ABSL_FLAG(std::string, ps, "",
          "Parameter servers, comma-separated host:port; index = shard id.");
ABSL_FLAG(std::string, data, "",
          "Data service host:port; empty: read the dataset locally "
          "(--dataset, --data_dir).");
ABSL_FLAG(std::string, dataset, "fashion_mnist",
          "Local dataset: fashion_mnist | folder | synthetic.");
ABSL_FLAG(std::string, data_dir, "/usr/share/datasets/fashion-mnist",
          "Local dataset directory (as paragan_train's --data_dir).");
ABSL_FLAG(std::string, data_path, "/usr/share/datasets/fashion-mnist",
          "Deprecated alias of --data_dir.");
ABSL_FLAG(int64_t, synthetic_size, 4096, "Images in the synthetic dataset.");
ABSL_FLAG(int, channels, 1, "Image channels for folder and synthetic data.");
ABSL_FLAG(int64_t, data_seed, -1,
          "Seed of the synthetic dataset's content; < 0: --seed (as "
          "paragan_train).");
ABSL_FLAG(std::string, model, "dcgan32", paragan::ModelFlagHelp());
ABSL_FLAG(std::string, role, "both",
          "both: D and G steps in one loop (the coupled schedule); g_only / "
          "d_only: the decoupled schedule's G and D workers, which trade "
          "samples through the data service (--data required); auto: the "
          "data service's role coordinator assigns G or D from the measured "
          "step rates and moves workers between roles.");
ABSL_FLAG(int64_t, steps, 0,
          "Steps of the role this worker runs (G steps; D steps for "
          "d_only); 0: until SIGTERM.");
ABSL_FLAG(int64_t, max_sample_age, 4,
          "d_only: skip generated batches more than this many G versions "
          "behind the newest one published; < 0: no bound.");
ABSL_FLAG(std::string, sample_dtype, "float32",
          "g_only: how published samples travel to D workers: float32 "
          "(exact), bfloat16 (half the bytes) or uint8 (a quarter; the real "
          "images' resolution).");
ABSL_FLAG(int64_t, max_g_lead, 8,
          "g_only: a G step waits while G is more than this many D updates "
          "ahead of the D:G ratio; < 0: never waits.");
ABSL_FLAG(int, batch_size, 64, "Images per D and G step.");
ABSL_FLAG(int, threads, 2, "CPU threads of the compute backend.");
ABSL_FLAG(std::string, device, "cpu", "cpu | cuda.");
ABSL_FLAG(std::string, gpu_layout, "auto",
          "--device=cuda: convolution layout, nchw | nhwc | auto (timed per "
          "shape).");
ABSL_FLAG(std::string, gpu_precision, "tf32",
          "--device=cuda: fp32 | tf32 | bf16 | auto (timed per shape).");
ABSL_FLAG(std::string, cpu_layout, "auto",
          "CPU convolution layout: auto | blocked | nchw.");
ABSL_FLAG(uint64_t, seed, 0,
          "Seed of z draws and of the local data order; give each worker its "
          "own. Initial weights come from the servers.");
ABSL_FLAG(int, metrics_port, -1,
          "Prometheus /metrics port; 0 picks a free port (printed); -1: off.");
ABSL_FLAG(std::string, metrics_bind, "0.0.0.0", "Metrics listen address.");
ABSL_FLAG(std::string, metrics_port_file, "",
          "If set (and --metrics_port >= 0), the metrics port is written to "
          "this file once the worker has registered with every shard: what "
          "a launcher waits for and scrapes.");
ABSL_FLAG(int64_t, log_every, 50, "A progress line every N G steps.");
ABSL_FLAG(std::string, push_dtype, "float32", "float32 | bfloat16.");
ABSL_FLAG(std::string, g_push_dtype, "",
          "G's pushes: float32 | bfloat16; empty: --push_dtype.");
ABSL_FLAG(std::string, d_push_dtype, "",
          "D's pushes: float32 | bfloat16; empty: --push_dtype.");
ABSL_FLAG(int, d_steps, 0,
          "D steps per G step; 0: the servers' d_steps_per_g_step.");
ABSL_FLAG(double, max_retry_seconds, 60,
          "Give up on an unreachable shard after this many seconds.");
ABSL_FLAG(double, rpc_timeout_s, 20, "Deadline of one RPC.");
ABSL_FLAG(std::string, push_journal, "",
          "Appends a line per push sent and per answer to this file, for "
          "checking exactly-once application from outside (tests/chaos); "
          "empty: none.");
ABSL_FLAG(bool, data_plane, true,
          "Move tensors over each shard's data plane (plain TCP beside gRPC, "
          "server/data_plane.h) when the shard offers one; false: gRPC only.");
ABSL_FLAG(double, simulate_d_step_ms, 0,
          "Scaling measurements: every D step waits this long instead of "
          "computing (with --simulate_g_step_ms; both 0: real compute). "
          "Pushes, pulls, data and samples stay real; the gradients are "
          "zero, so the model does not train.");
ABSL_FLAG(double, simulate_g_step_ms, 0,
          "Scaling measurements: every G step waits this long instead of "
          "computing (see --simulate_d_step_ms).");
ABSL_FLAG(bool, overlap, true,
          "Run pushes and pulls in the background while the other table's "
          "gradients are computed (asynchronous mode).");

namespace paragan {
namespace {

std::atomic<bool> g_stop{false};
std::atomic<Worker*> g_worker{nullptr};
// Held while the worker leaves the job or is destroyed: the signal thread
// may leave for it while the main thread finishes.
std::mutex g_leave_mu;
std::mutex g_print_mu;
bool g_done_printed = false;

// The last lines, once: where time went, and "done after S steps".
void PrintDone(const std::string& id, bool with_timings) {
  std::lock_guard<std::mutex> lock(g_print_mu);
  if (g_done_printed) return;
  g_done_printed = true;
  Worker* w = g_worker.load();
  if (w != nullptr && with_timings && w->timings().wall > 0) {
    const WorkerTimings& t = w->timings();
    std::printf(
        "paragan_worker: %s time: wall %.2f s, compute %.2f s, batch wait "
        "%.2f s, communication %.2f s (push %.2f, pull %.2f) of which "
        "exposed %.2f s (%.0f%% hidden)\n",
        id.c_str(), t.wall, t.compute, t.batch_wait, t.comm, t.push, t.pull,
        t.exposed_comm,
        t.comm > 0 ? 100.0 * (1.0 - std::min(1.0, t.exposed_comm / t.comm))
                   : 0.0);
  }
  if (w != nullptr && with_timings) {
    const Worker::DecoupledStats& d = w->decoupled_stats();
    if (d.published > 0 || d.gate_waits > 0) {
      std::printf(
          "paragan_worker: %s published %lld generated batches; %lld G "
          "steps waited %.2f s in total for D\n",
          id.c_str(), static_cast<long long>(d.published),
          static_cast<long long>(d.gate_waits), w->timings().d_gate_wait);
    }
    if (d.fakes_used > 0 || d.fakes_skipped > 0) {
      std::printf(
          "paragan_worker: %s trained on %lld generated batches (mean age "
          "%.2f, oldest %lld G versions), skipped %lld as too old, stalled "
          "%lld times for %.2f s in total\n",
          id.c_str(), static_cast<long long>(d.fakes_used),
          d.fakes_used > 0 ? d.sample_age_sum / d.fakes_used : 0.0,
          static_cast<long long>(d.max_sample_age),
          static_cast<long long>(d.fakes_skipped),
          static_cast<long long>(d.stalls), w->timings().fake_wait);
    }
  }
  if (w != nullptr) {
    // What each shard accepted from this worker (async: applied), so a
    // run's pushes can be accounted against the shards' versions.
    std::string by_shard;
    for (const char* table : {kDiscriminatorTable, kGeneratorTable}) {
      absl::StrAppend(&by_shard, " ", table, "=",
                      absl::StrJoin(w->session().AcceptedPushes(table), ","));
    }
    std::printf("paragan_worker: %s accepted pushes by shard:%s\n", id.c_str(),
                by_shard.c_str());
  }
  std::printf("paragan_worker: %s done after %lld steps\n", id.c_str(),
              static_cast<long long>(w != nullptr ? w->steps_done() : 0));
  std::fflush(stdout);
}

// SIGTERM/SIGINT (blocked in every thread, received here): ask the run to
// stop between steps; if the process is still alive 3.5 s later (an RPC or
// a retry in flight, or still registering), leave without waiting for it.
void WatchSignals(sigset_t signals, std::string id) {
  int sig = 0;
  while (sigwait(&signals, &sig) != 0) {
  }
  g_stop = true;
  std::this_thread::sleep_for(std::chrono::milliseconds(3500));
  std::printf("paragan_worker: %s abandoning the current step\n", id.c_str());
  {
    // Its push in flight, if it lands after this, is refused.
    std::lock_guard<std::mutex> lock(g_leave_mu);
    if (Worker* w = g_worker.load()) w->Leave(absl::Seconds(1));
  }
  PrintDone(id, /*with_timings=*/false);
  std::_Exit(0);
}

int Fail(const std::string& msg, int code = 2) {
  std::cerr << "paragan_worker: " << msg << std::endl;
  return code;
}

int Run() {
  // Before any thread starts: only the wait below receives stop requests.
  const sigset_t stop_signals = BlockStopSignals();

  WorkerOptions o;
  o.worker_id = absl::GetFlag(FLAGS_worker_id);
  if (o.worker_id.empty()) o.worker_id = DefaultWorkerId();
  for (absl::string_view p :
       absl::StrSplit(absl::GetFlag(FLAGS_ps), ',', absl::SkipWhitespace())) {
    o.ps.emplace_back(p);
  }
  if (o.ps.empty()) return Fail("--ps is required (host:port,...)");
  std::thread(WatchSignals, stop_signals, o.worker_id).detach();
  const std::string role = absl::GetFlag(FLAGS_role);
  if (role == "both") {
    o.role = v1::BOTH;
  } else if (role == "g_only") {
    o.role = v1::G_ONLY;
  } else if (role == "d_only") {
    o.role = v1::D_ONLY;
  } else if (role == "auto") {
    o.role = v1::BOTH;  // registers so: it may push either table
    o.auto_role = true;
  } else {
    return Fail(absl::StrCat("unknown --role=", role,
                             " (both, g_only, d_only or auto)"));
  }
  o.max_sample_age = absl::GetFlag(FLAGS_max_sample_age);
  o.max_g_lead = absl::GetFlag(FLAGS_max_g_lead);
  o.model = absl::GetFlag(FLAGS_model);
  o.steps = absl::GetFlag(FLAGS_steps);
  o.batch_size = absl::GetFlag(FLAGS_batch_size);
  o.threads = absl::GetFlag(FLAGS_threads);
  o.device = absl::GetFlag(FLAGS_device);
  absl::StatusOr<CpuConvLayout> layout =
      ParseCpuConvLayout(absl::GetFlag(FLAGS_cpu_layout));
  if (!layout.ok()) return Fail(std::string(layout.status().message()));
  o.cpu_layout = *layout;
  absl::StatusOr<GpuConvLayout> gpu_layout =
      ParseGpuConvLayout(absl::GetFlag(FLAGS_gpu_layout));
  if (!gpu_layout.ok()) {
    return Fail(absl::StrCat("--gpu_layout: ", gpu_layout.status().message()));
  }
  o.gpu_layout = *gpu_layout;
  absl::StatusOr<GpuPrecision> precision =
      ParseGpuPrecision(absl::GetFlag(FLAGS_gpu_precision));
  if (!precision.ok()) {
    return Fail(
        absl::StrCat("--gpu_precision: ", precision.status().message()));
  }
  o.gpu_precision = *precision;
  o.seed = absl::GetFlag(FLAGS_seed);
  o.log_every = absl::GetFlag(FLAGS_log_every);
  // uint8 is for generated images only (gradients never travel as it).
  auto parse_dtype = [](const char* flag, const std::string& value,
                        v1::DType* out, bool uint8 = false) -> absl::Status {
    if (value == "float32") {
      *out = v1::FLOAT32;
    } else if (value == "bfloat16") {
      *out = v1::BFLOAT16;
    } else if (uint8 && value == "uint8") {
      *out = v1::UINT8;
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          flag, " must be ",
          uint8 ? "float32, bfloat16 or uint8" : "float32 or bfloat16",
          ", got '", value, "'"));
    }
    return absl::OkStatus();
  };
  if (absl::Status st = parse_dtype(
          "--push_dtype", absl::GetFlag(FLAGS_push_dtype), &o.push_dtype);
      !st.ok()) {
    return Fail(std::string(st.message()));
  }
  v1::DType sample_dtype = v1::FLOAT32;
  if (absl::Status st =
          parse_dtype("--sample_dtype", absl::GetFlag(FLAGS_sample_dtype),
                      &sample_dtype, /*uint8=*/true);
      !st.ok()) {
    return Fail(std::string(st.message()));
  }
  for (auto [flag, value, table] :
       {std::make_tuple("--g_push_dtype", absl::GetFlag(FLAGS_g_push_dtype),
                        "G"),
        std::make_tuple("--d_push_dtype", absl::GetFlag(FLAGS_d_push_dtype),
                        "D")}) {
    if (value.empty()) continue;
    if (absl::Status st =
            parse_dtype(flag, value, &o.push_dtype_by_table[table]);
        !st.ok()) {
      return Fail(std::string(st.message()));
    }
  }
  o.d_steps = absl::GetFlag(FLAGS_d_steps);
  o.simulated.d_step =
      absl::Microseconds(1000 * absl::GetFlag(FLAGS_simulate_d_step_ms));
  o.simulated.g_step =
      absl::Microseconds(1000 * absl::GetFlag(FLAGS_simulate_g_step_ms));
  o.overlap = absl::GetFlag(FLAGS_overlap);
  o.data_plane = absl::GetFlag(FLAGS_data_plane);
  o.retry.max_total = absl::Seconds(absl::GetFlag(FLAGS_max_retry_seconds));
  o.rpc_timeout = absl::Seconds(absl::GetFlag(FLAGS_rpc_timeout_s));
  o.push_journal = absl::GetFlag(FLAGS_push_journal);
  if (o.steps < 0 || o.batch_size < 1 || o.log_every < 0) {
    return Fail("need --steps >= 0, --batch_size >= 1, --log_every >= 0");
  }

  Worker::Exchange exchange;
  std::unique_ptr<BatchProvider>& batches = exchange.batches;
  const std::string data_address = absl::GetFlag(FLAGS_data);
  const double max_retry_s = absl::GetFlag(FLAGS_max_retry_seconds);
  absl::StatusOr<ClientSecurity> security = ClientSecurityFromFlags();
  if (!security.ok()) return Fail(security.status().ToString());
  o.security = *security;
  if (security->tls_on() && o.data_plane) {
    std::cout << "paragan_worker: TLS on: tensors over gRPC/TLS (the shards' "
                 "data planes have no TLS)"
              << std::endl;
  }
  const DataServiceEndpoint data_service{data_address, *security};
  if ((o.role != v1::BOTH || o.auto_role) && data_address.empty()) {
    return Fail(absl::StrCat("--role=", role,
                             " trades samples through the data service: "
                             "give its address with --data"));
  }
  if (!data_address.empty()) {
    absl::StatusOr<std::unique_ptr<DataServiceProvider>> data =
        DataServiceProvider::Connect(data_service, o.worker_id, o.batch_size,
                                     max_retry_s, o.role);
    if (!data.ok()) return Fail(data.status().ToString(), 1);
    const v1::DescribeResponse& info = (*data)->info();
    o.image_channels = static_cast<int>(info.image_shape(0));
    o.num_classes = info.num_classes();
    std::cout << "paragan_worker: data from " << data_address << " ("
              << info.dataset() << ", " << info.num_examples() << " examples)"
              << std::endl;
    // A G worker reads no real batches; its stream would hold some idle.
    if (o.role != v1::G_ONLY) batches = std::move(data).value();
    if (o.role == v1::G_ONLY || o.auto_role) {
      absl::StatusOr<std::unique_ptr<DataServiceSampleSink>> sink =
          DataServiceSampleSink::Connect(data_service, o.worker_id, max_retry_s,
                                         sample_dtype);
      if (!sink.ok()) return Fail(sink.status().ToString(), 1);
      exchange.samples = std::move(sink).value();
    }
    if (o.auto_role) {
      absl::StatusOr<std::unique_ptr<DataServiceRoleClient>> roles =
          DataServiceRoleClient::Connect(data_service, o.worker_id,
                                         max_retry_s);
      if (!roles.ok()) return Fail(roles.status().ToString(), 1);
      exchange.roles = std::move(roles).value();
      exchange.connect_fakes =
          [data_service, id = o.worker_id, batch = o.batch_size,
           age = o.max_sample_age,
           max_retry_s]() -> absl::StatusOr<std::unique_ptr<FakeSource>> {
        absl::StatusOr<std::unique_ptr<DataServiceFakeSource>> f =
            DataServiceFakeSource::Connect(data_service, id, batch, age,
                                           max_retry_s);
        if (!f.ok()) return f.status();
        return std::unique_ptr<FakeSource>(std::move(f).value());
      };
    }
    if (o.role == v1::D_ONLY) {
      absl::StatusOr<std::unique_ptr<DataServiceFakeSource>> fakes =
          DataServiceFakeSource::Connect(data_service, o.worker_id,
                                         o.batch_size, o.max_sample_age,
                                         max_retry_s);
      if (!fakes.ok()) return Fail(fakes.status().ToString(), 1);
      exchange.fakes = std::move(fakes).value();
    }
  } else {
    absl::StatusOr<std::string> data_dir =
        RenamedFlagValue("data_dir", absl::GetFlag(FLAGS_data_dir), "data_path",
                         absl::GetFlag(FLAGS_data_path));
    if (!data_dir.ok()) return Fail(std::string(data_dir.status().message()));
    DatasetSpec spec;
    spec.name = absl::GetFlag(FLAGS_dataset);
    spec.path = *data_dir;
    spec.synthetic_size = absl::GetFlag(FLAGS_synthetic_size);
    spec.channels = absl::GetFlag(FLAGS_channels);
    const int64_t data_seed = absl::GetFlag(FLAGS_data_seed);
    spec.seed = data_seed >= 0 ? static_cast<uint64_t>(data_seed) : o.seed;
    absl::StatusOr<std::unique_ptr<Dataset>> data = OpenDataset(spec);
    if (!data.ok()) return Fail(std::string(data.status().message()));
    o.image_channels = (*data)->info().channels;
    o.num_classes = (*data)->info().num_classes;
    batches = std::make_unique<PrefetchingProvider>(
        std::make_unique<LocalBatchProvider>(std::move(data).value(),
                                             o.batch_size, o.seed, 1));
  }

  auto registry = std::make_shared<prometheus::Registry>();
  const std::shared_ptr<prometheus::Collectable> process_metrics =
      MakeProcessCollectable();
  std::unique_ptr<WorkerMetrics> metrics;
  std::unique_ptr<prometheus::Exposer> exposer;
  if (absl::GetFlag(FLAGS_metrics_port) >= 0) {
    metrics =
        std::make_unique<WorkerMetrics>(registry.get(), o.worker_id, role);
    try {
      exposer = std::make_unique<prometheus::Exposer>(
          absl::StrCat(absl::GetFlag(FLAGS_metrics_bind), ":",
                       absl::GetFlag(FLAGS_metrics_port)));
    } catch (const std::exception& e) {
      return Fail(absl::StrCat("cannot serve metrics on ",
                               absl::GetFlag(FLAGS_metrics_bind), ":",
                               absl::GetFlag(FLAGS_metrics_port), ": ",
                               e.what(), " (--metrics_port=-1: no metrics)"));
    }
    exposer->RegisterCollectable(registry);
    exposer->RegisterCollectable(process_metrics);
  }

  absl::StatusOr<std::unique_ptr<Worker>> worker = Worker::Create(
      o, std::move(exchange), metrics.get(), &std::cout, &g_stop);
  if (!worker.ok()) {
    if (g_stop.load()) {
      PrintDone(o.worker_id, /*with_timings=*/false);
      return 0;
    }
    return Fail(worker.status().ToString(), 1);
  }
  if (exposer) {
    const int port = exposer->GetListeningPorts().at(0);
    std::cout << "paragan_worker: metrics on port " << port << std::endl;
    const std::string port_file = absl::GetFlag(FLAGS_metrics_port_file);
    if (!port_file.empty()) {
      // Renamed into place: a reader never sees half a number.
      const std::string tmp = port_file + ".tmp";
      std::ofstream(tmp) << port << "\n";
      std::rename(tmp.c_str(), port_file.c_str());
    }
  }

  g_worker = worker->get();
  const absl::Status status = (*worker)->Run(&g_stop);
  if (!status.ok()) {
    std::cerr << "paragan_worker: " << o.worker_id << ": " << status
              << std::endl;
  }
  // Done, stopped or failed: no round waits for it from here on.
  (*worker)->Leave(absl::Seconds(2));
  PrintDone(o.worker_id, /*with_timings=*/true);
  {
    std::lock_guard<std::mutex> lock(g_leave_mu);
    g_worker = nullptr;
  }
  return status.ok() ? 0 : 1;
}

}  // namespace
}  // namespace paragan

int main(int argc, char** argv) {
  paragan::KeepLargeAllocationsInHeap();
  paragan::SetUsage(
      "A ParaGAN distributed worker. See worker/distributed/main.cc.",
      "worker/distributed/main.cc");
  absl::ParseCommandLine(argc, argv);
  return paragan::Run();
}
