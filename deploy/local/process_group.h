#ifndef PARAGAN_DEPLOY_LOCAL_PROCESS_GROUP_H_
#define PARAGAN_DEPLOY_LOCAL_PROCESS_GROUP_H_

// Runs a job description's processes (job.h) as child processes on this
// machine: starts them stage by stage, waits until each is ready, learns
// their ports, reports a process that dies (exit status and last stderr
// lines), and stops them in their stop order with their grace periods
// (SIGTERM, then SIGKILL), running the final tasks (the export) at their
// place in that order. It knows no model and no service: readiness checks
// that talk to a service are probes the caller supplies.

#include <sys/types.h>

#include <atomic>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "deploy/local/job.h"

namespace paragan {
namespace local {

// The port printed after `marker` in lines such as
// "paragan_server: shard 0/2 listening on port 41234" (marker "listening on
// port") or "paragan_data: metrics on port 9100" (marker "metrics on port").
// nullopt when the line does not have it or the number is not a port.
std::optional<int> ParsePortAfter(absl::string_view line,
                                  absl::string_view marker);

// Human-readable "exit 0" / "killed by signal 9" from a waitpid status.
std::string DescribeWaitStatus(int status);

// A child started with fork/exec in its own process group (Ctrl-C in the
// terminal reaches only the launcher, which stops the children in order),
// killed with SIGTERM if the launcher dies (PR_SET_PDEATHSIG). Its stdout and
// stderr are copied line by line into `log_path` and handed to `on_line`
// (from reader threads); the last stderr lines are kept for error reports.
class ChildProcess {
 public:
  using LineFn = std::function<void(const std::string& line, bool is_stderr)>;

  static absl::StatusOr<std::unique_ptr<ChildProcess>> Start(
      const std::string& name, const std::vector<std::string>& argv,
      const std::string& log_path, LineFn on_line);
  ~ChildProcess();  // SIGKILL if still running, joins the readers

  const std::string& name() const { return name_; }
  pid_t pid() const { return pid_; }
  // Reaps the child if it exited; returns whether it has.
  bool Poll();
  // Polls until exit or timeout; returns whether it exited.
  bool WaitFor(absl::Duration timeout);
  void Signal(int sig);
  bool exited() const { return exited_; }
  int wait_status() const { return status_; }
  // When Poll first saw it gone.
  absl::Time exit_time() const { return exit_time_; }
  std::string ExitDescription() const;
  // After the child exited: waits until its output has all been read (the
  // pipes close once it and anything it started are gone), so that the
  // line callback and LastStderrLines have seen every line.
  void DrainOutput();
  std::vector<std::string> LastStderrLines() const;
  std::string command_line() const { return command_line_; }

 private:
  ChildProcess() = default;
  void ReadLoop(int fd, bool is_stderr);

  std::string name_;
  std::string command_line_;
  pid_t pid_ = -1;
  bool exited_ = false;
  int status_ = 0;
  absl::Time exit_time_ = absl::InfinitePast();
  std::thread out_reader_, err_reader_;
  LineFn on_line_;
  mutable absl::Mutex mu_;
  FILE* log_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::deque<std::string> last_stderr_ ABSL_GUARDED_BY(mu_);
};

// One child process at the end of the run.
struct ProcessReport {
  std::string name;  // "shard0", "data", "w1"
  int pid = 0;
  std::string exit;  // "exit 0", "exit 1", "killed by signal 9", "running"
  bool ok = true;    // ended as the launcher asked (or was still fine)
};

class ProcessGroup {
 public:
  // A readiness probe: true when the service at "host:port" answers.
  using Probe = std::function<bool(const std::string& address)>;
  // Every line of every child, after the group took its ports from it.
  using LineFn = std::function<void(const ProcessSpec& process,
                                    const std::string& line, bool is_stderr)>;
  struct Options {
    std::string host = "127.0.0.1";            // where the children listen
    const std::atomic<bool>* stop = nullptr;   // Ctrl-C: ends waits early
    std::map<Readiness::Check, Probe> probes;  // kShardState, kMetrics
    LineFn on_line;
    std::ostream* report = nullptr;  // death reports, notices; null: cerr
    std::string prefix = "paragan_local: ";  // of notices
    // Resolves a ${name.key} whose name is no process (e.g. the launcher's
    // own ${run.train_start_unix_s}); null: such a reference is an error.
    std::function<absl::StatusOr<std::string>(const PortRef&)> resolve_other;
  };

