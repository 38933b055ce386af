#include "common/plot.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace paragan {
namespace {

// ---------------------------------------------------------------- font ----

// 5x7 glyphs for ASCII 32..126, one byte per row (bit 4 = left column); row 7
// holds descenders. Drawn in a 6-pixel advance, scaled kScale times.
constexpr uint8_t kFont[95][8] = {
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00},  // space
    {0x04, 0x04, 0x04, 0x04, 0x04, 0x00, 0x04, 0x00},  // '!'
    {0x0A, 0x0A, 0x0A, 0x00, 0x00, 0x00, 0x00, 0x00},  // '"'
    {0x0A, 0x0A, 0x1F, 0x0A, 0x1F, 0x0A, 0x0A, 0x00},  // '#'
    {0x04, 0x0F, 0x14, 0x0E, 0x05, 0x1E, 0x04, 0x00},  // '$'
    {0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03, 0x00},  // '%'
    {0x0C, 0x12, 0x14, 0x08, 0x15, 0x12, 0x0D, 0x00},  // '&'
    {0x04, 0x04, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00},  // '\''
    {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02, 0x00},  // '('
    {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08, 0x00},  // ')'
    {0x00, 0x04, 0x15, 0x0E, 0x15, 0x04, 0x00, 0x00},  // '*'
    {0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00, 0x00},  // '+'
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x04, 0x08},  // ','
    {0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00, 0x00},  // '-'
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C, 0x00},  // '.'
    {0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x00, 0x00},  // '/'
    {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E, 0x00},  // '0'
    {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E, 0x00},  // '1'
    {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F, 0x00},  // '2'
    {0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E, 0x00},  // '3'
    {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02, 0x00},  // '4'
    {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E, 0x00},  // '5'
    {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E, 0x00},  // '6'
    {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08, 0x00},  // '7'
    {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E, 0x00},  // '8'
    {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C, 0x00},  // '9'
    {0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00, 0x00},  // ':'
    {0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x04, 0x08, 0x00},  // ';'
    {0x02, 0x04, 0x08, 0x10, 0x08, 0x04, 0x02, 0x00},  // '<'
    {0x00, 0x00, 0x1F, 0x00, 0x1F, 0x00, 0x00, 0x00},  // '='
    {0x08, 0x04, 0x02, 0x01, 0x02, 0x04, 0x08, 0x00},  // '>'
    {0x0E, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04, 0x00},  // '?'
    {0x0E, 0x11, 0x01, 0x0D, 0x15, 0x15, 0x0E, 0x00},  // '@'
    {0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11, 0x00},  // 'A'
    {0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E, 0x00},  // 'B'
    {0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E, 0x00},  // 'C'
    {0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C, 0x00},  // 'D'
    {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F, 0x00},  // 'E'
    {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10, 0x00},  // 'F'
    {0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F, 0x00},  // 'G'
    {0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11, 0x00},  // 'H'
    {0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E, 0x00},  // 'I'
    {0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C, 0x00},  // 'J'
    {0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11, 0x00},  // 'K'
    {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F, 0x00},  // 'L'
    {0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11, 0x00},  // 'M'
    {0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11, 0x00},  // 'N'
    {0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E, 0x00},  // 'O'
    {0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10, 0x00},  // 'P'
    {0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D, 0x00},  // 'Q'
    {0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11, 0x00},  // 'R'
    {0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E, 0x00},  // 'S'
    {0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x00},  // 'T'
    {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E, 0x00},  // 'U'
    {0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04, 0x00},  // 'V'
    {0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A, 0x00},  // 'W'
    {0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11, 0x00},  // 'X'
    {0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04, 0x00},  // 'Y'
    {0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F, 0x00},  // 'Z'
    {0x0E, 0x08, 0x08, 0x08, 0x08, 0x08, 0x0E, 0x00},  // '['
    {0x00, 0x10, 0x08, 0x04, 0x02, 0x01, 0x00, 0x00},  // '\\'
    {0x0E, 0x02, 0x02, 0x02, 0x02, 0x02, 0x0E, 0x00},  // ']'
    {0x04, 0x0A, 0x11, 0x00, 0x00, 0x00, 0x00, 0x00},  // '^'
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F},  // '_'
    {0x08, 0x04, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00},  // '`'
    {0x00, 0x00, 0x0E, 0x01, 0x0F, 0x11, 0x0F, 0x00},  // 'a'
    {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x1E, 0x00},  // 'b'
    {0x00, 0x00, 0x0E, 0x10, 0x10, 0x11, 0x0E, 0x00},  // 'c'
    {0x01, 0x01, 0x0D, 0x13, 0x11, 0x11, 0x0F, 0x00},  // 'd'
    {0x00, 0x00, 0x0E, 0x11, 0x1F, 0x10, 0x0E, 0x00},  // 'e'
    {0x06, 0x09, 0x08, 0x1C, 0x08, 0x08, 0x08, 0x00},  // 'f'
    {0x00, 0x00, 0x0F, 0x11, 0x11, 0x0F, 0x01, 0x0E},  // 'g'
    {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x11, 0x00},  // 'h'
    {0x04, 0x00, 0x0C, 0x04, 0x04, 0x04, 0x0E, 0x00},  // 'i'
    {0x02, 0x00, 0x06, 0x02, 0x02, 0x02, 0x12, 0x0C},  // 'j'
    {0x10, 0x10, 0x12, 0x14, 0x18, 0x14, 0x12, 0x00},  // 'k'
    {0x0C, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E, 0x00},  // 'l'
    {0x00, 0x00, 0x1A, 0x15, 0x15, 0x11, 0x11, 0x00},  // 'm'
    {0x00, 0x00, 0x16, 0x19, 0x11, 0x11, 0x11, 0x00},  // 'n'
    {0x00, 0x00, 0x0E, 0x11, 0x11, 0x11, 0x0E, 0x00},  // 'o'
    {0x00, 0x00, 0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10},  // 'p'
    {0x00, 0x00, 0x0F, 0x11, 0x11, 0x0F, 0x01, 0x01},  // 'q'
    {0x00, 0x00, 0x16, 0x19, 0x10, 0x10, 0x10, 0x00},  // 'r'
    {0x00, 0x00, 0x0E, 0x10, 0x0E, 0x01, 0x1E, 0x00},  // 's'
    {0x08, 0x08, 0x1C, 0x08, 0x08, 0x09, 0x06, 0x00},  // 't'
    {0x00, 0x00, 0x11, 0x11, 0x11, 0x13, 0x0D, 0x00},  // 'u'
    {0x00, 0x00, 0x11, 0x11, 0x11, 0x0A, 0x04, 0x00},  // 'v'
    {0x00, 0x00, 0x11, 0x11, 0x15, 0x15, 0x0A, 0x00},  // 'w'
    {0x00, 0x00, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x00},  // 'x'
    {0x00, 0x00, 0x11, 0x11, 0x11, 0x0F, 0x01, 0x0E},  // 'y'
    {0x00, 0x00, 0x1F, 0x02, 0x04, 0x08, 0x1F, 0x00},  // 'z'
    {0x02, 0x04, 0x04, 0x08, 0x04, 0x04, 0x02, 0x00},  // '{'
    {0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x00},  // '|'
    {0x08, 0x04, 0x04, 0x02, 0x04, 0x04, 0x08, 0x00},  // '}'
    {0x00, 0x00, 0x08, 0x15, 0x02, 0x00, 0x00, 0x00},  // '~'
};

