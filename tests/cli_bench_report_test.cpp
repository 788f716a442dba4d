// bench's pure parts without a model: peak-RSS parsing, the SVG plot, the
// CSV/JSON report and the speedup table, on hand-made rows.
#include <gtest/gtest.h>

#include <sstream>
#include <string>
#include <vector>

#include "bench_test_support.h"
#include "cli/bench_memory.h"
#include "cli/bench_plot.h"
#include "cli/bench_report.h"
#include "cli/bench_roofline.h"
#include "cli/bench_sweep.h"
#include "util/error.h"

namespace bifurcate::cli {
namespace {

using bench_test::count;
using bench_test::expect_well_formed_xml;
using bench_test::split;

TEST(BenchMemory, ParsesVmHwm) {
  EXPECT_EQ(parse_vm_hwm_bytes("Name:\tx\nVmPeak:\t  99 kB\nVmHWM:\t    1234 kB\nVmRSS:\t 5 kB\n"),
            1234u * 1024);
  EXPECT_EQ(parse_vm_hwm_bytes("VmRSS:\t 5 kB\n"), 0u);
  EXPECT_EQ(parse_vm_hwm_bytes("VmHWM:\t garbage\n"), 0u);
  EXPECT_GT(read_peak_rss_bytes(), 0u);
}

BenchRow measured_row(int context, int samples, AttentionMode mode, double step_ms) {
  BenchRow r;
  r.context = context, r.ntg = 8, r.samples = samples, r.mode = mode;
  r.prefill_seconds = 0.5;
  r.step_mean_seconds = step_ms / 1e3;
  r.step_median_seconds = step_ms / 1e3;
  r.decode_seconds = 8 * step_ms / 1e3;
  r.attention_share = 0.25;
  r.kv_bytes = 1 << 20;
  r.peak_rss_bytes = 1 << 30;
  r.rss_reset = true;
  return r;
}

TEST(BenchPlot, SvgHasOneLinePerSeriesAndOneMarkerPerPoint) {
  PlotSpec spec;
  spec.title = "latency & samples <test>";
  spec.x_label = "B";
  spec.y_label = "ms";
  spec.series = {{"a", false, 0, {{1, 10}, {2, 12}}},
                 {"b", true, 0, {{1, 11}, {2, 20}, {4, 45}}},
                 {"c", false, 1, {{32, 300}}}};
  const std::string svg = render_svg(spec);
  expect_well_formed_xml(svg);
  EXPECT_EQ(count(svg, "<polyline class='series'"), 3u);
  EXPECT_EQ(count(svg, "class='marker'"), 6u);
  EXPECT_EQ(count(svg, "<rect class='marker'"), 3u);  // the dashed series' square markers
  EXPECT_EQ(count(svg, "stroke-dasharray"), 2u);      // its line and its legend entry
  EXPECT_EQ(count(svg, "class='legend'"), 3u);
  EXPECT_NE(svg.find("latency &amp; samples &lt;test&gt;"), std::string::npos);
  // log-2 x axis: one vertical gridline per octave 1..32.
  for (int b : {1, 2, 4, 8, 16, 32}) EXPECT_NE(svg.find(str(">", b, "</text>")), std::string::npos) << b;
  EXPECT_THROW(render_svg(PlotSpec{}), Error);
}

TEST(BenchPlot, SeriesFromRowsSkipTheSkippedAndGroupByContextAndMode) {
  std::vector<BenchRow> rows = {
      measured_row(64, 1, AttentionMode::bifurcated, 5), measured_row(64, 2, AttentionMode::bifurcated, 6),
      measured_row(64, 1, AttentionMode::replicated, 5), measured_row(128, 1, AttentionMode::bifurcated, 7)};
  BenchRow skipped = measured_row(64, 2, AttentionMode::replicated, 0);
  skipped.skipped = true;
  rows.push_back(skipped);
  rows[1].step_mean_seconds = 9e-3;  // a preempted step: the plot shows the median (6 ms), as the tables do
  const std::vector<PlotSeries> series = latency_series(rows);
  ASSERT_EQ(series.size(), 3u);
  EXPECT_EQ(series[0].label, "PP 64, bifurcated");
  EXPECT_EQ(series[1].label, "PP 64, replicated (B=2: KV > budget)");
  EXPECT_EQ(series[0].points.size(), 2u);
  EXPECT_DOUBLE_EQ(series[0].points[1].second, 6.0);
  EXPECT_TRUE(series[1].dashed);
  EXPECT_EQ(series[1].points.size(), 1u);
  EXPECT_EQ(series[2].colour, 1);
}

TEST(BenchReport, CsvHasTheBatchedBenchColumnsAndOneLinePerRow) {
  BenchReport report;
  report.counts = ModelCounts{2, 4, 2, 16, 1e6, 5e5};
  report.ceilings = MachineCeilings{1e9, 1e10};
  report.rows = {measured_row(100, 4, AttentionMode::bifurcated, 10),
                 measured_row(100, 4, AttentionMode::replicated, 30),
                 measured_row(100, 8, AttentionMode::bifurcated, 10)};
  report.rows[1].skipped = true;
  // Row 3: a preempted step pulled the mean up (10 ms) above the median (8 ms),
  // and its own probes found 2 GB/s and 20 GFLOP/s instead of the sweep's 1 and 10.
  report.rows[2].step_median_seconds = 8e-3;
  report.rows[2].read_bytes_per_second = 2e9;
  report.rows[2].flops_per_second = 2e10;
  compute_roofline(report, 2);
  std::ostringstream out;
  write_csv(out, report);
  const std::vector<std::string> lines = split(out.str(), '\n');
  ASSERT_EQ(lines.size(), 5u);  // header, 3 rows, trailing empty
  const std::vector<std::string> header = split(lines[0], ',');
  for (const char* column : {"mode",
                             "pp",
                             "tg",
                             "b",
                             "n_kv",
                             "t_pp",
                             "s_pp",
                             "t_tg",
                             "s_tg",
                             "t",
                             "s",
                             "step_ms_mean",
                             "step_ms_median",
                             "attention_share",
                             "kv_bytes",
                             "peak_rss_bytes",
                             "weights_bytes",
                             "attention_bytes",
                             "floor_ms",
                             "measured_over_floor",
                             "rounds",
                             "timed_steps",
                             "step_ms_min",
                             "step_ms_max",
                             "read_gb_per_s",
                             "bw_scope",
                             "fma_gflop_per_s",
                             "peak_scope"}) {
    EXPECT_NE(std::find(header.begin(), header.end(), column), header.end()) << column;
  }
  EXPECT_EQ(header, csv_columns());
  auto field = [&](int line, const std::string& column) {
    const std::vector<std::string> f = split(lines[std::size_t(line)], ',');
    EXPECT_EQ(f.size(), header.size());
    return f[std::size_t(std::find(header.begin(), header.end(), column) - header.begin())];
  };
  EXPECT_EQ(field(1, "n_kv"), "132");  // PP + B*TG = 100 + 4*8
  EXPECT_EQ(field(2, "n_kv"), "432");  // B*(PP+TG) = 4*108
  EXPECT_EQ(std::stod(field(1, "s_tg")), 4.0 * 8 / 0.08);
  EXPECT_EQ(field(2, "status"), "skipped");
  EXPECT_EQ(field(2, "step_ms_mean"), "");
  // Floor of row 1: weights 1e6 B / 1e9 B/s = 1 ms (vs 4e6 FLOP / 1e10 = 0.4 ms);
  // attention 256 B * (100 + 4*5.5) / 1e9 = 0.031232 ms (vs 4*2*4*4*16*105.5 / 1e10).
  EXPECT_NEAR(std::stod(field(1, "floor_ms")), 1.0 + 256.0 * 122 / 1e6, 1e-9);
  EXPECT_NEAR(std::stod(field(1, "measured_over_floor")), 10.0 / (1.0 + 256.0 * 122 / 1e6), 1e-6);
  EXPECT_EQ(std::stod(field(1, "read_gb_per_s")), 1.0);
  EXPECT_EQ(field(1, "bw_scope"), "sweep");
  EXPECT_EQ(std::stod(field(1, "fma_gflop_per_s")), 10.0);
  EXPECT_EQ(field(1, "peak_scope"), "sweep");
  EXPECT_EQ(field(1, "timed_steps"), "8");
  // Row 3 (B=8, m_d = 5.5), its own ceilings: weights max(1e6 B / 2e9 B/s = 0.5 ms, 8e6 FLOP / 2e10 =
  // 0.4 ms); attention max(256 B * (100 + 8*5.5) / 2e9 = 0.018432 ms, 4*2*8*4*16*105.5 FLOP / 2e10 =
  // 0.0216064 ms). With the sweep's 10 GFLOP/s it would be 0.8 + 0.0432128 ms.
  const double floor3 = 0.5 + 4.0 * 2 * 8 * 4 * 16 * 105.5 / 2e7;
  EXPECT_NEAR(std::stod(field(3, "floor_ms")), floor3, 1e-9);
  EXPECT_EQ(std::stod(field(3, "read_gb_per_s")), 2.0);
  EXPECT_EQ(field(3, "bw_scope"), "row");
  EXPECT_EQ(std::stod(field(3, "fma_gflop_per_s")), 20.0);
  EXPECT_EQ(field(3, "peak_scope"), "row");
  EXPECT_NEAR(std::stod(field(3, "measured_over_floor")), 8.0 / floor3,
              1e-6);  // the median, not the 10 ms mean

  std::ostringstream json;
  write_json(json, report);
  EXPECT_EQ(count(json.str(), "\"step_ms_mean\""), 3u);
  EXPECT_NE(json.str().find("\"read_bytes_per_second\""), std::string::npos);

  std::ostringstream table;
  print_rows_table(table, report);
  // Row 3: 2 GB/s, 20 GFLOP/s, floor 0.522 ms, x floor 8 / 0.5216064 = 15.34.
  EXPECT_NE(table.str().find("| BW GB/s | FMA GF/s | floor ms | x floor |"), std::string::npos) << table.str();
  EXPECT_NE(table.str().find("|     2.0 |     20.0 |      0.5 |   15.34 |"), std::string::npos) << table.str();
}

TEST(BenchReport, SpeedupIsReplicatedOverBifurcatedStepLatency) {
  BenchReport report;
  report.rows = {measured_row(100, 1, AttentionMode::bifurcated, 10),
                 measured_row(100, 2, AttentionMode::bifurcated, 10),
                 measured_row(100, 1, AttentionMode::replicated, 15),
                 measured_row(100, 2, AttentionMode::replicated, 40)};
  report.rows[3].skipped = true;
  report.rows[2].step_mean_seconds =
      60e-3;  // one preempted step: the mean moves, the median (15 ms) does not
  EXPECT_DOUBLE_EQ(*find_speedup(report.rows, 100, 1), 1.5);
  EXPECT_FALSE(find_speedup(report.rows, 100, 2).has_value());
  std::ostringstream out;
  print_speedup_table(out, report);
  EXPECT_NE(out.str().find("1.50x"), std::string::npos) << out.str();
  EXPECT_NE(out.str().find("median decode-step latency"), std::string::npos) << out.str();
  EXPECT_NE(out.str().find("skipped"), std::string::npos) << out.str();
}

}  // namespace
}  // namespace bifurcate::cli
