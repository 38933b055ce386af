#ifndef PARAGAN_WORKER_EVAL_FID_LOG_H_
#define PARAGAN_WORKER_EVAL_FID_LOG_H_

// A run's quality log: fid.csv (one row per evaluation, appended as it
// happens, so an interrupted run keeps every row) and fid.png (FID against
// wall time and against G steps, redrawn after every row). Written by the
// launcher's live evaluator (paragan_eval --ps --every_s) and by the
// single-process trainer; read by the time-to-FID benchmark.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "worker/eval/evaluate.h"

namespace paragan::eval {

struct FidRow {
  double wall_s = 0;     // seconds since the run (or the evaluator) started
  double unix_s = 0;     // when the samples were taken
  int64_t g_step = 0;    // G version (servers) / G step (trainer)
  std::string network;   // FeatureNetwork::name()
  int64_t num_samples = 0;
  double fid = 0;
  double kid_mean = 0, kid_std = 0;  // NaN when there were no ref features
  double is_mean = 0, is_std = 0;
  double eval_s = 0;     // generating + scoring
};

// The header line of fid.csv (no newline).
std::string FidCsvHeader();
// One row as fid.csv writes it (no newline); network names hold no commas.
std::string FidCsvLine(const FidRow& row);
FidRow FidRowFromResult(const EvalResult& r, double wall_s, double unix_s,
                        int64_t g_step, double eval_s);

// Rows of a fid.csv; refuses another header or a malformed row (naming its
// line). A missing file is NotFound.
absl::StatusOr<std::vector<FidRow>> ReadFidCsv(const std::string& path);

class FidLog {
 public:
  // Rows already in `csv_path` are kept (a restarted evaluator continues
  // the curve); `png_path` empty: no plot. `title` heads the plot.
  static absl::StatusOr<FidLog> Open(const std::string& csv_path,
                                     const std::string& png_path,
                                     const std::string& title);

  // Appends the row to the CSV (header first when the file is new) and
  // redraws the plot.
  absl::Status Append(const FidRow& row);
  const std::vector<FidRow>& rows() const { return rows_; }
  // Seconds of the curve's clock at `unix_s`, whose origin the first row
  // fixes (so a one-shot evaluation at the end of a run lands on the live
  // evaluator's time axis); 0 when the log has no rows yet.
  double WallSecondsAt(double unix_s) const;

 private:
  std::string csv_, png_, title_;
  std::vector<FidRow> rows_;
};

// fid.png of `rows`: FID against minutes and against G steps, one series per
// feature network.
absl::Status WriteFidPlot(const std::string& path, const std::string& title,
                          const std::vector<FidRow>& rows);

// Several runs' curves on one PNG (the time-to-FID benchmark): FID against
// minutes and against G steps, one series per run, log-scaled FID.
struct LabeledRows {
  std::string label;
  std::vector<FidRow> rows;
};
absl::Status WriteFidComparisonPlot(const std::string& path,
                                    const std::string& title,
                                    const std::vector<LabeledRows>& runs);

// The FID a run had reached by `wall_s`: its last row at or before then
// (rows in file order), or null when none was.
const FidRow* FidAt(const std::vector<FidRow>& rows, double wall_s);

}  // namespace paragan::eval

#endif  // PARAGAN_WORKER_EVAL_FID_LOG_H_
