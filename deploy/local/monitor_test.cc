// The monitor's readers: the Prometheus text parser on a real worker's
// /metrics page (testdata/worker_metrics.txt, from paragan_worker w1 of a
// two-worker run), the worker counters and progress between two readings,
// and HTTP GET against a small local server.

#include "deploy/local/monitor.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmath>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "deploy/local/metrics_text.h"

namespace paragan {
namespace local {
namespace {

std::string WorkerPage() {
  std::ifstream in("deploy/local/testdata/worker_metrics.txt");
  std::stringstream all;
  all << in.rdbuf();
  EXPECT_FALSE(all.str().empty());
  return all.str();
}

TEST(ParseMetricsText, RealWorkerPage) {
  absl::StatusOr<std::vector<MetricSample>> s = ParseMetricsText(WorkerPage());
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_GT(s->size(), 100u);
  EXPECT_EQ(FindMetric(*s, "paragan_worker_steps_total", {{"worker", "w1"}}),
            92);
  EXPECT_EQ(FindMetric(*s, "paragan_worker_staleness_sum",
                       {{"worker", "w1"}, {"table", "G"}}),
            89);
  EXPECT_EQ(FindMetric(*s, "paragan_worker_staleness_bucket",
                       {{"table", "D"}, {"le", "+Inf"}}),
            92);
  EXPECT_EQ(FindMetric(*s, "paragan_process_resident_memory_bytes"), 167342080);
  // prometheus-cpp writes an empty summary's quantiles as "Nan".
  const std::optional<double> q =
      FindMetric(*s, "exposer_request_latencies", {{"quantile", "0.5"}});
  ASSERT_TRUE(q);
  EXPECT_TRUE(std::isnan(*q));
  EXPECT_FALSE(
      FindMetric(*s, "paragan_worker_steps_total", {{"worker", "w0"}}));
  EXPECT_FALSE(FindMetric(*s, "no_such_metric"));
}

TEST(ParseMetricsText, FormatCorners) {
  absl::StatusOr<std::vector<MetricSample>> s = ParseMetricsText(
      "# HELP a_total A counter\n"
      "# TYPE a_total counter\n"
      "\n"
      "a_total 3 1700000000000\n"  // with a timestamp
      "b{path=\"/x\\\"y\\\\z\",n=\"1\"} +Inf\n"
      "c{ } -Inf\n"
      "d:e 1.5e-3\n");
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_EQ(s->size(), 4u);
  EXPECT_EQ((*s)[0].value, 3);
  EXPECT_EQ((*s)[1].labels.at("path"), "/x\"y\\z");
  EXPECT_EQ((*s)[1].labels.at("n"), "1");
  EXPECT_TRUE(std::isinf((*s)[1].value) && (*s)[1].value > 0);
  EXPECT_TRUE(std::isinf((*s)[2].value) && (*s)[2].value < 0);
  EXPECT_EQ((*s)[3].name, "d:e");
  EXPECT_DOUBLE_EQ((*s)[3].value, 1.5e-3);
  for (const char* bad : {"x{a=\"1\" 2\n", "x{a=1} 2\n", "x\n", "x 1 2 3\n",
                          "{a=\"1\"} 2\n", "x abc\n"}) {
    EXPECT_FALSE(ParseMetricsText(bad).ok()) << bad;
  }
  const absl::Status st = ParseMetricsText("ok 1\nbroken{\n").status();
  EXPECT_NE(st.message().find("metrics line 2"), std::string::npos) << st;
}

TEST(WorkerCounters, FromRealPage) {
  absl::StatusOr<WorkerCounters> c =
      WorkerCountersFromMetrics(WorkerPage(), "w1");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->steps, 92);
  EXPECT_EQ(c->images, 736);
  EXPECT_DOUBLE_EQ(c->d_real, 3.4854);
  EXPECT_DOUBLE_EQ(c->d_fake, -1.7545);
  EXPECT_NEAR(c->g_loss, 1.7217, 1e-4);
  EXPECT_EQ(c->staleness_sum_d, 84);
  EXPECT_EQ(c->staleness_count_d, 92);
  EXPECT_EQ(c->staleness_sum_g, 89);
  EXPECT_EQ(c->staleness_count_g, 92);
  EXPECT_EQ(c->rejected, 0);
  EXPECT_EQ(WorkerCountersFromMetrics(WorkerPage(), "w0").status().code(),
            absl::StatusCode::kNotFound);
}

TEST(ProgressBetween, RatesAndMeansOverTheInterval) {
  WorkerCounters a;
  a.steps = 10;
  a.images = 640;
  a.staleness_sum_d = 10;
  a.staleness_count_d = 10;
  a.staleness_sum_g = 5;
  a.staleness_count_g = 10;
  a.rejected = 1;
  // First reading: no rate yet, staleness since the start.
  WorkerProgress first = ProgressBetween("w0", nullptr, a, 0, nullptr);
  EXPECT_EQ(first.worker, "w0");
  EXPECT_EQ(first.step, 10);
  EXPECT_EQ(first.img_s, 0);
  EXPECT_DOUBLE_EQ(first.staleness_d, 1.0);
  EXPECT_DOUBLE_EQ(first.staleness_g, 0.5);
  WorkerCounters b = a;
  b.steps = 20;
  b.images = 1280;
  b.staleness_sum_d = 40;  // 10 pushes of staleness 3
  b.staleness_count_d = 20;
  b.d_loss = 1.25;
  b.d_real = 0.5;
  b.rejected = 4;
  WorkerProgress p = ProgressBetween("w0", &a, b, 5, &first);
  EXPECT_EQ(p.step, 20);
  EXPECT_DOUBLE_EQ(p.img_s, 128);
  EXPECT_DOUBLE_EQ(p.staleness_d, 3.0);
  EXPECT_DOUBLE_EQ(p.staleness_g, 0.5);  // no G push since: the last mean
  EXPECT_EQ(p.d_loss, 1.25);
  EXPECT_EQ(p.d_real, 0.5);
  EXPECT_EQ(p.rejected, 4);
  // Too soon after the last reading for a rate: the last one stays.
  WorkerCounters c = b;
  c.images = 1300;
  c.steps = 21;
  WorkerProgress q = ProgressBetween("w0", &b, c, 0.1, &p);
  EXPECT_DOUBLE_EQ(q.img_s, 128);
  EXPECT_EQ(q.step, 21);
  EXPECT_DOUBLE_EQ(q.staleness_d, 3.0);
}

TEST(WorkerCounters, DecoupledRolesFromTheirPages) {
  const std::string page =
      "paragan_worker_info{role=\"d_only\",worker=\"d0\"} 1\n"
      "paragan_worker_steps_total{worker=\"d0\"} 40\n"
      "paragan_worker_images_total{worker=\"d0\"} 2560\n"
      "paragan_worker_sample_age_sum{worker=\"d0\"} 60\n"
      "paragan_worker_sample_age_count{worker=\"d0\"} 40\n"
      "paragan_worker_fake_stalls_total{worker=\"d0\"} 3\n"
      "paragan_worker_fakes_skipped_total{worker=\"d0\"} 2\n";
  absl::StatusOr<WorkerCounters> c = WorkerCountersFromMetrics(page, "d0");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->role, "d_only");
  EXPECT_EQ(c->buffered, -1);  // not a G worker
  EXPECT_EQ(c->stalls, 3);
  EXPECT_EQ(c->skipped, 2);
  WorkerProgress p = ProgressBetween("d0", nullptr, *c, 0, nullptr);
  EXPECT_EQ(p.role, "d_only");
  EXPECT_DOUBLE_EQ(p.sample_age, 1.5);
  // Role auto: the role running now wins over the info label.
  const std::string auto_page =
      "paragan_worker_role{role=\"g_only\",worker=\"w2\"} 0\n"
      "paragan_worker_role{role=\"d_only\",worker=\"w2\"} 1\n"
      "paragan_worker_info{role=\"auto\",worker=\"w2\"} 1\n"
      "paragan_worker_steps_total{worker=\"w2\"} 4\n";
  EXPECT_EQ(WorkerCountersFromMetrics(auto_page, "w2")->role, "d_only");
  // A page from before roles existed: both.
  EXPECT_EQ(WorkerCountersFromMetrics(WorkerPage(), "w1")->role, "both");
}

TEST(ProgressAggregator, WorkersThatLeftAreCountedNotListedNorAveraged) {
  ProgressAggregator agg;
  for (int i = 0; i < 5; ++i) {
    WorkerProgress w;
    w.worker = absl::StrCat("w", i);
    w.step = 10;
    w.img_s = 100;
    w.d_loss = i < 2 ? 1.0 : 9.0;  // w2..w4 leave with their last loss 9
    w.rejected = 1;
    agg.Update(w);
    agg.SetState(w.worker, i < 2 ? "running" : "left");
  }
  const ProgressAggregator::Totals t = agg.Compute();
  EXPECT_EQ(t.workers_left, 3);
  EXPECT_EQ(t.workers_reporting, 2);
  EXPECT_DOUBLE_EQ(t.d_loss, 1.0);  // now's workers only
  EXPECT_DOUBLE_EQ(t.img_s, 200);
  EXPECT_EQ(t.worker_steps, 50);  // the work they did still counts
  EXPECT_EQ(t.rejected, 5);
  const std::string line = ProgressAggregator::FormatLine(65, t, std::nullopt);
  EXPECT_NE(line.find("200 img/s total (w0 100, w1 100, 3 left)"),
            std::string::npos)
      << line;
  EXPECT_EQ(line.find("w2"), std::string::npos) << line;
  // Scaled up again under its old name, a worker is listed again.
  agg.SetState("w3", "running");
  EXPECT_NE(ProgressAggregator::FormatLine(66, agg.Compute(), std::nullopt)
                .find("(w0 100, w1 100, w3 100, 2 left)"),
            std::string::npos);
}

TEST(ProgressAggregator, DecoupledLineShowsRolesBufferAndSampleAge) {
  ProgressAggregator agg;
  WorkerProgress g;
  g.worker = "g0";
  g.role = "g_only";
  g.step = 100;
  g.steps_s = 3.0;
  g.g_loss = -1.0;
  g.d_loss = 0;  // a G worker has no D loss: it must not dilute D's
  g.buffered = 4;
  agg.Update(g);
  for (const char* id : {"d0", "d1"}) {
    WorkerProgress d;
    d.worker = id;
    d.role = "d_only";
    d.step = 50;
    d.steps_s = 1.5;
    d.img_s = 96;
    d.d_loss = 1.0;
    d.sample_age = id == std::string("d0") ? 1.0 : 2.0;
    d.stalls = 2;
    agg.Update(d);
  }
  const ProgressAggregator::Totals t = agg.Compute();
  EXPECT_TRUE(t.decoupled);
  EXPECT_DOUBLE_EQ(t.d_loss, 1.0);
  EXPECT_DOUBLE_EQ(t.g_loss, -1.0);
  EXPECT_DOUBLE_EQ(t.g_steps_s, 3.0);
  EXPECT_DOUBLE_EQ(t.d_steps_s, 3.0);
  EXPECT_DOUBLE_EQ(t.sample_age, 1.5);
  EXPECT_EQ(t.stalls, 4);
  const std::string line = ProgressAggregator::FormatLine(65, t, std::nullopt);
  EXPECT_NE(line.find("(d0 96, d1 96, g0 G)"), std::string::npos) << line;
  EXPECT_NE(line.find("| steps/s G 3.00 D 3.00 (D:G 1.00) | buffer 4 | "
                      "sample age 1.5 | stalls 4"),
            std::string::npos)
      << line;
  // A coupled run's line says nothing of roles.
  ProgressAggregator coupled;
  WorkerProgress w;
  w.worker = "w0";
  coupled.Update(w);
  EXPECT_EQ(ProgressAggregator::FormatLine(1, coupled.Compute(), std::nullopt)
                .find("steps/s"),
            std::string::npos);
}

// Serves `answers` to successive connections on a free localhost port.
class FakeHttp {
 public:
  // Keeps each connection open `hold` after the answer: a client must stop
  // at Content-Length rather than wait for the close.
  explicit FakeHttp(std::vector<std::string> answers,
                    absl::Duration hold = absl::ZeroDuration()) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr = {};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    socklen_t len = sizeof(addr);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    listen(fd_, 4);
    thread_ = std::thread([this, answers, hold] {
      for (const std::string& a : answers) {
        const int c = accept(fd_, nullptr, nullptr);
        if (c < 0) return;
        char buf[4096];
        const ssize_t n = recv(c, buf, sizeof(buf), 0);
        if (n > 0) requests_.append(buf, static_cast<size_t>(n));
        (void)!send(c, a.data(), a.size(), MSG_NOSIGNAL);
        if (a.find("Content-Length") != std::string::npos) {
          absl::SleepFor(hold);
        }
        close(c);
      }
    });
  }
  ~FakeHttp() {
    shutdown(fd_, SHUT_RDWR);
    close(fd_);
    thread_.join();
  }
  std::string address() const { return absl::StrCat("127.0.0.1:", port_); }
  std::string requests_;

