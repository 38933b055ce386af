#include "common/plot.h"

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

#include "common/image_io.h"
#include "gtest/gtest.h"

namespace paragan {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// The palette's first two colours (tab10 blue and orange).
constexpr uint8_t kBlue[3] = {31, 119, 180};
constexpr uint8_t kOrange[3] = {255, 127, 14};

std::string TmpPath(const std::string& name) {
  const char* d = std::getenv("TEST_TMPDIR");
  return std::string(d != nullptr ? d : "/tmp") + "/" + name;
}

const uint8_t* PixelAt(const Image& image, int x, int y) {
  return &image.pixels[(static_cast<size_t>(y) * image.width + x) * 3];
}

bool IsColor(const Image& image, int x, int y, const uint8_t* rgb) {
  const uint8_t* p = PixelAt(image, x, y);
  return p[0] == rgb[0] && p[1] == rgb[1] && p[2] == rgb[2];
}

// The pixel of a data point, rounded.
void PointPixel(const PlotFrame& f, double x, double y, int* px, int* py) {
  *px = static_cast<int>(std::lround(f.PixelX(x)));
  *py = static_cast<int>(std::lround(f.PixelY(y)));
}

// Pixels in [x0, x1] x [y0, y1] whose colour is within 60 (sum of channel
// differences) of `rgb`: antialiased edges of a line count too.
int CountNear(const Image& image, int x0, int y0, int x1, int y1,
              const uint8_t* rgb) {
  int n = 0;
  for (int y = y0; y <= y1; ++y) {
    for (int x = x0; x <= x1; ++x) {
      const uint8_t* p = PixelAt(image, x, y);
      const int d = std::abs(p[0] - rgb[0]) + std::abs(p[1] - rgb[1]) +
                    std::abs(p[2] - rgb[2]);
      if (d <= 60) ++n;
    }
  }
  return n;
}

PlotPanel Diagonal() {
  PlotPanel p;
  p.title = "diagonal";
  p.x_label = "x";
  p.y_label = "y";
  p.series.push_back({"", {0, 2, 4, 6, 8, 10}, {0, 2, 4, 6, 8, 10}});
  return p;
}

TEST(NiceTicksTest, ExpectedValues) {
  auto expect = [](double lo, double hi, int n, std::vector<double> want) {
    const std::vector<double> got = NiceTicks(lo, hi, n);
    ASSERT_EQ(got.size(), want.size()) << lo << ".." << hi << " n=" << n;
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_NEAR(got[i], want[i], 1e-12 * (1 + std::fabs(want[i])))
          << lo << ".." << hi << " n=" << n << " i=" << i;
    }
  };
  expect(0, 10, 6, {0, 2, 4, 6, 8, 10});
  expect(0, 10, 5, {0, 5, 10});
  expect(0, 1, 6, {0, 0.2, 0.4, 0.6, 0.8, 1.0});
  expect(-2.4, 62.4, 8, {0, 10, 20, 30, 40, 50, 60});
  expect(0.95, 1.05, 5, {0.96, 0.98, 1.0, 1.02, 1.04});
  expect(0, 3000, 7, {0, 500, 1000, 1500, 2000, 2500, 3000});
  expect(-7, 7, 4, {-5, 0, 5});
  expect(10, 0, 3, {0, 5, 10});  // swapped bounds
  expect(0, 10, 1, {0, 10});     // at least 2 allowed
  expect(3, 3, 5, {3});          // degenerate range
  expect(1e-7, 5e-7, 5, {1e-7, 2e-7, 3e-7, 4e-7, 5e-7});
  EXPECT_TRUE(NiceTicks(0, kNaN, 5).empty());
  EXPECT_TRUE(NiceTicks(-INFINITY, 1, 5).empty());
  // -0 is returned as +0.
  const std::vector<double> t = NiceTicks(-1, 1, 3);
  ASSERT_EQ(t.size(), 3u);
  EXPECT_FALSE(std::signbit(t[1]));
}

TEST(NiceTicksTest, LogTicks) {
  auto expect = [](double lo, double hi, int n, std::vector<double> want) {
    const std::vector<double> got = NiceLogTicks(lo, hi, n);
    ASSERT_EQ(got.size(), want.size()) << lo << ".." << hi << " n=" << n;
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_NEAR(got[i], want[i], 1e-12 * want[i]) << i;
    }
  };
  expect(5, 300, 8, {5, 10, 20, 30, 50, 100, 200, 300});
  expect(5, 300, 6, {5, 10, 20, 50, 100, 200});
  expect(5, 300, 4, {10, 30, 100, 300});
  expect(1, 1e6, 8, {1, 10, 100, 1e3, 1e4, 1e5, 1e6});
  expect(1, 1e12, 4, {1, 1e4, 1e8, 1e12});
  expect(0.01, 1, 3, {0.01, 0.1, 1});
  expect(40, 60, 5, {40, 45, 50, 55, 60});  // inside one decade: linear
  EXPECT_TRUE(NiceLogTicks(0, 10, 5).empty());
  EXPECT_TRUE(NiceLogTicks(-1, 10, 5).empty());
}

