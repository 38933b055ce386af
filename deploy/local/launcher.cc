#include "deploy/local/launcher.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/check.h"
#include "server/ps_client.h"
#include "server/table_names.h"

namespace paragan {
namespace local {
namespace {

constexpr int kLastStderrLines = 20;

std::string FormatElapsed(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) seconds = 0;
  const int64_t s = static_cast<int64_t>(seconds + 0.5);
  if (s >= 3600) {
    return absl::StrFormat("%dh%02dm%02ds", s / 3600, (s % 3600) / 60, s % 60);
  }
  return absl::StrFormat("%3dm%02ds", s / 60, s % 60);
}

std::string JsonEscape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += absl::StrFormat("\\u%04x", c);
        } else {
          out += c;
        }
    }
  }
  return out;
}

std::string JsonNumber(double x) {
  if (!std::isfinite(x)) return "null";
  return absl::StrFormat("%.6g", x);
}

}  // namespace

// ---------------------------------------------------------------------------
// Pure pieces
// ---------------------------------------------------------------------------

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

std::optional<WorkerProgress> ParseProgressLine(absl::string_view line) {
  line = absl::StripAsciiWhitespace(line);
  // "progress" may follow a prefix such as "paragan_worker: ".
  const size_t at = line.find("progress ");
  if (at == absl::string_view::npos) return std::nullopt;
  if (at != 0 && line[at - 1] != ' ') return std::nullopt;
  WorkerProgress p;
  bool have_worker = false, have_step = false;
  for (absl::string_view tok :
       absl::StrSplit(line.substr(at + 9), ' ', absl::SkipEmpty())) {
    const size_t eq = tok.find('=');
    if (eq == absl::string_view::npos) continue;
    const absl::string_view key = tok.substr(0, eq), value = tok.substr(eq + 1);
    auto as_double = [&](double* out) {
      double v;
      if (absl::SimpleAtod(value, &v)) *out = v;
    };
    auto as_int = [&](int64_t* out) {
      int64_t v;
      if (absl::SimpleAtoi(value, &v)) *out = v;
    };
    if (key == "worker") {
      p.worker = std::string(value);
      have_worker = !value.empty();
    } else if (key == "step") {
      int64_t v;
      if (absl::SimpleAtoi(value, &v)) {
        p.step = v;
        have_step = true;
      }
    } else if (key == "d_version") {
      as_int(&p.d_version);
    } else if (key == "g_version") {
      as_int(&p.g_version);
    } else if (key == "img_s") {
      as_double(&p.img_s);
    } else if (key == "d_loss") {
      as_double(&p.d_loss);
    } else if (key == "g_loss") {
      as_double(&p.g_loss);
    } else if (key == "d_real") {
      as_double(&p.d_real);
    } else if (key == "d_fake") {
      as_double(&p.d_fake);
    } else if (key == "staleness_d") {
      as_double(&p.staleness_d);
    } else if (key == "staleness_g") {
      as_double(&p.staleness_g);
    } else if (key == "rejected") {
      as_int(&p.rejected);
    }
  }
  if (!have_worker || !have_step) return std::nullopt;
  return p;
}

void ProgressAggregator::Update(const WorkerProgress& p) {
  latest_[p.worker] = p;
  state_.emplace(p.worker, "running");
}

void ProgressAggregator::SetState(const std::string& worker,
                                  const std::string& state) {
  state_[worker] = state;
}

ProgressAggregator::Totals ProgressAggregator::Compute() const {
  Totals t;
  t.worker_state = state_;
  int n = 0;
  for (const auto& [id, p] : latest_) {
    t.worker_steps += p.step;
    t.g_version = std::max(t.g_version, p.g_version);
    t.d_version = std::max(t.d_version, p.d_version);
    t.rejected += p.rejected;
    auto st = state_.find(id);
    const bool running = st == state_.end() || st->second == "running";
    t.worker_img_s[id] = running ? p.img_s : 0.0;
    if (running) t.img_s += p.img_s;
    t.d_loss += p.d_loss;
    t.g_loss += p.g_loss;
    t.d_real += p.d_real;
    t.d_fake += p.d_fake;
    t.staleness_d += p.staleness_d;
    t.staleness_g += p.staleness_g;
    ++n;
  }
  t.workers_reporting = n;
  if (n > 0) {
    for (double* x : {&t.d_loss, &t.g_loss, &t.d_real, &t.d_fake,
                      &t.staleness_d, &t.staleness_g}) {
      *x /= n;
    }
  }
  return t;
}