 private:
  int fd_ = -1;
  int port_ = 0;
  std::thread thread_;
};

TEST(EvalReading, FromTheEvaluatorsPage) {
  const std::string page =
      "# TYPE paragan_eval_fid gauge\n"
      "paragan_eval_fid{network=\"fmnist-cnn\"} 45.25\n"
      "paragan_eval_kid{network=\"fmnist-cnn\"} 0.031\n"
      "paragan_eval_is{network=\"fmnist-cnn\"} 6.5\n"
      "paragan_eval_g_version 1200\n"
      "paragan_eval_rounds_total 3\n"
      "paragan_eval_errors_total 1\n";
  absl::StatusOr<EvalReading> r = EvalReadingFromMetrics(page);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->network, "fmnist-cnn");
  EXPECT_DOUBLE_EQ(r->fid, 45.25);
  EXPECT_DOUBLE_EQ(r->kid, 0.031);
  EXPECT_DOUBLE_EQ(r->is, 6.5);
  EXPECT_EQ(r->g_version, 1200);
  EXPECT_EQ(r->rounds, 3);
  EXPECT_EQ(r->errors, 1);
  ProgressAggregator agg;
  agg.SetState("w0", "running");
  WorkerProgress w;
  w.worker = "w0";
  w.img_s = 100;
  agg.Update(w);
  const std::string line =
      ProgressAggregator::FormatLine(10, agg.Compute(), std::nullopt, *r);
  EXPECT_NE(line.find("| FID(fmnist-cnn) 45.25 @G 1200"), std::string::npos)
      << line;
  // Before the first round the gauges exist but mean nothing.
  EXPECT_FALSE(
      EvalReadingFromMetrics("paragan_eval_fid{network=\"fmnist-cnn\"} 0\n"
                             "paragan_eval_rounds_total 0\n")
          .ok());
}

