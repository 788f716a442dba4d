#include "cli/bench_plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <sstream>

#include "cli/output_file.h"
#include "util/error.h"

namespace bifurcate::cli {
namespace {

constexpr const char* kPalette[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf"};
constexpr int kPaletteSize = int(sizeof kPalette / sizeof kPalette[0]);

// Plot geometry in SVG user units: the data area and the legend to its right.
constexpr double kWidth = 1000, kHeight = 560;
constexpr double kLeft = 80, kRight = 660, kTop = 70, kBottom = 490;

std::string escape_xml(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string num(double v) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f", v);
  return text;
}

// Log-scale axis: maps [lo, hi] (lo > 0) onto [a, b] in user units.
struct LogAxis {
  double lo, hi, a, b;
  double map(double v) const { return a + (b - a) * (std::log(v / lo) / std::log(hi / lo)); }
};

// Latency ticks at 1, 2, 5 x 10^n covering [lo, hi].
std::vector<double> latency_ticks(double lo, double hi) {
  std::vector<double> ticks;
  for (double decade = std::pow(10.0, std::floor(std::log10(lo))); decade <= hi; decade *= 10) {
    for (double m : {1.0, 2.0, 5.0}) {
      if (decade * m >= lo * 0.999 && decade * m <= hi * 1.001) ticks.push_back(decade * m);
    }
  }
  return ticks;
}

std::string tick_label(double v) {
  char text[32];
  std::snprintf(text, sizeof text, v >= 1 ? "%.0f" : "%.2g", v);
  return text;
}

void draw_axes(std::ostringstream& s, const PlotSpec& spec, const LogAxis& x, const LogAxis& y) {
  s << "<rect x='" << kLeft << "' y='" << kTop << "' width='" << kRight - kLeft << "' height='" << kBottom - kTop
    << "' fill='none' stroke='#444'/>\n";
  for (double b = x.lo; b <= x.hi * 1.001; b *= 2) {
    const std::string px = num(x.map(b));
    s << "<line class='grid' x1='" << px << "' y1='" << kTop << "' x2='" << px << "' y2='" << kBottom
      << "' stroke='#ddd'/>\n<text x='" << px << "' y='" << kBottom + 20 << "' text-anchor='middle'>"
      << tick_label(b) << "</text>\n";
  }
  for (double t : latency_ticks(y.lo, y.hi)) {
    const std::string py = num(y.map(t));
    s << "<line class='grid' x1='" << kLeft << "' y1='" << py << "' x2='" << kRight << "' y2='" << py
      << "' stroke='#ddd'/>\n<text x='" << kLeft - 8 << "' y='" << py << "' dy='4' text-anchor='end'>"
      << tick_label(t) << "</text>\n";
  }
  s << "<text x='" << (kLeft + kRight) / 2 << "' y='" << kBottom + 48 << "' text-anchor='middle'>"
    << escape_xml(spec.x_label) << "</text>\n";
  s << "<text transform='translate(" << kLeft - 55 << "," << (kTop + kBottom) / 2
    << ") rotate(-90)' text-anchor='middle'>" << escape_xml(spec.y_label) << "</text>\n";
  s << "<text x='" << kWidth / 2 << "' y='28' text-anchor='middle' font-size='17' font-weight='bold'>"
    << escape_xml(spec.title) << "</text>\n";
  s << "<text x='" << kWidth / 2 << "' y='50' text-anchor='middle' font-size='12' fill='#555'>"
    << escape_xml(spec.subtitle) << "</text>\n";
}

void draw_series(std::ostringstream& s, const PlotSeries& series, const LogAxis& x, const LogAxis& y) {
  const char* colour = kPalette[series.colour % kPaletteSize];
  s << "<polyline class='series' fill='none' stroke='" << colour << "' stroke-width='2'"
    << (series.dashed ? " stroke-dasharray='7,5'" : "") << " points='";
  for (const auto& [b, ms] : series.points) s << num(x.map(b)) << ',' << num(y.map(ms)) << ' ';
  s << "'/>\n";
  for (const auto& [b, ms] : series.points) {
    const double px = x.map(b), py = y.map(ms);
    if (series.dashed) {
      s << "<rect class='marker' x='" << num(px - 4) << "' y='" << num(py - 4) << "' width='8' height='8' fill='white'"
        << " stroke='" << colour << "' stroke-width='2'/>\n";
    } else {
      s << "<circle class='marker' cx='" << num(px) << "' cy='" << num(py) << "' r='4' fill='" << colour << "'/>\n";
    }
  }
}

void draw_legend(std::ostringstream& s, const PlotSpec& spec) {
  double y = kTop + 10;
  for (const PlotSeries& series : spec.series) {
    const char* colour = kPalette[series.colour % kPaletteSize];
    s << "<line x1='" << kRight + 15 << "' y1='" << y << "' x2='" << kRight + 50 << "' y2='" << y << "' stroke='"
      << colour << "' stroke-width='2'" << (series.dashed ? " stroke-dasharray='7,5'" : "") << "/>\n";
    s << "<text class='legend' font-size='12' x='" << kRight + 58 << "' y='" << y + 4 << "'>" << escape_xml(series.label)
      << "</text>\n";
    y += 22;
  }
}

bool on_path(const std::string& program) {
  const char* path = std::getenv("PATH");
  if (path == nullptr) return false;
  std::stringstream dirs(path);
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    std::error_code ec;
    if (!dir.empty() && std::filesystem::exists(std::filesystem::path(dir) / program, ec)) return true;
  }
  return false;
}

std::string shell_quote(const std::string& text) {
  std::string out = "'";
  for (char c : text) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

}  // namespace

std::vector<PlotSeries> latency_series(const std::vector<BenchRow>& rows) {
  std::vector<int> contexts;
  for (const BenchRow& r : rows) {
    if (std::find(contexts.begin(), contexts.end(), r.context) == contexts.end()) contexts.push_back(r.context);
  }
  std::vector<PlotSeries> out;
  for (std::size_t c = 0; c < contexts.size(); ++c) {
    for (AttentionMode mode : {AttentionMode::bifurcated, AttentionMode::replicated}) {
      PlotSeries series;
      series.label = str("PP ", contexts[c], ", ", attention_mode_name(mode));
      series.dashed = mode == AttentionMode::replicated;
      series.colour = int(c);
      std::string skipped;
      for (const BenchRow& r : rows) {
        if (r.context != contexts[c] || r.mode != mode) continue;
        if (r.skipped) skipped += str(skipped.empty() ? "" : ",", r.samples);
        if (!r.skipped && r.step_median_seconds > 0) {
          series.points.emplace_back(double(r.samples), 1e3 * r.step_median_seconds);
        }
      }
      if (!skipped.empty()) series.label += str(" (B=", skipped, ": KV > budget)");
      std::sort(series.points.begin(), series.points.end());
      if (!series.points.empty()) out.push_back(std::move(series));
    }
  }
  return out;
}

std::string render_svg(const PlotSpec& spec) {
  double b_lo = 0, b_hi = 0, ms_lo = 0, ms_hi = 0;
  bool any = false;
  for (const PlotSeries& series : spec.series) {
    for (const auto& [b, ms] : series.points) {
      require(b > 0 && ms > 0, "plot points must be positive, got (", b, ", ", ms, ") in '", series.label, "'");
      b_lo = any ? std::min(b_lo, b) : b, b_hi = any ? std::max(b_hi, b) : b;
      ms_lo = any ? std::min(ms_lo, ms) : ms, ms_hi = any ? std::max(ms_hi, ms) : ms;
      any = true;
    }
  }
  require(any, "nothing to plot: no measured rows");
  // x spans whole octaves; y pads to the enclosing 1-2-5 ticks.
  b_lo = std::exp2(std::floor(std::log2(b_lo)));
  b_hi = std::max(2 * b_lo, std::exp2(std::ceil(std::log2(b_hi))));
  const std::vector<double> below = latency_ticks(ms_lo / 2.5, ms_lo);
  const std::vector<double> above = latency_ticks(ms_hi, ms_hi * 2.5);
  ms_lo = below.empty() ? ms_lo * 0.8 : below.back();
  ms_hi = above.empty() ? ms_hi * 1.25 : above.front();
  if (ms_hi <= ms_lo * 1.5) ms_hi = ms_lo * 2;
  const LogAxis x{b_lo, b_hi, kLeft + 20, kRight - 20};
  const LogAxis y{ms_lo, ms_hi, kBottom, kTop};

  std::ostringstream s;
  s << "<?xml version='1.0' encoding='UTF-8'?>\n<svg xmlns='http://www.w3.org/2000/svg' width='" << kWidth
    << "' height='" << kHeight << "' viewBox='0 0 " << kWidth << ' ' << kHeight
    << "' font-family='DejaVu Sans, Arial, sans-serif' font-size='13'>\n"
    << "<rect width='100%' height='100%' fill='white'/>\n";
  draw_axes(s, spec, x, y);
  for (const PlotSeries& series : spec.series) {
    if (!series.points.empty()) draw_series(s, series, x, y);
  }
  draw_legend(s, spec);
  s << "</svg>\n";
  return s.str();
}

std::string write_plot(const std::string& svg_path, const PlotSpec& spec) {
  const std::string svg = render_svg(spec);
  write_output_file(svg_path, svg);
  const std::string png_path = std::filesystem::path(svg_path).replace_extension(".png").string();
  std::string command;
  if (on_path("rsvg-convert")) {
    command = "rsvg-convert -o " + shell_quote(png_path) + " " + shell_quote(svg_path);
  } else if (on_path("convert")) {
    command = "convert " + shell_quote(svg_path) + " " + shell_quote(png_path);
  } else {
    return "";
  }
  command += " >/dev/null 2>&1";
  return std::system(command.c_str()) == 0 && std::filesystem::exists(png_path) ? png_path : "";
}

}  // namespace bifurcate::cli
