// The process group with small shell children: stages, ports from files
// and lines, readiness timeouts, children that die, stop order with final
// tasks, grace periods.

#include "deploy/local/process_group.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace paragan {
namespace local {
namespace {

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream all;
  all << in.rdbuf();
  return all.str();
}

class ProcessGroupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat(
        ::testing::TempDir(), "/pg_",
        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);  // a rerun starts afresh
    std::filesystem::create_directories(dir_);
    job_.log_dir = dir_;
    job_.processes.reserve(16);  // Add's references stay valid
  }

  // A /bin/sh -c `script` process.
  ProcessSpec& Add(const std::string& name, const std::string& stage,
                   const std::string& script) {
    ProcessSpec p;
    p.name = name;
    p.description = "the " + name + " process";
    p.binary = "/bin/sh";
    p.flags = {"-c", script};
    p.stage = stage;
    p.grace = absl::Seconds(10);
    job_.processes.push_back(p);
    return job_.processes.back();
  }

  ProcessGroup::Options Options() {
    ProcessGroup::Options o;
    o.stop = &stop_;
    o.report = &report_;
    return o;
  }

  // A service that records its SIGTERM in `order` and exits 0.
  std::string RecordsTerm(const std::string& name) {
    return absl::StrCat("trap 'echo ", name, " >> ", dir_,
                        "/order; exit 0' TERM; while :; do sleep 0.05; done");
  }

  std::string dir_;
  Job job_;
  std::atomic<bool> stop_{false};
  std::ostringstream report_;
};

TEST_F(ProcessGroupTest, StagesPortsAndReferences) {
  ProcessSpec& t = Add("t", "one", "echo task ran; exit 0");
  t.lifecycle = Lifecycle::kStartTask;
  t.readiness.check = Readiness::Check::kExitedZero;
  const std::string file = dir_ + "/a.port";
  ProcessSpec& a = Add("a", "two",
                       absl::StrCat("echo 4242 > ", file, ".tmp; mv ", file,
                                    ".tmp ", file, "; exec sleep 30"));
  a.ports = {{"grpc", PortSpec::Source::kPortFile, file, ""}};
  a.readiness.check = Readiness::Check::kPortsKnown;
  a.depends_on = {"t"};
  ProcessSpec& b = Add("b", "two",
                       "echo 'b: listening on port 4343'; "
                       "exec sleep 30");
  b.ports = {{"grpc", PortSpec::Source::kStdoutLine, "", "listening on port"}};
  b.readiness.check = Readiness::Check::kPortsKnown;
  // The flag names the others' ports; the script prints what it got.
  ProcessSpec& c = Add("c", "three", "echo got $0; exec sleep 30");
  c.flags.push_back("${a.grpc},${b.grpc}");
  c.depends_on = {"a", "b"};
  // A stale port file from an earlier run must not count.
  std::ofstream(file) << "1\n";

  ProcessGroup group(job_, Options());
  EXPECT_EQ(group.StartStage("three").code(),
            absl::StatusCode::kFailedPrecondition);  // a, b not ready
  ASSERT_TRUE(group.StartStage("one").ok());
  ASSERT_TRUE(group.StartStage("two").ok());
  EXPECT_EQ(*group.Address("a", "grpc"), "127.0.0.1:4242");
  EXPECT_EQ(*group.Address("b", "grpc"), "127.0.0.1:4343");
  ASSERT_TRUE(group.StartStage("three").ok());
  EXPECT_EQ(group.Running(Role::kWorker), 3);  // the default role
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (Slurp(dir_ + "/c.log").find("\ngot ") == std::string::npos &&
         absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_NE(Slurp(dir_ + "/c.log").find("got 127.0.0.1:4242,127.0.0.1:4343"),
            std::string::npos)
      << Slurp(dir_ + "/c.log");
  EXPECT_NE(Slurp(dir_ + "/t.log").find("task ran"), std::string::npos);
  group.Shutdown({});
  for (const ProcessReport& r : group.FinalReports()) {
    EXPECT_TRUE(r.ok) << r.name << " " << r.exit;
  }
  EXPECT_EQ(report_.str(), "");
}

TEST_F(ProcessGroupTest, ReferencesToNoProcessGoToResolveOther) {
  ProcessSpec& t = Add("t", "one", "echo got $0");
  t.flags.push_back("at=${run.start}");
  t.lifecycle = Lifecycle::kStartTask;
  t.readiness.check = Readiness::Check::kExitedZero;
  ProcessSpec& u = Add("u", "two", "echo got $0");
  u.flags.push_back("${run.unknown}");
  u.lifecycle = Lifecycle::kStartTask;
  u.readiness.check = Readiness::Check::kExitedZero;
  ProcessGroup::Options o = Options();
  o.resolve_other = [](const PortRef& ref) -> absl::StatusOr<std::string> {
    if (ref.process == "run" && ref.port == "start") return "1234.5";
    return absl::InvalidArgumentError("unknown " + ref.port);
  };
  ProcessGroup group(job_, o);
  ASSERT_TRUE(group.StartStage("one").ok());
  EXPECT_NE(Slurp(dir_ + "/t.log").find("got at=1234.5"), std::string::npos)
      << Slurp(dir_ + "/t.log");
  absl::Status st = group.StartStage("two");
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("unknown unknown"), std::string::npos) << st;
  group.Shutdown({});
}