// Two readings of a data service's page 2 s apart: w1 waited 0.7 s for data
// (35%), w0 0.02 s (1%, no line); w2 appeared in the second (no interval).
TEST(CongestedLinkLines, LinesForStalledLinksOnly) {
  const std::string before =
      "paragan_data_worker_stall_seconds_total{worker=\"w0\"} 1.0\n"
      "paragan_data_worker_stall_seconds_total{worker=\"w1\"} 3.0\n"
      "paragan_data_bytes_sent_total{worker=\"w0\"} 1e6\n"
      "paragan_data_bytes_sent_total{worker=\"w1\"} 2e6\n"
      "paragan_data_decoded_bytes_sent_total{worker=\"w1\"} 16e6\n"
      "paragan_data_streams 2\n";
  const std::string after =
      "paragan_data_worker_stall_seconds_total{worker=\"w0\"} 1.02\n"
      "paragan_data_worker_stall_seconds_total{worker=\"w1\"} 3.7\n"
      "paragan_data_worker_stall_seconds_total{worker=\"w2\"} 5\n"
      "paragan_data_bytes_sent_total{worker=\"w0\"} 9e6\n"
      "paragan_data_bytes_sent_total{worker=\"w1\"} 5e6\n"
      "paragan_data_decoded_bytes_sent_total{worker=\"w1\"} 42.7e6\n"
      "paragan_data_link_bandwidth_bytes_per_second{worker=\"w1\"} 2.5e6\n"
      "paragan_data_link_rtt_seconds{worker=\"w1\"} 0.110\n"
      "paragan_data_link_queueing_delay_seconds{worker=\"w1\"} 0.095\n"
      "paragan_data_link_window_batches{worker=\"w1\"} 12\n"
      "paragan_data_link_compression_level{worker=\"w1\"} 3\n";
  auto prev = LinkReadingsFromMetrics(before);
  auto cur = LinkReadingsFromMetrics(after);
  ASSERT_TRUE(prev.ok() && cur.ok());
  EXPECT_EQ(cur->size(), 3u);
  EXPECT_FALSE((*prev)["w0"].bandwidth.has_value());
  const std::vector<std::string> lines = CongestedLinkLines(*prev, *cur, 2.0);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0],
            "data link w1: stalled 35% | 1.50 MB/s on the wire (x8.9) | est. "
            "2.50 MB/s, rtt 110 ms (95 queued), window 12, zstd");
  // round_robin publishes no estimates: the measured part only.
  auto rr = LinkReadingsFromMetrics(
      before + "paragan_data_worker_stall_seconds_total{worker=\"w3\"} 0\n");
  auto rr2 = LinkReadingsFromMetrics(
      "paragan_data_worker_stall_seconds_total{worker=\"w3\"} 1.9\n");
  ASSERT_TRUE(rr.ok() && rr2.ok());
  EXPECT_EQ(CongestedLinkLines(*rr, *rr2, 2.0),
            std::vector<std::string>{"data link w3: stalled 95% | 0.00 MB/s "
                                     "on the wire"});
  EXPECT_TRUE(CongestedLinkLines(*prev, *cur, 0).empty());
}