TEST(FormatTickLabelsTest, ShortAndConsistent) {
  using V = std::vector<std::string>;
  EXPECT_EQ(FormatTickLabels({0, 10, 20}), (V{"0", "10", "20"}));
  EXPECT_EQ(FormatTickLabels({0, 2.5, 5, 7.5, 10}),
            (V{"0.0", "2.5", "5.0", "7.5", "10.0"}));
  EXPECT_EQ(FormatTickLabels({0.1 + 0.2, 0.4}), (V{"0.3", "0.4"}));
  EXPECT_EQ(FormatTickLabels({0.96, 0.98, 1.0}), (V{"0.96", "0.98", "1.00"}));
  EXPECT_EQ(FormatTickLabels({-0.5, -0.0, 0.5}), (V{"-0.5", "0.0", "0.5"}));
  EXPECT_EQ(FormatTickLabels({0, 500000, 1000000}), (V{"0", "5e+05", "1e+06"}));
  EXPECT_EQ(FormatTickLabels({1e6, 1.5e6, 2e6}),
            (V{"1.0e+06", "1.5e+06", "2.0e+06"}));
  EXPECT_EQ(FormatTickLabels({100000}), (V{"100000"}));
  EXPECT_EQ(FormatTickLabels({0.02}), (V{"0.02"}));
  EXPECT_EQ(FormatTickLabels({2e-4}), (V{"2e-04"}));
  EXPECT_TRUE(FormatTickLabels({}).empty());
}

TEST(RenderLinePlotTest, SizeAndDeterminism) {
  PlotOptions o;
  o.width = 640;
  o.height_per_panel = 300;
  absl::StatusOr<Image> a = RenderLinePlot({Diagonal(), Diagonal()}, o);
  absl::StatusOr<Image> b = RenderLinePlot({Diagonal(), Diagonal()}, o);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(a->width, 640);
  EXPECT_EQ(a->height, 600);
  EXPECT_EQ(a->channels, 3);
  EXPECT_EQ(a->pixels.size(), 640u * 600u * 3u);
  EXPECT_EQ(a->pixels, b->pixels);
}

TEST(RenderLinePlotTest, SeriesColourWherePointsMapAndNotElsewhere) {
  std::vector<PlotFrame> frames;
  absl::StatusOr<Image> image = RenderLinePlot({Diagonal()}, {}, &frames);
  ASSERT_TRUE(image.ok()) << image.status();
  ASSERT_EQ(frames.size(), 1u);
  const PlotFrame& f = frames[0];
  EXPECT_GT(f.x1 - f.x0, 500);
  EXPECT_GT(f.y1 - f.y0, 250);
  for (double v : {0.0, 2.0, 4.0, 6.0, 8.0, 10.0}) {
    int px, py;
    PointPixel(f, v, v, &px, &py);
    EXPECT_TRUE(IsColor(*image, px, py, kBlue)) << "point " << v;
  }
  // A point between markers lies on the line.
  int px, py;
  PointPixel(f, 5, 5, &px, &py);
  EXPECT_TRUE(IsColor(*image, px, py, kBlue));
  // The top-left and bottom-right parts of the plot, away from the diagonal,
  // hold no blue (and no legend: one unlabelled series).
  int qx0, qy0, qx1, qy1;
  PointPixel(f, 0, 10, &qx0, &qy0);
  PointPixel(f, 4, 6, &qx1, &qy1);
  EXPECT_EQ(CountNear(*image, qx0, qy0, qx1, qy1, kBlue), 0);
  PointPixel(f, 6, 4, &qx0, &qy0);
  PointPixel(f, 10, 0, &qx1, &qy1);
  EXPECT_EQ(CountNear(*image, qx0, qy0, qx1, qy1, kBlue), 0);
  // The whole image holds blue around the diagonal only.
  EXPECT_GT(CountNear(*image, f.x0, f.y0, f.x1, f.y1, kBlue), 500);
  EXPECT_EQ(CountNear(*image, 0, 0, image->width - 1, f.y0 - 2, kBlue), 0);
}

