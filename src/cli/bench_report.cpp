#include "cli/bench_report.h"

#include <algorithm>
#include <cstdio>
#include <variant>

#include "kernels/amx.h"
#include "kernels/isa.h"
#include "util/error.h"
#include "cli/json_output.h"

namespace bifurcate::cli {
namespace {

double gib(double bytes) { return bytes / double(std::size_t(1) << 30); }

std::string format(const char* spec, double value) {
  char text[64];
  std::snprintf(text, sizeof text, spec, value);
  return text;
}

// One row as named values; std::monostate is "not measured" (skipped row or no roofline).
using FieldValue = std::variant<std::monostate, double, int64_t, std::string>;
struct Field {
  std::string_view key;
  FieldValue value;
};

std::vector<Field> row_fields(const BenchRow& r, const RowRoofline* f) {
  const bool ran = !r.skipped;
  auto measured = [&](double v) { return ran ? FieldValue(v) : FieldValue(); };
  auto measured_int = [&](std::size_t v) { return ran ? FieldValue(int64_t(v)) : FieldValue(); };
  auto roof = [&](double v) { return f != nullptr ? FieldValue(v) : FieldValue(); };
  return {
      {"mode", std::string(attention_mode_name(r.mode))},
      {"status", std::string(ran ? "ok" : "skipped")},
      {"pp", int64_t(r.context)},
      {"tg", int64_t(r.ntg)},
      {"rounds", int64_t(r.rounds)},
      {"timed_steps", measured_int(std::size_t(r.timed_steps()))},
      {"b", int64_t(r.samples)},
      {"n_kv", r.n_kv()},
      {"t_pp", r.prefill_seconds},
      {"s_pp", r.s_pp()},
      {"t_tg", measured(r.decode_seconds)},
      {"s_tg", measured(r.s_tg())},
      {"t", measured(r.total_seconds())},
      {"s", measured(r.s_total())},
      {"step_ms_mean", measured(1e3 * r.step_mean_seconds)},
      {"step_ms_median", measured(1e3 * r.step_median_seconds)},
      {"step_ms_min", measured(1e3 * r.step_min_seconds)},
      {"step_ms_max", measured(1e3 * r.step_max_seconds)},
      {"attention_share", measured(r.attention_share)},
      {"kv_bytes", measured_int(r.kv_bytes)},
      {"kv_needed_bytes", int64_t(r.kv_needed_bytes)},
      {"kv_budget_bytes", int64_t(r.kv_budget_bytes)},
      {"peak_rss_bytes", measured_int(r.peak_rss_bytes)},
      {"rss_scope", ran ? FieldValue(std::string(r.rss_reset ? "row" : "process")) : FieldValue()},
      {"weights_bytes", roof(f ? f->cost.weights.bytes : 0)},
      {"weights_flops", roof(f ? f->cost.weights.flops : 0)},
      {"attention_bytes", roof(f ? f->cost.attention.bytes : 0)},
      {"attention_flops", roof(f ? f->cost.attention.flops : 0)},
      {"read_gb_per_s", roof(f ? f->read_bytes_per_second / 1e9 : 0)},
      {"bw_scope", f ? FieldValue(std::string(f->row_bandwidth ? "row" : "sweep")) : FieldValue()},
      {"fma_gflop_per_s", roof(f ? f->flops_per_second / 1e9 : 0)},
      {"peak_scope", f ? FieldValue(std::string(f->row_peak ? "row" : "sweep")) : FieldValue()},
      {"int8_gop_per_s", roof(f ? f->int8_ops_per_second / 1e9 : 0)},
      {"floor_ms", roof(f ? 1e3 * f->floor_seconds : 0)},
      {"measured_over_floor", ran && f ? FieldValue(f->measured_over_floor) : FieldValue()},
  };
}

const RowRoofline* roofline_of(const BenchReport& report, std::size_t i) {
  return report.roofline.size() == report.rows.size() ? &report.roofline[i] : nullptr;
}

std::vector<int> distinct(const std::vector<BenchRow>& rows, int BenchRow::*member) {
  std::vector<int> values;
  for (const BenchRow& r : rows) {
    if (std::find(values.begin(), values.end(), r.*member) == values.end()) values.push_back(r.*member);
  }
  return values;
}

const BenchRow* find_row(const std::vector<BenchRow>& rows, int context, int samples, AttentionMode mode) {
  for (const BenchRow& r : rows) {
    if (r.context == context && r.samples == samples && r.mode == mode) return &r;
  }
  return nullptr;
}

}  // namespace

RowRoofline row_roofline(const BenchRow& row, const ModelCounts& counts, const MachineCeilings& machine,
                         int kv_elem_bytes) {
  RowRoofline f;
  f.cost = decode_step_cost(counts, row.samples, row.context, mean_decoded_tokens(row.ntg),
                            row.mode == AttentionMode::bifurcated, kv_elem_bytes);
  f.row_bandwidth = row.read_bytes_per_second > 0;
  f.read_bytes_per_second = f.row_bandwidth ? row.read_bytes_per_second : machine.read_bytes_per_second;
  f.row_peak = row.flops_per_second > 0;
  f.flops_per_second = f.row_peak ? row.flops_per_second : machine.flops_per_second;
  // The int8 loops are not re-probed per row: they share the core with the
  // FMA loop, so they are taken to move by the same factor. AMX's where the
  // row's batch runs AMX tiles.
  const MachineCeilings path = ceilings_for_rows(machine, row.samples);
  f.int8_ops_per_second = path.int8_ops_per_second > 0 && machine.flops_per_second > 0
                              ? path.int8_ops_per_second * f.flops_per_second / machine.flops_per_second
                              : f.flops_per_second;
  f.floor_seconds =
      floor_seconds(f.cost, MachineCeilings{f.read_bytes_per_second, f.flops_per_second, f.int8_ops_per_second});
  f.measured_over_floor = row.skipped ? 0 : row.step_median_seconds / f.floor_seconds;
  return f;
}

void compute_roofline(BenchReport& report, int kv_elem_bytes) {
  report.roofline.clear();
  if (!report.ceilings) return;
  for (const BenchRow& r : report.rows) {
    report.roofline.push_back(row_roofline(r, report.counts, *report.ceilings, kv_elem_bytes));
  }
}

std::string describe_ceilings(const MachineCeilings& m) {
  std::string text = str("DRAM read ", format("%.1f", m.read_bytes_per_second / 1e9), " GB/s, FP32 FMA ",
                         format("%.1f", m.flops_per_second / 1e9), " GFLOP/s");
  if (m.int8_ops_per_second > 0) text += str(", int8 dot ", format("%.1f", m.int8_ops_per_second / 1e9), " GOP/s");
  if (m.amx_int8_ops_per_second > 0)
    text += str(", AMX int8 ", format("%.1f", m.amx_int8_ops_per_second / 1e9), " GOP/s (quantized batches >= ",
                kernels::kAmxMinBatch, ")");
  if (m.gemm_flops_per_second > 0 && m.flops_per_second > 0) {
    text += str(" (register loops); F16 GEMM kernel ", format("%.1f", m.gemm_flops_per_second / 1e9),
                " GFLOP/s = ", format("%.0f", 100 * m.gemm_flops_per_second / m.flops_per_second), " % of FMA");
  }
  // The register loops use the widest instructions of the kernels' path.
  text += str("; ", kernels::isa_name(kernels::active_isa()), " kernels");
  return text;
}

void print_rows_header(std::ostream& out) {
  out << "|       mode |    PP |  TG |   B |   N_KV | T_PP s | S_PP t/s | T_TG s | S_TG t/s |    T s |  S t/s "
         "| step ms | med ms | attn % | KV GiB | RSS GiB | BW GB/s | FMA GF/s | floor ms | x floor |\n"
         "|------------|-------|-----|-----|--------|--------|----------|--------|----------|--------|--------"
         "|---------|--------|--------|--------|---------|---------|----------|----------|---------|\n";
}

void print_row(std::ostream& out, const BenchRow& r, const RowRoofline* f) {
  char head[160];
  std::snprintf(head, sizeof head, "| %10s | %5d | %3d | %3d | %6lld | %6.2f | %8.1f |",
                std::string(attention_mode_name(r.mode)).c_str(), r.context, r.ntg, r.samples, (long long)r.n_kv(),
                r.prefill_seconds, r.s_pp());
  out << head;
  if (r.skipped) {
    out << " skipped: " << r.skip_reason() << " |\n";
    return;
  }
  char tail[256];
  std::snprintf(tail, sizeof tail, " %6.2f | %8.1f | %6.2f | %6.1f | %7.2f | %6.2f | %6.1f | %6.3f | %6.2f%s |",
                r.decode_seconds, r.s_tg(), r.total_seconds(), r.s_total(), 1e3 * r.step_mean_seconds,
                1e3 * r.step_median_seconds, 100 * r.attention_share, gib(double(r.kv_bytes)),
                gib(double(r.peak_rss_bytes)), r.rss_reset ? " " : "*");
  out << tail;
  if (f != nullptr) {
    std::snprintf(tail, sizeof tail, " %7.1f | %8.1f | %8.1f | %7.2f |\n", f->read_bytes_per_second / 1e9,
                  f->flops_per_second / 1e9, 1e3 * f->floor_seconds, f->measured_over_floor);
    out << tail;
  } else {
    out << "       - |       - |        - |       - |\n";
  }
}

void print_rows_footer(std::ostream& out, const std::vector<BenchRow>& rows) {
  bool any_process_peak = false;
  for (const BenchRow& r : rows) any_process_peak |= !r.skipped && !r.rss_reset;
  if (any_process_peak) out << "* process peak (the peak RSS could not be reset per row)\n";
}

void print_rows_table(std::ostream& out, const BenchReport& report) {
  print_rows_header(out);
  for (std::size_t i = 0; i < report.rows.size(); ++i) print_row(out, report.rows[i], roofline_of(report, i));
  print_rows_footer(out, report.rows);
}

void print_floor_table(std::ostream& out, const BenchReport& report) {
  out << "|       mode |    PP |   B | weights MB | weights MFLOP |  attn MB | attn MFLOP | floor ms | bound |\n"
         "|------------|-------|-----|------------|---------------|----------|------------|----------|-------|\n";
  for (std::size_t i = 0; i < report.rows.size() && i < report.roofline.size(); ++i) {
    const BenchRow& r = report.rows[i];
    const RowRoofline& f = report.roofline[i];
    const MachineCeilings m{f.read_bytes_per_second, f.flops_per_second, f.int8_ops_per_second};
    const auto compute = [&m](const PhaseCost& p) {
      return (p.flops - p.int8_flops) / m.flops_per_second + p.int8_flops / m.int8_ops_per_second;
    };
    // The phase that dominates the floor, and whether it is bytes or FLOPs there.
    const double w = std::max(f.cost.weights.bytes / m.read_bytes_per_second, compute(f.cost.weights));
    const PhaseCost& p = f.floor_seconds - w > w ? f.cost.attention : f.cost.weights;
    const bool memory = p.bytes / m.read_bytes_per_second >= compute(p);
    char line[200];
    std::snprintf(line, sizeof line, "| %10s | %5d | %3d | %10.2f | %13.1f | %8.2f | %10.1f | %8.3f | %5s |\n",
                  std::string(attention_mode_name(r.mode)).c_str(), r.context, r.samples, f.cost.weights.bytes / 1e6,
                  f.cost.weights.flops / 1e6, f.cost.attention.bytes / 1e6, f.cost.attention.flops / 1e6,
                  1e3 * f.floor_seconds, memory ? "bytes" : "flops");
    out << line;
  }
}

std::optional<double> find_speedup(const std::vector<BenchRow>& rows, int context, int samples) {
  const BenchRow* b = find_row(rows, context, samples, AttentionMode::bifurcated);
  const BenchRow* r = find_row(rows, context, samples, AttentionMode::replicated);
  if (b == nullptr || r == nullptr || b->skipped || r->skipped || b->step_median_seconds <= 0) return std::nullopt;
  return r->step_median_seconds / b->step_median_seconds;
}

void print_speedup_table(std::ostream& out, const BenchReport& report) {
  std::vector<int> samples = distinct(report.rows, &BenchRow::samples);
  std::sort(samples.begin(), samples.end());
  out << "speedup (replicated / bifurcated median decode-step latency)\n|  context |";
  for (int b : samples) {
    char cell[32];
    std::snprintf(cell, sizeof cell, " %7s |", str("B=", b).c_str());
    out << cell;
  }
  out << "\n|----------|";
  for (std::size_t i = 0; i < samples.size(); ++i) out << "---------|";
  out << '\n';
  for (int context : distinct(report.rows, &BenchRow::context)) {
    out << format("| %8.0f |", context);
    for (int b : samples) {
      const std::optional<double> s = find_speedup(report.rows, context, b);
      const BenchRow* rep = find_row(report.rows, context, b, AttentionMode::replicated);
      out << (s ? format(" %6.2fx |", *s) : rep && rep->skipped ? std::string(" skipped |") : std::string("       - |"));
    }
    out << '\n';
  }
}

const std::vector<std::string>& csv_columns() {
  static const std::vector<std::string> columns = [] {
    std::vector<std::string> names;
    for (const Field& f : row_fields(BenchRow{}, nullptr)) names.emplace_back(f.key);
    return names;
  }();
  return columns;
}

void write_csv(std::ostream& out, const BenchReport& report) {
  const std::vector<std::string>& columns = csv_columns();
  for (std::size_t c = 0; c < columns.size(); ++c) out << (c ? "," : "") << columns[c];
  out << '\n';
  for (std::size_t i = 0; i < report.rows.size(); ++i) {
    bool first = true;
    for (const Field& f : row_fields(report.rows[i], roofline_of(report, i))) {
      if (!first) out << ',';
      first = false;
      std::visit(
          [&](const auto& v) {
            using T = std::decay_t<decltype(v)>;
            if constexpr (std::is_same_v<T, double>) {
              out << format("%.9g", v);
            } else if constexpr (!std::is_same_v<T, std::monostate>) {
              out << v;  // strings are plain words (mode, status, scope): no quoting needed
            }
          },
          f.value);
    }
    out << '\n';
  }
}

void write_json(std::ostream& out, const BenchReport& report) {
  Json rows = Json::array();
  for (std::size_t i = 0; i < report.rows.size(); ++i) {
    Json row = Json::object();
    for (const Field& f : row_fields(report.rows[i], roofline_of(report, i))) {
      std::visit(
          [&](const auto& v) {
            if constexpr (std::is_same_v<std::decay_t<decltype(v)>, std::monostate>) {
              row[std::string(f.key)] = nullptr;
            } else {
              row[std::string(f.key)] = v;
            }
          },
          f.value);
    }
    rows.push_back(std::move(row));
  }
  Json speedup = Json::array();
  for (int context : distinct(report.rows, &BenchRow::context)) {
    for (int b : distinct(report.rows, &BenchRow::samples)) {
      const std::optional<double> s = find_speedup(report.rows, context, b);
      if (s) speedup.push_back({{"pp", context}, {"b", b}, {"replicated_over_bifurcated", *s}});
    }
  }
  Json ceilings = nullptr;
  if (report.ceilings) {
    ceilings = {{"read_bytes_per_second", report.ceilings->read_bytes_per_second},
                {"flops_per_second", report.ceilings->flops_per_second},
                {"int8_ops_per_second", report.ceilings->int8_ops_per_second},
                {"amx_int8_ops_per_second", report.ceilings->amx_int8_ops_per_second},
                {"gemm_flops_per_second", report.ceilings->gemm_flops_per_second}};
  }
  print_json(out, {{"model", report.model_path},
                   {"model_name", report.model_name},
                   {"machine", report.machine},
                   {"date", report.date},
                   {"threads", report.threads},
                   {"kv_type", report.kv_type},
                   {"ceilings", std::move(ceilings)},
                   {"rows", std::move(rows)},
                   {"speedup", std::move(speedup)}});
}

}  // namespace bifurcate::cli
