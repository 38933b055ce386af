#include "deploy/local/scrape_targets.h"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "gtest/gtest.h"

namespace paragan {
namespace local {
namespace {

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool Exists(const std::string& path) { return std::ifstream(path).good(); }

ProcessSpec Spec(const std::string& name, Role role, bool metrics) {
  ProcessSpec p;
  p.name = name;
  p.role = role;
  p.ports.push_back({"grpc", PortSpec::Source::kPortFile, "/dev/null", ""});
  if (metrics) {
    p.ports.push_back({"metrics", PortSpec::Source::kStdoutLine, "", "m"});
  }
  return p;
}

TEST(ScrapeTargetsTest, JobNamesMatchTheManifests) {
  EXPECT_EQ(ScrapeJobName(Role::kShard), "paragan-ps");
  EXPECT_EQ(ScrapeJobName(Role::kData), "paragan-data");
  EXPECT_EQ(ScrapeJobName(Role::kWorker), "paragan-worker");
  EXPECT_EQ(ScrapeJobName(Role::kEval), "paragan-eval");
  EXPECT_EQ(ScrapeJobName(Role::kInit), "");
  EXPECT_EQ(ScrapeJobName(Role::kExport), "");
}

TEST(ScrapeTargetsTest, ParaganJobIsTheRunDirectoryName) {
  EXPECT_EQ(ParaganJobName("runs/local"), "local");
  EXPECT_EQ(ParaganJobName("/tmp/runs/fmnist-a//"), "fmnist-a");
  EXPECT_EQ(ParaganJobName("solo"), "solo");
  EXPECT_EQ(ParaganJobName(""), "local");
  EXPECT_EQ(ParaganJobName("/"), "local");
  EXPECT_EQ(ParaganJobName("runs/.."), "local");
}

TEST(ScrapeTargetsTest, KnownTargetsSkipTasksAndPortsNotYetKnown) {
  Job job;
  job.processes = {Spec("init", Role::kInit, false),
                   Spec("shard0", Role::kShard, true),
                   Spec("data", Role::kData, true),
                   Spec("w0", Role::kWorker, true),
                   Spec("w1", Role::kWorker, true),
                   Spec("nometrics", Role::kWorker, false),
                   Spec("export", Role::kExport, true)};
  std::vector<std::string> asked;
  const std::vector<ScrapeTarget> t = KnownTargets(
      job, [&asked](const std::string& name) -> absl::StatusOr<std::string> {
        asked.push_back(name);
        if (name == "w1") return absl::UnavailableError("not yet");
        return "127.0.0.1:" + std::to_string(9000 + asked.size());
      });
  ASSERT_EQ(t.size(), 3u);
  EXPECT_EQ(t[0].process, "shard0");
  EXPECT_EQ(t[0].address, "127.0.0.1:9001");
  EXPECT_EQ(t[1].process, "data");
  EXPECT_EQ(t[1].role, Role::kData);
  EXPECT_EQ(t[2].process, "w0");
  EXPECT_EQ(asked, (std::vector<std::string>{"shard0", "data", "w0", "w1"}));
}

TEST(ScrapeTargetsTest, FileSdJsonLabelsEveryTarget) {
  EXPECT_EQ(FileSdJson({}, "run"), "[]\n");
  EXPECT_EQ(FileSdJson({{"shard0", Role::kShard, "127.0.0.1:5"},
                        {"eval", Role::kEval, "127.0.0.1:6"}},
                       "my\"run"),
            "[\n"
            "  {\"targets\": [\"127.0.0.1:5\"], \"labels\": {\"job\": "
            "\"paragan-ps\", \"namespace\": \"local\", \"paragan_job\": "
            "\"my\\\"run\", \"process\": \"shard0\"}},\n"
            "  {\"targets\": [\"127.0.0.1:6\"], \"labels\": {\"job\": "
            "\"paragan-eval\", \"namespace\": \"local\", \"paragan_job\": "
            "\"my\\\"run\", \"process\": \"eval\"}}\n"
            "]\n");
}

TEST(ScrapeTargetsTest, ConfigReadsTheTargetsFile) {
  const std::string c = PrometheusConfig("prometheus_targets.json", 7);
  EXPECT_NE(c.find("scrape_interval: 7s"), std::string::npos) << c;
  EXPECT_NE(c.find("files: [\"prometheus_targets.json\"]"), std::string::npos)
      << c;
  EXPECT_NE(c.find("refresh_interval: 7s"), std::string::npos) << c;
}

TEST(ScrapeTargetsTest, WriterRewritesTargetsOnlyWhenTheyChange) {
  const std::string dir = std::getenv("TEST_TMPDIR");
  const std::string targets = dir + "/" + kPrometheusTargetsFile;
  const std::string config = dir + "/" + kPrometheusConfigFile;
  ScrapeTargetsWriter writer(dir, 5);
  const std::vector<ScrapeTarget> one = {{"data", Role::kData, "h:1"}};
  ASSERT_TRUE(writer.Update(one).ok());
  EXPECT_EQ(ReadAll(targets), FileSdJson(one, ParaganJobName(dir)));
  EXPECT_EQ(ReadAll(config), PrometheusConfig(kPrometheusTargetsFile, 5));
  // Unchanged targets: no write (the removed file stays away).
  std::remove(targets.c_str());
  std::remove(config.c_str());
  ASSERT_TRUE(writer.Update(one).ok());
  EXPECT_FALSE(Exists(targets));
  EXPECT_FALSE(Exists(config));
  const std::vector<ScrapeTarget> two = {{"data", Role::kData, "h:1"},
                                         {"w0", Role::kWorker, "h:2"}};
  ASSERT_TRUE(writer.Update(two).ok());
  EXPECT_EQ(ReadAll(targets), FileSdJson(two, ParaganJobName(dir)));
}

TEST(ScrapeTargetsTest, WriterNamesTheFileItCannotWrite) {
  ScrapeTargetsWriter writer("/nonexistent/dir", 5);
  const absl::Status st = writer.Update({});
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("/nonexistent/dir/prometheus.yml"),
            std::string::npos)
      << st;
}

}  // namespace
}  // namespace local
}  // namespace paragan