  ProcessGroup(const Job& job, Options options);
  ~ProcessGroup();  // SIGKILLs whatever still runs

  // Starts every process of `stage` (in job order) once what it depends on
  // is ready, then waits for those whose readiness says wait: a start task
  // until it exited 0, a service until its check passes. An error names
  // the process, its exit status and its last stderr lines; a stop request
  // is CANCELLED.
  absl::Status StartStage(const std::string& stage);

  // Adds a service to the running job (a scale-up) and starts it now: what
  // it depends on must be ready; its readiness is not waited for. Its name
  // must be new to the group.
  absl::Status AddService(const ProcessSpec& spec);
  // Stops one running service as planned (a scale-down), not as a death:
  // SIGTERM now, SIGKILL from ReapRetired once its grace is spent. False
  // when `name` is not running.
  bool Retire(const std::string& name);
  // A retired service that has exited.
  struct Retired {
    std::string name;
    std::string exit;            // "exit 0", "killed by signal 9"
    double seconds_to_exit = 0;  // from the SIGTERM
    bool clean = false;          // exit 0, or the SIGTERM itself
  };
  // Retired services that exited since the last call; SIGKILLs those past
  // their grace (said on the report stream).
  std::vector<Retired> ReapRetired();

  // Services that exited since the last call without being asked to, each
  // reported once on `report` (exit status, last stderr lines).
  std::vector<const ProcessSpec*> NewDeaths();
  // Started services of `role` still running.
  int Running(Role role);
  // Whether `name` was started and has not exited.
  bool IsRunning(const std::string& name);
  // Sends `sig` to a running process; false when there is none of `name`.
  bool Signal(const std::string& name, int sig);
  // "host:port" of a started process's port, once known.
  absl::StatusOr<std::string> Address(const std::string& name,
                                      const std::string& port);
  std::string ExitDescription(const std::string& name);
  // Latest exit time of the processes of `role` (nullopt: none exited).
  std::optional<absl::Time> LastExit(Role role);

  // Stops everything in ascending stop order: every started service of an
  // order gets SIGTERM, then SIGKILL after its grace; a final task of that
  // order runs to its end when what it depends on still runs, after
  // `before_task(spec)`. Returns the final tasks that ran and their status.
  std::map<std::string, absl::Status> Shutdown(
      const std::function<void(const ProcessSpec&)>& before_task);

  // Every started process in start order; reports (once) one that ended
  // badly without having been asked to stop.
  std::vector<ProcessReport> FinalReports();

  std::string LogPath(const std::string& name) const;

 private:
  struct Proc;
  Proc* Find(const std::string& name);
  absl::Status StartProcess(Proc* p);
  // Until every service of `procs` is ready; fails when one exits first.
  absl::Status WaitReady(const std::vector<Proc*>& procs);
  // Until the started task `p` exited (its status: exit 0 or the error).
  absl::Status WaitTask(Proc* p);
  // The missing piece of readiness ("" when ready).
  std::string NotReady(Proc* p);
  std::optional<int> Port(Proc* p, const std::string& port);
  void ReportDeath(Proc* p);
  std::string StderrTail(Proc* p, int lines);
  void StopAll(const std::vector<Proc*>& procs);
  bool Stopping() const { return options_.stop && options_.stop->load(); }

  Options options_;
  std::string log_dir_;
  std::ostream* report_;
  std::vector<std::unique_ptr<Proc>> procs_;  // job order
  std::vector<Proc*> started_;                // start order
};

}  // namespace local
}  // namespace paragan

#endif  // PARAGAN_DEPLOY_LOCAL_PROCESS_GROUP_H_
