#include "deploy/local/process_group.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/check.h"

namespace paragan {
namespace local {
namespace {

constexpr int kLastStderrLines = 20;
// Last stderr lines of a failed process quoted in the run's error.
constexpr int kErrorLines = 5;
// Between two readiness probes of one process.
constexpr absl::Duration kProbeInterval = absl::Milliseconds(200);

}  // namespace

std::optional<int> ParsePortAfter(absl::string_view line,
                                  absl::string_view marker) {
  const size_t at = line.find(marker);
  if (at == absl::string_view::npos) return std::nullopt;
  absl::string_view rest =
      absl::StripLeadingAsciiWhitespace(line.substr(at + marker.size()));
  size_t n = 0;
  while (n < rest.size() && absl::ascii_isdigit(rest[n])) ++n;
  int port = 0;
  if (n == 0 || n > 5 || !absl::SimpleAtoi(rest.substr(0, n), &port) ||
      port < 1 || port > 65535) {
    return std::nullopt;
  }
  return port;
}

std::string DescribeWaitStatus(int status) {
  if (WIFEXITED(status)) return absl::StrCat("exit ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    const char* name = strsignal(sig);
    return absl::StrCat("killed by signal ", sig, name ? " (" : "",
                        name ? name : "", name ? ")" : "");
  }
  return absl::StrCat("status ", status);
}

// ---------------------------------------------------------------------------
// ChildProcess
// ---------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<ChildProcess>> ChildProcess::Start(
    const std::string& name, const std::vector<std::string>& argv,
    const std::string& log_path, LineFn on_line) {
  if (argv.empty()) return absl::InvalidArgumentError("empty command");
  auto child = std::unique_ptr<ChildProcess>(new ChildProcess());
  child->name_ = name;
  child->command_line_ = absl::StrJoin(argv, " ");
  child->on_line_ = std::move(on_line);
  FILE* log = std::fopen(log_path.c_str(), "a");
  if (log == nullptr) {
    return absl::InternalError(
        absl::StrCat("cannot open ", log_path, ": ", std::strerror(errno)));
  }
  std::fprintf(log, "# %s\n", child->command_line_.c_str());
  std::fflush(log);
  {
    absl::MutexLock lock(&child->mu_);
    child->log_ = log;
  }
  int out[2], err[2];
  if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe: ", std::strerror(errno)));
  }
  std::vector<char*> args;
  for (const std::string& a : argv)
    args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) {
    return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
  }
  if (pid == 0) {
    // Child: only async-signal-safe calls until exec.
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(127);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGPIPE, SIG_DFL);
    dup2(out[1], 1);
    dup2(err[1], 2);
    execv(args[0], args.data());
    const char msg[] = "exec failed\n";
    (void)!write(2, msg, sizeof(msg) - 1);
    _exit(127);
  }
  close(out[1]);
  close(err[1]);
  child->pid_ = pid;
  ChildProcess* c = child.get();
  c->out_reader_ = std::thread([c, fd = out[0]] { c->ReadLoop(fd, false); });
  c->err_reader_ = std::thread([c, fd = err[0]] { c->ReadLoop(fd, true); });
  return child;
}

void ChildProcess::ReadLoop(int fd, bool is_stderr) {
  std::string pending;
  char buf[4096];
  auto emit = [&](const std::string& line) {
    {
      absl::MutexLock lock(&mu_);
      if (log_ != nullptr) {
        std::fprintf(log_, "%s%s\n", is_stderr ? "" : "", line.c_str());
        std::fflush(log_);
      }
      if (is_stderr) {
        last_stderr_.push_back(line);
        if (last_stderr_.size() > kLastStderrLines) last_stderr_.pop_front();
      }
    }
    if (on_line_) on_line_(line, is_stderr);
  };
  while (true) {
    const ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    pending.append(buf, static_cast<size_t>(n));
    size_t nl;
    while ((nl = pending.find('\n')) != std::string::npos) {
      emit(pending.substr(0, nl));
      pending.erase(0, nl + 1);
    }
  }
  if (!pending.empty()) emit(pending);
  close(fd);
}

ChildProcess::~ChildProcess() {
  if (pid_ > 0 && !Poll()) {
    kill(pid_, SIGKILL);
    WaitFor(absl::Seconds(5));
  }
  if (out_reader_.joinable()) out_reader_.join();
  if (err_reader_.joinable()) err_reader_.join();
  absl::MutexLock lock(&mu_);
  if (log_ != nullptr) std::fclose(log_);
  log_ = nullptr;
}

