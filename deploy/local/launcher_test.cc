// The launcher's pure pieces: port lines, progress aggregation, summaries,
// a child process's line capture and exit report, and finding the binaries.
// (The job, the process group and the monitor have their own tests.)

#include "deploy/local/launcher.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <fstream>
#include <sstream>

namespace paragan {
namespace local {
namespace {

TEST(ParsePortAfter, PrintedLines) {
  EXPECT_EQ(ParsePortAfter("paragan_server: shard 0/2 listening on port 41234",
                           "listening on port"),
            41234);
  EXPECT_EQ(ParsePortAfter("paragan_server: shard 1 metrics on port 9100",
                           "metrics on port"),
            9100);
  EXPECT_EQ(ParsePortAfter("paragan_data: listening on port 5 (x)",
                           "listening on port"),
            5);
  EXPECT_EQ(ParsePortAfter("paragan_worker: w0 metrics on port 33001\r",
                           "metrics on port"),
            33001);
  EXPECT_FALSE(ParsePortAfter("listening on port", "listening on port"));
  EXPECT_FALSE(ParsePortAfter("listening on port x12", "listening on port"));
  EXPECT_FALSE(ParsePortAfter("listening on port 0", "listening on port"));
  EXPECT_FALSE(ParsePortAfter("listening on port 70000", "listening on port"));
  EXPECT_FALSE(ParsePortAfter("metrics on port 80", "listening on port"));
}

WorkerProgress Progress(const std::string& id, int64_t step, double img_s,
                        double d_loss, double staleness) {
  WorkerProgress p;
  p.worker = id;
  p.step = step;
  p.d_version = 2 * step;
  p.g_version = step;
  p.img_s = img_s;
  p.d_loss = d_loss;
  p.g_loss = d_loss / 2;
  p.staleness_d = p.staleness_g = staleness;
  p.rejected = 1;
  return p;
}

TEST(ProgressAggregator, SumsRatesAveragesLossesAndMarksDeadWorkers) {
  ProgressAggregator agg;
  agg.SetState("w0", "running");
  agg.SetState("w1", "running");
  EXPECT_NE(ProgressAggregator::FormatLine(3, agg.Compute(), std::nullopt)
                .find("waiting for the first worker progress"),
            std::string::npos);
  agg.Update(Progress("w0", 100, 200, 1.0, 1.0));
  agg.Update(Progress("w1", 90, 150, 2.0, 3.0));
  agg.Update(Progress("w0", 110, 210, 1.2, 1.0));  // newer line replaces
  ProgressAggregator::Totals t = agg.Compute();
  EXPECT_EQ(t.worker_steps, 200);
  EXPECT_EQ(t.g_version, 110);
  EXPECT_EQ(t.d_version, 220);
  EXPECT_DOUBLE_EQ(t.img_s, 360);
  EXPECT_DOUBLE_EQ(t.d_loss, 1.6);
  EXPECT_DOUBLE_EQ(t.staleness_d, 2.0);
  EXPECT_EQ(t.rejected, 2);
  std::string line = ProgressAggregator::FormatLine(65, t, std::nullopt);
  EXPECT_NE(line.find("[  1m05s] G step 110"), std::string::npos) << line;
  EXPECT_NE(line.find("D/G versions 220/110"), std::string::npos) << line;
  EXPECT_NE(line.find("360 img/s total (w0 210, w1 150)"), std::string::npos)
      << line;
  EXPECT_NE(line.find("losses D 1.600 G 0.800"), std::string::npos) << line;
  EXPECT_NE(line.find("staleness D 2.00 G 2.00"), std::string::npos) << line;
  // The shards' numbers win when given.
  ShardTotals shards{500, 1000, 7, 2};
  line = ProgressAggregator::FormatLine(65, t, shards);
  EXPECT_NE(line.find("G step 500 | D/G versions 1000/500"), std::string::npos)
      << line;
  EXPECT_NE(line.find("rejected 7"), std::string::npos) << line;
  // A dead worker no longer counts in the total rate.
  agg.SetState("w1", "exit 1");
  t = agg.Compute();
  EXPECT_DOUBLE_EQ(t.img_s, 210);
  line = ProgressAggregator::FormatLine(65, t, std::nullopt);
  EXPECT_NE(line.find("w1 exit 1"), std::string::npos) << line;
}

RunSummary ExampleSummary() {
  RunSummary s;
  s.model = "dcgan32";
  s.mode = "async";
  s.staleness_policy = "reject_above_bound";
  s.momentum_compensation = true;
  s.num_workers = 2;
  s.num_shards = 2;
  s.batch_size = 64;
  s.g_steps = 1000;
  s.d_steps = 1001;
  s.worker_steps = 998;
  s.g_steps_this_run = 998;
  s.wall_s = 70;
  s.train_s = 60;
  s.img_s = 998.0 * 64 / 60;
  s.d_loss = 1.5;
  s.g_loss = 0.5;
  s.rejected = 2;
  s.worker_img_s = {{"w0", 500}, {"w1", 510}};
  s.eval_network = s.final_fid_network = "fmnist-cnn";
  s.eval_fid = 60.5;
  s.eval_g_version = 900;
  s.eval_rounds = 4;
  s.final_fid = 41.25;
  s.final_fid_g_step = 1000;
  s.final_fid_samples = 10000;
  s.processes = {{"shard0", 10, "exit 0", true}, {"w1", 12, "exit 3", false}};
  s.outputs = {"runs/x/samples.npy"};
  s.error = "a \"quoted\"\nerror";
  return s;
}

TEST(Summary, TextNamesEverything) {
  const std::string t = SummaryText(ExampleSummary());
  for (const char* want :
       {"dcgan32", "2 parameter-server shard(s), 2 worker(s), async",
        "(staleness policy reject_above_bound, momentum compensation)",
        "G steps (G table version) 1000, D steps 1001; 998 G steps in this run",
        "images/s 1064.5", "w0: 500.0 img/s", "final losses D 1.5000 G 0.5000",
        "rejected pushes 2", "exit 3  <-- unexpected", "ERROR: a",
        "last live FID(fmnist-cnn) 60.500 at G step 900 (4 evaluations",
        "final FID(fmnist-cnn) 41.250 at G step 1000 (10000 samples)",
        "runs/x/samples.npy"}) {
    EXPECT_NE(t.find(want), std::string::npos) << want << "\n" << t;
  }
}

TEST(Summary, JsonIsWellFormedEnough) {
  const std::string j = SummaryJson(ExampleSummary());
  EXPECT_NE(j.find("\"g_steps\": 1000,"), std::string::npos) << j;
  EXPECT_NE(j.find("\"momentum_compensation\": true,"), std::string::npos) << j;
  EXPECT_NE(j.find("\"final_fid\": 41.25,"), std::string::npos) << j;
  EXPECT_NE(j.find("\"final_fid_samples\": 10000,"), std::string::npos) << j;
  EXPECT_NE(j.find("\"images_per_s\": 1064.53,"), std::string::npos) << j;
  EXPECT_NE(j.find("\"worker_images_per_s\": {\"w0\": 500, \"w1\": 510}"),
            std::string::npos)
      << j;
  EXPECT_NE(j.find("{\"name\": \"w1\", \"pid\": 12, \"exit\": \"exit 3\", "
                   "\"ok\": false}"),
            std::string::npos)
      << j;
  EXPECT_NE(j.find("\"error\": \"a \\\"quoted\\\"\\nerror\""),
            std::string::npos)
      << j;
  EXPECT_NE(j.find("\"ok\": false"), std::string::npos);
  // Balanced braces and brackets, and no NaN literal.
  int braces = 0, brackets = 0;
  for (char c : j) {
    braces += c == '{' ? 1 : c == '}' ? -1 : 0;
    brackets += c == '[' ? 1 : c == ']' ? -1 : 0;
  }
  EXPECT_EQ(braces, 0);
  EXPECT_EQ(brackets, 0);
  RunSummary nan = ExampleSummary();
  nan.d_loss = std::nan("");
  EXPECT_NE(SummaryJson(nan).find("\"d_loss\": null"), std::string::npos);
}

TEST(Misc, WaitStatusAndFlags) {
  EXPECT_EQ(DescribeWaitStatus(0), "exit 0");
  EXPECT_EQ(DescribeWaitStatus(3 << 8), "exit 3");
  EXPECT_EQ(DescribeWaitStatus(SIGKILL).rfind("killed by signal 9", 0), 0u);
  EXPECT_EQ(SplitFlags("  --a=1\t--b=2 \n"),
            (std::vector<std::string>{"--a=1", "--b=2"}));
  EXPECT_TRUE(SplitFlags("").empty());
}

TEST(ChildProcess, CapturesLinesAndExitStatus) {
  const std::string log = ::testing::TempDir() + "/child.log";
  std::vector<std::string> lines;
  absl::Mutex mu;
  auto child = ChildProcess::Start(
      "sh",
      {"/bin/sh", "-c",
       "echo 'x listening on port 1234'; echo oops >&2; echo bad >&2; exit 3"},
      log, [&](const std::string& line, bool is_stderr) {
        absl::MutexLock lock(&mu);
        lines.push_back((is_stderr ? "E:" : "O:") + line);
      });
  ASSERT_TRUE(child.ok()) << child.status();
  ASSERT_TRUE((*child)->WaitFor(absl::Seconds(20)));
  EXPECT_EQ((*child)->ExitDescription(), "exit 3");
  child->reset();  // joins the readers
  EXPECT_EQ(lines.size(), 3u);
  std::ifstream in(log);
  std::stringstream all;
  all << in.rdbuf();
  EXPECT_NE(all.str().find("listening on port 1234"), std::string::npos);
  EXPECT_NE(all.str().find("oops"), std::string::npos);

  auto sleeper = ChildProcess::Start("sleep", {"/bin/sleep", "30"}, log, {});
  ASSERT_TRUE(sleeper.ok());
  EXPECT_FALSE((*sleeper)->Poll());
  (*sleeper)->Signal(SIGTERM);
  ASSERT_TRUE((*sleeper)->WaitFor(absl::Seconds(20)));
  EXPECT_EQ((*sleeper)->ExitDescription().rfind("killed by signal 15", 0), 0u);

  auto stderr_child = ChildProcess::Start(
      "e", {"/bin/sh", "-c", "for i in $(seq 1 30); do echo l$i >&2; done"},
      log, {});
  ASSERT_TRUE(stderr_child.ok());
  ASSERT_TRUE((*stderr_child)->WaitFor(absl::Seconds(20)));
  absl::SleepFor(absl::Milliseconds(200));
  const auto last = (*stderr_child)->LastStderrLines();
  ASSERT_EQ(last.size(), 20u);
  EXPECT_EQ(last.back(), "l30");
  EXPECT_EQ(last.front(), "l11");
}

TEST(FindBinDir, ExplainsWhatIsMissing) {
  auto dir = FindBinDir("/nonexistent");
  ASSERT_FALSE(dir.ok());
  EXPECT_NE(dir.status().message().find("bazel build //server:paragan_server"),
            std::string::npos);
  EXPECT_NE(dir.status().message().find("dataloader/paragan_data"),
            std::string::npos);
}

}  // namespace
}  // namespace local
}  // namespace paragan
