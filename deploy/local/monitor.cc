#include "deploy/local/monitor.h"

#include <netdb.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "deploy/local/metrics_text.h"
#include "server/ps_client.h"
#include "server/table_names.h"

namespace paragan {
namespace local {
namespace {

// Shorter than this, two readings give no rate worth printing.
constexpr double kMinRateInterval_s = 1.0;

std::string FormatElapsed(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) seconds = 0;
  const int64_t s = static_cast<int64_t>(seconds + 0.5);
  if (s >= 3600) {
    return absl::StrFormat("%dh%02dm%02ds", s / 3600, (s % 3600) / 60, s % 60);
  }
  return absl::StrFormat("%3dm%02ds", s / 60, s % 60);
}

// The Content-Length of an HTTP answer's headers, if it has one.
std::optional<size_t> ContentLength(absl::string_view headers) {
  for (absl::string_view line : absl::StrSplit(headers, "\r\n")) {
    const size_t colon = line.find(':');
    if (colon == absl::string_view::npos ||
        !absl::EqualsIgnoreCase(line.substr(0, colon), "content-length")) {
      continue;
    }
    size_t n = 0;
    if (absl::SimpleAtoi(absl::StripAsciiWhitespace(line.substr(colon + 1)),
                         &n)) {
      return n;
    }
  }
  return std::nullopt;
}

}  // namespace

// ---------------------------------------------------------------------------
// ProgressAggregator
// ---------------------------------------------------------------------------

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
  int n = 0, with_d = 0, with_g = 0, d_only = 0;
  for (const auto& [id, state] : state_) {
    if (state == "left") ++t.workers_left;
  }
  for (const auto& [id, p] : latest_) {
    t.worker_steps += p.step;
    t.g_version = std::max(t.g_version, p.g_version);
    t.d_version = std::max(t.d_version, p.d_version);
    t.rejected += p.rejected;
    auto st = state_.find(id);
    // A worker scaled away: its work counts, its last losses are not now's.
    if (st != state_.end() && st->second == "left") continue;
    t.worker_role[id] = p.role;
    const bool running = st == state_.end() || st->second == "running";
    t.worker_img_s[id] = running ? p.img_s : 0.0;
    t.worker_steps_s[id] = running ? p.steps_s : 0.0;
    if (running) t.img_s += p.img_s;
    // Each loss, logit and staleness from the workers whose role has it.
    if (p.role != "g_only") {
      t.d_loss += p.d_loss;
      t.d_real += p.d_real;
      t.d_fake += p.d_fake;
      t.staleness_d += p.staleness_d;
      ++with_d;
    }
    if (p.role != "d_only") {
      t.g_loss += p.g_loss;
      t.staleness_g += p.staleness_g;
      ++with_g;
    }
    if (p.role == "g_only") {
      t.decoupled = true;
      if (running) t.g_steps_s += p.steps_s;
      t.buffered = std::max(t.buffered, p.buffered);
    } else if (p.role == "d_only") {
      t.decoupled = true;
      if (running) t.d_steps_s += p.steps_s;
      t.sample_age += p.sample_age;
      t.stalls += p.stalls;
      t.skipped += p.skipped;
      ++d_only;
    }
    ++n;
  }
  t.workers_reporting = n;
  for (double* x : {&t.d_loss, &t.d_real, &t.d_fake, &t.staleness_d}) {
    if (with_d > 0) *x /= with_d;
  }
  for (double* x : {&t.g_loss, &t.staleness_g}) {
    if (with_g > 0) *x /= with_g;
  }
  if (d_only > 0) t.sample_age /= d_only;
  return t;
}