bool ChildProcess::Poll() {
  if (exited_) return true;
  int status = 0;
  const pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    exited_ = true;
    status_ = status;
    exit_time_ = absl::Now();
  }
  return exited_;
}

bool ChildProcess::WaitFor(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!Poll()) {
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return true;
}

void ChildProcess::Signal(int sig) {
  if (pid_ > 0 && !Poll()) kill(pid_, sig);
}

std::string ChildProcess::ExitDescription() const {
  return exited_ ? DescribeWaitStatus(status_) : "running";
}

void ChildProcess::DrainOutput() {
  if (out_reader_.joinable()) out_reader_.join();
  if (err_reader_.joinable()) err_reader_.join();
}

std::vector<std::string> ChildProcess::LastStderrLines() const {
  absl::MutexLock lock(&mu_);
  return std::vector<std::string>(last_stderr_.begin(), last_stderr_.end());
}

// ---------------------------------------------------------------------------
// ProcessGroup
// ---------------------------------------------------------------------------

struct ProcessGroup::Proc {
  ProcessSpec spec;
  std::unique_ptr<ChildProcess> child;
  absl::Time started_at;
  bool ready = false;
  bool stop_requested = false;  // we signalled it
  bool reported = false;        // its unexpected exit was reported
  absl::Time retired_at = absl::InfiniteFuture();  // Retire's SIGTERM
  bool retire_reaped = false;                      // ReapRetired returned it
  bool retire_killed = false;                      // its grace ran out
  absl::Time next_probe = absl::InfinitePast();
  std::map<std::string, int> file_ports;  // read once present
  absl::Mutex mu;
  std::map<std::string, int> line_ports ABSL_GUARDED_BY(mu);
};

namespace {

bool ExitedCleanly(const ChildProcess& c, bool stop_requested) {
  const int st = c.wait_status();
  if (!c.exited()) return false;
  if (WIFEXITED(st) && WEXITSTATUS(st) == 0) return true;
  // Stopped by our SIGTERM before installing a handler counts as clean.
  return stop_requested && WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM;
}

std::optional<int> ReadPortFile(const std::string& path) {
  std::ifstream in(path);
  std::string text;
  if (!in || !std::getline(in, text)) return std::nullopt;
  int port = 0;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(text), &port) || port < 1 ||
      port > 65535) {
    return std::nullopt;
  }
  return port;
}

}  // namespace

ProcessGroup::ProcessGroup(const Job& job, Options options)
    : options_(std::move(options)),
      log_dir_(job.log_dir),
      report_(options_.report ? options_.report : &std::cerr) {
  for (const ProcessSpec& spec : job.processes) {
    auto p = std::make_unique<Proc>();
    p->spec = spec;
    procs_.push_back(std::move(p));
  }
}

ProcessGroup::~ProcessGroup() = default;

std::string ProcessGroup::LogPath(const std::string& name) const {
  return absl::StrCat(log_dir_, "/", name, ".log");
}

ProcessGroup::Proc* ProcessGroup::Find(const std::string& name) {
  for (auto& p : procs_) {
    if (p->spec.name == name) return p.get();
  }
  return nullptr;
}

absl::Status ProcessGroup::StartStage(const std::string& stage) {
  std::vector<Proc*> procs;
  for (auto& p : procs_) {
    if (p->spec.stage == stage && p->spec.lifecycle != Lifecycle::kFinalTask) {
      procs.push_back(p.get());
    }
  }
  for (Proc* p : procs) {
    for (const std::string& dep : p->spec.depends_on) {
      const Proc* d = Find(dep);
      if (d == nullptr || !d->ready) {
        return absl::FailedPreconditionError(absl::StrCat(
            p->spec.name, " depends on ", dep, ", which is not ready"));
      }
    }
    if (Stopping()) return absl::CancelledError("stopped during startup");
    PG_RETURN_IF_ERROR(StartProcess(p));
  }
  std::vector<Proc*> services;
  for (Proc* p : procs) {
    if (p->spec.lifecycle == Lifecycle::kStartTask) {
      PG_RETURN_IF_ERROR(WaitTask(p));
    } else if (p->spec.readiness.wait) {
      services.push_back(p);
    }
  }
  return WaitReady(services);
}

