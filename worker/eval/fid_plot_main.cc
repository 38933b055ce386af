// paragan_fid_plot: several runs' fid.csv on one PNG, and the FID each had
// reached at given minutes as a Markdown table (the time-to-FID benchmark).
//   paragan_fid_plot --out=time_to_fid.png --at_minutes=5,10,20,30 \
//     single=runs/ttf/single/fid.csv async=runs/ttf/async/fid.csv

#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/flags_usage.h"
#include "worker/eval/fid_log.h"

ABSL_FLAG(std::string, out, "", "the PNG to write");
ABSL_FLAG(std::string, title, "FID against wall time", "the plot's title");
ABSL_FLAG(std::string, at_minutes, "5,10,20,30",
          "the table's columns: FID reached by these minutes");

namespace {

int Usage(const std::string& why) {
  std::fprintf(stderr, "error: %s\n(paragan_fid_plot --help)\n", why.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  namespace ev = paragan::eval;
  paragan::SetUsage(
      "Plots runs' fid.csv on one PNG and prints the FID each reached by "
      "--at_minutes. Example:\n  paragan_fid_plot --out=ttf.png "
      "single=runs/a/fid.csv async=runs/b/fid.csv",
      "worker/eval/fid_plot_main.cc");
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (absl::GetFlag(FLAGS_out).empty())
    return Usage("--out=<file.png> is required");
  std::vector<double> minutes;
  for (absl::string_view m : absl::StrSplit(absl::GetFlag(FLAGS_at_minutes),
                                            ',', absl::SkipEmpty())) {
    double v = 0;
    if (!absl::SimpleAtod(m, &v) || v <= 0)
      return Usage(
          absl::StrCat("--at_minutes: '", m, "' is not a positive number"));
    minutes.push_back(v);
  }
  std::vector<ev::LabeledRows> runs;
  for (size_t i = 1; i < args.size(); ++i) {
    std::vector<std::string> kv =
        absl::StrSplit(args[i], absl::MaxSplits('=', 1));
    if (kv.size() != 2 || kv[0].empty() || kv[1].empty())
      return Usage(absl::StrCat("'", args[i], "': want <label>=<fid.csv>"));
    auto rows = ev::ReadFidCsv(kv[1]);
    if (!rows.ok()) {
      std::fprintf(stderr, "error: %s\n",
                   std::string(rows.status().message()).c_str());
      return 1;
    }
    runs.push_back({kv[0], std::move(*rows)});
  }
  if (runs.empty()) return Usage("give at least one <label>=<fid.csv>");

  std::string header = "| run |", rule = "|---|";
  for (double m : minutes) {
    absl::StrAppendFormat(&header, " FID at %g min |", m);
    rule += "---|";
  }
  header += " last row: minutes, G step, samples |";
  rule += "---|";
  std::printf("%s\n%s\n", header.c_str(), rule.c_str());
  for (const ev::LabeledRows& run : runs) {
    std::string line = absl::StrCat("| ", run.label, " |");
    const double span = run.rows.empty() ? 0 : run.rows.back().wall_s;
    for (double m : minutes) {
      // A run stops at its first step past the budget, and its final row
      // is stamped then: 2% of slack keeps that row in its column.
      const ev::FidRow* r = ev::FidAt(run.rows, m * 60 * 1.02);
      if (span < m * 60 * 0.98) {
        line += " not measured (run shorter) |";  // never extrapolated
      } else if (!r) {
        line += " none yet |";
      } else {
        absl::StrAppendFormat(&line, " %.2f (G %d) |", r->fid, r->g_step);
      }
    }
    if (!run.rows.empty()) {
      const ev::FidRow& last = run.rows.back();
      absl::StrAppendFormat(&line, " %.1f, %d, %d |", last.wall_s / 60,
                            last.g_step, last.num_samples);
    } else {
      line += " no rows |";
    }
    std::printf("%s\n", line.c_str());
  }
  if (auto st = ev::WriteFidComparisonPlot(absl::GetFlag(FLAGS_out),
                                           absl::GetFlag(FLAGS_title), runs);
      !st.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(st.message()).c_str());
    return 1;
  }
  std::printf("wrote %s\n", absl::GetFlag(FLAGS_out).c_str());
  return 0;
}