std::string ProgressAggregator::FormatLine(
    double elapsed_s, const Totals& t, const std::optional<ShardTotals>& shards,
    const std::optional<EvalReading>& eval) {
  const int64_t g = shards ? shards->g_version : t.g_version;
  const int64_t d = shards ? shards->d_version : t.d_version;
  const int64_t rejected = shards ? shards->rejected : t.rejected;
  std::vector<std::string> per;
  for (const auto& [id, state] : t.worker_state) {
    auto it = t.worker_img_s.find(id);
    if (state == "left") continue;  // counted below: scaling leaves many
    if (state != "running") {
      per.push_back(absl::StrCat(id, " ", state));
    } else if (it == t.worker_img_s.end()) {
      per.push_back(absl::StrCat(id, " starting"));
    } else if (auto r = t.worker_role.find(id);
               r != t.worker_role.end() && r->second == "g_only") {
      per.push_back(absl::StrCat(id, " G"));  // generates, reads no images
    } else {
      per.push_back(absl::StrFormat("%s %.0f", id, it->second));
    }
  }
  if (t.workers_left > 0) per.push_back(absl::StrCat(t.workers_left, " left"));
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
  if (t.decoupled) {
    absl::StrAppend(&line, absl::StrFormat(" | steps/s G %.2f D %.2f",
                                           t.g_steps_s, t.d_steps_s));
    if (t.g_steps_s > 0) {
      absl::StrAppend(
          &line, absl::StrFormat(" (D:G %.2f)", t.d_steps_s / t.g_steps_s));
    }
    if (t.buffered >= 0) absl::StrAppend(&line, " | buffer ", t.buffered);
    absl::StrAppend(&line, absl::StrFormat(" | sample age %.1f | stalls %d",
                                           t.sample_age, t.stalls));
    if (t.skipped > 0) absl::StrAppend(&line, " | too old ", t.skipped);
  }
  if (eval) {
    absl::StrAppend(&line,
                    absl::StrFormat(" | FID(%s) %.2f @G %d", eval->network,
                                    eval->fid, eval->g_version));
  }
  return line;
}

absl::StatusOr<EvalReading> EvalReadingFromMetrics(absl::string_view text) {
  absl::StatusOr<std::vector<MetricSample>> samples = ParseMetricsText(text);
  if (!samples.ok()) return samples.status();
  EvalReading r;
  bool found = false;
  for (const MetricSample& m : *samples) {
    if (m.name != "paragan_eval_fid") continue;
    auto it = m.labels.find("network");
    r.network = it == m.labels.end() ? "?" : it->second;
    r.fid = m.value;
    found = true;
    break;
  }
  const double rounds =
      FindMetric(*samples, "paragan_eval_rounds_total").value_or(0);
  if (!found || rounds < 1)
    return absl::NotFoundError("the evaluator has not finished a round yet");
  const std::map<std::string, std::string> net = {{"network", r.network}};
  r.kid = FindMetric(*samples, "paragan_eval_kid", net).value_or(0);
  r.is = FindMetric(*samples, "paragan_eval_is", net).value_or(0);
  r.g_version = static_cast<int64_t>(
      FindMetric(*samples, "paragan_eval_g_version").value_or(0));
  r.rounds = static_cast<int64_t>(rounds);
  r.errors = static_cast<int64_t>(
      FindMetric(*samples, "paragan_eval_errors_total").value_or(0));
  return r;
}

// ---------------------------------------------------------------------------
// Data links
// ---------------------------------------------------------------------------

absl::StatusOr<std::map<std::string, LinkReading>> LinkReadingsFromMetrics(
    absl::string_view text) {
  absl::StatusOr<std::vector<MetricSample>> samples = ParseMetricsText(text);
  if (!samples.ok()) return samples.status();
  std::map<std::string, LinkReading> links;
  for (const MetricSample& m : *samples) {
    auto w = m.labels.find("worker");
    if (w == m.labels.end()) continue;
    LinkReading& l = links[w->second];  // every series labelled by worker
    if (m.name == "paragan_data_worker_stall_seconds_total") {
      l.stall_s = m.value;
    } else if (m.name == "paragan_data_bytes_sent_total") {
      l.wire_bytes = m.value;
    } else if (m.name == "paragan_data_decoded_bytes_sent_total") {
      l.decoded_bytes = m.value;
    } else if (m.name == "paragan_data_link_bandwidth_bytes_per_second") {
      l.bandwidth = m.value;
    } else if (m.name == "paragan_data_link_rtt_seconds") {
      l.rtt_s = m.value;
    } else if (m.name == "paragan_data_link_queueing_delay_seconds") {
      l.queueing_s = m.value;
    } else if (m.name == "paragan_data_link_window_batches") {
      l.window = m.value;
    } else if (m.name == "paragan_data_link_compression_level") {
      l.compression = m.value;
    }
  }
  return links;
}