absl::Status ProcessGroup::StartProcess(Proc* p) {
  std::vector<std::string> argv = {p->spec.binary};
  for (const std::string& flag : p->spec.flags) {
    PG_ASSIGN_OR_RETURN(std::string resolved,
                        ResolveFlag(flag, [this](const PortRef& ref) {
                          if (Find(ref.process) == nullptr &&
                              options_.resolve_other) {
                            return options_.resolve_other(ref);
                          }
                          return Address(ref.process, ref.port);
                        }));
    argv.push_back(std::move(resolved));
  }
  // A port file left by an earlier run would name a closed port.
  for (const PortSpec& port : p->spec.ports) {
    if (port.source == PortSpec::Source::kPortFile) {
      std::remove(port.file.c_str());
    }
  }
  PG_ASSIGN_OR_RETURN(
      p->child,
      ChildProcess::Start(p->spec.name, argv, LogPath(p->spec.name),
                          [this, p](const std::string& line, bool is_stderr) {
                            for (const PortSpec& port : p->spec.ports) {
                              if (port.source != PortSpec::Source::kStdoutLine)
                                continue;
                              if (auto n = ParsePortAfter(line, port.marker)) {
                                absl::MutexLock lock(&p->mu);
                                p->line_ports.emplace(port.name, *n);
                              }
                            }
                            if (options_.on_line)
                              options_.on_line(p->spec, line, is_stderr);
                          }));
  p->started_at = absl::Now();
  if (p->spec.readiness.check == Readiness::Check::kStarted) p->ready = true;
  started_.push_back(p);
  return absl::OkStatus();
}

std::optional<int> ProcessGroup::Port(Proc* p, const std::string& name) {
  for (const PortSpec& port : p->spec.ports) {
    if (port.name != name) continue;
    if (port.source == PortSpec::Source::kStdoutLine) {
      absl::MutexLock lock(&p->mu);
      auto it = p->line_ports.find(name);
      if (it == p->line_ports.end()) return std::nullopt;
      return it->second;
    }
    auto it = p->file_ports.find(name);
    if (it != p->file_ports.end()) return it->second;
    // Written once serving (by a rename: never half a number).
    std::optional<int> n = ReadPortFile(port.file);
    if (n) p->file_ports[name] = *n;
    return n;
  }
  return std::nullopt;
}

std::string ProcessGroup::NotReady(Proc* p) {
  const Readiness& r = p->spec.readiness;
  if (r.check == Readiness::Check::kStarted) return "";
  for (const PortSpec& port : p->spec.ports) {
    if (!Port(p, port.name)) {
      return port.source == PortSpec::Source::kPortFile
                 ? absl::StrCat("no port in ", port.file)
                 : absl::StrCat("no '", port.marker, "' line");
    }
  }
  auto probe = options_.probes.find(r.check);
  // Without a probe for the check, known ports are enough.
  if (probe == options_.probes.end() || !probe->second) return "";
  const std::string address =
      absl::StrCat(options_.host, ":", Port(p, r.port).value_or(0));
  const std::string missing = absl::StrCat(address, " did not answer");
  if (absl::Now() < p->next_probe) return missing;
  if (probe->second(address)) return "";
  p->next_probe = absl::Now() + kProbeInterval;
  return missing;
}

absl::Status ProcessGroup::WaitReady(const std::vector<Proc*>& procs) {
  while (true) {
    bool all = true;
    for (Proc* p : procs) {
      if (p->ready) continue;
      const std::string missing = NotReady(p);
      if (missing.empty()) {
        p->ready = true;
        continue;
      }
      all = false;
      if (p->child->Poll()) {
        // Its error line ("unknown staleness policy ...") may still be in
        // the pipes.
        p->child->DrainOutput();
        ReportDeath(p);
        return absl::UnavailableError(absl::StrCat(
            p->spec.name, " exited during startup (",
            p->child->ExitDescription(), ")", StderrTail(p, kErrorLines),
            "; see ", LogPath(p->spec.name)));
      }
      if (absl::Now() > p->started_at + p->spec.readiness.timeout) {
        return absl::DeadlineExceededError(
            absl::StrCat(p->spec.name, " was not ready within ",
                         absl::FormatDuration(p->spec.readiness.timeout), " (",
                         missing, "); see ", LogPath(p->spec.name)));
      }
    }
    if (all) return absl::OkStatus();
    if (Stopping()) return absl::CancelledError("stopped during startup");
    absl::SleepFor(absl::Milliseconds(20));
  }
}

