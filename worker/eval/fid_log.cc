#include "worker/eval/fid_log.h"

#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>
#include <system_error>
#include <utility>
#include <filesystem>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/plot.h"

namespace paragan::eval {
namespace {

constexpr char kHeader[] =
    "wall_s,unix_s,g_step,network,num_samples,fid,kid_mean,kid_std,is_mean,"
    "is_std,eval_s";

std::string Num(double v) {
  if (std::isnan(v)) return "nan";
  return absl::StrFormat("%.9g", v);
}

bool ParseNum(absl::string_view s, double* v) {
  if (s == "nan") {
    *v = NAN;
    return true;
  }
  return absl::SimpleAtod(s, v);
}

}  // namespace

std::string FidCsvHeader() { return kHeader; }

std::string FidCsvLine(const FidRow& r) {
  return absl::StrCat(absl::StrFormat("%.3f,%.3f,", r.wall_s, r.unix_s),
                      r.g_step, ",", r.network, ",", r.num_samples, ",",
                      Num(r.fid), ",", Num(r.kid_mean), ",", Num(r.kid_std),
                      ",", Num(r.is_mean), ",", Num(r.is_std), ",",
                      absl::StrFormat("%.3f", r.eval_s));
}

FidRow FidRowFromResult(const EvalResult& r, double wall_s, double unix_s,
                        int64_t g_step, double eval_s) {
  FidRow row;
  row.wall_s = wall_s;
  row.unix_s = unix_s;
  row.g_step = g_step;
  row.network = r.network;
  row.num_samples = r.num_samples;
  row.fid = r.fid;
  row.kid_mean = r.has_kid ? r.kid.mean : NAN;
  row.kid_std = r.has_kid ? r.kid.std : NAN;
  row.is_mean = r.is.mean;
  row.is_std = r.is.std;
  row.eval_s = eval_s;
  return row;
}

absl::StatusOr<std::vector<FidRow>> ReadFidCsv(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::vector<FidRow> rows;
  std::string line;
  int line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.empty()) continue;
    if (line_no == 1) {
      if (line != kHeader)
        return absl::InvalidArgumentError(absl::StrCat(
            path, ": not a fid.csv (first line must be '", kHeader, "')"));
      continue;
    }
    std::vector<std::string> f = absl::StrSplit(line, ',');
    FidRow r;
    double step = 0, n = 0;
    bool ok = f.size() == 11 && ParseNum(f[0], &r.wall_s) &&
              ParseNum(f[1], &r.unix_s) && ParseNum(f[2], &step) &&
              ParseNum(f[4], &n) && ParseNum(f[5], &r.fid) &&
              ParseNum(f[6], &r.kid_mean) && ParseNum(f[7], &r.kid_std) &&
              ParseNum(f[8], &r.is_mean) && ParseNum(f[9], &r.is_std) &&
              ParseNum(f[10], &r.eval_s);
    if (!ok)
      return absl::InvalidArgumentError(
          absl::StrCat(path, ":", line_no, ": malformed row '", line, "'"));
    r.g_step = static_cast<int64_t>(step);
    r.num_samples = static_cast<int64_t>(n);
    r.network = f[3];
    rows.push_back(std::move(r));
  }
  return rows;
}

absl::StatusOr<FidLog> FidLog::Open(const std::string& csv_path,
                                    const std::string& png_path,
                                    const std::string& title) {
  FidLog log;
  log.csv_ = csv_path;
  log.png_ = png_path;
  log.title_ = title;
  std::error_code ec;
  if (std::filesystem::exists(csv_path, ec)) {
    absl::StatusOr<std::vector<FidRow>> rows = ReadFidCsv(csv_path);
    if (!rows.ok()) return rows.status();
    log.rows_ = std::move(*rows);
  }
  return log;
}

double FidLog::WallSecondsAt(double unix_s) const {
  if (rows_.empty()) return 0;
  return unix_s - (rows_.front().unix_s - rows_.front().wall_s);
}

absl::Status FidLog::Append(const FidRow& row) {
  std::error_code ec;
  const bool fresh = !std::filesystem::exists(csv_, ec) ||
                     std::filesystem::file_size(csv_, ec) == 0;
  {
    std::ofstream out(csv_, std::ios::app);
    if (fresh) out << kHeader << "\n";
    out << FidCsvLine(row) << "\n";
    out.flush();
    if (!out)
      return absl::InternalError(absl::StrCat("cannot append to ", csv_));
  }
  rows_.push_back(row);
  if (png_.empty()) return absl::OkStatus();
  return WriteFidPlot(png_, title_, rows_);
}

absl::Status WriteFidPlot(const std::string& path, const std::string& title,
                          const std::vector<FidRow>& rows) {
  std::map<std::string, std::pair<PlotSeries, PlotSeries>> by_network;
  for (const FidRow& r : rows) {
    auto& [t, s] = by_network[r.network];
    t.label = s.label = absl::StrCat("FID(", r.network, ")");
    t.x.push_back(r.wall_s / 60.0);
    t.y.push_back(r.fid);
    s.x.push_back(static_cast<double>(r.g_step));
    s.y.push_back(r.fid);
  }
  PlotPanel by_time, by_step;
  by_time.title = title.empty() ? "FID against wall time" : title;
  by_time.x_label = "minutes";
  by_time.y_label = "FID";
  by_step.title = "FID against G steps";
  by_step.x_label = "G steps";
  by_step.y_label = "FID";
  // FID falls over orders of magnitude (1000 at the start, tens later): on
  // a linear axis the first row flattens the rest of the curve.
  bool positive = !rows.empty();
  for (const FidRow& r : rows) positive = positive && r.fid > 0;
  by_time.log_y = by_step.log_y = positive;
  for (auto& [name, series] : by_network) {
    by_time.series.push_back(series.first);
    by_step.series.push_back(series.second);
  }
  return WriteLinePlotPng(path, {by_time, by_step});
}

absl::Status WriteFidComparisonPlot(const std::string& path,
                                    const std::string& title,
                                    const std::vector<LabeledRows>& runs) {
  PlotPanel by_time, by_step;
  by_time.title = title.empty() ? "FID against wall time" : title;
  by_time.x_label = "minutes";
  by_time.y_label = "FID";
  by_time.log_y = true;
  by_step.title = "FID against G steps";
  by_step.x_label = "G steps";
  by_step.y_label = "FID";
  by_step.log_y = true;
  for (const LabeledRows& run : runs) {
    PlotSeries t, s;
    t.label = s.label = run.label;
    for (const FidRow& r : run.rows) {
      if (!(r.fid > 0)) continue;  // a log axis has no place for it
      t.x.push_back(r.wall_s / 60.0);
      t.y.push_back(r.fid);
      s.x.push_back(static_cast<double>(r.g_step));
      s.y.push_back(r.fid);
    }
    by_time.series.push_back(std::move(t));
    by_step.series.push_back(std::move(s));
  }
  return WriteLinePlotPng(path, {by_time, by_step});
}

const FidRow* FidAt(const std::vector<FidRow>& rows, double wall_s) {
  const FidRow* best = nullptr;
  for (const FidRow& r : rows) {
    if (r.wall_s <= wall_s && (!best || r.wall_s >= best->wall_s)) best = &r;
  }
  return best;
}

}  // namespace paragan::eval