constexpr int kGlyphW = 5;
constexpr int kGlyphH = 8;
constexpr int kAdvance = 6;
constexpr int kScale = 2;
constexpr int kCharW = kAdvance * kScale;  // pixels per character
constexpr int kTextH = kGlyphH * kScale;   // pixels per line, descenders incl.
constexpr int kCapH = 7 * kScale;          // height of a capital letter

const uint8_t* Glyph(char ch) {
  unsigned char u = static_cast<unsigned char>(ch);
  if (u < 32 || u > 126) u = '?';
  return kFont[u - 32];
}

int TextWidth(const std::string& s) {
  return s.empty() ? 0 : static_cast<int>(s.size()) * kCharW - kScale;
}

// `s` cut (with "...") to at most max_px pixels wide.
std::string FitText(const std::string& s, int max_px) {
  if (TextWidth(s) <= max_px) return s;
  const int n = std::max(0, (max_px + kScale) / kCharW);
  if (n <= 3) return s.substr(0, n);
  return s.substr(0, n - 3) + "...";
}

// --------------------------------------------------------------- canvas ---

struct Rgb {
  uint8_t r, g, b;
};

constexpr Rgb kBackground{255, 255, 255};
constexpr Rgb kTextColor{30, 30, 30};
constexpr Rgb kAxisColor{70, 70, 70};
constexpr Rgb kGridColor{225, 225, 225};
constexpr Rgb kNoteColor{150, 150, 150};
constexpr Rgb kLegendBorder{180, 180, 180};
// Matplotlib's "tab10": distinguishable, also in gray-ish print.
constexpr Rgb kPalette[] = {
    {31, 119, 180},  {255, 127, 14}, {44, 160, 44},   {214, 39, 40},
    {148, 103, 189}, {140, 86, 75},  {227, 119, 194}, {127, 127, 127},
    {188, 189, 34},  {23, 190, 207},
};
constexpr int kPaletteSize = sizeof(kPalette) / sizeof(kPalette[0]);

Rgb SeriesColor(int i) { return kPalette[i % kPaletteSize]; }