TEST(RenderLinePlotTest, SecondSeriesHasItsOwnColourAndLegendAvoidsData) {
  // FID-like curves: high at the left, low at the right; the top-right is
  // free for the legend, which must not cover any point.
  PlotPanel p;
  p.title = "FID";
  p.series.push_back({"run a", {0, 1, 2, 3, 4}, {300, 150, 90, 60, 50}});
  p.series.push_back({"run b", {0, 1, 2, 3, 4}, {280, 120, 70, 45, 40}});
  std::vector<PlotFrame> frames;
  absl::StatusOr<Image> image = RenderLinePlot({p}, {}, &frames);
  ASSERT_TRUE(image.ok()) << image.status();
  const PlotFrame& f = frames[0];
  for (size_t k = 0; k < 5; ++k) {
    int px, py;
    PointPixel(f, p.series[0].x[k], p.series[0].y[k], &px, &py);
    EXPECT_TRUE(IsColor(*image, px, py, kBlue)) << k;
    PointPixel(f, p.series[1].x[k], p.series[1].y[k], &px, &py);
    EXPECT_TRUE(IsColor(*image, px, py, kOrange)) << k;
  }
  // The legend (its swatches) is drawn: orange appears in the top-right part
  // of the plot, where there are no data.
  int qx0, qy0;
  PointPixel(f, 2.5, 200, &qx0, &qy0);
  EXPECT_GT(CountNear(*image, qx0, f.y0, f.x1, qy0, kOrange), 0);
  EXPECT_GT(CountNear(*image, qx0, f.y0, f.x1, qy0, kBlue), 0);
}

TEST(RenderLinePlotTest, NonFinitePointsMakeAGap) {
  PlotPanel p;
  p.series.push_back({"", {0, 1, 2, 3, 4}, {0, 1, kNaN, 3, 4}});
  std::vector<PlotFrame> frames;
  absl::StatusOr<Image> image = RenderLinePlot({p}, {}, &frames);
  ASSERT_TRUE(image.ok()) << image.status();
  const PlotFrame& f = frames[0];
  int px, py;
  PointPixel(f, 1.5, 1.5, &px, &py);  // between 1 and 3: not joined
  EXPECT_EQ(CountNear(*image, px - 3, py - 3, px + 3, py + 3, kBlue), 0);
  PointPixel(f, 0.5, 0.5, &px, &py);  // between 0 and 1: joined
  EXPECT_TRUE(IsColor(*image, px, py, kBlue));
  PointPixel(f, 3.5, 3.5, &px, &py);
  EXPECT_TRUE(IsColor(*image, px, py, kBlue));
}

TEST(RenderLinePlotTest, LogYSkipsNonPositive) {
  PlotPanel p;
  p.log_y = true;
  p.series.push_back({"", {0, 1, 2, 3}, {10, 0, -5, 1000}});
  std::vector<PlotFrame> frames;
  absl::StatusOr<Image> image = RenderLinePlot({p}, {}, &frames);
  ASSERT_TRUE(image.ok()) << image.status();
  const PlotFrame& f = frames[0];
  EXPECT_TRUE(f.log_y);
  EXPECT_LT(f.y_lo, 10);
  EXPECT_GT(f.y_lo, 5);
  EXPECT_GT(f.y_hi, 1000);
  int px, py;
  PointPixel(f, 0, 10, &px, &py);
  EXPECT_TRUE(IsColor(*image, px, py, kBlue));
  PointPixel(f, 3, 1000, &px, &py);
  EXPECT_TRUE(IsColor(*image, px, py, kBlue));
  PointPixel(f, 1.5, 100, &px, &py);  // 10 and 1000 are not joined
  EXPECT_EQ(CountNear(*image, px - 3, py - 3, px + 3, py + 3, kBlue), 0);
}

TEST(RenderLinePlotTest, ConstantSeriesAndSinglePoint) {
  PlotPanel constant;
  constant.series.push_back({"flat", {0, 1, 2}, {42, 42, 42}});
  PlotPanel single;
  single.series.push_back({"", {7}, {0}});
  std::vector<PlotFrame> frames;
  absl::StatusOr<Image> image = RenderLinePlot({constant, single}, {}, &frames);
  ASSERT_TRUE(image.ok()) << image.status();
  ASSERT_EQ(frames.size(), 2u);
  EXPECT_LT(frames[0].y_lo, 42);
  EXPECT_GT(frames[0].y_hi, 42);
  EXPECT_LT(frames[1].x_lo, 7);
  EXPECT_GT(frames[1].x_hi, 7);
  int px, py;
  PointPixel(frames[0], 1, 42, &px, &py);
  EXPECT_TRUE(IsColor(*image, px, py, kBlue));
  PointPixel(frames[1], 7, 0, &px, &py);  // an isolated point gets a marker
  EXPECT_TRUE(IsColor(*image, px, py, kBlue));
  EXPECT_TRUE(IsColor(*image, px + 2, py, kBlue));
}

