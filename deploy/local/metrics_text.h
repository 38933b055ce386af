#ifndef PARAGAN_DEPLOY_LOCAL_METRICS_TEXT_H_
#define PARAGAN_DEPLOY_LOCAL_METRICS_TEXT_H_

// A small parser of the Prometheus text exposition format (version 0.0.4),
// what the services' /metrics pages serve: one sample per line,
//   name{label="value",...} value [timestamp]
// with "# HELP" / "# TYPE" comments. Histograms and summaries arrive as
// their _bucket/_sum/_count samples.

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace paragan {
namespace local {

struct MetricSample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;  // NaN and +/-Inf as the page says
};

// Every sample of `text`; InvalidArgument naming the first bad line.
absl::StatusOr<std::vector<MetricSample>> ParseMetricsText(
    absl::string_view text);

// The value of the first sample called `name` whose labels include all of
// `labels`; nullopt when there is none.
std::optional<double> FindMetric(
    const std::vector<MetricSample>& samples, absl::string_view name,
    const std::map<std::string, std::string>& labels = {});

}  // namespace local
}  // namespace paragan

#endif  // PARAGAN_DEPLOY_LOCAL_METRICS_TEXT_H_