// Inclusive pixel rectangle.
struct Rect {
  int x0, y0, x1, y1;
  int width() const { return x1 - x0 + 1; }
  int height() const { return y1 - y0 + 1; }
};

class Canvas {
 public:
  Canvas(int width, int height)
      : width_(width),
        height_(height),
        pixels_(static_cast<size_t>(width) * height * 3, 255) {}

  int width() const { return width_; }
  int height() const { return height_; }

  void Blend(int x, int y, Rgb c, double a) {
    if (x < 0 || y < 0 || x >= width_ || y >= height_ || !(a > 0.0)) return;
    if (a > 1.0) a = 1.0;
    uint8_t* p = &pixels_[(static_cast<size_t>(y) * width_ + x) * 3];
    const uint8_t rgb[3] = {c.r, c.g, c.b};
    for (int k = 0; k < 3; ++k) {
      p[k] = static_cast<uint8_t>(std::lround(p[k] + (rgb[k] - p[k]) * a));
    }
  }
  void Set(int x, int y, Rgb c) { Blend(x, y, c, 1.0); }
  void FillRect(const Rect& r, Rgb c) {
    for (int y = r.y0; y <= r.y1; ++y) {
      for (int x = r.x0; x <= r.x1; ++x) Set(x, y, c);
    }
  }
  void HLine(int x0, int x1, int y, Rgb c) { FillRect({x0, y, x1, y}, c); }
  void VLine(int x, int y0, int y1, Rgb c) { FillRect({x, y0, x, y1}, c); }

  Image TakeImage() {
    Image image;
    image.height = height_;
    image.width = width_;
    image.channels = 3;
    image.pixels = std::move(pixels_);
    return image;
  }

 private:
  int width_, height_;
  std::vector<uint8_t> pixels_;
};

// Text with its top-left corner at (x, y). Bold widens every font pixel by one
// image pixel (it stays inside the spacing column). Vertical text reads bottom
// to top; (x, y) is then the top-left of its kTextH x TextWidth box.
void DrawText(Canvas& c, int x, int y, const std::string& s, Rgb color,
              bool bold = false, bool vertical = false) {
  const int w = TextWidth(s);
  const int cell_w = kScale + (bold ? 1 : 0);
  for (size_t i = 0; i < s.size(); ++i) {
    const uint8_t* g = Glyph(s[i]);
    for (int gy = 0; gy < kGlyphH; ++gy) {
      for (int gx = 0; gx < kGlyphW; ++gx) {
        if (!(g[gy] & (0x10 >> gx))) continue;
        for (int sy = 0; sy < kScale; ++sy) {
          for (int sx = 0; sx < cell_w; ++sx) {
            const int tx = static_cast<int>(i) * kCharW + gx * kScale + sx;
            const int ty = gy * kScale + sy;
            if (vertical) {
              c.Set(x + ty, y + w - 1 - tx, color);
            } else {
              c.Set(x + tx, y + ty, color);
            }
          }
        }
      }
    }
  }
}

// Antialiased coverage of one colour over a rectangle (the maximum of what is
// added), composited once: a polyline's joints are not darker than its body.
class Layer {
 public:
  explicit Layer(const Rect& r)
      : r_(r), cov_(static_cast<size_t>(r.width()) * r.height(), 0.0f) {}

  // A segment `2 * half_width` pixels thick (pixel centres at integers).
  void AddSegment(double x0, double y0, double x1, double y1,
                  double half_width) {
    const double pad = half_width + 1.0;
    const double dx = x1 - x0, dy = y1 - y0;
    const double len2 = dx * dx + dy * dy;
    ForBox(std::min(x0, x1) - pad, std::min(y0, y1) - pad,
           std::max(x0, x1) + pad, std::max(y0, y1) + pad, [&](int px, int py) {
             double t = 0.0;
             if (len2 > 0.0) {
               t = ((px - x0) * dx + (py - y0) * dy) / len2;
               t = std::min(1.0, std::max(0.0, t));
             }
             const double d =
                 std::hypot(px - (x0 + t * dx), py - (y0 + t * dy));
             return half_width + 0.5 - d;
           });
  }

  void AddDisc(double cx, double cy, double radius) {
    const double pad = radius + 1.0;
    ForBox(cx - pad, cy - pad, cx + pad, cy + pad, [&](int px, int py) {
      return radius + 0.5 - std::hypot(px - cx, py - cy);
    });
  }

  void Composite(Canvas& c, Rgb color) const {
    for (int y = r_.y0; y <= r_.y1; ++y) {
      for (int x = r_.x0; x <= r_.x1; ++x) c.Blend(x, y, color, At(x, y));
    }
  }

  float At(int x, int y) const {
    return cov_[static_cast<size_t>(y - r_.y0) * r_.width() + (x - r_.x0)];
  }