TEST(RenderLinePlotTest, EmptyPanelsSayNoData) {
  PlotPanel none;
  none.title = "no series";
  PlotPanel all_nan;
  all_nan.series.push_back({"nan", {kNaN, 1}, {1, kNaN}});
  all_nan.log_y = true;
  std::vector<PlotFrame> frames;
  absl::StatusOr<Image> image = RenderLinePlot({none, all_nan}, {}, &frames);
  ASSERT_TRUE(image.ok()) << image.status();
  const uint8_t kNote[3] = {150, 150, 150};
  for (const PlotFrame& f : frames) {
    const int cx = (f.x0 + f.x1) / 2, cy = (f.y0 + f.y1) / 2;
    EXPECT_GT(CountNear(*image, cx - 80, cy - 12, cx + 80, cy + 12, kNote), 50);
  }
  EXPECT_EQ(CountNear(*image, frames[1].x0, frames[1].y0, frames[1].x1,
                      frames[1].y1, kBlue) > 0,
            true);  // the legend's swatch only
  EXPECT_LT(CountNear(*image, frames[1].x0, frames[1].y0, frames[1].x1,
                      frames[1].y1, kBlue),
            200);
}

TEST(RenderLinePlotTest, InvalidArguments) {
  PlotPanel p = Diagonal();
  p.series.push_back({"bad run", {1, 2, 3}, {1, 2}});
  absl::StatusOr<Image> image = RenderLinePlot({p});
  ASSERT_FALSE(image.ok());
  EXPECT_EQ(image.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(image.status().message().find("bad run"), std::string::npos)
      << image.status();
  EXPECT_EQ(RenderLinePlot({}).status().code(),
            absl::StatusCode::kInvalidArgument);
  PlotOptions tiny;
  tiny.width = 10;
  EXPECT_EQ(RenderLinePlot({Diagonal()}, tiny).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(RenderLinePlotTest, SmallestSizeStillRenders) {
  PlotOptions o;
  o.width = 240;
  o.height_per_panel = 160;
  PlotPanel p = Diagonal();
  p.title = "a title far too long to fit in two hundred and forty pixels";
  p.y_label = "a y label far too long to fit as well";
  p.series.push_back({"x", {0, 1e6}, {1e-9, 5}});
  absl::StatusOr<Image> image = RenderLinePlot({p}, o);
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_EQ(image->width, 240);
  EXPECT_EQ(image->height, 160);
}

TEST(WriteLinePlotPngTest, ReadsBack) {
  const std::string path = TmpPath("plot.png");
  PlotOptions o;
  o.width = 500;
  o.height_per_panel = 250;
  ASSERT_TRUE(WriteLinePlotPng(path, {Diagonal(), Diagonal()}, o).ok());
  absl::StatusOr<Image> read = DecodeImageFile(path);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->width, 500);
  EXPECT_EQ(read->height, 500);
  EXPECT_EQ(read->channels, 3);
  EXPECT_EQ(read->pixels, RenderLinePlot({Diagonal(), Diagonal()}, o)->pixels);
  EXPECT_FALSE(
      WriteLinePlotPng("/nonexistent-dir/plot.png", {Diagonal()}).ok());
}

// A realistic two-panel plot (the time-to-FID benchmark's), written to the
// test's undeclared outputs for a look: three runs' FID against minutes, and
// against G steps with a log axis.
TEST(WriteLinePlotPngTest, Sample) {
  PlotPanel time, steps;
  time.title = "FID vs wall time";
  time.x_label = "minutes";
  time.y_label = "FID";
  steps.title = "FID vs G steps";
  steps.x_label = "G steps";
  steps.y_label = "FID (log)";
  steps.log_y = true;
  const char* names[] = {"async, 2 workers", "sync, 2 workers", "1 worker"};
  const double speed[] = {1.0, 0.6, 0.45};
  for (int r = 0; r < 3; ++r) {
    PlotSeries t{names[r], {}, {}}, s{names[r], {}, {}};
    for (int k = 0; k <= 24; ++k) {
      const double step = 500.0 * k;
      const double fid = 25 + 260 * std::exp(-step / (2500.0 + 900 * r));
      t.x.push_back(step / (1000.0 * speed[r]) * 0.8);
      t.y.push_back(fid);
      s.x.push_back(step);
      s.y.push_back(fid);
    }
    time.series.push_back(t);
    steps.series.push_back(s);
  }
  const char* dir = std::getenv("TEST_UNDECLARED_OUTPUTS_DIR");
  const std::string path = dir != nullptr
                               ? std::string(dir) + "/plot_sample.png"
                               : TmpPath("plot_sample.png");
  ASSERT_TRUE(WriteLinePlotPng(path, {time, steps}).ok());
  absl::StatusOr<Image> read = DecodeImageFile(path);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->width, 900);
  EXPECT_EQ(read->height, 840);
}

}  // namespace
}  // namespace paragan
