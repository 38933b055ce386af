#include "deploy/local/metrics_text.h"

#include <cmath>
#include <limits>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace paragan {
namespace local {
namespace {

bool IsNameChar(char c, bool first) {
  return absl::ascii_isalpha(c) || c == '_' || c == ':' ||
         (!first && absl::ascii_isdigit(c));
}

// Prometheus writes NaN as "NaN" (prometheus-cpp: "Nan") and infinities
// as "+Inf" / "-Inf".
bool ParseValue(absl::string_view s, double* out) {
  const std::string lower = absl::AsciiStrToLower(s);
  if (lower == "nan") {
    *out = std::numeric_limits<double>::quiet_NaN();
    return true;
  }
  if (lower == "+inf" || lower == "inf") {
    *out = std::numeric_limits<double>::infinity();
    return true;
  }
  if (lower == "-inf") {
    *out = -std::numeric_limits<double>::infinity();
    return true;
  }
  return absl::SimpleAtod(s, out);
}

// Parses `{a="x",b="y"}` at the start of *rest into `labels`.
bool ParseLabels(absl::string_view* rest,
                 std::map<std::string, std::string>* labels) {
  absl::string_view s = *rest;
  s.remove_prefix(1);  // '{'
  while (true) {
    s = absl::StripLeadingAsciiWhitespace(s);
    if (!s.empty() && s[0] == '}') {
      s.remove_prefix(1);
      *rest = s;
      return true;
    }
    size_t n = 0;
    while (n < s.size() && IsNameChar(s[n], n == 0)) ++n;
    if (n == 0 || n + 1 >= s.size() || s[n] != '=' || s[n + 1] != '"') {
      return false;
    }
    const std::string key(s.substr(0, n));
    s.remove_prefix(n + 2);
    std::string value;
    size_t i = 0;
    for (; i < s.size() && s[i] != '"'; ++i) {
      if (s[i] == '\\' && i + 1 < s.size()) {
        ++i;
        value += s[i] == 'n' ? '\n' : s[i];  // \\, \" and \n
      } else {
        value += s[i];
      }
    }
    if (i == s.size()) return false;  // unterminated value
    s.remove_prefix(i + 1);
    (*labels)[key] = std::move(value);
    s = absl::StripLeadingAsciiWhitespace(s);
    if (!s.empty() && s[0] == ',') s.remove_prefix(1);
  }
}

}  // namespace

absl::StatusOr<std::vector<MetricSample>> ParseMetricsText(
    absl::string_view text) {
  std::vector<MetricSample> out;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    auto bad = [&] {
      return absl::InvalidArgumentError(absl::StrCat(
          "metrics line ", line_no, ": cannot parse '", line, "'"));
    };
    MetricSample m;
    size_t n = 0;
    while (n < line.size() && IsNameChar(line[n], n == 0)) ++n;
    if (n == 0) return bad();
    m.name = std::string(line.substr(0, n));
    absl::string_view rest = line.substr(n);
    if (!rest.empty() && rest[0] == '{' && !ParseLabels(&rest, &m.labels)) {
      return bad();
    }
    rest = absl::StripLeadingAsciiWhitespace(rest);
    // The value, then an optional timestamp.
    const std::vector<absl::string_view> parts =
        absl::StrSplit(rest, ' ', absl::SkipEmpty());
    if (parts.empty() || parts.size() > 2 || !ParseValue(parts[0], &m.value)) {
      return bad();
    }
    out.push_back(std::move(m));
  }
  return out;
}

std::optional<double> FindMetric(
    const std::vector<MetricSample>& samples, absl::string_view name,
    const std::map<std::string, std::string>& labels) {
  for (const MetricSample& m : samples) {
    if (m.name != name) continue;
    bool match = true;
    for (const auto& [k, v] : labels) {
      auto it = m.labels.find(k);
      match = match && it != m.labels.end() && it->second == v;
    }
    if (match) return m.value;
  }
  return std::nullopt;
}

}  // namespace local
}  // namespace paragan