 private:
  template <typename F>
  void ForBox(double fx0, double fy0, double fx1, double fy1, F coverage) {
    const int x0 = std::max(r_.x0, static_cast<int>(std::floor(fx0)));
    const int y0 = std::max(r_.y0, static_cast<int>(std::floor(fy0)));
    const int x1 = std::min(r_.x1, static_cast<int>(std::ceil(fx1)));
    const int y1 = std::min(r_.y1, static_cast<int>(std::ceil(fy1)));
    for (int y = y0; y <= y1; ++y) {
      for (int x = x0; x <= x1; ++x) {
        const double a = std::min(1.0, coverage(x, y));
        float& v =
            cov_[static_cast<size_t>(y - r_.y0) * r_.width() + (x - r_.x0)];
        if (a > v) v = static_cast<float>(a);
      }
    }
  }

  Rect r_;
  std::vector<float> cov_;
};

// ----------------------------------------------------------------- axes ---

constexpr double kMaxMagnitude = 1e300;
constexpr double kMargin = 0.04;  // of the data span, at each end
constexpr double kLineHalfWidth = 1.0;
constexpr double kMarkerRadius = 3.0;

bool Usable(double v) {
  return std::isfinite(v) && std::fabs(v) <= kMaxMagnitude;
}

struct Axis {
  bool log = false;
  double lo = 0.0, hi = 1.0;  // log10 of the bounds on a log axis
  std::vector<double> ticks;
  std::vector<std::string> labels;

  // Position of a value in [0, 1] along the axis.
  double Frac(double v) const {
    const double u = log ? std::log10(v) : v;
    return (u - lo) / (hi - lo);
  }
};

// An axis over [mn, mx] (values; both > 0 on a log axis) with the margin.
Axis MakeAxis(bool any, double mn, double mx, bool log) {
  Axis a;
  a.log = log;
  // No data: 0..1, or 1..10 on a log axis (with the margin, like data).
  double lo = !any ? 0.0 : log ? std::log10(mn) : mn;
  double hi = !any ? 1.0 : log ? std::log10(mx) : mx;
  if (lo == hi) {
    const double d = log ? 0.1 : (lo != 0.0 ? std::fabs(lo) * 0.1 : 1.0);
    lo -= d;
    hi += d;
  } else {
    const double span = hi - lo;
    lo -= kMargin * span;
    hi += kMargin * span;
  }
  a.lo = lo;
  a.hi = hi;
  return a;
}

std::vector<std::string> AxisLabels(const std::vector<double>& ticks,
                                    bool log) {
  if (!log) return FormatTickLabels(ticks);
  std::vector<std::string> labels;
  for (double t : ticks) labels.push_back(FormatTickLabels({t})[0]);
  return labels;
}

// Picks the densest ticks whose labels do not collide along `length_px`
// pixels: horizontal labels need their half widths plus a gap between tick
// positions, vertical ones a line of text plus a gap.
void ChooseTicks(Axis* a, int length_px, bool horizontal) {
  const int first = std::max(2, length_px / (horizontal ? 40 : kTextH + 8));
  for (int m = first; m >= 2; --m) {
    std::vector<double> ticks =
        a->log ? NiceLogTicks(std::pow(10.0, a->lo), std::pow(10.0, a->hi), m)
               : NiceTicks(a->lo, a->hi, m);
    std::vector<std::string> labels = AxisLabels(ticks, a->log);
    auto needed = [&](size_t i, size_t j) {
      return horizontal
                 ? (TextWidth(labels[i]) + TextWidth(labels[j])) / 2.0 + 28.0
                 : kTextH + 6.0;
    };
    auto gap = [&](size_t i, size_t j) {
      return std::fabs(a->Frac(ticks[j]) - a->Frac(ticks[i])) * (length_px - 1);
    };
    bool fits = true;
    for (size_t i = 0; i + 1 < ticks.size(); ++i) {
      if (gap(i, i + 1) < needed(i, i + 1)) fits = false;
    }
    if (fits || m == 2) {
      if (!fits) {  // a tiny plot: keep the ticks that do not collide
        std::vector<double> kept_ticks;
        std::vector<std::string> kept_labels;
        size_t last = 0;
        for (size_t i = 0; i < ticks.size(); ++i) {
          if (!kept_ticks.empty() && gap(last, i) < needed(last, i)) continue;
          kept_ticks.push_back(ticks[i]);
          kept_labels.push_back(labels[i]);
          last = i;
        }
        ticks = std::move(kept_ticks);
        labels = std::move(kept_labels);
      }
      a->ticks = std::move(ticks);
      a->labels = std::move(labels);
      return;
    }
  }
}

// ---------------------------------------------------------------- panel ---

struct Point {
  double x, y;
};