std::vector<std::string> CongestedLinkLines(
    const std::map<std::string, LinkReading>& prev,
    const std::map<std::string, LinkReading>& cur, double dt_s,
    double min_stall) {
  std::vector<std::string> lines;
  if (dt_s <= 0) return lines;
  for (const auto& [worker, now] : cur) {
    auto was = prev.find(worker);
    if (was == prev.end()) continue;
    const double stall = (now.stall_s - was->second.stall_s) / dt_s;
    if (stall <= min_stall) continue;
    const double wire = now.wire_bytes - was->second.wire_bytes;
    const double decoded = now.decoded_bytes - was->second.decoded_bytes;
    std::string line =
        absl::StrFormat("data link %s: stalled %.0f%% | %.2f MB/s on the wire",
                        worker, 100 * std::min(stall, 1.0), wire / dt_s / 1e6);
    if (wire > 0) absl::StrAppendFormat(&line, " (x%.1f)", decoded / wire);
    if (now.bandwidth && now.rtt_s) {
      absl::StrAppendFormat(&line, " | est. %.2f MB/s, rtt %.0f ms",
                            *now.bandwidth / 1e6, *now.rtt_s * 1e3);
      if (now.queueing_s) {
        absl::StrAppendFormat(&line, " (%.0f queued)", *now.queueing_s * 1e3);
      }
      if (now.window)
        absl::StrAppendFormat(&line, ", window %.0f", *now.window);
      if (now.compression) {
        const int rung = static_cast<int>(*now.compression);
        absl::StrAppend(&line, ", ",
                        rung <= 0   ? "uncompressed"
                        : rung == 1 ? "lz4"
                                    : "zstd");
      }
    }
    lines.push_back(std::move(line));
  }
  return lines;
}

// ---------------------------------------------------------------------------
// Worker metrics
// ---------------------------------------------------------------------------

absl::StatusOr<WorkerCounters> WorkerCountersFromMetrics(
    absl::string_view text, const std::string& worker) {
  absl::StatusOr<std::vector<MetricSample>> samples = ParseMetricsText(text);
  if (!samples.ok()) return samples.status();
  const std::map<std::string, std::string> w = {{"worker", worker}};
  auto get = [&](const char* name,
                 const std::map<std::string, std::string>& labels) -> double {
    return FindMetric(*samples, name, labels).value_or(0);
  };
  auto table = [&](const char* t) {
    return std::map<std::string, std::string>{{"worker", worker}, {"table", t}};
  };
  if (!FindMetric(*samples, "paragan_worker_steps_total", w)) {
    return absl::NotFoundError(
        absl::StrCat("no paragan_worker_steps_total{worker=\"", worker, "\"}"));
  }
  WorkerCounters c;
  // The role: paragan_worker_info's label, unless paragan_worker_role says
  // which one runs now (role auto switches).
  bool current_known = false;
  for (const MetricSample& m : *samples) {
    const bool info = m.name == "paragan_worker_info";
    const bool current = m.name == "paragan_worker_role" && m.value == 1;
    if (!(info && !current_known) && !current) continue;
    auto id = m.labels.find("worker");
    auto role = m.labels.find("role");
    if (id == m.labels.end() || id->second != worker ||
        role == m.labels.end()) {
      continue;
    }
    c.role = role->second;
    current_known |= current;
  }
  c.buffered = FindMetric(*samples, "paragan_worker_sample_buffer_batches", w)
                   .value_or(-1);
  c.sample_age_sum = get("paragan_worker_sample_age_sum", w);
  c.sample_age_count = get("paragan_worker_sample_age_count", w);
  c.stalls = get("paragan_worker_fake_stalls_total", w);
  c.skipped = get("paragan_worker_fakes_skipped_total", w);
  c.steps = get("paragan_worker_steps_total", w);
  c.images = get("paragan_worker_images_total", w);
  c.d_loss = get("paragan_worker_discriminator_loss", w);
  c.g_loss = get("paragan_worker_generator_loss", w);
  c.d_real = get("paragan_worker_discriminator_real_logit", w);
  c.d_fake = get("paragan_worker_discriminator_fake_logit", w);
  c.staleness_sum_d = get("paragan_worker_staleness_sum", table("D"));
  c.staleness_count_d = get("paragan_worker_staleness_count", table("D"));
  c.staleness_sum_g = get("paragan_worker_staleness_sum", table("G"));
  c.staleness_count_g = get("paragan_worker_staleness_count", table("G"));
  c.rejected = get("paragan_worker_rejected_pushes_total", w);
  return c;
}