absl::Status ProcessGroup::WaitTask(Proc* p) {
  const absl::Duration timeout = p->spec.readiness.timeout;
  const absl::Time deadline = p->started_at + timeout;
  std::string failure;
  while (!p->child->WaitFor(absl::Milliseconds(100))) {
    // (Polled in slices: a stop request or the deadline ends the wait.)
    const bool stopped = p->spec.stoppable && Stopping();
    if (stopped || absl::Now() >= deadline) {
      p->stop_requested = true;
      p->child->Signal(SIGTERM);
      if (!p->child->WaitFor(absl::Seconds(5))) {
        p->child->Signal(SIGKILL);
        p->child->WaitFor(absl::Seconds(5));
      }
      p->reported = true;
      if (stopped) {
        return absl::CancelledError(
            absl::StrCat("stopped during ", p->spec.description));
      }
      failure =
          absl::StrCat("did not finish within ", absl::FormatDuration(timeout),
                       ", killed (", p->child->ExitDescription(), ")");
      break;
    }
  }
  // Its last lines ("wrote ...", "error: ...") may still be in the pipes.
  if (p->child->exited()) p->child->DrainOutput();
  if (failure.empty()) {
    if (ExitedCleanly(*p->child, p->stop_requested)) {
      p->ready = true;
      return absl::OkStatus();
    }
    failure = absl::StrCat("failed (", p->child->ExitDescription(), ")");
  }
  p->reported = true;
  return absl::InternalError(
      absl::StrCat(p->spec.description, " (process ", p->spec.name, ", ",
                   p->spec.binary, ") ", failure, StderrTail(p, kErrorLines),
                   "; see ", LogPath(p->spec.name)));
}

std::string ProcessGroup::StderrTail(Proc* p, int lines) {
  std::vector<std::string> last = p->child->LastStderrLines();
  if (last.empty()) return "; no stderr output";
  if (last.size() > static_cast<size_t>(lines)) {
    last.erase(last.begin(), last.end() - lines);
  }
  return absl::StrCat("; its last stderr lines: ", absl::StrJoin(last, " | "));
}

void ProcessGroup::ReportDeath(Proc* p) {
  if (p->reported) return;
  p->reported = true;
  std::ostringstream msg;
  msg << "\n*** " << p->spec.name << " (pid " << p->child->pid()
      << ") died unexpectedly: " << p->child->ExitDescription() << "\n";
  const auto lines = p->child->LastStderrLines();
  if (lines.empty()) {
    msg << "*** (no stderr output)\n";
  } else {
    msg << "*** its last stderr lines:\n";
    for (const std::string& l : lines) msg << "***   " << l << "\n";
  }
  *report_ << msg.str() << std::flush;
}

std::vector<const ProcessSpec*> ProcessGroup::NewDeaths() {
  std::vector<const ProcessSpec*> dead;
  for (Proc* p : started_) {
    if (p->spec.lifecycle != Lifecycle::kService || p->reported ||
        p->stop_requested || !p->child->Poll()) {
      continue;
    }
    ReportDeath(p);
    dead.push_back(&p->spec);
  }
  return dead;
}

absl::Status ProcessGroup::AddService(const ProcessSpec& spec) {
  if (Find(spec.name) != nullptr) {
    return absl::AlreadyExistsError(
        absl::StrCat("the job already has a process named ", spec.name));
  }
  if (spec.lifecycle != Lifecycle::kService) {
    return absl::InvalidArgumentError(
        absl::StrCat(spec.name, " is not a service"));
  }
  for (const std::string& dep : spec.depends_on) {
    const Proc* d = Find(dep);
    if (d == nullptr || !d->ready || !IsRunning(dep)) {
      return absl::FailedPreconditionError(absl::StrCat(
          spec.name, " depends on ", dep, ", which is not running"));
    }
  }
  auto p = std::make_unique<Proc>();
  p->spec = spec;
  Proc* raw = p.get();
  procs_.push_back(std::move(p));
  absl::Status st = StartProcess(raw);
  if (!st.ok()) procs_.pop_back();  // never started: not part of the job
  return st;
}

bool ProcessGroup::Retire(const std::string& name) {
  Proc* p = Find(name);
  if (p == nullptr || p->child == nullptr || p->child->Poll() ||
      p->stop_requested) {
    return false;
  }
  p->stop_requested = true;
  p->retired_at = absl::Now();
  p->child->Signal(SIGTERM);
  return true;
}