// The drawable points of a series, split into runs at the skipped ones.
std::vector<std::vector<Point>> Runs(const PlotSeries& s, bool log_y) {
  std::vector<std::vector<Point>> runs(1);
  for (size_t i = 0; i < s.x.size(); ++i) {
    const bool ok = Usable(s.x[i]) && Usable(s.y[i]) && (!log_y || s.y[i] > 0);
    if (ok) {
      runs.back().push_back({s.x[i], s.y[i]});
    } else if (!runs.back().empty()) {
      runs.emplace_back();
    }
  }
  if (runs.back().empty()) runs.pop_back();
  return runs;
}

struct PanelData {
  std::vector<std::vector<std::vector<Point>>> runs;  // per series
  bool any = false;
  Axis x, y;
};

PanelData Prepare(const PlotPanel& p) {
  PanelData d;
  double xmn = 0, xmx = 0, ymn = 0, ymx = 0;
  for (const PlotSeries& s : p.series) {
    d.runs.push_back(Runs(s, p.log_y));
    for (const auto& run : d.runs.back()) {
      for (const Point& q : run) {
        if (!d.any) {
          xmn = xmx = q.x;
          ymn = ymx = q.y;
          d.any = true;
        }
        xmn = std::min(xmn, q.x);
        xmx = std::max(xmx, q.x);
        ymn = std::min(ymn, q.y);
        ymx = std::max(ymx, q.y);
      }
    }
  }
  d.x = MakeAxis(d.any, xmn, xmx, false);
  d.y = MakeAxis(d.any, ymn, ymx, p.log_y);
  return d;
}

constexpr int kPad = 10;
constexpr int kTickLen = 5;
constexpr int kTickGap = 4;  // between a tick mark and its label

struct Layout {
  int title_y;
  Rect plot;  // the inside of the frame
};

Layout PanelLayout(const PlotPanel& p, int band_top, int band_h, int left,
                   int width) {
  Layout l;
  l.title_y = band_top + kPad;
  const int top = band_top + (p.title.empty() ? 2 * kPad : kPad + kTextH + 12);
  const int bottom = kTickLen + kTickGap + kTextH +
                     (p.x_label.empty() ? 0 : 6 + kTextH) + kPad;
  l.plot = {left, top, width - 1 - 3 * kPad, band_top + band_h - 1 - bottom};
  return l;
}

void DrawLegend(Canvas& c, const PlotPanel& p, const Rect& plot,
                const std::vector<Layer>& layers) {
  const int n = static_cast<int>(p.series.size());
  constexpr int kRowH = 20, kSwatchW = 28;
  std::vector<std::string> labels;
  int text_w = 0;
  for (int i = 0; i < n; ++i) {
    std::string s = p.series[i].label.empty() ? absl::StrCat("series ", i + 1)
                                              : p.series[i].label;
    s = FitText(s, plot.width() - kSwatchW - 40);
    text_w = std::max(text_w, TextWidth(s));
    labels.push_back(std::move(s));
  }
  const int box_w = 8 + kSwatchW + 8 + text_w + 8;
  const int box_h = 8 + n * kRowH;
  constexpr int kInset = 8;
  const int left = plot.x0 + kInset, right = plot.x1 - kInset - box_w + 1;
  const int top = plot.y0 + kInset, bottom = plot.y1 - kInset - box_h + 1;
  // Too big for the plot (a tiny image): no legend.
  if (right < left || bottom < top) return;
  // Corners first, then along the top and bottom edges, then the middle row.
  const int middle = plot.y0 + (plot.height() - box_h) / 2;
  std::vector<std::pair<int, int>> candidates = {
      {right, top}, {left, top}, {right, bottom}, {left, bottom}};
  constexpr int kSteps = 6;
  for (int y : {top, bottom, middle}) {
    for (int k = 1; k < kSteps; ++k) {
      candidates.push_back({left + (right - left) * k / kSteps, y});
    }
  }
  candidates.push_back({right, middle});
  candidates.push_back({left, middle});
  long best_score = -1;
  Rect box{};
  for (const auto& [bx, by] : candidates) {
    const Rect r{bx, by, bx + box_w - 1, by + box_h - 1};
    long score = 0;
    for (int y = std::max(r.y0, plot.y0); y <= std::min(r.y1, plot.y1); ++y) {
      for (int x = std::max(r.x0, plot.x0); x <= std::min(r.x1, plot.x1); ++x) {
        for (const Layer& layer : layers) {
          if (layer.At(x, y) >= 0.2f) {
            ++score;
            break;
          }
        }
      }
    }
    if (best_score < 0 || score < best_score) {
      best_score = score;
      box = r;
    }
  }
  // Where data lie under it anyway, they show through.
  const double opacity = best_score > 0 ? 0.7 : 1.0;
  for (int y = box.y0; y <= box.y1; ++y) {
    for (int x = box.x0; x <= box.x1; ++x) c.Blend(x, y, kBackground, opacity);
  }
  c.HLine(box.x0, box.x1, box.y0, kLegendBorder);
  c.HLine(box.x0, box.x1, box.y1, kLegendBorder);
  c.VLine(box.x0, box.y0, box.y1, kLegendBorder);
  c.VLine(box.x1, box.y0, box.y1, kLegendBorder);
  for (int i = 0; i < n; ++i) {
    const int text_y = box.y0 + 4 + i * kRowH + (kRowH - kCapH) / 2;
    const int mid_y = text_y + kCapH / 2;
    const int sx = box.x0 + 8;
    Layer swatch({sx - 4, mid_y - 5, sx + kSwatchW + 4, mid_y + 5});
    swatch.AddSegment(sx, mid_y, sx + kSwatchW, mid_y, kLineHalfWidth);
    swatch.AddDisc(sx + kSwatchW / 2.0, mid_y, kMarkerRadius);
    swatch.Composite(c, SeriesColor(i));
    DrawText(c, sx + kSwatchW + 8, text_y, labels[i], kTextColor);
  }
}

