// Fuzzes the launcher's parser of the Prometheus text the workers' /metrics
// pages serve (bytes from the network). Whatever parses re-serializes, label
// values escaped, to text that parses to the same samples.

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "deploy/local/metrics_text.h"
#include "tools/fuzz/fuzz_target.h"

namespace paragan {
namespace {

std::string Escape(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string FormatValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[40];
  std::snprintf(buf, sizeof(buf), "%.17g", v);
  return buf;
}

std::string Serialize(const std::vector<local::MetricSample>& samples) {
  std::string out;
  for (const local::MetricSample& m : samples) {
    out += m.name;
    if (!m.labels.empty()) {
      out += '{';
      for (const auto& [k, v] : m.labels) {
        absl::StrAppend(&out, k, "=\"", Escape(v), "\",");
      }
      out += '}';
    }
    absl::StrAppend(&out, " ", FormatValue(m.value), "\n");
  }
  return out;
}

bool SameValue(double a, double b) {
  return (std::isnan(a) && std::isnan(b)) || a == b;
}

}  // namespace

std::vector<std::string> FuzzSeeds() {
  return {
      "# HELP paragan_worker_images_total Real images trained on\n"
      "# TYPE paragan_worker_images_total counter\n"
      "paragan_worker_images_total{worker=\"w0\"} 1234\n"
      "paragan_worker_loss{worker=\"w0\",net=\"D\"} 0.693 1700000000000\n",
      "process_resident_memory_bytes 1.5e+08\n"
      "paragan_ps_staleness_bucket{shard=\"0\",table=\"G\",le=\"+Inf\"} 17\n"
      "x{a=\"q\\\"uote\\\\back\\nline\"} NaN\n"
      "y -Inf\n",
      "",
  };
}

}  // namespace paragan

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using paragan::FuzzCheck;
  const std::string text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<std::vector<paragan::local::MetricSample>> samples =
      paragan::local::ParseMetricsText(text);
  if (!samples.ok()) {
    FuzzCheck(absl::IsInvalidArgument(samples.status()),
              "a bad page is InvalidArgument");
    return 0;
  }
  for (const paragan::local::MetricSample& m : *samples) {
    FuzzCheck(!m.name.empty(), "every sample has a name");
    FuzzCheck(
        paragan::local::FindMetric(*samples, m.name, m.labels).has_value(),
        "every sample is found by its name and labels");
  }
  absl::StatusOr<std::vector<paragan::local::MetricSample>> again =
      paragan::local::ParseMetricsText(paragan::Serialize(*samples));
  FuzzCheck(again.ok(), "re-serialized samples parse");
  FuzzCheck(again->size() == samples->size(), "as many samples again");
  for (size_t i = 0; i < samples->size(); ++i) {
    const auto& a = (*samples)[i];
    const auto& b = (*again)[i];
    FuzzCheck(a.name == b.name && a.labels == b.labels &&
                  paragan::SameValue(a.value, b.value),
              "re-serialized samples parse to the same samples");
  }
  return 0;
}
