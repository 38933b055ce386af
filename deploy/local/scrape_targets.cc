#include "deploy/local/scrape_targets.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/json_text.h"
#include "common/tensor_io.h"

namespace paragan {
namespace local {

std::string ScrapeJobName(Role role) {
  switch (role) {
    case Role::kShard:
      return "paragan-ps";
    case Role::kData:
      return "paragan-data";
    case Role::kWorker:
      return "paragan-worker";
    case Role::kEval:
      return "paragan-eval";
    case Role::kInit:
    case Role::kExport:
      return "";
  }
  return "";
}

std::string ParaganJobName(absl::string_view out_dir) {
  while (absl::ConsumeSuffix(&out_dir, "/")) {
  }
  const size_t slash = out_dir.rfind('/');
  absl::string_view base =
      slash == absl::string_view::npos ? out_dir : out_dir.substr(slash + 1);
  if (base.empty() || base == "." || base == "..") return "local";
  return std::string(base);
}

std::vector<ScrapeTarget> KnownTargets(
    const Job& job,
    const std::function<absl::StatusOr<std::string>(const std::string&)>&
        metrics_address) {
  std::vector<ScrapeTarget> out;
  for (const ProcessSpec& p : job.processes) {
    if (ScrapeJobName(p.role).empty()) continue;
    bool has_metrics = false;
    for (const PortSpec& port : p.ports) has_metrics |= port.name == "metrics";
    if (!has_metrics) continue;
    absl::StatusOr<std::string> address = metrics_address(p.name);
    if (!address.ok()) continue;
    out.push_back({p.name, p.role, *std::move(address)});
  }
  return out;
}

std::string FileSdJson(const std::vector<ScrapeTarget>& targets,
                       absl::string_view paragan_job) {
  std::string out = "[";
  bool first = true;
  for (const ScrapeTarget& t : targets) {
    absl::StrAppend(
        &out, first ? "\n" : ",\n", "  {\"targets\": [", JsonString(t.address),
        "], \"labels\": {\"job\": ", JsonString(ScrapeJobName(t.role)),
        ", \"namespace\": ", JsonString(kLocalNamespace),
        ", \"paragan_job\": ", JsonString(paragan_job),
        ", \"process\": ", JsonString(t.process), "}}");
    first = false;
  }
  out += first ? "]\n" : "\n]\n";
  return out;
}

std::string PrometheusConfig(absl::string_view targets_file, int interval_s) {
  // Quoted as JSON, which YAML reads as a double-quoted scalar.
  return absl::StrCat(
      "# Written by paragan_local. Scrape this run with\n"
      "#   prometheus --config.file=<this file>\n"
      "# Targets come and go in ",
      targets_file,
      " as the run's processes do.\n"
      "global:\n"
      "  scrape_interval: ",
      interval_s, "s\n  evaluation_interval: ", interval_s,
      "s\n"
      "scrape_configs:\n"
      "  - job_name: paragan-local\n"
      "    file_sd_configs:\n"
      "      - files: [",
      JsonString(targets_file), "]\n        refresh_interval: ", interval_s,
      "s\n");
}

ScrapeTargetsWriter::ScrapeTargetsWriter(std::string out_dir, int interval_s)
    : out_dir_(std::move(out_dir)),
      paragan_job_(ParaganJobName(out_dir_)),
      interval_s_(interval_s) {}

absl::Status ScrapeTargetsWriter::Update(
    const std::vector<ScrapeTarget>& targets) {
  if (!wrote_config_) {
    absl::Status st = WriteFileAtomically(
        absl::StrCat(out_dir_, "/", kPrometheusConfigFile),
        PrometheusConfig(kPrometheusTargetsFile, interval_s_));
    if (!st.ok()) return st;
    wrote_config_ = true;
  }
  std::string json = FileSdJson(targets, paragan_job_);
  if (json == last_targets_) return absl::OkStatus();
  absl::Status st = WriteFileAtomically(
      absl::StrCat(out_dir_, "/", kPrometheusTargetsFile), json);
  if (st.ok()) last_targets_ = std::move(json);
  return st;
}

}  // namespace local
}  // namespace paragan