void DrawPanel(Canvas& c, const PlotPanel& p, PanelData& d, const Layout& l) {
  const Rect& plot = l.plot;
  const int pw = plot.width(), ph = plot.height();
  ChooseTicks(&d.x, pw, /*horizontal=*/true);
  auto map_x = [&](double v) { return plot.x0 + d.x.Frac(v) * (pw - 1); };
  auto map_y = [&](double v) { return plot.y1 - d.y.Frac(v) * (ph - 1); };

  // Grid.
  for (double t : d.x.ticks) {
    c.VLine(static_cast<int>(std::lround(map_x(t))), plot.y0, plot.y1,
            kGridColor);
  }
  for (double t : d.y.ticks) {
    c.HLine(plot.x0, plot.x1, static_cast<int>(std::lround(map_y(t))),
            kGridColor);
  }

  // Series, each one layer over the inside of the frame.
  std::vector<Layer> layers;
  for (size_t i = 0; i < d.runs.size(); ++i) {
    layers.emplace_back(plot);
    Layer& layer = layers.back();
    size_t points = 0;
    for (const auto& run : d.runs[i]) points += run.size();
    const bool markers = points <= static_cast<size_t>(kMaxMarkedPoints);
    for (const auto& run : d.runs[i]) {
      for (size_t k = 0; k < run.size(); ++k) {
        const double px = map_x(run[k].x), py = map_y(run[k].y);
        if (k + 1 < run.size()) {
          layer.AddSegment(px, py, map_x(run[k + 1].x), map_y(run[k + 1].y),
                           kLineHalfWidth);
        }
        if (markers || run.size() == 1) layer.AddDisc(px, py, kMarkerRadius);
      }
    }
    layer.Composite(c, SeriesColor(static_cast<int>(i)));
  }

  // Frame, ticks and tick labels.
  c.HLine(plot.x0 - 1, plot.x1 + 1, plot.y0 - 1, kAxisColor);
  c.HLine(plot.x0 - 1, plot.x1 + 1, plot.y1 + 1, kAxisColor);
  c.VLine(plot.x0 - 1, plot.y0 - 1, plot.y1 + 1, kAxisColor);
  c.VLine(plot.x1 + 1, plot.y0 - 1, plot.y1 + 1, kAxisColor);
  for (size_t i = 0; i < d.x.ticks.size(); ++i) {
    const int x = static_cast<int>(std::lround(map_x(d.x.ticks[i])));
    c.VLine(x, plot.y1 + 2, plot.y1 + 1 + kTickLen, kAxisColor);
    const int w = TextWidth(d.x.labels[i]);
    const int tx = std::max(0, std::min(c.width() - w, x - w / 2));
    DrawText(c, tx, plot.y1 + 2 + kTickLen + kTickGap, d.x.labels[i],
             kTextColor);
  }
  for (size_t i = 0; i < d.y.ticks.size(); ++i) {
    const int y = static_cast<int>(std::lround(map_y(d.y.ticks[i])));
    c.HLine(plot.x0 - 1 - kTickLen, plot.x0 - 2, y, kAxisColor);
    const int w = TextWidth(d.y.labels[i]);
    DrawText(c, plot.x0 - 1 - kTickLen - kTickGap - w, y - kCapH / 2,
             d.y.labels[i], kTextColor);
  }

  if (!d.any) {
    const std::string note = "no data yet";
    DrawText(c, plot.x0 + (pw - TextWidth(note)) / 2,
             plot.y0 + (ph - kCapH) / 2, note, kNoteColor);
  }
  if (p.series.size() > 1 ||
      (p.series.size() == 1 && !p.series[0].label.empty())) {
    DrawLegend(c, p, plot, layers);
  }

  // Title and axis labels.
  if (!p.title.empty()) {
    const std::string t = FitText(p.title, c.width() - 2 * kPad);
    const int w = TextWidth(t) + 1;
    const int tx =
        std::max(kPad, std::min(c.width() - kPad - w, plot.x0 + (pw - w) / 2));
    DrawText(c, tx, l.title_y, t, kTextColor, /*bold=*/true);
  }
  if (!p.x_label.empty()) {
    const std::string t = FitText(p.x_label, pw);
    DrawText(c, plot.x0 + (pw - TextWidth(t)) / 2,
             plot.y1 + 2 + kTickLen + kTickGap + kTextH + 6, t, kTextColor);
  }
  if (!p.y_label.empty()) {
    const std::string t = FitText(p.y_label, ph);
    DrawText(c, kPad, plot.y0 + (ph - TextWidth(t)) / 2, t, kTextColor,
             /*bold=*/false, /*vertical=*/true);
  }
}