std::vector<ProcessGroup::Retired> ProcessGroup::ReapRetired() {
  std::vector<Retired> out;
  const absl::Time now = absl::Now();
  for (Proc* p : started_) {
    if (p->retired_at == absl::InfiniteFuture() || p->retire_reaped) continue;
    if (!p->child->Poll()) {
      if (!p->retire_killed && now - p->retired_at > p->spec.grace) {
        *report_ << options_.prefix << p->spec.name << " did not stop within "
                 << absl::FormatDuration(p->spec.grace) << ": SIGKILL"
                 << std::endl;
        p->child->Signal(SIGKILL);
        p->retire_killed = true;
      }
      continue;
    }
    p->retire_reaped = true;
    out.push_back({p->spec.name, p->child->ExitDescription(),
                   absl::ToDoubleSeconds(p->child->exit_time() - p->retired_at),
                   ExitedCleanly(*p->child, true)});
  }
  return out;
}

int ProcessGroup::Running(Role role) {
  int n = 0;
  for (Proc* p : started_) {
    if (p->spec.role == role && !p->child->Poll()) ++n;
  }
  return n;
}

bool ProcessGroup::IsRunning(const std::string& name) {
  Proc* p = Find(name);
  return p != nullptr && p->child != nullptr && !p->child->Poll();
}

bool ProcessGroup::Signal(const std::string& name, int sig) {
  Proc* p = Find(name);
  if (p == nullptr || p->child == nullptr) return false;
  p->child->Signal(sig);
  return true;
}

absl::StatusOr<std::string> ProcessGroup::Address(const std::string& name,
                                                  const std::string& port) {
  Proc* p = Find(name);
  if (p == nullptr || p->child == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(name, " is not started"));
  }
  std::optional<int> n = Port(p, port);
  if (!n) {
    return absl::UnavailableError(
        absl::StrCat("the ", port, " port of ", name, " is not known yet"));
  }
  return absl::StrCat(options_.host, ":", *n);
}

std::string ProcessGroup::ExitDescription(const std::string& name) {
  Proc* p = Find(name);
  if (p == nullptr || p->child == nullptr) return "not started";
  p->child->Poll();
  return p->child->ExitDescription();
}

std::optional<absl::Time> ProcessGroup::LastExit(Role role) {
  std::optional<absl::Time> last;
  for (Proc* p : started_) {
    if (p->spec.role != role || !p->child->Poll()) continue;
    if (!last || p->child->exit_time() > *last) last = p->child->exit_time();
  }
  return last;
}

void ProcessGroup::StopAll(const std::vector<Proc*>& procs) {
  for (Proc* p : procs) {
    if (!p->child->Poll()) {
      p->stop_requested = true;
      p->child->Signal(SIGTERM);
    }
  }
  const absl::Time start = absl::Now();
  for (Proc* p : procs) {
    const absl::Duration left =
        std::max(absl::ZeroDuration(), start + p->spec.grace - absl::Now());
    if (!p->child->WaitFor(left)) {
      *report_ << options_.prefix << p->spec.name << " did not stop within "
               << absl::FormatDuration(p->spec.grace) << ": SIGKILL"
               << std::endl;
      p->child->Signal(SIGKILL);
      p->child->WaitFor(absl::Seconds(5));
    }
  }
}

std::map<std::string, absl::Status> ProcessGroup::Shutdown(
    const std::function<void(const ProcessSpec&)>& before_task) {
  std::set<int> orders;
  for (auto& p : procs_) orders.insert(p->spec.stop_order);
  std::map<std::string, absl::Status> results;
  for (int order : orders) {
    std::vector<Proc*> services;
    for (Proc* p : started_) {
      if (p->spec.stop_order == order &&
          p->spec.lifecycle == Lifecycle::kService) {
        services.push_back(p);
      }
    }
    StopAll(services);
    for (auto& p : procs_) {
      if (p->spec.stop_order != order ||
          p->spec.lifecycle != Lifecycle::kFinalTask || p->child != nullptr) {
        continue;
      }
      bool deps_running = true;
      for (const std::string& dep : p->spec.depends_on) {
        deps_running = deps_running && IsRunning(dep);
      }
      if (!deps_running) continue;
      if (before_task) before_task(p->spec);
      absl::Status st = StartProcess(p.get());
      if (st.ok()) st = WaitTask(p.get());
      results[p->spec.name] = st;
    }
  }
  return results;
}

std::vector<ProcessReport> ProcessGroup::FinalReports() {
  std::vector<ProcessReport> out;
  for (Proc* p : started_) {
    p->child->Poll();
    ProcessReport r;
    r.name = p->spec.name;
    r.pid = p->child->pid();
    r.exit = p->child->ExitDescription();
    r.ok = ExitedCleanly(*p->child, p->stop_requested);
    if (!r.ok && !p->stop_requested) ReportDeath(p);
    out.push_back(r);
  }
  return out;
}

}  // namespace local
}  // namespace paragan