TEST_F(ProcessGroupTest, ReadinessTimeout) {
  ProcessSpec& s = Add("silent", "one", "exec sleep 30");
  s.ports = {{"grpc", PortSpec::Source::kPortFile, dir_ + "/never", ""}};
  s.readiness.check = Readiness::Check::kPortsKnown;
  s.readiness.timeout = absl::Milliseconds(300);
  ProcessGroup group(job_, Options());
  const absl::Time start = absl::Now();
  const absl::Status st = group.StartStage("one");
  EXPECT_EQ(st.code(), absl::StatusCode::kDeadlineExceeded) << st;
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_NE(st.message().find("silent was not ready within 300ms (no port in"),
            std::string::npos)
      << st;
}

TEST_F(ProcessGroupTest, ProbeDecidesReadiness) {
  ProcessSpec& s = Add("svc", "one",
                       "echo 'listening on port 5000'; "
                       "exec sleep 30");
  s.ports = {{"grpc", PortSpec::Source::kStdoutLine, "", "listening on port"}};
  s.readiness = {Readiness::Check::kShardState, "grpc", absl::Milliseconds(600),
                 true};
  ProcessGroup::Options o = Options();
  int probes = 0;
  std::string probed;
  o.probes[Readiness::Check::kShardState] = [&](const std::string& address) {
    probed = address;
    return ++probes >= 2;  // answers the second time
  };
  ProcessGroup group(job_, o);
  ASSERT_TRUE(group.StartStage("one").ok());
  EXPECT_EQ(probed, "127.0.0.1:5000");
  EXPECT_EQ(probes, 2);
}

TEST_F(ProcessGroupTest, ServiceDyingAtStartupIsReportedWithItsError) {
  ProcessSpec& s = Add("shard0", "one",
                       "echo \"paragan_server: INVALID_ARGUMENT: unknown "
                       "staleness policy 'x' (accept | reject_above_bound)\" "
                       ">&2; exit 2");
  s.ports = {{"grpc", PortSpec::Source::kPortFile, dir_ + "/p", ""}};
  s.readiness.check = Readiness::Check::kPortsKnown;
  Add("w0", "two", "exec sleep 30");
  ProcessGroup group(job_, Options());
  const absl::Status st = group.StartStage("one");
  EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable) << st;
  EXPECT_NE(st.message().find("shard0 exited during startup (exit 2); its "
                              "last stderr lines: paragan_server: "
                              "INVALID_ARGUMENT: unknown staleness policy 'x'"),
            std::string::npos)
      << st;
  EXPECT_NE(report_.str().find("died unexpectedly: exit 2"), std::string::npos)
      << report_.str();
  // Reported once, and the next stage never started.
  EXPECT_TRUE(group.NewDeaths().empty());
  const std::vector<ProcessReport> reports = group.FinalReports();
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].exit, "exit 2");
  EXPECT_FALSE(reports[0].ok);
}

TEST_F(ProcessGroupTest, FailedStartTask) {
  ProcessSpec& t = Add("init", "one",
                       "echo 'error: no such model' >&2; "
                       "exit 3");
  t.lifecycle = Lifecycle::kStartTask;
  t.readiness.check = Readiness::Check::kExitedZero;
  ProcessGroup group(job_, Options());
  const absl::Status st = group.StartStage("one");
  EXPECT_EQ(st.code(), absl::StatusCode::kInternal);
  EXPECT_NE(st.message().find("the init process (process init, /bin/sh) "
                              "failed (exit 3); its last stderr lines: "
                              "error: no such model"),
            std::string::npos)
      << st;
}