WorkerProgress ProgressBetween(const std::string& worker,
                               const WorkerCounters* prev,
                               const WorkerCounters& cur, double dt_s,
                               const WorkerProgress* last) {
  WorkerProgress p;
  p.worker = worker;
  p.role = cur.role;
  p.step = static_cast<int64_t>(cur.steps);
  p.buffered = static_cast<int64_t>(cur.buffered);
  p.stalls = static_cast<int64_t>(cur.stalls);
  p.skipped = static_cast<int64_t>(cur.skipped);
  p.rejected = static_cast<int64_t>(cur.rejected);
  p.d_loss = cur.d_loss;
  p.g_loss = cur.g_loss;
  p.d_real = cur.d_real;
  p.d_fake = cur.d_fake;
  const bool rated = prev != nullptr && dt_s >= kMinRateInterval_s;
  p.img_s = rated  ? std::max(0.0, cur.images - prev->images) / dt_s
            : last ? last->img_s
                   : 0;
  p.steps_s = rated  ? std::max(0.0, cur.steps - prev->steps) / dt_s
              : last ? last->steps_s
                     : 0;
  // Mean staleness of the pushes since `prev` (since the start for the
  // first reading); none new: the last mean stays.
  auto mean = [&](double sum, double count, double prev_sum, double prev_count,
                  double last_mean) {
    const double n = count - prev_count;
    return n > 0 ? (sum - prev_sum) / n : last_mean;
  };
  const bool delta = rated || prev == nullptr;
  const WorkerCounters zero;
  const WorkerCounters& base = prev != nullptr ? *prev : zero;
  p.staleness_d = delta ? mean(cur.staleness_sum_d, cur.staleness_count_d,
                               base.staleness_sum_d, base.staleness_count_d,
                               last ? last->staleness_d : 0)
                        : (last ? last->staleness_d : 0);
  p.staleness_g = delta ? mean(cur.staleness_sum_g, cur.staleness_count_g,
                               base.staleness_sum_g, base.staleness_count_g,
                               last ? last->staleness_g : 0)
                        : (last ? last->staleness_g : 0);
  p.sample_age = delta ? mean(cur.sample_age_sum, cur.sample_age_count,
                              base.sample_age_sum, base.sample_age_count,
                              last ? last->sample_age : 0)
                       : (last ? last->sample_age : 0);
  return p;
}

// ---------------------------------------------------------------------------
// Probes and reads
// ---------------------------------------------------------------------------

absl::StatusOr<std::string> HttpGet(const std::string& address,
                                    const std::string& path,
                                    absl::Duration timeout) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("not host:port: ", address));
  }
  const std::string host = address.substr(0, colon);
  const std::string port = address.substr(colon + 1);
  addrinfo hints = {};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (const int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &res);
      rc != 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot resolve ", address, ": ", gai_strerror(rc)));
  }
  const absl::Time deadline = absl::Now() + timeout;
  const timeval tv = absl::ToTimeval(timeout);
  int fd = -1;
  for (addrinfo* ai = res; ai != nullptr && fd < 0; ai = ai->ai_next) {
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) continue;
    // Bounds connect, send and every recv.
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
      close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(res);
  if (fd < 0) {
    return absl::UnavailableError(absl::StrCat("cannot connect to ", address,
                                               ": ", std::strerror(errno)));
  }
  const std::string request =
      absl::StrCat("GET ", path, " HTTP/1.0\r\nHost: ", address,
                   "\r\nConnection: close\r\n\r\n");
  std::string response;
  bool ok = send(fd, request.data(), request.size(), MSG_NOSIGNAL) ==
            static_cast<ssize_t>(request.size());
  char buf[16384];
  size_t body = std::string::npos;
  std::optional<size_t> length;  // Content-Length, once the headers are in
  while (ok) {
    const ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) break;  // the server closed after the body
    if (n < 0 || absl::Now() > deadline) ok = false;
    if (n > 0) response.append(buf, static_cast<size_t>(n));
    if (body == std::string::npos &&
        (body = response.find("\r\n\r\n")) != std::string::npos) {
      length = ContentLength(absl::string_view(response).substr(0, body));
    }
    // (An answer with a length is complete without waiting for the close.)
    if (length && response.size() >= body + 4 + *length) break;
  }
  close(fd);
  body = response.find("\r\n\r\n");
  if (!ok || (length && response.size() < body + 4 + *length)) {
    return absl::UnavailableError(absl::StrCat("GET ", address, path,
                                               ": no complete answer within ",
                                               absl::FormatDuration(timeout)));
  }
  const std::string status = response.substr(0, response.find("\r\n"));
  if (body == std::string::npos || !absl::StartsWith(status, "HTTP/1.") ||
      status.find(" 200") == std::string::npos) {
    return absl::UnavailableError(
        absl::StrCat("GET ", address, path, ": ", status));
  }
  return response.substr(body + 4, length.value_or(std::string::npos));
}

bool ShardAnswers(const std::string& address, const ClientSecurity& security) {
  ParameterServerClient::Options o;
  o.timeout = absl::Seconds(2);
  o.security = security;
  ParameterServerClient client(address, o);
  return client.GetState().ok();
}