std::string ProgressAggregator::FormatLine(
    double elapsed_s, const Totals& t,
    const std::optional<ShardTotals>& shards) {
  const int64_t g = shards ? shards->g_version : t.g_version;
  const int64_t d = shards ? shards->d_version : t.d_version;
  const int64_t rejected = shards ? shards->rejected : t.rejected;
  std::vector<std::string> per;
  for (const auto& [id, state] : t.worker_state) {
    auto it = t.worker_img_s.find(id);
    if (state != "running") {
      per.push_back(absl::StrCat(id, " ", state));
    } else if (it == t.worker_img_s.end()) {
      per.push_back(absl::StrCat(id, " starting"));
    } else {
      per.push_back(absl::StrFormat("%s %.0f", id, it->second));
    }
  }
  std::string line = absl::StrFormat("[%s] G step %d | D/G versions %d/%d",
                                     FormatElapsed(elapsed_s), g, d, g);
  if (t.workers_reporting == 0) {
    absl::StrAppend(&line, " | waiting for the first worker progress (",
                    absl::StrJoin(per, ", "), ")");
    return line;
  }
  absl::StrAppend(
      &line, absl::StrFormat(" | %.0f img/s total (%s) | losses D %.3f G %.3f"
                             " | staleness D %.2f G %.2f | rejected %d",
                             t.img_s, absl::StrJoin(per, ", "), t.d_loss,
                             t.g_loss, t.staleness_d, t.staleness_g, rejected));
  return line;
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

std::vector<std::string> SplitFlags(absl::string_view flags) {
  return absl::StrSplit(flags, absl::ByAnyChar(" \t\n"), absl::SkipEmpty());
}

std::string SummaryText(const RunSummary& s) {
  std::string out;
  absl::StrAppend(&out, "ParaGAN local run: ", s.model, ", ", s.num_shards,
                  " parameter-server shard(s), ", s.num_workers, " worker(s), ",
                  s.mode, " (staleness policy ", s.staleness_policy,
                  s.momentum_compensation ? ", momentum compensation" : "",
                  "), batch ", s.batch_size, "\n");
  absl::StrAppend(&out, "result: ",
                  s.error.empty() ? "ok" : absl::StrCat("ERROR: ", s.error),
                  "\n");
  absl::StrAppendFormat(&out,
                        "G steps (G table version) %d, D steps %d; %d G steps "
                        "in this run\n",
                        s.g_steps, s.d_steps, s.g_steps_this_run);
  absl::StrAppendFormat(&out, "worker steps (all workers) %d\n",
                        s.worker_steps);
  absl::StrAppendFormat(&out, "wall time %.1f s (training %.1f s)\n", s.wall_s,
                        s.train_s);
  absl::StrAppendFormat(&out,
                        "images/s %.1f over the training time (D steps of "
                        "this run x batch x workers per step / training s); "
                        "%.1f at the workers' last reports\n",
                        s.img_s, s.img_s_last);
  for (const auto& [id, r] : s.worker_img_s) {
    absl::StrAppendFormat(&out, "  %s: %.1f img/s at its last report\n", id, r);
  }
  absl::StrAppendFormat(&out,
                        "final losses D %.4f G %.4f (mean logits real %.3f "
                        "fake %.3f)\n",
                        s.d_loss, s.g_loss, s.d_real, s.d_fake);
  absl::StrAppendFormat(&out, "mean staleness D %.3f G %.3f\n", s.staleness_d,
                        s.staleness_g);
  absl::StrAppendFormat(&out, "rejected pushes %d\n", s.rejected);
  absl::StrAppend(&out, "processes:\n");
  for (const ProcessReport& p : s.processes) {
    absl::StrAppendFormat(&out, "  %-8s pid %-7d %s%s\n", p.name, p.pid, p.exit,
                          p.ok ? "" : "  <-- unexpected");
  }
  if (!s.outputs.empty()) {
    absl::StrAppend(&out, "outputs:\n");
    for (const std::string& f : s.outputs) absl::StrAppend(&out, "  ", f, "\n");
  }
  return out;
}

std::string SummaryJson(const RunSummary& s) {
  std::string out = "{\n";
  auto str = [&](const char* k, const std::string& v) {
    absl::StrAppend(&out, "  \"", k, "\": \"", JsonEscape(v), "\",\n");
  };
  auto num = [&](const char* k, double v) {
    absl::StrAppend(&out, "  \"", k, "\": ", JsonNumber(v), ",\n");
  };
  auto integer = [&](const char* k, int64_t v) {
    absl::StrAppend(&out, "  \"", k, "\": ", v, ",\n");
  };
  str("model", s.model);
  str("mode", s.mode);
  str("staleness_policy", s.staleness_policy);
  absl::StrAppend(&out, "  \"momentum_compensation\": ",
                  s.momentum_compensation ? "true" : "false", ",\n");
  integer("num_workers", s.num_workers);
  integer("num_shards", s.num_shards);
  integer("batch_size", s.batch_size);
  integer("g_steps", s.g_steps);
  integer("d_steps", s.d_steps);
  integer("g_steps_this_run", s.g_steps_this_run);
  integer("worker_steps", s.worker_steps);
  num("wall_s", s.wall_s);
  num("train_s", s.train_s);
  num("images_per_s", s.img_s);
  num("images_per_s_last", s.img_s_last);
  num("d_loss", s.d_loss);
  num("g_loss", s.g_loss);
  num("d_real", s.d_real);
  num("d_fake", s.d_fake);
  num("staleness_d", s.staleness_d);
  num("staleness_g", s.staleness_g);
  integer("rejected_pushes", s.rejected);
  out += "  \"worker_images_per_s\": {";
  bool first = true;
  for (const auto& [id, r] : s.worker_img_s) {
    absl::StrAppend(&out, first ? "" : ", ", "\"", JsonEscape(id),
                    "\": ", JsonNumber(r));
    first = false;
  }
  out += "},\n  \"processes\": [";
  first = true;
  for (const ProcessReport& p : s.processes) {
    absl::StrAppend(&out, first ? "\n" : ",\n", "    {\"name\": \"",
                    JsonEscape(p.name), "\", \"pid\": ", p.pid,
                    ", \"exit\": \"", JsonEscape(p.exit),
                    "\", \"ok\": ", p.ok ? "true" : "false", "}");
    first = false;
  }
  out += "\n  ],\n  \"outputs\": [";
  first = true;
  for (const std::string& f : s.outputs) {
    absl::StrAppend(&out, first ? "" : ", ", "\"", JsonEscape(f), "\"");
    first = false;
  }
  absl::StrAppend(&out, "],\n  \"ok\": ", s.error.empty() ? "true" : "false",
                  ",\n  \"error\": \"", JsonEscape(s.error), "\"\n}\n");
  return out;
}

// ---------------------------------------------------------------------------
// Child processes
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
// The launcher
// ---------------------------------------------------------------------------

namespace {

constexpr char kServerBin[] = "server/paragan_server";
constexpr char kDataBin[] = "dataloader/paragan_data";
constexpr char kWorkerBin[] = "worker/distributed/paragan_worker";
// One-shot tools, so that the launcher links no model code: the shards'
// initial networks (before they start) and the outputs (from the shards at
// the end).
constexpr char kInitBin[] = "worker/train/paragan_init";
constexpr char kSampleBin[] = "worker/train/paragan_sample";

// How long the tools may take; only a hung tool should reach these (1000
// BigGAN samples on one CPU thread take minutes).
constexpr absl::Duration kInitTimeout = absl::Minutes(10);
constexpr absl::Duration kExportTimeout = absl::Minutes(30);
// Last stderr lines of a failed tool quoted in the run's error.
constexpr int kToolErrorLines = 5;

bool IsExecutable(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
         access(path.c_str(), X_OK) == 0;
}

std::vector<std::string> MissingBinaries(const std::string& dir) {
  std::vector<std::string> missing;
  for (const char* b :
       {kServerBin, kDataBin, kWorkerBin, kInitBin, kSampleBin}) {
    if (!IsExecutable(dir + "/" + b)) missing.push_back(b);
  }
  return missing;
}

// What the reader threads learn from the children's lines.
struct Board {
  absl::Mutex mu;
  std::map<std::string, int> port ABSL_GUARDED_BY(mu);
  std::map<std::string, int> metrics_port ABSL_GUARDED_BY(mu);
  // Paths a tool reported with "wrote <path>" on stdout, by process name.
  std::map<std::string, std::vector<std::string>> wrote ABSL_GUARDED_BY(mu);
  ProgressAggregator progress ABSL_GUARDED_BY(mu);
};

void Say(const std::string& line) {
  std::cout << "paragan_local: " << line << std::endl;
}

void Loud(const std::string& line) {
  std::cerr << "paragan_local: " << line << std::endl;
}

// One child with its role.
struct Proc {
  std::string name;
  // kTool: a one-shot process the launcher waits for (paragan_init,
  // paragan_sample --ps).
  enum Kind { kShard, kData, kWorker, kTool } kind;
  std::unique_ptr<ChildProcess> child;
  bool stop_requested = false;  // we signalled it
  bool reported = false;        // its unexpected exit was reported
};

void ReportDeath(Proc* p) {
  if (p->reported) return;
  p->reported = true;
  std::ostringstream msg;
  msg << "\n*** " << p->name << " (pid " << p->child->pid()
      << ") died unexpectedly: " << p->child->ExitDescription() << "\n";
  const auto lines = p->child->LastStderrLines();
  if (lines.empty()) {
    msg << "*** (no stderr output)\n";
  } else {
    msg << "*** its last stderr lines:\n";
    for (const std::string& l : lines) msg << "***   " << l << "\n";
  }
  std::cerr << msg.str() << std::flush;
}

bool ExitedCleanly(const Proc& p) {
  const int st = p.child->wait_status();
  if (!p.child->exited()) return false;
  if (WIFEXITED(st) && WEXITSTATUS(st) == 0) return true;
  // Stopped by our SIGTERM before installing a handler counts as clean.
  return p.stop_requested && WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM;
}

// SIGTERM to every running process of `procs`, then SIGKILL after `grace`.
void StopAll(const std::vector<Proc*>& procs, absl::Duration grace) {
  for (Proc* p : procs) {
    if (!p->child->Poll()) {
      p->stop_requested = true;
      p->child->Signal(SIGTERM);
    }
  }
  const absl::Time deadline = absl::Now() + grace;
  for (Proc* p : procs) {
    const absl::Duration left =
        std::max(absl::ZeroDuration(), deadline - absl::Now());
    if (!p->child->WaitFor(left)) {
      Loud(absl::StrCat(p->name, " did not stop within ",
                        absl::FormatDuration(grace), ": SIGKILL"));
      p->child->Signal(SIGKILL);
      p->child->WaitFor(absl::Seconds(5));
    }
  }
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

std::optional<ShardTotals> QueryShards(
    std::vector<std::unique_ptr<ParameterServerClient>>& clients) {
  ShardTotals t;
  bool first = true;
  for (size_t i = 0; i < clients.size(); ++i) {
    absl::StatusOr<v1::StateResponse> st = clients[i]->GetState();
    if (!st.ok()) return std::nullopt;
    for (const v1::TableState& table : st->tables()) {
      int64_t* v =
          table.name() == kGeneratorTable ? &t.g_version : &t.d_version;
      *v = first ? table.version() : std::min(*v, table.version());
      t.rejected += table.rejected_pushes();
      if (i == 0 && table.name() == kGeneratorTable) {
        t.registered_workers = table.registered_workers_size();
      }
    }
    first = false;
  }
  return t;
}

}  // namespace

absl::StatusOr<std::string> FindBinDir(const std::string& flag) {
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
    const std::vector<std::string> missing = MissingBinaries(dir);
    if (missing.empty()) return dir;
    absl::StrAppend(&report, "\n  ", dir, ": missing ",
                    absl::StrJoin(missing, ", "));
  }
  return absl::NotFoundError(absl::StrCat(
      "cannot find the service binaries", report,
      "\nbuild them with: bazel build //server:paragan_server "
      "//dataloader:paragan_data //worker/distributed:paragan_worker "
      "//worker/train:paragan_init //worker/train:paragan_sample "
      "(or pass --bin_dir=<bazel-bin>)"));
}

absl::Status RunLocal(const LauncherOptions& o, const std::atomic<bool>* stop,
                      RunSummary* summary) {
  const absl::Time start = absl::Now();
  *summary = RunSummary();
  summary->model = o.model;
  summary->mode = o.mode;
  summary->staleness_policy = o.staleness_policy;
  summary->momentum_compensation = o.momentum_compensation && o.mode == "async";
  summary->num_workers = o.num_workers;
  summary->num_shards = o.num_shards;
  summary->batch_size = o.batch_size;
  if (o.num_workers < 1 || o.num_shards < 1) {
    return absl::InvalidArgumentError(
        "need --num_workers >= 1 and --num_shards >= 1");
  }
  if (o.worker_data != "service" && o.worker_data != "local") {
    return absl::InvalidArgumentError(absl::StrCat(
        "--worker_data must be service or local, got ", o.worker_data));
  }
  if (o.mode != "async" && o.mode != "sync") {
    return absl::InvalidArgumentError(
        absl::StrCat("--mode must be async or sync, got ", o.mode));
  }
  // The names server/table.cc's ParseStalenessPolicy knows, checked here so
  // that a typo fails before any process starts (the launcher does not link
  // the server's tables).
  if (o.staleness_policy != "accept" && o.staleness_policy != "reject" &&
      o.staleness_policy != "reject_above_bound" &&
      o.staleness_policy != "scale" &&
      o.staleness_policy != "scale_by_inverse_staleness") {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown staleness policy '", o.staleness_policy,
                     "' (accept | reject_above_bound | "
                     "scale_by_inverse_staleness)"));
  }
  PG_ASSIGN_OR_RETURN(const std::string bin, FindBinDir(o.bin_dir));
  const std::string logs = o.out_dir + "/logs";
  PG_RETURN_IF_ERROR(Mkdirs(logs));
  PG_RETURN_IF_ERROR(Mkdirs(o.out_dir + "/ps"));

  Board board;
  std::vector<std::unique_ptr<Proc>> procs;
  auto start_proc = [&](const std::string& name, Proc::Kind kind,
                        std::vector<std::string> argv,
                        const std::string& extra) -> absl::Status {
    for (std::string& f : SplitFlags(extra)) argv.push_back(std::move(f));
    auto p = std::make_unique<Proc>();
    p->name = name;
    p->kind = kind;
    Board* b = &board;
    PG_ASSIGN_OR_RETURN(
        p->child,
        ChildProcess::Start(
            name, argv, absl::StrCat(logs, "/", name, ".log"),
            [b, name, kind](const std::string& line, bool is_stderr) {
              if (kind == Proc::kTool) {
                // A tool's warnings (e.g. no EMA on the shards) matter to
                // whoever watches the terminal, not only to its log.
                if (is_stderr && absl::StartsWith(line, "warning:")) {
                  Loud(absl::StrCat(name, ": ", line));
                }
                if (!is_stderr && absl::StartsWith(line, "wrote ")) {
                  absl::MutexLock lock(&b->mu);
                  b->wrote[name].push_back(line.substr(6));
                }
                return;
              }
              absl::MutexLock lock(&b->mu);
              if (auto port = ParsePortAfter(line, "listening on port")) {
                b->port.emplace(name, *port);
              } else if (auto m = ParsePortAfter(line, "metrics on port")) {
                b->metrics_port.emplace(name, *m);
              } else if (kind == Proc::kWorker) {
                if (auto pr = ParseProgressLine(line)) b->progress.Update(*pr);
              }
            }));
    procs.push_back(std::move(p));
    return absl::OkStatus();
  };
  auto find = [&](const std::string& name) -> Proc* {
    for (auto& p : procs) {
      if (p->name == name) return p.get();
    }
    return nullptr;
  };
  // Waits for the "listening on port" line of each of `names` (and briefly
  // for their metrics lines); fails if one exits or the launcher is stopped.
  auto wait_ports = [&](const std::vector<std::string>& names,
                        absl::Duration timeout) -> absl::Status {
    const absl::Time deadline = absl::Now() + timeout;
    while (true) {
      bool all = true;
      {
        absl::MutexLock lock(&board.mu);
        for (const std::string& n : names) all = all && board.port.count(n);
      }
      if (all) break;
      for (const std::string& n : names) {
        Proc* p = find(n);
        if (p->child->Poll()) {
          ReportDeath(p);
          return absl::UnavailableError(absl::StrCat(
              n, " exited during startup (", p->child->ExitDescription(),
              "); see ", logs, "/", n, ".log"));
        }
      }
      if (stop->load()) return absl::CancelledError("stopped during startup");
      if (absl::Now() > deadline) {
        return absl::DeadlineExceededError(absl::StrCat(
            "no 'listening on port' line from ", absl::StrJoin(names, ", "),
            " within ", absl::FormatDuration(timeout), "; see ", logs));
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
    const absl::Time metrics_deadline = absl::Now() + absl::Seconds(2);
    while (absl::Now() < metrics_deadline) {
      bool all = true;
      {
        absl::MutexLock lock(&board.mu);
        for (const std::string& n : names) {
          all = all && board.metrics_port.count(n);
        }
      }
      if (all) break;
      absl::SleepFor(absl::Milliseconds(20));
    }
    return absl::OkStatus();
  };

  auto argv0_of = [](const Proc& p) {
    const std::string cmd = p.child->command_line();
    return cmd.substr(0, cmd.find(' '));
  };
  // Runs a one-shot tool (kTool) to its end: an error names it, its exit
  // status and its last stderr lines. `stoppable`: a stop request kills it
  // (startup); otherwise it runs on (the outputs after a Ctrl-C).
  auto run_tool = [&](const std::string& name, const std::string& what,
                      std::vector<std::string> argv, absl::Duration timeout,
                      bool stoppable) -> absl::Status {
    PG_RETURN_IF_ERROR(start_proc(name, Proc::kTool, std::move(argv), ""));
    Proc* p = procs.back().get();
    const absl::Time deadline = absl::Now() + timeout;
    std::string failure;
    while (!p->child->WaitFor(absl::Milliseconds(100))) {
      // (Polled in slices: a stop request or the deadline ends the wait.)
      if ((stoppable && stop->load()) || absl::Now() >= deadline) {
        const bool stopped = stoppable && stop->load();
        p->stop_requested = true;
        p->child->Signal(SIGTERM);
        if (!p->child->WaitFor(absl::Seconds(5))) {
          p->child->Signal(SIGKILL);
          p->child->WaitFor(absl::Seconds(5));
        }
        p->reported = true;
        if (stopped) {
          return absl::CancelledError(absl::StrCat("stopped during ", what));
        }
        failure = absl::StrCat("did not finish within ",
                               absl::FormatDuration(timeout), ", killed (",
                               p->child->ExitDescription(), ")");
        break;
      }
    }
    // Its last lines ("wrote ...", "error: ...") may still be in the pipes.
    if (p->child->exited()) p->child->DrainOutput();
    if (failure.empty()) {
      if (ExitedCleanly(*p)) return absl::OkStatus();
      failure = absl::StrCat("failed (", p->child->ExitDescription(), ")");
    }
    p->reported = true;
    std::vector<std::string> last = p->child->LastStderrLines();
    if (last.size() > static_cast<size_t>(kToolErrorLines)) {
      last.erase(last.begin(), last.end() - kToolErrorLines);
    }
    return absl::InternalError(absl::StrCat(
        what, " (process ", name, ", ", argv0_of(*p), ") ", failure,
        last.empty() ? "; no stderr output"
                     : absl::StrCat("; its last stderr lines: ",
                                    absl::StrJoin(last, " | ")),
        "; see ", logs, "/", name, ".log"));
  };

  std::vector<Proc*> shards, data, workers;
  absl::Time train_start = absl::Now(), train_end = absl::Now();
  int64_t g_at_start = -1;      // G version when the workers started
  int64_t d_at_start = -1;      // D version when the workers started
  std::vector<std::string> ps;  // the shards' host:port
  bool exported = false;        // the outputs were written from the shards
  std::vector<std::unique_ptr<ParameterServerClient>> clients;
  std::optional<ShardTotals> last_shards;

  // Everything from here to the stop sequence; a failure still stops the
  // processes and writes the summary.
  absl::Status run_status = [&]() -> absl::Status {
    // 1. The networks' initial state, written once for every shard (which
    // reads the layout, initial values and the model's default optimizer
    // settings from it), by a tool: the launcher holds no model code.
    const std::string init_path = o.out_dir + "/ps/init.pgt";
    PG_RETURN_IF_ERROR(run_tool(
        "init", "initializing the networks",
        {bin + "/" + kInitBin, absl::StrCat("--model=", o.model),
         absl::StrCat("--seed=", o.seed), absl::StrCat("--out=", init_path)},
        kInitTimeout, /*stoppable=*/true));

    // Parameter-server shards.
    const double lease_s = o.worker_lease_s >= 0
                               ? o.worker_lease_s
                               : (o.model.rfind("biggan", 0) == 0 ? 180 : 30);
    std::vector<std::string> shard_names;
    for (int i = 0; i < o.num_shards; ++i) {
      const std::string name = absl::StrCat("shard", i);
      shard_names.push_back(name);
      PG_RETURN_IF_ERROR(start_proc(
          name, Proc::kShard,
          {bin + "/" + kServerBin, "--bind_address=127.0.0.1", "--port=0",
           "--metrics_port=0", absl::StrCat("--shard_id=", i),
           absl::StrCat("--num_shards=", o.num_shards),
           absl::StrCat("--init=", init_path),
           absl::StrCat("--checkpoint_dir=", o.out_dir, "/ps"),
           absl::StrCat("--staleness_policy=", o.staleness_policy),
           absl::StrCat("--staleness_bound=", o.staleness_bound),
           absl::StrCat("--sync_workers=",
                        o.mode == "sync" ? o.num_workers : 0),
           absl::StrCat("--momentum_compensation=",
                        summary->momentum_compensation ? "true" : "false"),
           absl::StrCat("--ema_decay=", o.ema_decay),
           absl::StrCat("--worker_lease_s=", lease_s), "--threads=1"},
          o.ps_flags));
      shards.push_back(procs.back().get());
    }
    PG_RETURN_IF_ERROR(wait_ports(shard_names, absl::Minutes(2)));
    {
      absl::MutexLock lock(&board.mu);
      for (const std::string& n : shard_names) {
        ps.push_back(absl::StrCat("127.0.0.1:", board.port.at(n)));
      }
    }
    for (const std::string& target : ps) {
      ParameterServerClient::Options co;
      co.timeout = absl::Seconds(60);
      clients.push_back(std::make_unique<ParameterServerClient>(
          ParameterServerClient::Connect(target), co));
    }
    Say(absl::StrCat(o.num_shards, " parameter-server shard(s) up: ",
                     absl::StrJoin(ps, ", ")));

    // 2. Data service.
    PG_RETURN_IF_ERROR(start_proc(
        "data", Proc::kData,
        {bin + "/" + kDataBin, "--bind_address=127.0.0.1", "--port=0",
         "--metrics_port=0", absl::StrCat("--dataset=", o.dataset),
         absl::StrCat("--data_path=", o.data_path),
         absl::StrCat("--batch_size=", o.batch_size),
         absl::StrCat("--seed=", o.seed)},
        o.data_flags));
    data.push_back(procs.back().get());
    PG_RETURN_IF_ERROR(wait_ports({"data"}, absl::Minutes(2)));
    std::string data_target;
    {
      absl::MutexLock lock(&board.mu);
      data_target = absl::StrCat("127.0.0.1:", board.port.at("data"));
    }
    Say(absl::StrCat("data service up: ", data_target, " (", o.dataset, " ",
                     o.data_path, ")"));

    // 3. Workers.
    const std::optional<ShardTotals> at_start = QueryShards(clients);
    const int64_t g_start = at_start ? at_start->g_version : 0;
    g_at_start = g_start;
    d_at_start = at_start ? at_start->d_version : 0;
    for (int i = 0; i < o.num_workers; ++i) {
      const std::string name = absl::StrCat("w", i);
      std::vector<std::string> data_flags;
      if (o.worker_data == "local") {
        data_flags = {"--data=", absl::StrCat("--dataset=", o.dataset),
                      absl::StrCat("--data_path=", o.data_path),
                      absl::StrCat("--data_seed=", o.seed)};
      } else {
        data_flags = {absl::StrCat("--data=", data_target)};
      }
      std::string extra = absl::StrJoin(data_flags, " ");
      if (!o.worker_flags.empty()) absl::StrAppend(&extra, " ", o.worker_flags);
      PG_RETURN_IF_ERROR(start_proc(
          name, Proc::kWorker,
          {bin + "/" + kWorkerBin, absl::StrCat("--worker_id=", name),
           absl::StrCat("--ps=", absl::StrJoin(ps, ",")),
           absl::StrCat("--model=", o.model), "--steps=0",
           absl::StrCat("--batch_size=", o.batch_size),
           absl::StrCat("--threads=", o.threads_per_worker),
           absl::StrCat("--seed=", o.seed + 1 + i), "--metrics_port=0",
           "--metrics_bind=127.0.0.1",
           absl::StrCat("--log_every=", o.log_every),
           absl::StrCat("--push_dtype=", o.push_dtype)},
          extra));
      workers.push_back(procs.back().get());
      absl::MutexLock lock(&board.mu);
      board.progress.SetState(name, "running");
    }
    train_start = absl::Now();
    Say(absl::StrCat(
        o.num_workers, " worker(s) started (", o.mode, ", staleness policy ",
        o.staleness_policy,
        summary->momentum_compensation ? ", momentum compensation" : "",
        "); training until ",
        o.steps > 0 ? absl::StrCat("G step ", o.steps) : "",
        o.steps > 0 && o.minutes > 0 ? " or " : "",
        o.minutes > 0 ? absl::StrCat(o.minutes, " minutes") : "",
        o.steps <= 0 && o.minutes <= 0 ? "Ctrl-C" : "",
        "; Ctrl-C stops cleanly. Logs: ", logs));
    if (o.steps > 0 && g_start >= o.steps) {
      Say(absl::StrCat("the shards are already at G step ", g_start,
                       " (restored from ", o.out_dir,
                       "/ps): raise --steps to train on"));
    }

    // 4. Train: watch processes, print progress, stop on budget or signal.
    absl::Time next_progress = absl::Now() + absl::Seconds(o.progress_s);
    bool killed_for_test = false;
    while (true) {
      for (Proc* p : shards) {
        if (p->child->Poll()) {
          ReportDeath(p);
          return absl::UnavailableError(absl::StrCat(
              "parameter-server ", p->name, " died (",
              p->child->ExitDescription(), "): stopping the run; see ", logs,
              "/", p->name, ".log"));
        }
      }
      if (data[0]->child->Poll()) {
        ReportDeath(data[0]);
        return absl::UnavailableError(absl::StrCat(
            "the data service died (", data[0]->child->ExitDescription(),
            "): stopping the run; see ", logs, "/data.log"));
      }
      int alive = 0;
      for (Proc* p : workers) {
        if (p->child->Poll()) {
          if (!p->reported) {
            ReportDeath(p);
            Loud(absl::StrCat("training goes on with the other workers"));
            absl::MutexLock lock(&board.mu);
            board.progress.SetState(p->name, p->child->ExitDescription());
          }
        } else {
          ++alive;
        }
      }
      if (alive == 0) {
        return absl::UnavailableError("every worker died: stopping the run");
      }
      const double trained_s = absl::ToDoubleSeconds(absl::Now() - train_start);
      if (!o.kill_process.empty() && !killed_for_test &&
          trained_s >= o.kill_after_s) {
        killed_for_test = true;
        if (Proc* victim = find(o.kill_process)) {
          Loud(absl::StrCat("test hook: SIGKILL to ", victim->name));
          victim->child->Signal(SIGKILL);
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
      if (absl::Now() >= next_progress) {
        next_progress += absl::Seconds(o.progress_s);
        std::optional<ShardTotals> st = QueryShards(clients);
        if (st) last_shards = st;
        ProgressAggregator::Totals totals;
        {
          absl::MutexLock lock(&board.mu);
          totals = board.progress.Compute();
        }
        std::cout << ProgressAggregator::FormatLine(
                         absl::ToDoubleSeconds(absl::Now() - start), totals, st)
                  << std::endl;
        if (st && o.steps > 0 && st->g_version >= o.steps) {
          Say(absl::StrCat("reached G step ", st->g_version));
          break;
        }
      }
      absl::SleepFor(absl::Milliseconds(100));
    }
    return absl::OkStatus();
  }();

  // 5. Stop in order: workers, data service, then (after the outputs are
  // written from the final tables) the shards, which write their
  // checkpoints.
  if (!workers.empty()) {
    StopAll(workers, absl::Seconds(60));
    train_end = absl::Now();
  }
  StopAll(data, absl::Seconds(20));
  bool shards_alive = !shards.empty() && !clients.empty();
  for (Proc* p : shards) shards_alive = shards_alive && !p->child->Poll();
  absl::Status outputs_status;
  std::vector<std::string> export_outputs;
  if (shards_alive) {
    if (auto st = QueryShards(clients)) last_shards = st;
    // paragan_sample pulls G, D and G_ema (G when the shards keep no EMA)
    // and writes the grid, the samples (z from seed + 1, as paragan_train's)
    // and checkpoint.pgt; it is not stoppable: a Ctrl-C got us here.
    outputs_status = run_tool(
        "export", "writing the outputs from the shards",
        {bin + "/" + kSampleBin, absl::StrCat("--ps=", absl::StrJoin(ps, ",")),
         absl::StrCat("--model=", o.model),
         absl::StrCat("--out_dir=", o.out_dir),
         absl::StrCat("--num_samples=", o.num_samples),
         absl::StrCat("--seed=", o.seed + 1),
         absl::StrCat("--batch_size=", o.batch_size),
         absl::StrCat("--threads=", o.threads_per_worker)},
        kExportTimeout, /*stoppable=*/false);
    if (outputs_status.ok()) {
      // The files come from the tool's "wrote <path>" lines rather than
      // being derived here: the grid's name carries the G version the tool
      // pulled and samples_labels.npy depends on the model being
      // conditional, both known to the tool, not to the launcher (which
      // holds no model code). run_tool drained its output: every line is in.
      absl::MutexLock lock(&board.mu);
      export_outputs = board.wrote["export"];
      exported = true;
    }
  }
  StopAll(shards, absl::Seconds(60));

  // 6. Summary and outputs.
  RunSummary& s = *summary;
  for (auto& p : procs) {
    ProcessReport r;
    r.name = p->name;
    r.pid = p->child->pid();
    r.exit = p->child->ExitDescription();
    r.ok = ExitedCleanly(*p);
    if (!r.ok && !p->reported && !p->stop_requested) ReportDeath(p.get());
    s.processes.push_back(r);
  }
  {
    absl::MutexLock lock(&board.mu);
    const ProgressAggregator::Totals t = board.progress.Compute();
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
    s.g_steps = t.g_version;
    s.d_steps = t.d_version;
  }
  if (last_shards) {
    s.g_steps = last_shards->g_version;
    s.d_steps = last_shards->d_version;
    s.rejected = last_shards->rejected;
  }
  s.train_s =
      workers.empty() ? 0 : absl::ToDoubleSeconds(train_end - train_start);
  const int64_t g_trained =
      g_at_start >= 0 ? std::max<int64_t>(0, s.g_steps - g_at_start) : 0;
  s.g_steps_this_run = g_trained;
  // Real images through D steps taken in this run: one worker batch per D
  // step (asynchronous), num_workers batches per D step (synchronous rounds).
  // D, not G: with n D steps per G step a G step stands for n batches, and
  // a policy may refuse G pushes whose batches D still used.
  const int64_t d_trained =
      d_at_start >= 0 ? std::max<int64_t>(0, s.d_steps - d_at_start) : 0;
  s.img_s = s.train_s > 0
                ? static_cast<double>(d_trained) * o.batch_size *
                      (o.mode == "sync" ? o.num_workers : 1) / s.train_s
                : 0;
  for (std::string& f : export_outputs) s.outputs.push_back(std::move(f));
  for (int i = 0; i < o.num_shards; ++i) {
    const std::string ck =
        absl::StrCat(o.out_dir, "/ps/shard-", i, "-of-", o.num_shards, ".pgt");
    if (access(ck.c_str(), R_OK) == 0) {
      s.outputs.push_back(ck);
    }
  }
  s.wall_s = absl::ToDoubleSeconds(absl::Now() - start);
  if (!run_status.ok() && !absl::IsCancelled(run_status)) {
    s.error = std::string(run_status.message());
  } else if (!outputs_status.ok()) {
    s.error = std::string(outputs_status.message());
  } else if (!exported) {
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
