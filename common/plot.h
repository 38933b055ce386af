#ifndef PARAGAN_COMMON_PLOT_H_
#define PARAGAN_COMMON_PLOT_H_

// A small line-chart renderer to an RGB image / PNG, with no dependency beyond
// image_io: the live evaluator's fid.png (FID against wall time and against G
// steps) and the time-to-FID benchmark's plot (several runs on one chart).
//
// Each panel gets a frame with "nice" ticks (1-2-5 steps; decades and their
// 2x/5x multiples on a log axis), grid lines, tick labels, axis labels, a
// title, one colour per series (a fixed palette, by the series' index in its
// panel, so the same index has the same colour in every panel), 2 px
// antialiased lines between consecutive points and markers at the points (at
// most kMaxMarkedPoints per series; an isolated point always gets one), and a
// legend inside the plot where it covers the fewest drawn data pixels (the
// corners first; translucent where it cannot avoid data; left out when it does
// not fit in the plot).
// Text uses an embedded 5x7 bitmap font (printable ASCII; other bytes are drawn
// as '?') scaled 2x. Rendering is deterministic.

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/image_io.h"

namespace paragan {

struct PlotSeries {
  std::string label;  // in the legend; "series N" (1-based) when empty
  // Same length. A point with a non-finite coordinate (or |v| > 1e300), or
  // with y <= 0 on a log_y panel, is skipped and breaks the line (a gap).
  // Points are joined in the order given.
  std::vector<double> x, y;
};

struct PlotPanel {
  std::string title, x_label, y_label;
  std::vector<PlotSeries> series;
  bool log_y = false;
  // The legend is drawn when there is more than one series, or one series
  // with a label.
};

struct PlotOptions {
  int width = 900;             // pixels, 240..8192
  int height_per_panel = 420;  // pixels, 160..8192
};

// Series with more finite points than this get lines only (no markers).
inline constexpr int kMaxMarkedPoints = 80;

// Where a rendered panel's data went: the inside of its frame (inclusive
// pixel bounds, in the whole image) and the axis ranges mapped onto it.
struct PlotFrame {
  int x0 = 0, y0 = 0, x1 = 0, y1 = 0;
  double x_lo = 0, x_hi = 1, y_lo = 0, y_hi = 1;  // data units, also on log_y
  bool log_y = false;
  // The pixel coordinates (centres at integers) of a data point.
  double PixelX(double x) const;
  double PixelY(double y) const;
};

// Renders the panels stacked vertically (top to bottom) to an RGB image of
// o.width x (o.height_per_panel * panels.size()). A panel with no drawable
// point gets default axes and a "no data yet" note. InvalidArgument for no
// panels, a size out of range, or a series whose x and y lengths differ (the
// message names the panel and the series).
// `frames`, if not null, receives one PlotFrame per panel.
absl::StatusOr<Image> RenderLinePlot(const std::vector<PlotPanel>& panels,
                                     const PlotOptions& o = {},
                                     std::vector<PlotFrame>* frames = nullptr);
// RenderLinePlot + WritePng (atomic).
absl::Status WriteLinePlotPng(const std::string& path,
                              const std::vector<PlotPanel>& panels,
                              const PlotOptions& o = {});

// The multiples of the largest-density step s from {1, 2, 5} x 10^k that lie
// in [lo, hi] (a relative tolerance of 1e-9 s at both ends), with at most
// max_ticks of them (max_ticks < 2 counts as 2), ascending; -0 is returned as
// 0. lo > hi are swapped; lo == hi gives {lo}; non-finite bounds give {}.
std::vector<double> NiceTicks(double lo, double hi, int max_ticks);

// Ticks of a log axis over [lo, hi] (0 < lo <= hi): the 1-2-3-5 multiples of
// the decades if at most max_ticks of them fit, else 1-2-5, else 1-3, else the
// decades (every n-th decade where there are too many); when fewer than two
// of these lie in the range, NiceTicks(lo, hi, max_ticks) instead. Non-finite
// or non-positive bounds give {}.
std::vector<double> NiceLogTicks(double lo, double hi, int max_ticks);

// Labels for the ticks of one linear axis, all with the same format: fixed
// point with the fewest decimals that show every tick exactly ("0", "2.5",
// "5.0", "100000"), or, when the largest magnitude is >= 1e6 or below 1e-3,
// C's %e with the fewest mantissa digits ("1e+06", "2.5e+06", "5.0e+06"; zero
// is then "0"). Never "-0". On a log axis each tick is formatted on its own
// (FormatTickLabels({t})).
std::vector<std::string> FormatTickLabels(const std::vector<double>& ticks);

}  // namespace paragan

#endif  // PARAGAN_COMMON_PLOT_H_