bool MetricsAnswer(const std::string& address) {
  return HttpGet(address, "/metrics", absl::Seconds(2)).ok();
}

// ---------------------------------------------------------------------------
// Monitor
// ---------------------------------------------------------------------------

Monitor::Monitor() = default;
Monitor::~Monitor() = default;

void Monitor::ConnectShards(const std::vector<std::string>& targets,
                            absl::Duration rpc_timeout,
                            const ClientSecurity& security) {
  clients_.clear();
  for (const std::string& target : targets) {
    ParameterServerClient::Options o;
    o.timeout = rpc_timeout;
    o.security = security;
    clients_.push_back(std::make_unique<ParameterServerClient>(target, o));
  }
}

std::optional<ShardTotals> Monitor::QueryShards() {
  if (clients_.empty()) return std::nullopt;
  ShardTotals t;
  bool first = true;
  for (size_t i = 0; i < clients_.size(); ++i) {
    absl::StatusOr<v1::StateResponse> st = clients_[i]->GetState();
    if (!st.ok()) return std::nullopt;
    for (const v1::TableState& table : st->tables()) {
      int64_t* v =
          table.name() == kGeneratorTable ? &t.g_version : &t.d_version;
      *v = first ? table.version() : std::min(*v, table.version());
      if (table.name() != kGeneratorTable) {
        const int64_t batches =
            table.accepted_pushes() - table.pending_contributions();
        t.d_batches = first ? batches : std::min(t.d_batches, batches);
      }
      t.rejected += table.rejected_pushes();
      if (i == 0 && table.name() == kGeneratorTable) {
        t.registered_workers = table.registered_workers_size();
      }
    }
    first = false;
  }
  last_shards_ = t;
  return t;
}

void Monitor::ScrapeEval(const std::string& address) {
  absl::StatusOr<std::string> page =
      HttpGet(address, "/metrics", absl::Seconds(2));
  if (!page.ok()) return;
  absl::StatusOr<EvalReading> r = EvalReadingFromMetrics(*page);
  if (r.ok()) last_eval_ = *r;
}

std::vector<std::string> Monitor::ScrapeDataLinks(const std::string& address) {
  absl::StatusOr<std::string> page =
      HttpGet(address, "/metrics", absl::Seconds(2));
  if (!page.ok()) return {};
  absl::StatusOr<std::map<std::string, LinkReading>> links =
      LinkReadingsFromMetrics(*page);
  if (!links.ok()) return {};
  const absl::Time now = absl::Now();
  std::vector<std::string> lines;
  if (links_at_ != absl::InfinitePast()) {
    lines = CongestedLinkLines(links_, *links,
                               absl::ToDoubleSeconds(now - links_at_));
  }
  links_ = *std::move(links);
  links_at_ = now;
  return lines;
}

void Monitor::SetWorkerState(const std::string& worker,
                             const std::string& state) {
  progress_.SetState(worker, state);
}

void Monitor::ScrapeWorkers(
    const std::vector<std::string>& workers,
    const std::function<absl::StatusOr<std::string>(const std::string&)>&
        address,
    bool only_unread) {
  for (const std::string& w : workers) {
    if (only_unread && readings_.count(w)) continue;
    absl::StatusOr<std::string> a = address(w);
    if (!a.ok()) continue;  // not registered yet, or gone
    absl::StatusOr<std::string> page =
        HttpGet(*a, "/metrics", absl::Seconds(2));
    if (!page.ok()) continue;
    absl::StatusOr<WorkerCounters> c = WorkerCountersFromMetrics(*page, w);
    if (!c.ok()) continue;
    const absl::Time now = absl::Now();
    auto prev = readings_.find(w);
    auto last = progress_by_worker_.find(w);
    const bool first = prev == readings_.end();
    const double dt = first ? 0 : absl::ToDoubleSeconds(now - prev->second.at);
    const WorkerProgress p = ProgressBetween(
        w, first ? nullptr : &prev->second.counters, *c, dt,
        last == progress_by_worker_.end() ? nullptr : &last->second);
    const bool rated = !first && dt >= kMinRateInterval_s;
    // A reading too soon after the last one (the final one) updates the
    // counts but keeps the last rate and its interval.
    if (first || rated) readings_[w] = {*c, now};
    progress_by_worker_[w] = p;
    // The line shows a worker "starting" until it has a rate.
    if ((rated || reporting_.count(w)) && c->steps > 0) {
      reporting_.insert(w);
      progress_.Update(p);
    }
  }
}

}  // namespace local
}  // namespace paragan
