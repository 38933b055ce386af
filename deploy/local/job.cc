#include "deploy/local/job.h"

#include <algorithm>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/local_ca.h"

namespace paragan {
namespace local {
namespace {

// How long the tools may take; only a hung tool should reach these (1000
// BigGAN samples on one CPU thread take minutes).
constexpr absl::Duration kInitTimeout = absl::Minutes(10);
constexpr absl::Duration kExportTimeout = absl::Minutes(30);
constexpr absl::Duration kServiceStartTimeout = absl::Minutes(2);

// Stop order: workers first (they stop pushing), then the data service,
// then the export reads the final tables, then the shards write their
// checkpoints.
constexpr int kStopWorkers = 0;
constexpr int kStopData = 1;
constexpr int kStopExport = 2;
constexpr int kStopShards = 3;

void AppendFlags(const std::string& extra, std::vector<std::string>* flags) {
  for (std::string& f : SplitFlags(extra)) flags->push_back(std::move(f));
}

// "${shard0.grpc},${shard1.grpc}".
std::string ShardAddresses(int num_shards) {
  std::vector<std::string> refs;
  for (int i = 0; i < num_shards; ++i) {
    refs.push_back(absl::StrCat("${shard", i, ".grpc}"));
  }
  return absl::StrJoin(refs, ",");
}

std::vector<std::string> ShardNames(int num_shards) {
  std::vector<std::string> names;
  for (int i = 0; i < num_shards; ++i)
    names.push_back(absl::StrCat("shard", i));
  return names;
}

ProcessSpec InitSpec(const LauncherOptions& o, const std::string& bin) {
  ProcessSpec p;
  p.name = "init";
  p.role = Role::kInit;
  p.description = "initializing the networks";
  p.lifecycle = Lifecycle::kStartTask;
  p.binary = bin + "/" + kInitBin;
  // The networks' initial state, written once for every shard (which reads
  // the layout, initial values and the model's default optimizer settings
  // from it), by a tool: the launcher holds no model code.
  p.flags = {absl::StrCat("--model=", o.model), absl::StrCat("--seed=", o.seed),
             absl::StrCat("--out=", o.out_dir, "/ps/init.pgt")};
  p.readiness = {Readiness::Check::kExitedZero, "", kInitTimeout, true};
  p.stage = kInitStage;
  return p;
}

ProcessSpec ShardSpec(const LauncherOptions& o, const std::string& bin,
                      const std::string& logs, int i) {
  ProcessSpec p;
  p.name = absl::StrCat("shard", i);
  p.role = Role::kShard;
  p.description = absl::StrCat("parameter-server ", p.name);
  p.binary = bin + "/" + kServerBin;
  const std::string port_file = absl::StrCat(logs, "/", p.name, ".port");
  p.flags = {
      "--bind_address=127.0.0.1",
      "--port=0",
      absl::StrCat("--port_file=", port_file),
      "--metrics_port=0",
      absl::StrCat("--shard_id=", i),
      absl::StrCat("--num_shards=", o.num_shards),
      absl::StrCat("--init=", o.out_dir, "/ps/init.pgt"),
      absl::StrCat("--checkpoint_dir=", o.out_dir, "/ps"),
      absl::StrCat("--staleness_policy=", o.staleness_policy),
      absl::StrCat("--staleness_bound=", o.staleness_bound),
      absl::StrCat("--sync_workers=", o.mode == "sync" ? o.num_workers : 0),
      absl::StrCat(
          "--momentum_compensation=",
          o.momentum_compensation && o.mode == "async" ? "true" : "false"),
      absl::StrCat("--ema_decay=", o.ema_decay)};
  // Unset, the shards take the lease the network file suggests for the
  // model (BigGAN's steps on a few CPU threads are long); the launcher
  // knows no model.
  if (o.worker_lease_s >= 0) {
    p.flags.push_back(absl::StrCat("--worker_lease_s=", o.worker_lease_s));
  }
  p.flags.push_back("--threads=1");
  for (const auto& [prefix, t] :
       {std::make_pair("g", &o.g_table), std::make_pair("d", &o.d_table)}) {
    if (t->lr >= 0)
      p.flags.push_back(absl::StrCat("--", prefix, "_lr=", t->lr));
    if (!t->betas.empty()) {
      p.flags.push_back(absl::StrCat("--", prefix, "_betas=", t->betas));
    }
    if (!t->staleness_policy.empty()) {
      p.flags.push_back(absl::StrCat(
          "--", prefix, "_staleness_policy=", t->staleness_policy));
    }
    if (t->staleness_bound >= 0) {
      p.flags.push_back(
          absl::StrCat("--", prefix, "_staleness_bound=", t->staleness_bound));
    }
  }
  AppendFlags(o.ps_flags, &p.flags);
  // "paragan_server: shard N metrics on port M" (one port file per
  // process: the gRPC port's).
  p.ports = {{"grpc", PortSpec::Source::kPortFile, port_file, ""},
             {"metrics", PortSpec::Source::kStdoutLine, "", "metrics on port"}};
  p.readiness = {Readiness::Check::kShardState, "grpc", kServiceStartTimeout,
                 true};
  p.stage = kShardStage;
  p.depends_on = {"init"};
  p.critical = true;
  p.stop_order = kStopShards;
  p.grace = absl::Seconds(60);  // the checkpoint is written on SIGTERM
  return p;
}

ProcessSpec DataSpec(const LauncherOptions& o, const std::string& bin) {
  ProcessSpec p;
  p.name = "data";
  p.role = Role::kData;
  p.description = "the data service";
  p.binary = bin + "/" + kDataBin;
  p.flags = {"--bind_address=127.0.0.1",
             "--port=0",
             "--metrics_port=0",
             absl::StrCat("--dataset=", o.dataset),
             absl::StrCat("--data_dir=", o.data_dir),
             absl::StrCat("--batch_size=", o.batch_size),
             absl::StrCat("--seed=", o.seed)};
  AppendFlags(o.data_flags, &p.flags);
  // paragan_data prints its port once serving and writes no port file.
  p.ports = {{"grpc", PortSpec::Source::kStdoutLine, "", "listening on port"},
             {"metrics", PortSpec::Source::kStdoutLine, "", "metrics on port"}};
  p.readiness = {Readiness::Check::kPortsKnown, "grpc", kServiceStartTimeout,
                 true};
  p.stage = kDataStage;
  p.critical = true;
  p.stop_order = kStopData;
  p.grace = absl::Seconds(20);
  return p;
}

// `kind`: "w" (coupled, role both), "g" (g_only) or "d" (d_only); `i`
// numbers the workers of that kind, `seed_index` all workers.
ProcessSpec WorkerSpec(const LauncherOptions& o, const std::string& bin,
                       const std::string& logs, const std::string& kind, int i,
                       int seed_index) {
  ProcessSpec p;
  p.name = absl::StrCat(kind, i);
  p.role = Role::kWorker;
  p.description = kind == "w"   ? absl::StrCat("worker ", p.name)
                  : kind == "g" ? absl::StrCat("G worker ", p.name)
                                : absl::StrCat("D worker ", p.name);
  p.binary = bin + "/" + kWorkerBin;
  const std::string port_file =
      absl::StrCat(logs, "/", p.name, ".metrics_port");
  p.flags = {absl::StrCat("--worker_id=", p.name),
             absl::StrCat("--ps=", ShardAddresses(o.num_shards)),
             absl::StrCat("--model=", o.model),
             "--steps=0",
             absl::StrCat("--batch_size=", o.batch_size),
             absl::StrCat("--threads=", o.threads_per_worker),
             absl::StrCat("--seed=", o.seed + 1 + seed_index),
             "--metrics_port=0",
             "--metrics_bind=127.0.0.1",
             absl::StrCat("--metrics_port_file=", port_file),
             absl::StrCat("--log_every=", o.log_every),
             absl::StrCat("--push_dtype=", o.push_dtype)};
  if (o.worker_data == "local") {
    p.flags.insert(p.flags.end(),
                   {"--data=", absl::StrCat("--dataset=", o.dataset),
                    absl::StrCat("--data_dir=", o.data_dir),
                    absl::StrCat("--data_seed=", o.seed)});
  } else {
    p.flags.push_back("--data=${data.grpc}");
  }
  for (const auto& [prefix, t] :
       {std::make_pair("g", &o.g_table), std::make_pair("d", &o.d_table)}) {
    if (!t->push_dtype.empty()) {
      p.flags.push_back(
          absl::StrCat("--", prefix, "_push_dtype=", t->push_dtype));
    }
  }
  if (kind == "g") p.flags.push_back("--role=g_only");
  if (kind == "w" && o.auto_roles) {
    p.flags.push_back("--role=auto");
    p.flags.push_back(absl::StrCat("--max_sample_age=", o.max_sample_age));
  }
  if (kind == "d") {
    p.flags.push_back("--role=d_only");
    p.flags.push_back(absl::StrCat("--max_sample_age=", o.max_sample_age));
  }
  AppendFlags(o.worker_flags, &p.flags);
  p.ports = {{"metrics", PortSpec::Source::kPortFile, port_file, ""}};
  // The port file appears once the worker has registered with every shard.
  p.readiness = {Readiness::Check::kMetrics, "metrics", kServiceStartTimeout,
                 false};
  p.stage = kWorkerStage;
  p.depends_on = ShardNames(o.num_shards);
  if (o.worker_data != "local") p.depends_on.push_back("data");
  p.stop_order = kStopWorkers;
  p.grace = absl::Seconds(60);
  return p;
}

// The live evaluator's reference statistics, loaded and checked (or computed
// from the train images once) before training starts, at full speed, so a
// missing or mismatched file fails the run before any training and the
// evaluator never computes them beside the workers.
ProcessSpec EvalReferenceSpec(const LauncherOptions& o,
                              const std::string& bin) {
  ProcessSpec p;
  p.name = "eval-ref";
  p.role = Role::kInit;
  p.description = "the evaluator's reference statistics";
  p.lifecycle = Lifecycle::kStartTask;
  p.binary = bin + "/" + kEvalBin;
  p.flags = {"--reference_only", absl::StrCat("--network=", o.eval_network),
             absl::StrCat("--data_dir=", o.data_dir)};
  // "": paragan_eval's per-user cache (DefaultReferencePath).
  if (!o.eval_reference.empty())
    p.flags.push_back(absl::StrCat("--reference=", o.eval_reference));
  AppendFlags(o.eval_flags, &p.flags);
  p.readiness = {Readiness::Check::kExitedZero, "", kInitTimeout, true};
  p.stage = kInitStage;
  return p;
}

// What the live and the final evaluation share: the shards' EMA generator
// scored with `num_samples` into the run's fid.csv / fid.png.
std::vector<std::string> ScoringFlags(const LauncherOptions& o,
                                      int64_t num_samples) {
  std::vector<std::string> flags = {
      absl::StrCat("--ps=", ShardAddresses(o.num_shards)),
      absl::StrCat("--model=", o.model),
      absl::StrCat("--num_samples=", num_samples),
      absl::StrCat("--network=", o.eval_network),
      absl::StrCat("--data_dir=", o.data_dir),
      absl::StrCat("--csv=", o.out_dir, "/fid.csv"),
      absl::StrCat("--plot=", o.out_dir, "/fid.png"),
      absl::StrCat("--seed=", o.seed + 1)};
  // "": paragan_eval's per-user cache (DefaultReferencePath).
  if (!o.eval_reference.empty())
    flags.push_back(absl::StrCat("--reference=", o.eval_reference));
  return flags;
}

ProcessSpec EvalSpec(const LauncherOptions& o, const std::string& bin,
                     const std::string& logs) {
  ProcessSpec p;
  p.name = "eval";
  p.role = Role::kEval;
  p.description = "the live evaluator";
  p.binary = bin + "/" + kEvalBin;
  const std::string port_file = absl::StrCat(logs, "/eval.metrics_port");
  // One thread at nice 19 (paragan_eval --priority=nice): it scores
  // on the cycles training leaves, so it never slows the workers down.
  p.flags = ScoringFlags(o, o.eval_samples);
  for (std::string f :
       {absl::StrCat("--every_s=", o.eval_every_s), std::string("--threads=1"),
        std::string("--metrics_port=0"),
        std::string("--metrics_bind=127.0.0.1"),
        absl::StrCat("--metrics_port_file=", port_file)}) {
    p.flags.push_back(std::move(f));
  }
  AppendFlags(o.eval_flags, &p.flags);
  p.ports = {{"metrics", PortSpec::Source::kPortFile, port_file, ""}};
  // Not waited for: it scores on the cycles training leaves.
  p.readiness = {Readiness::Check::kMetrics, "metrics", kServiceStartTimeout,
                 false};
  p.stage = kWorkerStage;
  p.depends_on = ShardNames(o.num_shards);
  p.stop_order = kStopWorkers;
  p.grace = absl::Seconds(10);
  return p;
}

ProcessSpec EvalFinalSpec(const LauncherOptions& o, const std::string& bin) {
  ProcessSpec p;
  p.name = "eval-final";
  p.role = Role::kEval;
  p.description = "the final evaluation";
  p.lifecycle = Lifecycle::kFinalTask;
  p.binary = bin + "/" + kEvalBin;
  // Training has stopped: it takes both cores and the full sample count.
  p.flags = ScoringFlags(o, o.eval_final_samples);
  // When no live round finished, the row still lands on the training clock
  // (the launcher fills this in).
  p.flags.push_back("--origin_unix_s=${run.train_start_unix_s}");
  AppendFlags(o.eval_flags, &p.flags);
  p.readiness = {Readiness::Check::kExitedZero, "", kExportTimeout, true};
  p.depends_on = ShardNames(o.num_shards);
  p.stoppable = false;
  p.stop_order = kStopExport;
  return p;
}

ProcessSpec ExportSpec(const LauncherOptions& o, const std::string& bin) {
  ProcessSpec p;
  p.name = "export";
  p.role = Role::kExport;
  p.description = "writing the outputs from the shards";
  p.lifecycle = Lifecycle::kFinalTask;
  p.binary = bin + "/" + kSampleBin;
  // paragan_sample pulls G, D and G_ema (G when the shards keep no EMA)
  // and writes the grid, the samples (z from seed + 1, as paragan_train's)
  // and checkpoint.pgt.
  p.flags = {absl::StrCat("--ps=", ShardAddresses(o.num_shards)),
             absl::StrCat("--model=", o.model),
             absl::StrCat("--out_dir=", o.out_dir),
             absl::StrCat("--num_samples=", o.num_samples),
             absl::StrCat("--seed=", o.seed + 1),
             absl::StrCat("--batch_size=", o.batch_size),
             absl::StrCat("--threads=", o.threads_per_worker)};
  p.readiness = {Readiness::Check::kExitedZero, "", kExportTimeout, true};
  p.depends_on = ShardNames(o.num_shards);
  // A Ctrl-C got us to the shutdown: the outputs are still written.
  p.stoppable = false;
  p.stop_order = kStopExport;
  return p;
}

// The token and TLS flags of a process that serves or calls a service; the
// token file and the certificates are the launcher's to write before the
// start (AuthTokenPath, TlsDir).
void AddSecurityFlags(const LauncherOptions& o, ProcessSpec* p) {
  if (p->role == Role::kInit) return;
  if (o.auth) {
    p->flags.push_back(absl::StrCat("--auth_token_file=", AuthTokenPath(o)));
  }
  if (o.tls) {
    const LocalCertificates certs = LocalCertificatesIn(TlsDir(o));
    const bool server = p->role == Role::kShard || p->role == Role::kData;
    const TlsFiles f = server ? certs.ServerFiles() : certs.ClientFiles();
    p->flags.push_back(absl::StrCat("--tls_cert_file=", f.cert_file));
    p->flags.push_back(absl::StrCat("--tls_key_file=", f.key_file));
    p->flags.push_back(absl::StrCat("--tls_ca_file=", f.ca_file));
  }
}

}  // namespace

RoleCounts DecoupledRoles(const LauncherOptions& o) {
  if (o.schedule != "decoupled" || o.auto_roles) return {};
  if (o.g_workers > 0 || o.d_workers > 0) return {o.g_workers, o.d_workers};
  return {o.num_workers / 2, o.num_workers - o.num_workers / 2};
}

namespace {

// The flags with which the launcher wires the job together: where each
// process listens and how it says so, who it is, whom it talks to. Given
// again in --*_flags they would come last and win, and the launcher would
// wait for ports and processes that never appear (e.g. --metrics_port=-1:
// no "metrics on port" line, so the shards are never ready).
absl::Status CheckExtraFlags(const LauncherOptions& o) {
  const std::tuple<const char*, const std::string*, std::vector<std::string>>
      wiring[] = {{"ps_flags",
                   &o.ps_flags,
                   {"bind_address", "port", "port_file", "metrics_port",
                    "metrics_port_file", "shard_id", "num_shards", "init",
                    "checkpoint_dir"}},
                  {"data_flags",
                   &o.data_flags,
                   {"bind_address", "port", "metrics_port"}},
                  {"worker_flags",
                   &o.worker_flags,
                   {"worker_id", "ps", "data", "metrics_port", "metrics_bind",
                    "metrics_port_file"}}};
  for (const auto& [option, extra, owned] : wiring) {
    for (const std::string& flag : SplitFlags(*extra)) {
      absl::string_view name = flag;
      if (!absl::ConsumePrefix(&name, "--")) absl::ConsumePrefix(&name, "-");
      name = name.substr(0, name.find('='));
      if (std::find(owned.begin(), owned.end(), name) != owned.end()) {
        return absl::InvalidArgumentError(
            absl::StrCat("--", option, ": ", flag, ": paragan_local sets --",
                         name, " itself to wire the job together (",
                         absl::StrJoin(owned, ", "), " are its own); drop it"));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateOptions(const LauncherOptions& o) {
  if (o.num_workers < 1 || o.num_shards < 1) {
    return absl::InvalidArgumentError(
        "need --num_workers >= 1 and --num_shards >= 1");
  }
  for (const auto& [name, t] :
       {std::make_pair("g", &o.g_table), std::make_pair("d", &o.d_table)}) {
    if (!t->push_dtype.empty() && t->push_dtype != "float32" &&
        t->push_dtype != "bfloat16") {
      return absl::InvalidArgumentError(
          absl::StrCat("--", name,
                       "_push_dtype must be float32 or bfloat16, "
                       "got ",
                       t->push_dtype));
    }
    if (!(t->lr == -1 || t->lr > 0)) {  // -1: unset
      return absl::InvalidArgumentError(
          absl::StrCat("--", name, "_lr must be > 0 (or unset), got ", t->lr));
    }
  }
  if (o.schedule != "coupled" && o.schedule != "decoupled") {
    return absl::InvalidArgumentError(absl::StrCat(
        "--schedule must be coupled or decoupled, got ", o.schedule));
  }
  if (o.schedule == "coupled" && (o.g_workers != 0 || o.d_workers != 0)) {
    return absl::InvalidArgumentError(
        "--g_workers and --d_workers are for --schedule=decoupled");
  }
  if (o.auto_roles && o.schedule != "decoupled") {
    return absl::InvalidArgumentError(
        "--auto_roles balances the roles of --schedule=decoupled");
  }
  if (o.auto_roles && (o.g_workers != 0 || o.d_workers != 0)) {
    return absl::InvalidArgumentError(
        "--auto_roles assigns the roles itself: give --num_workers, not "
        "--g_workers/--d_workers");
  }
  if (o.schedule == "decoupled") {
    const RoleCounts roles = DecoupledRoles(o);
    if (!o.auto_roles && (roles.g < 1 || roles.d < 1)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--schedule=decoupled needs at least one G and one D worker; got ",
          roles.g, " G and ", roles.d,
          " D (give --g_workers and --d_workers, or --num_workers >= 2)"));
    }
    if (o.mode != "async") {
      return absl::InvalidArgumentError(
          "--schedule=decoupled is asynchronous: G and D workers never wait "
          "for each other's rounds; use --mode=async");
    }
    if (o.worker_data != "service") {
      return absl::InvalidArgumentError(
          "--schedule=decoupled trades samples through the data service: "
          "use --worker_data=service");
    }
  }
  if (o.worker_data != "service" && o.worker_data != "local") {
    return absl::InvalidArgumentError(absl::StrCat(
        "--worker_data must be service or local, got ", o.worker_data));
  }
  if (o.mode != "async" && o.mode != "sync") {
    return absl::InvalidArgumentError(
        absl::StrCat("--mode must be async or sync, got ", o.mode));
  }
  if (o.eval_every_s < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--eval_every_s must be >= 0 (0: no evaluator), got ", o.eval_every_s));
  }
  if (o.eval_every_s > 0 && o.dataset != "fashion_mnist") {
    return absl::InvalidArgumentError(absl::StrCat(
        "the live evaluator scores against Fashion-MNIST reference "
        "statistics; with --dataset=",
        o.dataset, " pass --eval_every_s=0"));
  }
  if (o.eval_every_s > 0 && o.eval_final_samples != 0 &&
      o.eval_final_samples < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("--eval_final_samples must be 0 (none) or >= 2, got ",
                     o.eval_final_samples));
  }
  if (o.eval_every_s > 0 && o.eval_samples < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("--eval_samples must be >= 2, got ", o.eval_samples));
  }
  if (absl::Status st = CheckExtraFlags(o); !st.ok()) return st;
  // The staleness policy is the shards' to check: they refuse to start
  // with an unknown one, and the process group reports their error line.
  return absl::OkStatus();
}

std::string AuthTokenPath(const LauncherOptions& o) {
  return o.out_dir + "/secrets/auth_token";
}

std::string TlsDir(const LauncherOptions& o) {
  return o.out_dir + "/secrets/tls";
}

absl::StatusOr<Job> DescribeJob(const LauncherOptions& o,
                                const std::string& bin_dir) {
  if (absl::Status st = ValidateOptions(o); !st.ok()) return st;
  Job job;
  job.log_dir = o.out_dir + "/logs";
  job.stages = {kInitStage, kShardStage, kDataStage, kWorkerStage};
  job.processes.push_back(InitSpec(o, bin_dir));
  if (o.eval_every_s > 0) {
    job.processes.push_back(EvalReferenceSpec(o, bin_dir));
  }
  for (int i = 0; i < o.num_shards; ++i) {
    job.processes.push_back(ShardSpec(o, bin_dir, job.log_dir, i));
  }
  job.processes.push_back(DataSpec(o, bin_dir));
  const RoleCounts roles = DecoupledRoles(o);
  if (o.schedule == "decoupled" && !o.auto_roles) {
    for (int i = 0; i < roles.g; ++i) {
      job.processes.push_back(WorkerSpec(o, bin_dir, job.log_dir, "g", i, i));
    }
    for (int i = 0; i < roles.d; ++i) {
      job.processes.push_back(
          WorkerSpec(o, bin_dir, job.log_dir, "d", i, roles.g + i));
    }
  } else {
    for (int i = 0; i < o.num_workers; ++i) {
      job.processes.push_back(WorkerSpec(o, bin_dir, job.log_dir, "w", i, i));
    }
  }
  if (o.eval_every_s > 0) {
    job.processes.push_back(EvalSpec(o, bin_dir, job.log_dir));
  }
  job.processes.push_back(ExportSpec(o, bin_dir));
  if (o.eval_every_s > 0 && o.eval_final_samples > 0) {
    job.processes.push_back(EvalFinalSpec(o, bin_dir));
  }
  for (ProcessSpec& p : job.processes) AddSecurityFlags(o, &p);
  return job;
}

absl::Status CheckWorkerCount(const LauncherOptions& o, int live, int workers) {
  if (o.schedule == "decoupled" && !o.auto_roles) {
    return absl::FailedPreconditionError(
        "this run has fixed G and D workers (--g_workers/--d_workers): which "
        "role a new worker takes is not defined; scale a coupled run or one "
        "with --auto_roles");
  }
  if (workers < 1 || workers > kMaxScaledWorkers) {
    return absl::InvalidArgumentError(
        absl::StrCat("--scale_workers=", workers, ": between 1 and ",
                     kMaxScaledWorkers, " workers"));
  }
  // A coupled worker that joins running rounds starts with a D step while
  // the others may wait in a G round that now counts it: both wait for
  // each other (a sync run scaled 1 -> 2 hung so). Until a join waits for
  // the next cycle, a synchronous run only shrinks.
  if (o.mode == "sync" && workers > live) {
    return absl::FailedPreconditionError(absl::StrCat(
        "--scale_workers=", workers, ": a synchronous run scales down only ",
        "(it has ", live,
        " worker(s)): a worker joining its rounds can "
        "deadlock them, its first D step meeting the others' G round; scale "
        "an async run, or start the sync run again with --num_workers=",
        workers));
  }
  return absl::OkStatus();
}

ProcessSpec AddedWorkerSpec(const LauncherOptions& o,
                            const std::string& bin_dir, int index) {
  ProcessSpec p =
      WorkerSpec(o, bin_dir, o.out_dir + "/logs", "w", index, index);
  AddSecurityFlags(o, &p);
  return p;
}

const ProcessSpec* FindProcess(const Job& job, absl::string_view name) {
  for (const ProcessSpec& p : job.processes) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

std::vector<PortRef> PortRefs(absl::string_view flag) {
  std::vector<PortRef> refs;
  size_t at = 0;
  while ((at = flag.find("${", at)) != absl::string_view::npos) {
    const size_t end = flag.find('}', at);
    if (end == absl::string_view::npos) break;
    const absl::string_view ref = flag.substr(at + 2, end - at - 2);
    const size_t dot = ref.find('.');
    if (dot != absl::string_view::npos) {
      refs.push_back(
          {std::string(ref.substr(0, dot)), std::string(ref.substr(dot + 1))});
    }
    at = end + 1;
  }
  return refs;
}

absl::StatusOr<std::string> ResolveFlag(
    absl::string_view flag,
    const std::function<absl::StatusOr<std::string>(const PortRef&)>& address) {
  std::string out;
  size_t at = 0;
  while (true) {
    const size_t open = flag.find("${", at);
    const size_t end = open == absl::string_view::npos ? absl::string_view::npos
                                                       : flag.find('}', open);
    if (end == absl::string_view::npos) {
      absl::StrAppend(&out, flag.substr(at));
      return out;
    }
    absl::StrAppend(&out, flag.substr(at, open - at));
    const absl::string_view ref = flag.substr(open + 2, end - open - 2);
    const size_t dot = ref.find('.');
    if (dot == absl::string_view::npos) {  // not a port reference
      absl::StrAppend(&out, flag.substr(open, end + 1 - open));
    } else {
      const PortRef r{std::string(ref.substr(0, dot)),
                      std::string(ref.substr(dot + 1))};
      absl::StatusOr<std::string> a = address(r);
      if (!a.ok()) {
        return absl::FailedPreconditionError(
            absl::StrCat("cannot resolve ${", ref, "} in ", flag, ": ",
                         a.status().message()));
      }
      absl::StrAppend(&out, *a);
    }
    at = end + 1;
  }
}

std::vector<std::string> SplitFlags(absl::string_view flags) {
  return absl::StrSplit(flags, absl::ByAnyChar(" \t\n"), absl::SkipEmpty());
}

}  // namespace local
}  // namespace paragan