// m * 10^e, exact for the decimal values a tick can take.
double Scaled(double m, int e) {
  return e >= 0 ? m * std::pow(10.0, e) : m / std::pow(10.0, -e);
}

}  // namespace

std::vector<double> NiceTicks(double lo, double hi, int max_ticks) {
  if (!std::isfinite(lo) || !std::isfinite(hi)) return {};
  if (lo > hi) std::swap(lo, hi);
  if (lo == hi) return {lo == 0.0 ? 0.0 : lo};
  max_ticks = std::max(max_ticks, 2);
  const double span = hi - lo;
  if (!std::isfinite(span)) return {};
  int e = static_cast<int>(std::floor(std::log10(span / max_ticks)));
  if (e < -300) return {lo};
  for (; e <= 310; ++e) {
    for (int m : {1, 2, 5}) {
      const double step = Scaled(m, e);
      const double k0 = std::ceil(lo / step - 1e-9);
      const double k1 = std::floor(hi / step + 1e-9);
      if (k1 - k0 + 1 > max_ticks) continue;
      std::vector<double> ticks;
      for (double k = k0; k <= k1; k += 1.0) {
        const double t = Scaled(k * m, e);
        ticks.push_back(t == 0.0 ? 0.0 : t);
      }
      return ticks;
    }
  }
  return {};
}

std::vector<double> NiceLogTicks(double lo, double hi, int max_ticks) {
  if (!std::isfinite(lo) || !std::isfinite(hi) || !(lo > 0) || !(hi > 0)) {
    return {};
  }
  if (lo > hi) std::swap(lo, hi);
  max_ticks = std::max(max_ticks, 2);
  const int k0 = static_cast<int>(std::floor(std::log10(lo)));
  const int k1 = static_cast<int>(std::ceil(std::log10(hi)));
  auto collect = [&](std::initializer_list<int> mantissas, int every) {
    std::vector<double> ticks;
    for (int k = k0; k <= k1; ++k) {
      if (((k % every) + every) % every != 0) continue;
      for (int m : mantissas) {
        const double t = Scaled(m, k);
        if (t >= lo * (1 - 1e-9) && t <= hi * (1 + 1e-9)) ticks.push_back(t);
      }
    }
    return ticks;
  };
  for (auto mantissas : {std::initializer_list<int>{1, 2, 3, 5},
                         std::initializer_list<int>{1, 2, 5},
                         std::initializer_list<int>{1, 3}}) {
    std::vector<double> ticks = collect(mantissas, 1);
    if (ticks.size() >= 2 && ticks.size() <= static_cast<size_t>(max_ticks)) {
      return ticks;
    }
  }
  std::vector<double> decades = collect({1}, 1);
  if (decades.size() >= 2) {
    for (int every = 1; every <= k1 - k0 + 1; ++every) {
      std::vector<double> ticks = collect({1}, every);
      if (ticks.size() <= static_cast<size_t>(max_ticks)) return ticks;
    }
  }
  return NiceTicks(lo, hi, max_ticks);
}

std::vector<std::string> FormatTickLabels(const std::vector<double>& ticks) {
  if (ticks.empty()) return {};
  double max_abs = 0.0, step = 0.0;
  for (size_t i = 0; i < ticks.size(); ++i) {
    max_abs = std::max(max_abs, std::fabs(ticks[i]));
    if (i > 0) {
      const double d = std::fabs(ticks[i] - ticks[i - 1]);
      if (d > 0 && (step == 0.0 || d < step)) step = d;
    }
  }
  if (step == 0.0) step = max_abs > 0 ? max_abs : 1.0;
  const bool scientific = max_abs >= 1e6 || (max_abs > 0 && max_abs < 1e-3);
  std::vector<std::string> labels(ticks.size());
  for (int precision = 0; precision <= 15; ++precision) {
    bool exact = true;
    for (size_t i = 0; i < ticks.size(); ++i) {
      char buf[64];
      std::snprintf(buf, sizeof(buf), scientific ? "%.*e" : "%.*f", precision,
                    ticks[i]);
      labels[i] = buf;
      const double back = std::strtod(buf, nullptr);
      if (back == 0.0) labels[i] = scientific ? "0" : buf + (buf[0] == '-');
      const double tolerance =
          std::max(step * 1e-6, std::fabs(ticks[i]) * 1e-12);
      if (!(std::fabs(back - ticks[i]) <= tolerance)) exact = false;
    }
    if (exact) break;
  }
  return labels;
}

