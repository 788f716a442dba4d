// The paper's figure for this machine: decode-step latency against the number
// of samples, one line per (context, mode), as a hand-written SVG (log-2 x
// axis, log-10 y axis, gridlines, labelled axes, legend). A PNG is written
// beside it when rsvg-convert or ImageMagick's convert is on the PATH.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "cli/bench_sweep.h"

namespace bifurcate::cli {

struct PlotSeries {
  std::string label;
  bool dashed = false;  // replicated lines are dashed, bifurcated solid
  int colour = 0;       // palette index: one colour per context length
  std::vector<std::pair<double, double>> points;  // (B, step ms), B > 0 and ms > 0, B ascending
};

struct PlotSpec {
  std::string title;
  std::string subtitle;
  std::string x_label;
  std::string y_label;
  std::vector<PlotSeries> series;
};

// One series per (context, mode) with at least one measured row; skipped rows leave gaps.
std::vector<PlotSeries> latency_series(const std::vector<BenchRow>& rows);

// The SVG document. Throws Error if no series has a point.
std::string render_svg(const PlotSpec& spec);

// Writes `svg_path`; when a converter exists also the same path with .png.
// Returns the PNG path, or "" when none was written.
std::string write_plot(const std::string& svg_path, const PlotSpec& spec);

}  // namespace bifurcate::cli
