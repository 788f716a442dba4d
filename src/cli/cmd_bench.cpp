// `bifurcate bench`: the paper's measurement on this machine. Decode-step
// latency as the number of samples and the context grow, bifurcated vs
// replicated, with the machine's roofline, a CSV/JSON record and a plot.
#include <algorithm>
#include <charconv>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "cli/args.h"
#include "cli/bench_model.h"
#include "cli/bench_plot.h"
#include "cli/bench_report.h"
#include "cli/bench_roofline.h"
#include "cli/bench_sweep.h"
#include "cli/commands.h"
#include "cli/engine_flags.h"
#include "cli/interrupt.h"
#include "cli/output_file.h"
#include "cli/status_line.h"
#include "model/model.h"
#include "util/error.h"
#include "util/printable.h"
#include "util/memory_info.h"
#include "util/timer.h"

namespace bifurcate::cli {
namespace {

struct BenchArgs {
  std::string model;
  std::string npp = "2048,8192";
  int64_t ntg = 16;
  int64_t repeat = 1;
  std::string npl = "1,2,4,8,16,32";
  std::string attention = "bifurcated,replicated";
  int64_t threads = 0;
  std::string kv_type = "f16";
  double kv_budget_gib = 0;
  int64_t seed = 1;
  std::string gpu_layers;
  std::string csv;
  std::string json;
  std::string plot;
  bool no_plot = false;
  bool roofline = false;
  bool no_roofline = false;
  int64_t probe_mib = 1024;
  std::string model_cache;

  template <class Visitor>
  void for_each(Visitor& v) {
    v(model, "model", 'm', "GGUF model file (default: the 7b-mha-2l F16 random-weight model, created once)");
    v(npp, "npp", '\0', "context (prompt) lengths, comma-separated; each is prefilled once");
    v(ntg, "ntg", '\0', "timed decode steps per round (after one warm-up step)", IntRange{1, 100000});
    v(repeat, "repeat", '\0',
      "passes over the sweep, one round per row each (fresh sequences, warm-up, ntg timed "
      "steps; odd passes run the replicated rows first); a row's mean, median and attention share pool "
      "its repeat*ntg steps, T_TG is per round",
      IntRange{1, 10000});
    v(npl, "npl", '\0', "numbers of samples B, comma-separated");
    v(attention, "attention", 'a', "attention modes, comma-separated: bifurcated, replicated");
    v(threads, "threads", 't', "worker threads (0 = all hardware threads)", kThreadsRange);
    v(kv_type, "kv-type", '\0', "KV cache element type: f16 or f32");
    v(kv_budget_gib, "kv-budget-gib", '\0', "KV cache budget in GiB; rows that need more are skipped (0 = half of MemAvailable, as the engine)",
      RealRange{0, 1e6, true});
    v(seed, "seed", 's', "seed of the random prompt and decode tokens (-1 = random, printed)", kSeedRange);
    v(gpu_layers, "n-gpu-layers|gpu-layers", "ngl",
      "accepted for llama.cpp command lines and ignored: this engine runs on the CPU");
    v.moved("-j", "worker threads are -t/--threads (as in llama.cpp, where -j is --json-schema)");
    v(csv, "csv", '\0', "write every figure of every row to this CSV file");
    v(json, "json", '\0', "write every figure of every row to this JSON file");
    v(plot, "plot", '\0',
      "SVG plot of step latency vs B (and .png beside it when a converter exists); "
      "default: bench-latency.svg in the build directory, else the current directory");
    v(no_plot, "no-plot", '\0', "do not draw the plot");
    v(roofline, "roofline", '\0', "only measure the machine's ceilings and print each row's floor");
    v(no_roofline, "no-roofline", '\0',
      "skip measuring the ceilings before the sweep and the DRAM read "
      "bandwidth before each row (no BW/floor columns)");
    v(probe_mib, "probe-mib", '\0',
      "MiB the DRAM bandwidth probe reads (x3) before the sweep; before each row a quarter of it",
      IntRange{4, 1 << 20});
    v(model_cache, "model-cache", '\0',
      "directory of the default model (default: <build>/models or the user cache)");
  }
};

// Comma-separated positive integers, each at most `max`.
std::vector<int> parse_int_list(const std::string& text, const char* flag, int max) {
  std::vector<int> values;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    int64_t value = 0;
    const auto [end, ec] = std::from_chars(item.data(), item.data() + item.size(), value);
    if (item.empty() || ec != std::errc() || end != item.data() + item.size() || value < 1) {
      throw UsageError(str("flag --", flag, ": '", item, "' is not a positive integer (in '", text, "')"));
    }
    if (value > max) {
      throw UsageError(str("flag --", flag, ": ", value, " is out of range [1, ", max, "] (in '", text, "')"));
    }
    if (std::find(values.begin(), values.end(), int(value)) == values.end()) values.push_back(int(value));
  }
  if (values.empty()) throw UsageError(str("flag --", flag, ": needs at least one value"));
  return values;
}

std::vector<AttentionMode> parse_modes(const std::string& text) {
  std::vector<AttentionMode> modes;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    modes.push_back(parse_attention_flag(item));
  }
  if (modes.empty()) throw UsageError("flag --attention: needs at least one mode");
  return modes;
}

