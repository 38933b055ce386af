#include "worker/eval/fid_log.h"

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <string>

#include "common/image_io.h"
#include "gtest/gtest.h"

namespace paragan::eval {
namespace {

std::string TmpPath(const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  return std::string(dir ? dir : "/tmp") + "/" + name;
}

FidRow Row(double wall_s, int64_t step, double fid, bool kid = true) {
  FidRow r;
  r.wall_s = wall_s;
  r.unix_s = 1.7e9 + wall_s;
  r.g_step = step;
  r.network = "fmnist-cnn";
  r.num_samples = 2000;
  r.fid = fid;
  r.kid_mean = kid ? fid / 1000 : NAN;
  r.kid_std = kid ? 0.001 : NAN;
  r.is_mean = 5.5;
  r.is_std = 0.25;
  r.eval_s = 3.25;
  return r;
}

TEST(FidLog, AppendsReadsBackAndContinues) {
  const std::string csv = TmpPath("continue.csv"), png = TmpPath("c.png");
  {
    absl::StatusOr<FidLog> log = FidLog::Open(csv, png, "test run");
    ASSERT_TRUE(log.ok()) << log.status();
    EXPECT_TRUE(log->rows().empty());
    ASSERT_TRUE(log->Append(Row(60, 100, 80.5)).ok());
    ASSERT_TRUE(log->Append(Row(120, 230, 41.25, /*kid=*/false)).ok());
  }
  // A restarted evaluator keeps the earlier rows and appends after them.
  absl::StatusOr<FidLog> again = FidLog::Open(csv, png, "test run");
  ASSERT_TRUE(again.ok()) << again.status();
  ASSERT_EQ(again->rows().size(), 2u);
  ASSERT_TRUE(again->Append(Row(180, 400, 30)).ok());

  absl::StatusOr<std::vector<FidRow>> rows = ReadFidCsv(csv);
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->size(), 3u);
  EXPECT_DOUBLE_EQ((*rows)[0].fid, 80.5);
  EXPECT_EQ((*rows)[1].g_step, 230);
  EXPECT_TRUE(std::isnan((*rows)[1].kid_mean));
  EXPECT_DOUBLE_EQ((*rows)[2].wall_s, 180);
  EXPECT_EQ((*rows)[2].network, "fmnist-cnn");
  EXPECT_EQ((*rows)[2].num_samples, 2000);
  EXPECT_DOUBLE_EQ((*rows)[2].is_mean, 5.5);

  // One header line only.
  std::ifstream in(csv);
  std::string line;
  int headers = 0;
  while (std::getline(in, line)) headers += line == FidCsvHeader();
  EXPECT_EQ(headers, 1);

  absl::StatusOr<Image> plot = DecodeImageFile(png);
  ASSERT_TRUE(plot.ok()) << plot.status();
  EXPECT_GT(plot->width, 400);
  EXPECT_GT(plot->height, 400);
}

TEST(FidLog, RefusesFilesThatAreNotFidCsv) {
  const std::string other = TmpPath("other.csv");
  std::ofstream(other) << "step,loss\n1,2\n";
  absl::StatusOr<FidLog> log = FidLog::Open(other, "", "");
  ASSERT_FALSE(log.ok());
  EXPECT_NE(log.status().message().find("not a fid.csv"), std::string::npos)
      << log.status();
  // The file the user had is left as it was.
  std::ifstream in(other);
  std::string first;
  std::getline(in, first);
  EXPECT_EQ(first, "step,loss");

  const std::string bad = TmpPath("bad.csv");
  std::ofstream(bad) << FidCsvHeader() << "\n"
                     << FidCsvLine(Row(1, 2, 3)) << "\n"
                     << "1,2,three\n";
  absl::StatusOr<std::vector<FidRow>> rows = ReadFidCsv(bad);
  ASSERT_FALSE(rows.ok());
  EXPECT_NE(rows.status().message().find(":3: malformed row"),
            std::string::npos)
      << rows.status();

  EXPECT_EQ(ReadFidCsv(TmpPath("absent.csv")).status().code(),
            absl::StatusCode::kNotFound);
}

TEST(FidLog, FidAtAndComparisonPlot) {
  const std::vector<FidRow> rows = {Row(60, 100, 80), Row(300, 900, 40),
                                    Row(610, 2000, 25)};
  EXPECT_EQ(FidAt(rows, 59), nullptr);
  ASSERT_NE(FidAt(rows, 300), nullptr);
  EXPECT_DOUBLE_EQ(FidAt(rows, 300)->fid, 40);
  EXPECT_DOUBLE_EQ(FidAt(rows, 600)->fid, 40);  // the 610 s row is later
  EXPECT_DOUBLE_EQ(FidAt(rows, 1e9)->fid, 25);

  const std::string png = TmpPath("comparison.png");
  ASSERT_TRUE(
      WriteFidComparisonPlot(
          png, "time to FID",
          {{"single", rows}, {"async", {Row(120, 50, 90), Row(240, 80, 0)}}})
          .ok());
  absl::StatusOr<Image> plot = DecodeImageFile(png);
  ASSERT_TRUE(plot.ok()) << plot.status();
}

}  // namespace
}  // namespace paragan::eval