TEST_F(ProcessGroupTest, StopDuringStartup) {
  ProcessSpec& t = Add("init", "one", "exec sleep 30");
  t.lifecycle = Lifecycle::kStartTask;
  t.readiness.check = Readiness::Check::kExitedZero;
  ProcessGroup group(job_, Options());
  stop_ = true;
  EXPECT_TRUE(absl::IsCancelled(group.StartStage("one")));
}

TEST_F(ProcessGroupTest, DeathWhileRunningReportedOnce) {
  ProcessSpec& w = Add("w1", "one", "sleep 0.2; echo bye >&2; exit 1");
  w.role = Role::kWorker;
  ProcessGroup group(job_, Options());
  ASSERT_TRUE(group.StartStage("one").ok());
  std::vector<const ProcessSpec*> dead;
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (dead.empty() && absl::Now() < deadline) {
    dead = group.NewDeaths();
    absl::SleepFor(absl::Milliseconds(20));
  }
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0]->name, "w1");
  EXPECT_EQ(group.ExitDescription("w1"), "exit 1");
  EXPECT_TRUE(group.NewDeaths().empty());
  EXPECT_EQ(group.Running(Role::kWorker), 0);
  EXPECT_TRUE(group.LastExit(Role::kWorker).has_value());
  absl::SleepFor(absl::Milliseconds(100));  // bye may still be in the pipe
  group.FinalReports();
  const std::string r = report_.str();
  EXPECT_NE(r.find("*** w1 (pid "), std::string::npos) << r;
  EXPECT_NE(r.find(") died unexpectedly: exit 1"), std::string::npos) << r;
  EXPECT_EQ(r.find("died unexpectedly"), r.rfind("died unexpectedly")) << r;
}

TEST_F(ProcessGroupTest, ShutdownOrderWithFinalTasks) {
  Add("a", "one", RecordsTerm("a")).stop_order = 0;
  Add("b", "one", RecordsTerm("b")).stop_order = 2;
  // Runs between a and b while b still runs.
  ProcessSpec& t =
      Add("t", "", absl::StrCat("echo t >> ", dir_, "/order; echo wrote x"));
  t.lifecycle = Lifecycle::kFinalTask;
  t.readiness.check = Readiness::Check::kExitedZero;
  t.depends_on = {"b"};
  t.stop_order = 1;
  // Depends on a, stopped before it is due: skipped.
  ProcessSpec& skipped = Add("u", "", "exit 0");
  skipped.lifecycle = Lifecycle::kFinalTask;
  skipped.depends_on = {"a"};
  skipped.stop_order = 1;
  ProcessGroup group(job_, Options());
  ASSERT_TRUE(group.StartStage("one").ok());
  absl::SleepFor(absl::Milliseconds(200));  // the traps are set
  std::vector<std::string> before;
  const std::map<std::string, absl::Status> tasks =
      group.Shutdown([&](const ProcessSpec& p) { before.push_back(p.name); });
  EXPECT_EQ(Slurp(dir_ + "/order"), "a\nt\nb\n");
  ASSERT_EQ(tasks.size(), 1u);
  EXPECT_TRUE(tasks.at("t").ok()) << tasks.at("t");
  EXPECT_EQ(before, (std::vector<std::string>{"t"}));
  std::vector<std::string> names;
  for (const ProcessReport& r : group.FinalReports()) {
    names.push_back(r.name);
    EXPECT_TRUE(r.ok) << r.name << " " << r.exit;
    EXPECT_EQ(r.exit, "exit 0");
  }
  EXPECT_EQ(names, (std::vector<std::string>{"a", "b", "t"}));
}

TEST_F(ProcessGroupTest, GraceThenSigkill) {
  // Ignores SIGTERM (kept across exec), so only SIGKILL ends it.
  ProcessSpec& s = Add("stubborn", "one", "trap '' TERM; exec sleep 30");
  s.grace = absl::Milliseconds(300);
  ProcessGroup group(job_, Options());
  ASSERT_TRUE(group.StartStage("one").ok());
  absl::SleepFor(absl::Milliseconds(100));
  const absl::Time start = absl::Now();
  group.Shutdown({});
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_NE(report_.str().find("stubborn did not stop within 300ms: SIGKILL"),
            std::string::npos)
      << report_.str();
  const std::vector<ProcessReport> reports = group.FinalReports();
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].exit.rfind("killed by signal 9", 0), 0u);
  EXPECT_FALSE(reports[0].ok);
}