SweepConfig make_sweep_config(const BenchArgs& a) {
  SweepConfig c;
  c.contexts = parse_int_list(a.npp, "npp", 1 << 24);
  c.samples = parse_int_list(a.npl, "npl", 4096);
  c.modes = parse_modes(a.attention);
  c.ntg = int(a.ntg);  // range-checked by the parser
  c.repeat = int(a.repeat);
  c.kv_type = parse_kv_type_flag(a.kv_type) == KvPrecision::f32 ? kernels::KvType::f32 : kernels::KvType::f16;
  c.kv_budget_bytes = a.kv_budget_gib == 0 ? default_kv_budget_bytes() : parse_kv_budget_flag(a.kv_budget_gib);
  c.seed = resolve_seed_flag(a.seed);
  return c;
}

std::string default_plot_path() {
  const std::string build = build_directory();
  return (std::filesystem::path(build.empty() ? "." : build) / "bench-latency.svg").string();
}

// The command-line checks that involve more than one flag or the file
// system, all before the model is made or loaded: a typo in --csv must not
// cost a sweep.
void check_output_flags(const BenchArgs& a, const FlagParser& parser) {
  if (a.no_plot && parser.given("plot")) throw UsageError("flags --plot and --no-plot exclude each other");
  if (a.roofline && a.no_roofline) throw UsageError("flags --roofline and --no-roofline exclude each other");
  if (a.roofline) return;  // --roofline writes no files
  if (!a.csv.empty()) require_writable_path(a.csv, "--csv");
  if (!a.json.empty()) require_writable_path(a.json, "--json");
  if (!a.no_plot) require_writable_path(a.plot.empty() ? default_plot_path() : a.plot, "--plot");
}

std::string machine_description(int threads) {
  std::ifstream in("/proc/cpuinfo");
  std::string line, cpu = "unknown CPU";
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0 && line.find(':') != std::string::npos) {
      cpu = line.substr(line.find(':') + 2);
      break;
    }
  }
  return str(cpu, ", ", threads, " thread", threads == 1 ? "" : "s");
}

// The 1-minute load average: other work on the machine inflates every figure.
std::string load_average() {
  std::ifstream in("/proc/loadavg");
  std::string first;
  return in >> first ? first : std::string("unknown");
}

std::string now_text() {
  const std::time_t t = std::time(nullptr);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%d %H:%M", std::localtime(&t));
  return text;
}

void write_outputs(const BenchArgs& a, const BenchReport& report) {
  if (!a.csv.empty()) {
    std::ostringstream out;
    write_csv(out, report);
    write_output_file(a.csv, out.str());
    std::cout << "csv written to " << a.csv << '\n';
  }
  if (!a.json.empty()) {
    std::ostringstream out;
    write_json(out, report);
    write_output_file(a.json, out.str());
    std::cout << "json written to " << a.json << '\n';
  }
  if (a.no_plot) return;
  PlotSpec spec;
  spec.title = str("Decode-step latency vs samples: ", report.model_name);
  spec.subtitle =
      str(report.machine, ", KV ", report.kv_type, ", TG ", report.rows.empty() ? 0 : report.rows[0].ntg,
          report.ceilings ? ", " + describe_ceilings(*report.ceilings) : std::string(), ", ", report.date);
  spec.x_label = "samples B (log2)";
  spec.y_label = "median decode-step latency (ms, log)";  // as the speedup table and x floor
  spec.series = latency_series(report.rows);
  if (spec.series.empty()) {
    std::cout << "plot not written: no row was measured\n";
    return;
  }
  const std::string path = a.plot.empty() ? default_plot_path() : a.plot;
  const std::string png = write_plot(path, spec);
  std::cout << "plot written to " << path << (png.empty() ? "" : " and " + png) << '\n';
}

}  // namespace

