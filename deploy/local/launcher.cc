#include "deploy/local/launcher.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/auth.h"
#include "common/check.h"
#include "common/local_ca.h"
#include "common/tensor_io.h"
#include "common/tls.h"
#include "deploy/local/scrape_targets.h"
#include "deploy/local/worker_control.h"

namespace paragan {
namespace local {
namespace {

bool IsExecutable(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
         access(path.c_str(), X_OK) == 0;
}

std::vector<std::string> MissingBinaries(const std::string& dir,
                                         bool with_eval) {
  std::vector<std::string> missing;
  for (const char* b :
       {kServerBin, kDataBin, kWorkerBin, kInitBin, kSampleBin, kEvalBin}) {
    if (b == kEvalBin && !with_eval) continue;
    if (!IsExecutable(dir + "/" + b)) missing.push_back(b);
  }
  return missing;
}

void Say(const std::string& line) {
  std::cout << "paragan_local: " << line << std::endl;
}

void Loud(const std::string& line) {
  std::cerr << "paragan_local: " << line << std::endl;
}

absl::Status Mkdirs(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("cannot create ", dir, ": ", ec.message()));
  }
  return absl::OkStatus();
}

// A fresh token at `path`, readable by this user only (the directory too).
absl::StatusOr<std::string> WriteAuthToken(const std::string& path) {
  PG_RETURN_IF_ERROR(MakeOwnerOnlyDirectory(
      std::filesystem::path(path).parent_path().string()));
  PG_ASSIGN_OR_RETURN(std::string token, GenerateAuthToken());
  PG_RETURN_IF_ERROR(
      WriteFileAtomically(path, token + "\n", /*owner_only=*/true));
  return token;
}

std::vector<std::string> NamesOf(const Job& job, Role role) {
  std::vector<std::string> names;
  for (const ProcessSpec& p : job.processes) {
    if (p.role == role) names.push_back(p.name);
  }
  return names;
}

// What the one-shot tools say (from the group's reader threads): the files
// the export reports writing, and warnings worth the terminal.
struct ToolLines {
  absl::Mutex mu;
  std::map<std::string, std::vector<std::string>> wrote ABSL_GUARDED_BY(mu);
  // paragan_eval's "result key=value ..." line, per task.
  std::map<std::string, std::map<std::string, std::string>> result
      ABSL_GUARDED_BY(mu);
};

ProcessGroup::LineFn ToolLineHandler(ToolLines* tools) {
  return
      [tools](const ProcessSpec& p, const std::string& line, bool is_stderr) {
        if (p.lifecycle == Lifecycle::kService) return;
        // A tool's warnings (e.g. no EMA on the shards) matter to whoever
        // watches the terminal, not only to its log.
        if (is_stderr && absl::StartsWith(line, "warning:")) {
          Loud(absl::StrCat(p.name, ": ", line));
        }
        if (!is_stderr && absl::StartsWith(line, "wrote ")) {
          absl::MutexLock lock(&tools->mu);
          tools->wrote[p.name].push_back(line.substr(6));
        }
        if (!is_stderr && absl::StartsWith(line, "result ")) {
          absl::MutexLock lock(&tools->mu);
          for (absl::string_view kv : absl::StrSplit(line.substr(7), ' ')) {
            std::pair<std::string, std::string> f = absl::StrSplit(kv, '=');
            tools->result[p.name][f.first] = f.second;
          }
        }
      };
}

// What the start learns, for the summary.
struct TrainingStart {
  bool workers_started = false;
  absl::Time at = absl::Now();
  int64_t g_version = -1;  // the shards' versions when the workers started
  int64_t d_version = -1;
  int64_t d_batches = -1;
};

// After a stage is up: what it means to the user, and to the monitor.
void StageUp(const LauncherOptions& o, const Job& job, const std::string& stage,
             ProcessGroup* group, Monitor* monitor, TrainingStart* start,
             const ClientSecurity& security) {
  if (stage == kShardStage) {
    std::vector<std::string> ps;
    for (const std::string& n : NamesOf(job, Role::kShard)) {
      ps.push_back(group->Address(n, "grpc").value_or("?"));
    }
    monitor->ConnectShards(ps, absl::Seconds(60), security);
    Say(absl::StrCat(
        ps.size(), " parameter-server shard(s) up: ", absl::StrJoin(ps, ", ")));
  } else if (stage == kDataStage) {
    Say(absl::StrCat(
        "data service up: ", group->Address("data", "grpc").value_or("?"), " (",
        o.dataset, " ", o.data_dir, ")"));
  } else if (stage == kWorkerStage) {
    for (const std::string& n : NamesOf(job, Role::kWorker)) {
      monitor->SetWorkerState(n, "running");
    }
    start->workers_started = true;
    start->at = absl::Now();
    const RoleCounts roles = DecoupledRoles(o);
    Say(absl::StrCat(
        o.auto_roles ? absl::StrCat(o.num_workers,
                                    " worker(s) started (decoupled, roles "
                                    "assigned by the data service, ")
        : o.schedule == "decoupled"
            ? absl::StrCat(roles.g, " G and ", roles.d,
                           " D worker(s) started (decoupled, ")
            : absl::StrCat(o.num_workers, " worker(s) started ("),
        o.mode, ", staleness policy ", o.staleness_policy,
        o.momentum_compensation && o.mode == "async" ? ", momentum compensation"
                                                     : "",
        "); training until ",
        o.steps > 0 ? absl::StrCat("G step ", o.steps) : "",
        o.steps > 0 && o.minutes > 0 ? " or " : "",
        o.minutes > 0 ? absl::StrCat(o.minutes, " minutes") : "",
        o.steps <= 0 && o.minutes <= 0 ? "Ctrl-C" : "",
        "; Ctrl-C stops cleanly. Logs: ", job.log_dir));
    if (o.steps > 0 && start->g_version >= o.steps) {
      Say(absl::StrCat("the shards are already at G step ", start->g_version,
                       " (restored from ", o.out_dir,
                       "/ps): raise --steps to train on"));
    }
  }
}

// Every stage of the job, in order.
absl::Status StartAll(const LauncherOptions& o, const Job& job,
                      ProcessGroup* group, Monitor* monitor,
                      TrainingStart* start, const ClientSecurity& security) {
  for (const std::string& stage : job.stages) {
    if (stage == kWorkerStage) {
      const std::optional<ShardTotals> at_start = monitor->QueryShards();
      start->g_version = at_start ? at_start->g_version : 0;
      start->d_version = at_start ? at_start->d_version : 0;
      start->d_batches = at_start ? at_start->d_batches : -1;
    }
    PG_RETURN_IF_ERROR(group->StartStage(stage));
    StageUp(o, job, stage, group, monitor, start, security);
  }
  return absl::OkStatus();
}

// The workers of a running job as --scale_workers changes them.
struct WorkerSet {
  std::vector<std::string> all;   // every worker started, for the monitor
  std::vector<std::string> live;  // running and not asked to leave, by age
  int next_index = 0;             // of the next "w<i>" a scale-up adds
};

// Brings the job to `want` workers: starts new ones (AddedWorkerSpec) or
// asks the newest to leave (SIGTERM: they deregister from the shards and
// exit; ReapRetired sees them go). Returns what it did, for the command.
absl::StatusOr<std::string> ScaleWorkers(const LauncherOptions& o,
                                         const std::string& bin, int want,
                                         WorkerSet* workers, Job* live_job,
                                         ProcessGroup* group,
                                         Monitor* monitor) {
  std::vector<std::string>& live = workers->live;
  live.erase(std::remove_if(live.begin(), live.end(),
                            [group](const std::string& w) {
                              return !group->IsRunning(w);
                            }),
             live.end());
  PG_RETURN_IF_ERROR(CheckWorkerCount(o, static_cast<int>(live.size()), want));
  std::vector<std::string> started, stopping;
  while (static_cast<int>(live.size()) < want) {
    const ProcessSpec spec = AddedWorkerSpec(o, bin, workers->next_index);
    if (absl::Status st = group->AddService(spec); !st.ok()) {
      return absl::Status(
          st.code(),
          absl::StrCat("could not start ", spec.name, ": ", st.message(),
                       started.empty()
                           ? ""
                           : absl::StrCat(" (started ",
                                          absl::StrJoin(started, " "), ")")));
    }
    ++workers->next_index;
    live.push_back(spec.name);
    workers->all.push_back(spec.name);
    live_job->processes.push_back(spec);
    monitor->SetWorkerState(spec.name, "running");
    started.push_back(spec.name);
  }
  while (static_cast<int>(live.size()) > want) {
    const std::string name = live.back();
    live.pop_back();
    if (group->Retire(name)) {
      monitor->SetWorkerState(name, "leaving");
      stopping.push_back(name);
    }
  }
  std::string what =
      absl::StrCat(live.size(), " worker(s): ", absl::StrJoin(live, " "));
  if (!started.empty()) {
    absl::StrAppend(&what, "; started ", absl::StrJoin(started, " "));
  }
  if (!stopping.empty()) {
    absl::StrAppend(&what, "; asked ", absl::StrJoin(stopping, " "),
                    " to leave");
  }
  if (started.empty() && stopping.empty())
    absl::StrAppend(&what, "; no change");
  return what;
}

// Watches the processes and prints progress until the step or time budget
// is spent, a stop is requested, or a critical process died (an error).
absl::Status Train(const LauncherOptions& o, const std::string& bin,
                   const Job& job, const std::atomic<bool>* stop,
                   absl::Time run_start, const TrainingStart& start,
                   ProcessGroup* group, Monitor* monitor,
                   ScaleControl* control) {
  WorkerSet scaled;
  scaled.all = NamesOf(job, Role::kWorker);
  scaled.live = scaled.all;
  scaled.next_index = static_cast<int>(scaled.all.size());
  const std::vector<std::string>& workers = scaled.all;
  Job live_job = job;  // with the workers scale-ups added
  auto metrics_address = [group](const std::string& w) {
    return group->Address(w, "metrics");
  };
  absl::Time next_progress = absl::Now() + absl::Seconds(o.progress_s);
  const bool has_eval = FindProcess(job, "eval") != nullptr;
  bool killed_for_test = false;
  ScrapeTargetsWriter scrape_targets(o.out_dir);
  bool scrape_targets_failed = false;
  while (true) {
    // Workers' ports appear while training runs: keep the file current.
    if (absl::Status st = scrape_targets.Update(
            KnownTargets(live_job,
                         [group](const std::string& name) {
                           return group->Address(name, "metrics");
                         }));
        !st.ok() && !scrape_targets_failed) {
      scrape_targets_failed = true;
      Loud(absl::StrCat("cannot keep the Prometheus targets current (",
                        st.message(), "); training goes on"));
    }
    if (control != nullptr) {
      if (std::optional<ScaleControl::Request> r = control->Poll()) {
        absl::StatusOr<std::string> what = ScaleWorkers(
            o, bin, r->workers, &scaled, &live_job, group, monitor);
        if (what.ok()) {
          Say(absl::StrCat("scaled to ", *what));
        } else {
          Loud(absl::StrCat("cannot scale to ", r->workers,
                            " workers: ", what.status().message()));
        }
        if (absl::Status st = control->Answer(*r, what); !st.ok()) {
          Loud(absl::StrCat("cannot answer the scale request: ", st.message()));
        }
      }
    }
    for (const ProcessGroup::Retired& gone : group->ReapRetired()) {
      monitor->SetWorkerState(gone.name, "left");
      const std::string line =
          absl::StrFormat("%s left the job (%s, %.1f s after SIGTERM)",
                          gone.name, gone.exit, gone.seconds_to_exit);
      if (gone.clean) {
        Say(line);
      } else {
        Loud(absl::StrCat(line, "; see ", group->LogPath(gone.name)));
      }
    }
    for (const ProcessSpec* dead : group->NewDeaths()) {
      const std::string exit = group->ExitDescription(dead->name);
      if (dead->critical) {
        return absl::UnavailableError(absl::StrCat(
            dead->description, " died (", exit, "): stopping the run; see ",
            group->LogPath(dead->name)));
      }
      if (dead->role == Role::kEval) {
        Loud(absl::StrCat("the live evaluator exited (", exit,
                          "): training goes on without live FID; see ",
                          group->LogPath(dead->name)));
        continue;
      }
      Loud("training goes on with the other workers");
      monitor->SetWorkerState(dead->name, exit);
    }
    if (group->Running(Role::kWorker) == 0) {
      return absl::UnavailableError("every worker died: stopping the run");
    }
    const double trained_s = absl::ToDoubleSeconds(absl::Now() - start.at);
    if (!o.kill_process.empty() && !killed_for_test &&
        trained_s >= o.kill_after_s) {
      killed_for_test = true;
      if (group->Signal(o.kill_process, SIGKILL)) {
        Loud(absl::StrCat("test hook: SIGKILL to ", o.kill_process));
      } else {
        Loud(absl::StrCat("test hook: no process named ", o.kill_process));
      }
    }
    if (stop->load()) {
      Say("stop requested: stopping workers, data service, then shards");
      break;
    }
    if (o.minutes > 0 && trained_s >= o.minutes * 60) {
      Say(absl::StrCat("time budget of ", o.minutes, " minutes spent"));
      break;
    }
    // A worker's first reading once its metrics are up: the next line
    // has its rate.
    monitor->ScrapeWorkers(workers, metrics_address, /*only_unread=*/true);
    if (absl::Now() >= next_progress) {
      next_progress += absl::Seconds(o.progress_s);
      monitor->ScrapeWorkers(workers, metrics_address);
      const std::optional<ShardTotals> st = monitor->QueryShards();
      if (has_eval) {
        if (absl::StatusOr<std::string> a = group->Address("eval", "metrics");
            a.ok()) {
          monitor->ScrapeEval(*a);
        }
      }
      std::cout << ProgressAggregator::FormatLine(
                       absl::ToDoubleSeconds(absl::Now() - run_start),
                       monitor->Totals(), st ? st : monitor->last_shards(),
                       monitor->last_eval())
                << std::endl;
      // A line per link whose worker waited for data (stall > 5%).
      if (absl::StatusOr<std::string> a = group->Address("data", "metrics");
          a.ok()) {
        for (const std::string& line : monitor->ScrapeDataLinks(*a)) {
          std::cout << "  " << line << std::endl;
        }
      }
      if (st && o.steps > 0 && st->g_version >= o.steps) {
        Say(absl::StrCat("reached G step ", st->g_version));
        break;
      }
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
  // The workers' latest counts and losses, for the summary.
  monitor->ScrapeWorkers(workers, metrics_address);
  return absl::OkStatus();
}

// The summary's numbers, from the monitor's last readings and the group.
void FillSummary(const LauncherOptions& o, const TrainingStart& start,
                 absl::Time train_end, const Monitor& monitor,
                 RunSummary* summary) {
  RunSummary& s = *summary;
  const ProgressAggregator::Totals t = monitor.Totals();
  s.worker_steps = t.worker_steps;
  s.img_s_last = t.img_s;
  s.d_loss = t.d_loss;
  s.g_loss = t.g_loss;
  s.d_real = t.d_real;
  s.d_fake = t.d_fake;
  s.staleness_d = t.staleness_d;
  s.staleness_g = t.staleness_g;
  s.rejected = t.rejected;
  s.worker_img_s = t.worker_img_s;
  for (const auto& [id, role] : t.worker_role) {
    if (role == "g_only") s.g_worker_steps_s[id] = t.worker_steps_s.at(id);
  }
  s.sample_age = t.sample_age;
  s.stalls = t.stalls;
  s.skipped_samples = t.skipped;
  s.g_steps = t.g_version;
  s.d_steps = t.d_version;
  if (const std::optional<ShardTotals>& shards = monitor.last_shards()) {
    s.g_steps = shards->g_version;
    s.d_steps = shards->d_version;
    s.rejected = shards->rejected;
  }
  if (const std::optional<EvalReading>& e = monitor.last_eval()) {
    s.eval_network = e->network;
    s.eval_fid = e->fid;
    s.eval_g_version = e->g_version;
    s.eval_rounds = e->rounds;
  }
  s.train_s =
      start.workers_started ? absl::ToDoubleSeconds(train_end - start.at) : 0;
  s.g_steps_this_run = start.g_version >= 0
                           ? std::max<int64_t>(0, s.g_steps - start.g_version)
                           : 0;
  // Real images through D in this run: the shards' accepted D pushes, one
  // worker batch each, in asynchronous steps and in synchronous rounds of
  // however many workers a round had (they follow scaling). Without the
  // shards' counts: one batch per D step, num_workers per synchronous round.
  // D, not G: with n D steps per G step a G step stands for n batches, and
  // a policy may refuse G pushes whose batches D still used.
  const std::optional<ShardTotals>& end = monitor.last_shards();
  int64_t d_batches = 0;
  if (end && start.d_batches >= 0) {
    d_batches = std::max<int64_t>(0, end->d_batches - start.d_batches);
  } else if (start.d_version >= 0) {
    d_batches = std::max<int64_t>(0, s.d_steps - start.d_version) *
                (o.mode == "sync" ? o.num_workers : 1);
  }
  s.img_s = s.train_s > 0
                ? static_cast<double>(d_batches) * o.batch_size / s.train_s
                : 0;
}

}  // namespace

absl::StatusOr<std::string> FindBinDir(const std::string& flag,
                                       bool with_eval) {
  std::vector<std::string> candidates;
  if (!flag.empty()) {
    candidates.push_back(flag);
  } else {
    std::error_code ec;
    const std::filesystem::path exe =
        std::filesystem::read_symlink("/proc/self/exe", ec);
    if (!ec) {
      // <bin>/deploy/local/paragan_local
      candidates.push_back(exe.parent_path().parent_path().parent_path());
    }
    candidates.push_back("bazel-bin");
  }
  std::string report;
  for (const std::string& dir : candidates) {
    const std::vector<std::string> missing = MissingBinaries(dir, with_eval);
    if (missing.empty()) return dir;
    absl::StrAppend(&report, "\n  ", dir, ": missing ",
                    absl::StrJoin(missing, ", "));
  }
  return absl::NotFoundError(absl::StrCat(
      "cannot find the service binaries", report,
      "\nbuild them with: bazel build //server:paragan_server "
      "//dataloader:paragan_data //worker/distributed:paragan_worker "
      "//worker/train:paragan_init //worker/train:paragan_sample "
      "//worker/eval:paragan_eval (or pass --bin_dir=<bazel-bin>)"));
}

absl::Status RunLocal(const LauncherOptions& o, const std::atomic<bool>* stop,
                      RunSummary* summary) {
  const absl::Time run_start = absl::Now();
  *summary = RunSummary();
  summary->model = o.model;
  summary->mode = o.mode;
  summary->staleness_policy = o.staleness_policy;
  summary->momentum_compensation = o.momentum_compensation && o.mode == "async";
  summary->num_workers = o.num_workers;
  summary->schedule = o.schedule;
  const RoleCounts roles = DecoupledRoles(o);
  summary->g_workers = roles.g;
  summary->d_workers = roles.d;
  summary->num_shards = o.num_shards;
  summary->batch_size = o.batch_size;
  PG_RETURN_IF_ERROR(ValidateOptions(o));
  PG_ASSIGN_OR_RETURN(const std::string bin,
                      FindBinDir(o.bin_dir, o.eval_every_s > 0));
  PG_ASSIGN_OR_RETURN(const Job job, DescribeJob(o, bin));
  PG_RETURN_IF_ERROR(Mkdirs(job.log_dir));
  PG_RETURN_IF_ERROR(Mkdirs(o.out_dir + "/ps"));
  // paragan_local --out_dir=<this> --scale_workers=N reaches the run here.
  ScaleControl control(o.out_dir);
  const absl::Status control_status = control.Open();
  const bool control_open = control_status.ok();
  if (!control_open) {
    Loud(absl::StrCat("the worker count cannot be changed while this runs (",
                      control_status.message(), ")"));
  }
  std::string auth_token;
  if (o.auth) {
    PG_ASSIGN_OR_RETURN(auth_token, WriteAuthToken(AuthTokenPath(o)));
    Say(absl::StrCat("bearer token on every service: ", AuthTokenPath(o)));
  }
  TlsFiles tls;
  if (o.tls) {
    PG_ASSIGN_OR_RETURN(const LocalCertificates certs,
                        WriteLocalCertificates(TlsDir(o)));
    tls = certs.ClientFiles();
    Say(
        absl::StrCat("mutual TLS on every service, no data planes (a fresh "
                     "CA and certificates in ",
                     TlsDir(o), ")"));
  }
  PG_ASSIGN_OR_RETURN(const ClientSecurity security,
                      ClientSecurityFromFiles(tls, auth_token));

  ToolLines tools;
  ProcessGroup::Options go;
  go.stop = stop;
  go.probes = {{Readiness::Check::kShardState,
                [security](const std::string& address) {
                  return ShardAnswers(address, security);
                }},
               {Readiness::Check::kMetrics, MetricsAnswer}};
  go.on_line = ToolLineHandler(&tools);
  TrainingStart start;
  // The final evaluation's row lands on the training clock.
  go.resolve_other =
      [&start](const PortRef& ref) -> absl::StatusOr<std::string> {
    if (ref.process == "run" && ref.port == "train_start_unix_s") {
      return absl::StrFormat(
          "%.3f", absl::ToDoubleSeconds(start.at - absl::UnixEpoch()));
    }
    return absl::InvalidArgumentError(
        absl::StrCat("unknown reference ${", ref.process, ".", ref.port, "}"));
  };
  ProcessGroup group(job, std::move(go));
  Monitor monitor;

  // A failure anywhere still stops the processes and writes the summary.
  absl::Status run_status =
      StartAll(o, job, &group, &monitor, &start, security);
  if (run_status.ok()) {
    run_status = Train(o, bin, job, stop, run_start, start, &group, &monitor,
                       control_open ? &control : nullptr);
  }
  // The job's stop order: workers, data service, the export from the final
  // tables (the shards' last state read just before), then the shards,
  // which write their checkpoints.
  const std::map<std::string, absl::Status> tasks =
      group.Shutdown([&monitor](const ProcessSpec& task) {
        if (task.role == Role::kExport) monitor.QueryShards();
      });
  const absl::Time train_end =
      group.LastExit(Role::kWorker).value_or(absl::Now());

  RunSummary& s = *summary;
  s.processes = group.FinalReports();
  FillSummary(o, start, train_end, monitor, &s);
  auto exported = tasks.find("export");
  if (exported != tasks.end() && exported->second.ok()) {
    // The files come from the tool's "wrote <path>" lines rather than
    // being derived here: the grid's name carries the G version the tool
    // pulled and samples_labels.npy depends on the model being
    // conditional, both known to the tool, not to the launcher (which
    // holds no model code). The group drained its output: every line is in.
    absl::MutexLock lock(&tools.mu);
    s.outputs = tools.wrote["export"];
  }
  {
    absl::MutexLock lock(&tools.mu);
    auto final_eval = tools.result.find("eval-final");
    if (final_eval != tools.result.end()) {
      std::map<std::string, std::string>& r = final_eval->second;
      s.final_fid_network = r["network"];
      if (!absl::SimpleAtod(r["fid"], &s.final_fid) ||
          !absl::SimpleAtoi(r["g_step"], &s.final_fid_g_step) ||
          !absl::SimpleAtoi(r["samples"], &s.final_fid_samples)) {
        s.final_fid_samples = 0;  // not a line we understand: leave it out
      }
    }
  }
  auto final_eval_status = tasks.find("eval-final");
  if (final_eval_status != tasks.end() && !final_eval_status->second.ok()) {
    // Not the run's failure: training and its outputs are fine.
    Loud(absl::StrCat(
        "the final evaluation failed: ", final_eval_status->second.message(),
        " (see ", job.log_dir, "/eval-final.log)"));
  }
  for (const char* f : {"/fid.csv", "/fid.png", "/prometheus.yml"}) {
    if (access((o.out_dir + f).c_str(), R_OK) == 0)
      s.outputs.push_back(o.out_dir + f);
  }
  for (int i = 0; i < o.num_shards; ++i) {
    const std::string ck =
        absl::StrCat(o.out_dir, "/ps/shard-", i, "-of-", o.num_shards, ".pgt");
    if (access(ck.c_str(), R_OK) == 0) s.outputs.push_back(ck);
  }
  s.wall_s = absl::ToDoubleSeconds(absl::Now() - run_start);
  if (!run_status.ok() && !absl::IsCancelled(run_status)) {
    s.error = std::string(run_status.message());
  } else if (exported != tasks.end() && !exported->second.ok()) {
    s.error = std::string(exported->second.message());
  } else if (exported == tasks.end()) {
    s.error =
        "the outputs were not written: the shards were not running at "
        "the end";
  }
  s.outputs.push_back(o.out_dir + "/summary.txt");
  s.outputs.push_back(o.out_dir + "/summary.json");
  std::ofstream(o.out_dir + "/summary.txt") << SummaryText(s);
  std::ofstream(o.out_dir + "/summary.json") << SummaryJson(s);
  if (!s.error.empty()) return absl::InternalError(s.error);
  return absl::OkStatus();
}

}  // namespace local
}  // namespace paragan