double PlotFrame::PixelX(double x) const {
  return x0 + (x - x_lo) / (x_hi - x_lo) * (x1 - x0);
}

double PlotFrame::PixelY(double y) const {
  const double f = log_y ? (std::log10(y) - std::log10(y_lo)) /
                               (std::log10(y_hi) - std::log10(y_lo))
                         : (y - y_lo) / (y_hi - y_lo);
  return y1 - f * (y1 - y0);
}

absl::StatusOr<Image> RenderLinePlot(const std::vector<PlotPanel>& panels,
                                     const PlotOptions& o,
                                     std::vector<PlotFrame>* frames) {
  if (panels.empty()) {
    return absl::InvalidArgumentError("RenderLinePlot: no panels");
  }
  if (o.width < 240 || o.width > 8192 || o.height_per_panel < 160 ||
      o.height_per_panel > 8192 ||
      static_cast<long>(o.height_per_panel) * panels.size() > 32768) {
    return absl::InvalidArgumentError(
        absl::StrCat("RenderLinePlot: size ", o.width, " x ",
                     o.height_per_panel, " x ", panels.size(),
                     " panels out of range (width 240..8192, height per "
                     "panel 160..8192, total height <= 32768)"));
  }
  for (size_t i = 0; i < panels.size(); ++i) {
    for (size_t j = 0; j < panels[i].series.size(); ++j) {
      const PlotSeries& s = panels[i].series[j];
      if (s.x.size() != s.y.size()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "RenderLinePlot: panel ", i, " (\"", panels[i].title,
            "\"): series ", j, " (\"", s.label, "\") has ", s.x.size(),
            " x values but ", s.y.size(), " y values"));
      }
    }
  }

  const int band_h = o.height_per_panel;
  Canvas canvas(o.width, band_h * static_cast<int>(panels.size()));
  std::vector<PanelData> data;
  std::vector<Layout> layouts;
  // The y ticks depend only on the plot heights; the widest y tick label of
  // all panels sets one left edge, so stacked panels line up.
  int left = 0;
  for (size_t i = 0; i < panels.size(); ++i) {
    data.push_back(Prepare(panels[i]));
    const Layout l = PanelLayout(panels[i], static_cast<int>(i) * band_h,
                                 band_h, 0, o.width);
    ChooseTicks(&data.back().y, l.plot.height(), /*horizontal=*/false);
    int label_w = 0;
    for (const std::string& s : data.back().y.labels) {
      label_w = std::max(label_w, TextWidth(s));
    }
    const int axis_label_w = panels[i].y_label.empty() ? 0 : kTextH + 8;
    left =
        std::max(left, kPad + axis_label_w + label_w + kTickGap + kTickLen + 2);
  }
  for (size_t i = 0; i < panels.size(); ++i) {
    layouts.push_back(PanelLayout(panels[i], static_cast<int>(i) * band_h,
                                  band_h, left, o.width));
    DrawPanel(canvas, panels[i], data[i], layouts[i]);
  }
  if (frames != nullptr) {
    frames->clear();
    for (size_t i = 0; i < panels.size(); ++i) {
      const Rect& r = layouts[i].plot;
      const Axis& x = data[i].x;
      const Axis& y = data[i].y;
      PlotFrame f;
      f.x0 = r.x0;
      f.y0 = r.y0;
      f.x1 = r.x1;
      f.y1 = r.y1;
      f.x_lo = x.lo;
      f.x_hi = x.hi;
      f.log_y = y.log;
      f.y_lo = y.log ? std::pow(10.0, y.lo) : y.lo;
      f.y_hi = y.log ? std::pow(10.0, y.hi) : y.hi;
      frames->push_back(f);
    }
  }
  return canvas.TakeImage();
}

absl::Status WriteLinePlotPng(const std::string& path,
                              const std::vector<PlotPanel>& panels,
                              const PlotOptions& o) {
  absl::StatusOr<Image> image = RenderLinePlot(panels, o);
  if (!image.ok()) return image.status();
  return WritePng(path, image->pixels.data(), image->height, image->width,
                  image->channels);
}

}  // namespace paragan