int run_bench(int argc, char** argv) {
  BenchArgs args;
  FlagParser parser = make_flag_parser(args, "bench",
                                       "Measure decode-step latency vs number of samples and context length, "
                                       "bifurcated vs replicated, against this machine's roofline.");
  if (parser.parse(argc, argv) == ParseResult::kShowHelp) {
    std::cout << parser.help();
    return 0;
  }
  check_output_flags(args, parser);
  const SweepConfig config = make_sweep_config(args);
  const int threads_flag = parse_threads_flag(args.threads);
  note_gpu_layers_flag(args.gpu_layers);
  const int threads =
      threads_flag > 0 ? threads_flag : int(std::max(1u, std::thread::hardware_concurrency()));

  StatusLine progress;
  const std::string model_path = model_or_default(args.model, args.model_cache, progress);
  const auto model = model::Model::load(model_path);
  ThreadPool pool(threads);

  BenchReport report;
  report.model_path = model_path;
  // general.name is the file's bytes: escaped once here for the table, plot and records.
  report.model_name = printable(model->config().name.empty() ? std::filesystem::path(model_path).stem().string()
                                                             : model->config().name);
  report.machine = machine_description(threads);
  report.date = now_text();
  report.threads = threads;
  report.kv_type = args.kv_type;
  report.counts = count_model(model->config(), model->weights());
  const int kv_elem = int(kernels::kv_type_bytes(config.kv_type));
  std::cout << "model: " << printable(model_path) << " (" << report.model_name << ", " << model->config().n_layers
            << " layers, dim " << model->config().dim << ", " << model->config().n_heads << " heads / "
            << model->config().n_kv_heads << " KV heads, weights " << report.counts.matrix_bytes / 1e9
            << " GB)\n"
            << "machine: " << report.machine << ", " << report.date << ", load average " << load_average()
            << '\n';

  std::optional<MatmulProbe> peak_probe;  // made once: the sweep's start and every row's rounds use it
  if (!args.no_roofline) {
    progress.transient("roofline: measuring DRAM read bandwidth, FMA and int8 peaks, F16 GEMM kernel ...");
    peak_probe.emplace(make_peak_probe());
    report.ceilings = measure_machine_ceilings(pool, *peak_probe, std::size_t(args.probe_mib) << 20);
    progress.clear();
    std::cout << "roofline: " << describe_ceilings(*report.ceilings) << '\n';
  }
  if (args.roofline) {
    // Each planned row's floor, without running it.
    for (int pp : config.contexts) {
      for (AttentionMode mode : config.modes) {
        for (int b : config.samples) {
          report.rows.push_back(BenchRow{.context = pp, .ntg = config.ntg, .samples = b, .mode = mode});
        }
      }
    }
    compute_roofline(report, kv_elem);
    print_floor_table(std::cout, report);
    return 0;
  }

  if (config.repeat > 1) {
    std::cout << "rows: " << config.repeat << " rounds of 1 warm-up + " << config.ntg
              << " timed steps; step figures pool all " << config.repeat * config.ntg << " timed steps\n";
  }
  print_rows_header(std::cout);
  SweepHooks hooks;
  hooks.progress = [&](std::string_view line) {
    if (line.find(", step ") != std::string_view::npos || line.ends_with("...")) {
      progress.transient(line);
    } else {
      progress.lasting(line);
    }
  };
  if (report.ceilings) {
    // The bandwidth left to us swings between minutes on a shared machine:
    // each row's floor uses a figure taken right before it. A quarter of the
    // start's probe (by default 256 MiB, far above the L3), so this is DRAM.
    hooks.probe_bandwidth = [&] { return measure_read_bandwidth(pool, (std::size_t(args.probe_mib) << 20) / 4, 3); };
    // So does the compute (another guest on the core): the FMA ceiling too
    // (register loop, ~2 ms a round).
    hooks.probe_peak = [&] { return measure_fma_ceiling(pool); };
  }
  hooks.on_row = [&](const BenchRow& row) {
    progress.clear();
    std::optional<RowRoofline> f;
    if (report.ceilings) f = row_roofline(row, report.counts, *report.ceilings, kv_elem);
    print_row(std::cout, row, f ? &*f : nullptr);
    std::cout << std::flush;
  };
  InterruptScope interrupt;
  hooks.cancel = &InterruptScope::flag();
  report.rows = run_sweep(*model, config, pool, hooks);
  progress.clear();
  if (interrupt.raised()) {
    progress.lasting(str("interrupted: reporting the ", report.rows.size(),
                         " rows finished (a row keeps its whole rounds)"));
  }
  print_rows_footer(std::cout, report.rows);
  compute_roofline(report, kv_elem);

  std::cout << "load average at the end: " << load_average() << "\n";
  // The ratio needs both modes; with one (-a bifurcated) the table would be all dashes.
  const auto has = [&](AttentionMode m) {
    return std::find(config.modes.begin(), config.modes.end(), m) != config.modes.end();
  };
  if (has(AttentionMode::bifurcated) && has(AttentionMode::replicated)) {
    std::cout << '\n';
    print_speedup_table(std::cout, report);
  }
  write_outputs(args, report);
  return interrupt.raised() ? kInterruptedExitCode : 0;
}

}  // namespace bifurcate::cli