TEST(HttpGet, BodyOfAnOkAnswer) {
  FakeHttp server(
      {"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
       "HTTP/1.0 200 OK\r\n\r\nuntil close", "HTTP/1.1 404 Not Found\r\n\r\n"},
      absl::Seconds(3));
  const absl::Time start = absl::Now();
  absl::StatusOr<std::string> a =
      HttpGet(server.address(), "/metrics", absl::Seconds(2));
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(*a, "hello");
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  absl::StatusOr<std::string> b =
      HttpGet(server.address(), "/metrics", absl::Seconds(5));
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(*b, "until close");
  absl::StatusOr<std::string> c =
      HttpGet(server.address(), "/metrics", absl::Seconds(5));
  EXPECT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("404"), std::string::npos);
  EXPECT_NE(server.requests_.find("GET /metrics HTTP/1.0\r\n"),
            std::string::npos);
  EXPECT_FALSE(HttpGet("127.0.0.1:1", "/", absl::Seconds(1)).ok());
  EXPECT_FALSE(HttpGet("no-port", "/", absl::Seconds(1)).ok());
}

TEST(Monitor, ScrapesWorkersIntoTheProgress) {
  const std::string page = WorkerPage();
  const std::string answer = absl::StrCat(
      "HTTP/1.1 200 OK\r\nContent-Length: ", page.size(), "\r\n\r\n", page);
  FakeHttp server({answer, answer});
  Monitor m;
  m.SetWorkerState("w1", "running");
  m.SetWorkerState("w2", "running");
  auto address = [&](const std::string& w) -> absl::StatusOr<std::string> {
    if (w == "w1") return server.address();
    return absl::UnavailableError("not registered yet");
  };
  m.ScrapeWorkers({"w1", "w2"}, address);
  // One reading gives no rate: still "starting" on the line.
  EXPECT_EQ(m.Totals().workers_reporting, 0);
  absl::SleepFor(absl::Milliseconds(1100));
  m.ScrapeWorkers({"w1", "w2"}, address);
  const ProgressAggregator::Totals t = m.Totals();
  EXPECT_EQ(t.workers_reporting, 1);
  EXPECT_EQ(t.worker_steps, 92);
  EXPECT_DOUBLE_EQ(t.d_real, 3.4854);
  EXPECT_DOUBLE_EQ(t.img_s, 0);                 // the same page twice
  EXPECT_NEAR(t.staleness_d, 84.0 / 92, 1e-9);  // nothing new: the first mean
  const std::string line = ProgressAggregator::FormatLine(12, t, std::nullopt);
  EXPECT_NE(line.find("(w1 0, w2 starting)"), std::string::npos) << line;
  EXPECT_FALSE(m.QueryShards());  // no shards connected
}

}  // namespace
}  // namespace local
}  // namespace paragan
