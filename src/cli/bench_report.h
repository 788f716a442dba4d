// Everything `bifurcate bench` prints or writes about a finished sweep: the
// batched-bench table with the roofline columns, CSV, JSON, and the speedup
// table (replicated / bifurcated median step latency per context and B).
#pragma once

#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "cli/bench_roofline.h"
#include "cli/bench_sweep.h"

namespace bifurcate::cli {

struct RowRoofline {
  StepCost cost;
  double read_bytes_per_second = 0;  // the bandwidth behind floor_seconds
  bool row_bandwidth = false;        // true: the row's own probes (median); false: the sweep's start figure
  double flops_per_second = 0;       // the FP32 FMA ceiling behind floor_seconds
  bool row_peak = false;             // as row_bandwidth, for the FMA ceiling
  double int8_ops_per_second = 0;    // the int8 ceiling: the sweep's, scaled as the row's FMA probe moved
  double floor_seconds = 0;
  double measured_over_floor = 0;  // median step latency / floor (a preempted step does not move it)
};

// The floor of one row's step (m_d from mean_decoded_tokens) with the row's
// own bandwidth and FMA ceiling where they were probed, else the machine's.
RowRoofline row_roofline(const BenchRow& row, const ModelCounts& counts, const MachineCeilings& machine,
                         int kv_elem_bytes);

struct BenchReport {
  std::string model_path;
  std::string model_name;  // general.name or the file name
  std::string machine;     // CPU model and thread count, for titles
  std::string date;        // ISO date-time of the run
  int threads = 0;
  std::string kv_type;
  ModelCounts counts;
  std::optional<MachineCeilings> ceilings;  // absent with --no-roofline
  std::vector<BenchRow> rows;
  std::vector<RowRoofline> roofline;  // one per row when ceilings are present (skipped rows: zeros)
};

// Fills report.roofline from report.ceilings (cleared when absent).
void compute_roofline(BenchReport& report, int kv_elem_bytes);

// The one-line summary of the machine's ceilings and the GEMM kernel's rate.
std::string describe_ceilings(const MachineCeilings& m);

// Markdown table, one row per (context, B, mode); skipped rows say what they
// need. The header/row/footer pieces let rows be printed as they are measured.
void print_rows_table(std::ostream& out, const BenchReport& report);
void print_rows_header(std::ostream& out);
void print_row(std::ostream& out, const BenchRow& row, const RowRoofline* roofline);  // roofline may be null
void print_rows_footer(std::ostream& out, const std::vector<BenchRow>& rows);
// Per row: each phase's bytes and FLOPs, the floor, and what bounds it (needs report.ceilings).
void print_floor_table(std::ostream& out, const BenchReport& report);
// Rows: context; columns: B; cells: replicated / bifurcated median step latency.
void print_speedup_table(std::ostream& out, const BenchReport& report);

// The CSV header's columns, in order (also the JSON row keys).
const std::vector<std::string>& csv_columns();
void write_csv(std::ostream& out, const BenchReport& report);
void write_json(std::ostream& out, const BenchReport& report);

// The speedup (median step latencies) of one (context, B), if both of its rows were measured.
std::optional<double> find_speedup(const std::vector<BenchRow>& rows, int context, int samples);

}  // namespace bifurcate::cli