TEST_F(ProcessGroupTest, SignalNamesTheProcess) {
  Add("w0", "one", "exec sleep 30");
  ProcessGroup group(job_, Options());
  ASSERT_TRUE(group.StartStage("one").ok());
  EXPECT_FALSE(group.Signal("w9", SIGKILL));
  EXPECT_TRUE(group.Signal("w0", SIGKILL));
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (group.IsRunning("w0") && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(group.ExitDescription("w0").rfind("killed by signal 9", 0), 0u);
  EXPECT_EQ(group.NewDeaths().size(), 1u);
}

TEST_F(ProcessGroupTest, ServicesAddedAndRetiredWhileRunning) {
  Add("data", "one", "exec sleep 30").role = Role::kData;
  ProcessSpec& w0 = Add("w0", "two", RecordsTerm("w0"));
  w0.role = Role::kWorker;
  w0.depends_on = {"data"};
  ProcessGroup group(job_, Options());
  ASSERT_TRUE(group.StartStage("one").ok());
  ASSERT_TRUE(group.StartStage("two").ok());

  // A scale-up: a new worker that needs a running service.
  ProcessSpec w1 = w0;
  w1.name = "w1";
  w1.flags = {"-c", RecordsTerm("w1")};
  ASSERT_TRUE(group.AddService(w1).ok());
  EXPECT_EQ(group.AddService(w1).code(), absl::StatusCode::kAlreadyExists);
  ProcessSpec orphan = w1;
  orphan.name = "w2";
  orphan.depends_on = {"nobody"};
  absl::Status st = group.AddService(orphan);
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(st.message().find("depends on nobody"), std::string::npos) << st;
  EXPECT_FALSE(group.IsRunning("w2"));
  EXPECT_EQ(group.Running(Role::kWorker), 2);
  absl::SleepFor(absl::Milliseconds(200));  // the traps are set

  // A scale-down: w0 stops as planned, which is no death.
  EXPECT_FALSE(group.Retire("w9"));
  ASSERT_TRUE(group.Retire("w0"));
  EXPECT_FALSE(group.Retire("w0"));  // once
  std::vector<ProcessGroup::Retired> gone;
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (gone.empty() && absl::Now() < deadline) {
    gone = group.ReapRetired();
    EXPECT_TRUE(group.NewDeaths().empty());
    absl::SleepFor(absl::Milliseconds(20));
  }
  ASSERT_EQ(gone.size(), 1u);
  EXPECT_EQ(gone[0].name, "w0");
  EXPECT_EQ(gone[0].exit, "exit 0");
  EXPECT_TRUE(gone[0].clean);
  EXPECT_GE(gone[0].seconds_to_exit, 0);
  EXPECT_LT(gone[0].seconds_to_exit, 5);
  EXPECT_TRUE(group.ReapRetired().empty());  // reported once
  EXPECT_EQ(group.Running(Role::kWorker), 1);

  group.Shutdown({});
  EXPECT_EQ(Slurp(dir_ + "/order"), "w0\nw1\n");
  std::vector<std::string> names;
  for (const ProcessReport& r : group.FinalReports()) {
    names.push_back(r.name);
    EXPECT_TRUE(r.ok) << r.name << " " << r.exit;
  }
  EXPECT_EQ(names, (std::vector<std::string>{"data", "w0", "w1"}));
  EXPECT_EQ(report_.str().find("died unexpectedly"), std::string::npos)
      << report_.str();
}

TEST_F(ProcessGroupTest, RetiredServiceIgnoringSigtermIsKilledAfterItsGrace) {
  ProcessSpec& s = Add("stubborn", "one", "trap '' TERM; exec sleep 30");
  s.grace = absl::Milliseconds(300);
  ProcessGroup group(job_, Options());
  ASSERT_TRUE(group.StartStage("one").ok());
  absl::SleepFor(absl::Milliseconds(100));
  ASSERT_TRUE(group.Retire("stubborn"));
  std::vector<ProcessGroup::Retired> gone;
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (gone.empty() && absl::Now() < deadline) {
    gone = group.ReapRetired();
    absl::SleepFor(absl::Milliseconds(20));
  }
  ASSERT_EQ(gone.size(), 1u);
  EXPECT_FALSE(gone[0].clean);
  EXPECT_EQ(gone[0].exit.rfind("killed by signal 9", 0), 0u);
  EXPECT_NE(report_.str().find("stubborn did not stop within 300ms: SIGKILL"),
            std::string::npos)
      << report_.str();
}

}  // namespace
}  // namespace local
}  // namespace paragan
