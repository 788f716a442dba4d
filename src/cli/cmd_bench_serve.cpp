// `bifurcate bench-serve`: the shared-prefix serving workload
// (serve_workload.h) run in process through Engine::generate from one
// thread per request, open-loop, once per (mode, rate): the tree (bifurcated
// attention + prefix cache) against replicated attention without a cache.
// Reports TTFT and inter-token latency percentiles, throughput, cache hit
// rate, KV peak, the scheduler's share of the model thread, and the steady
// decode step (steps of decode rows only) against its roofline floor:
// weights + the KV its plans read / the DRAM bandwidth, and its FLOPs / the
// FMA ceiling (bench_roofline.h; both probed right before the run).
#include <algorithm>
#include <atomic>
#include <cmath>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <thread>

#include "cli/args.h"
#include "cli/bench_model.h"
#include "cli/bench_plot.h"
#include "cli/bench_roofline.h"
#include "cli/commands.h"
#include "cli/engine_flags.h"
#include "cli/serve_workload.h"
#include "cli/status_line.h"
#include "util/error.h"
#include "cli/json_output.h"
#include "kernels/amx.h"
#include "kernels/peak_probe.h"
#include "model/model.h"
#include "util/thread_pool.h"
#include "util/timer.h"

namespace bifurcate::cli {
namespace {

struct BenchServeArgs {
  std::string model;
  int64_t groups = 4, questions = 8, system_tokens = 2048, question_tokens = 64, samples = 4, max_tokens = 64;
  std::string rates = "0";
  std::string modes = "tree,replicated";
  int64_t threads = 0;
  std::string kv_type = "f16";
  double kv_budget_gib = 0;
  int64_t step_tokens = EngineOptions{}.step_tokens;
  int64_t probe_mib = 1024;
  uint64_t seed = 1;
  std::string json, csv, plot, workload_out, model_cache;

  template <class Visitor>
  void for_each(Visitor& v) {
    v(model, "model", 'm', "GGUF model file (default: bench's 7b-mha-2l F16 random-weight model, created once)");
    v(groups, "groups", 'G', "groups of requests sharing a system prompt");
    v(questions, "questions", 'Q', "requests per group");
    v(system_tokens, "system-tokens", 'S', "system prompt tokens (shared within a group)");
    v(question_tokens, "question-tokens", 'U', "tokens of each request's own question");
    v(samples, "samples", 'n', "samples per request");
    v(max_tokens, "max-tokens", 'T', "tokens generated per sample (EOS ignored)");
    v(rates, "rate", 'R', "Poisson arrival rates in requests/s, comma-separated; 0 = all at once");
    v(modes, "modes", '\0', "tree (bifurcated + prefix cache), bifurcated (no cache), replicated (no cache)");
    v(threads, "threads", 't', "worker threads (0 = all hardware threads)");
    v(kv_type, "kv-type", '\0', "KV cache element type: f16 or f32");
    v(kv_budget_gib, "kv-budget-gib", '\0', "KV cache budget in GiB (0 = the engine's default: half of MemAvailable)");
    v(step_tokens, "step-tokens", '\0', "rows per forward pass (decode rows, then prefill chunks)");
    v(probe_mib, "probe-mib", '\0', "MiB the DRAM bandwidth probe reads (x3) before each run, for the roofline floor");
    v(seed, "seed", 's', "seed of the workload's tokens and arrivals and of the sampling");
    v(json, "json", '\0', "write every run's figures to this JSON file");
    v(csv, "csv", '\0', "write every run's figures to this CSV file");
    v(plot, "plot", '\0', "SVG plot of TTFT p50 and throughput vs rate (needs a rate > 0)");
    v(workload_out, "workload-out", '\0', "write the workload (every rate) as JSON for other clients");
    v(model_cache, "model-cache", '\0', "directory of the default model");
  }
};

struct Mode {
  std::string name;
  bifurcate::AttentionMode attention;
  bool prefix_cache;
};

std::vector<Mode> parse_modes(const std::string& text) {
  std::vector<Mode> modes;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (item == "tree") modes.push_back({item, bifurcate::AttentionMode::bifurcated, true});
    else if (item == "bifurcated") modes.push_back({item, bifurcate::AttentionMode::bifurcated, false});
    else if (item == "replicated") modes.push_back({item, bifurcate::AttentionMode::replicated, false});
    else throw UsageError(str("flag --modes: unknown mode '", item, "' (expected tree, bifurcated, replicated)"));
  }
  if (modes.empty()) throw UsageError("flag --modes: needs at least one mode");
  return modes;
}

std::vector<double> parse_rates(const std::string& text) {
  std::vector<double> rates;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    char* end = nullptr;
    const double r = std::strtod(item.c_str(), &end);
    if (item.empty() || *end != '\0' || !(r >= 0) || !std::isfinite(r))
      throw UsageError(str("flag --rate: '", item, "' is not a rate >= 0 (in '", text, "')"));
    rates.push_back(r);
  }
  if (rates.empty()) throw UsageError("flag --rate: needs at least one value");
  return rates;
}

int checked(int64_t value, const char* flag, int64_t lo, int64_t hi) {
  if (value < lo || value > hi) throw UsageError(str("flag --", flag, ": ", value, " is out of range [", lo, ", ", hi, "]"));
  return int(value);
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t rank = size_t(std::ceil(p / 100.0 * double(v.size())));
  return v[std::min(v.size() - 1, rank == 0 ? 0 : rank - 1)];
}

struct RunFigures {
  std::string mode;
  double rate = 0;
  int requests = 0, sequences = 0;
  double wall_seconds = 0;
  double ttft_ms[3] = {0, 0, 0};  // p50, p90, p99
  double itl_ms[3] = {0, 0, 0};
  int64_t generated_tokens = 0;
  double tokens_per_second = 0;
  double cache_hit_rate = 0;
  double kv_peak_gib = 0;
  double forward_seconds = 0, step_seconds = 0;
  double scheduler_share = 0;  // (step - forward) / wall
  int64_t steps = 0;
  // The decode-only steps: mean seconds, mean rows, and their roofline floor
  // from the probes taken before the run (0: no decode-only step).
  int64_t decode_steps = 0;
  double decode_step_seconds = 0, decode_rows = 0, floor_seconds = 0;
  double read_bytes_per_second = 0, flops_per_second = 0;
};

// What the roofline needs beside a run's figures: the model's counts and a pool to probe with.
struct RooflineInputs {
  ModelCounts counts;
  int kv_elem_bytes = 2;
  std::size_t probe_bytes = std::size_t(1) << 30;
  ThreadPool* pool = nullptr;
};

// Per request, written on the model thread during its generate() and read after it returns.
struct RequestTrace {
  std::vector<double> last_token;  // per sample: time of its previous token (0: none yet)
  std::vector<double> gaps;        // inter-token intervals of all its samples
};

RunFigures run_workload(const EngineOptions& options, const Mode& mode, const ServeWorkloadSpec& spec,
                        const RooflineInputs& roofline) {
  MachineCeilings ceilings;  // probed before the engine starts its threads
  std::cerr << "  " << mode.name << ": probing DRAM read bandwidth and the FMA ceiling ...\n";
  ceilings.read_bytes_per_second = measure_read_bandwidth(*roofline.pool, roofline.probe_bytes, 3);
  ceilings.flops_per_second = measure_fma_ceiling(*roofline.pool);
  ceilings.int8_ops_per_second = kernels::int8_dot_ceiling_ops(*roofline.pool, 5);  // quantized models' matmuls
  ceilings.amx_int8_ops_per_second = kernels::amx_int8_ceiling_ops(*roofline.pool, 5);
  EngineOptions o = options;
  o.attention = mode.attention;
  o.prefix_cache = mode.prefix_cache;
  Engine engine(o);
  const std::vector<ServeWorkloadRequest> workload = make_serve_workload(spec);
  const size_t n = workload.size();
  std::vector<GenerationResult> results(n);
  std::vector<RequestTrace> traces(n);
  std::vector<std::string> errors(n);
  std::vector<double> finished(n, 0);
  std::atomic<int> done{0};
  const double t0 = now_seconds();
  std::vector<std::thread> clients;
  for (size_t i = 0; i < n; ++i) {
    clients.emplace_back([&, i] {
      const ServeWorkloadRequest& w = workload[i];
      std::this_thread::sleep_until(std::chrono::steady_clock::time_point(
          std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(t0 + w.arrival_seconds))));
      GenerationRequest r;
      r.prompt_tokens = w.prompt_tokens;
      r.n = w.n;
      r.max_tokens = w.max_tokens;
      r.ignore_eos = true;
      r.ranking = Ranking::none;
      r.sampling.temperature = 0.8f;
      r.sampling.seed = spec.seed + i;
      RequestTrace& trace = traces[i];
      trace.last_token.assign(size_t(w.n), 0);
      GenerationCallbacks cb;
      cb.on_token = [&trace](int index, const TokenEvent&) {
        const double t = now_seconds();
        double& last = trace.last_token[size_t(index)];
        if (last > 0) trace.gaps.push_back(t - last);
        last = t;
      };
      try {
        results[i] = engine.generate(r, cb);
      } catch (const std::exception& e) {
        errors[i] = e.what();
      }
      finished[i] = now_seconds();
      ++done;
    });
  }
  StatusLine progress;  // overwrites itself on a terminal; silent in a log
  while (done.load() < int(n)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    const EngineStatus s = engine.status();
    progress.transient(str("  ", mode.name, " rate ", spec.rate, ": ", done.load(), "/", n, " done, ",
                           s.running_requests, " running, ", s.queued_requests, " queued, KV ",
                           std::lround(100 * double(s.kv_bytes_used) / double(1 << 30)) / 100.0, " GiB"));
  }
  for (auto& t : clients) t.join();
  progress.lasting(str("  ", mode.name, " rate ", spec.rate, ": ", n, " requests done in ",
                       std::lround(10 * (now_seconds() - t0)) / 10.0, " s"));
  for (size_t i = 0; i < n; ++i)
    if (!errors[i].empty()) throw Error(str("bench-serve: request ", i, " failed: ", errors[i]));

  RunFigures f;
  f.mode = mode.name;
  f.rate = spec.rate;
  f.requests = int(n);
  f.wall_seconds = *std::max_element(finished.begin(), finished.end()) - t0;
  std::vector<double> ttft, itl;
  int64_t prompt = 0, cached = 0;
  size_t kv_peak = 0;
  for (size_t i = 0; i < n; ++i) {
    const GenerationStats& s = results[i].stats;
    ttft.push_back(s.first_token_seconds * 1e3);
    for (double g : traces[i].gaps) itl.push_back(g * 1e3);
    f.generated_tokens += s.generated_tokens;
    f.sequences += int(results[i].samples.size());
    prompt += s.prompt_tokens;
    cached += s.cached_prompt_tokens;
    kv_peak = std::max(kv_peak, s.kv_bytes_peak);
  }
  const double ps[3] = {50, 90, 99};
  for (int k = 0; k < 3; ++k) f.ttft_ms[k] = percentile(ttft, ps[k]), f.itl_ms[k] = percentile(itl, ps[k]);
  f.tokens_per_second = double(f.generated_tokens) / f.wall_seconds;
  f.cache_hit_rate = prompt > 0 ? double(cached) / double(prompt) : 0;
  f.kv_peak_gib = double(kv_peak) / double(1 << 30);
  const EngineStatus s = engine.status();
  f.steps = s.steps;
  f.step_seconds = s.step_seconds;
  f.forward_seconds = s.forward_seconds;
  f.scheduler_share = (s.step_seconds - s.forward_seconds) / f.wall_seconds;
  f.read_bytes_per_second = ceilings.read_bytes_per_second;
  f.flops_per_second = ceilings.flops_per_second;
  f.decode_steps = s.decode_steps;
  if (s.decode_steps > 0) {
    const double n_steps = double(s.decode_steps);
    f.decode_step_seconds = s.decode_forward_seconds / n_steps;
    f.decode_rows = double(s.decode_rows) / n_steps;
    const StepCost mean_step = step_cost_from_plan(roofline.counts, f.decode_rows, double(s.decode_keys_read) / n_steps,
                                                   double(s.decode_row_keys) / n_steps, roofline.kv_elem_bytes);
    f.floor_seconds = floor_seconds(mean_step, ceilings_for_rows(ceilings, f.decode_rows));
  }
  return f;
}

void print_table(std::ostream& out, const std::vector<RunFigures>& runs) {
  out << "| mode | rate/s | wall s | TTFT p50/p90/p99 ms | ITL p50/p90/p99 ms | gen tok/s | cache hit | KV peak GiB | "
         "steps | forward s | sched % | decode step ms (rows) | floor ms | x floor | BW GB/s | FMA GF/s |\n"
         "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
  out << std::fixed;
  for (const RunFigures& f : runs) {
    out << "| " << f.mode << " | " << (f.rate > 0 ? str(f.rate) : std::string("all")) << " | " << std::setprecision(1)
        << f.wall_seconds << " | " << std::setprecision(0) << f.ttft_ms[0] << " / " << f.ttft_ms[1] << " / "
        << f.ttft_ms[2] << " | " << std::setprecision(1) << f.itl_ms[0] << " / " << f.itl_ms[1] << " / "
        << f.itl_ms[2] << " | " << f.tokens_per_second << " | " << std::setprecision(3) << f.cache_hit_rate << " | "
        << f.kv_peak_gib << " | " << f.steps << " | " << std::setprecision(1) << f.forward_seconds << " | "
        << std::setprecision(2) << 100 * f.scheduler_share << " | " << std::setprecision(1)
        << 1e3 * f.decode_step_seconds << " (" << std::setprecision(0) << f.decode_rows << ") | "
        << std::setprecision(1) << 1e3 * f.floor_seconds << " | " << std::setprecision(2)
        << (f.floor_seconds > 0 ? f.decode_step_seconds / f.floor_seconds : 0) << " | " << std::setprecision(1)
        << f.read_bytes_per_second / 1e9 << " | " << std::setprecision(0) << f.flops_per_second / 1e9 << " |\n";
  }
}

void write_json(std::ostream& out, const ServeWorkloadSpec& spec, const std::vector<RunFigures>& runs) {
  Json list = Json::array();
  for (const RunFigures& f : runs) {
    Json run = {{"mode", f.mode}, {"rate", f.rate}, {"requests", f.requests}, {"sequences", f.sequences},
                {"wall_seconds", f.wall_seconds}};
    const char* names[3] = {"p50", "p90", "p99"};
    for (int k = 0; k < 3; ++k) run[str("ttft_ms_", names[k])] = f.ttft_ms[k];
    for (int k = 0; k < 3; ++k) run[str("itl_ms_", names[k])] = f.itl_ms[k];
    run["generated_tokens"] = f.generated_tokens, run["tokens_per_second"] = f.tokens_per_second;
    run["cache_hit_rate"] = f.cache_hit_rate, run["kv_peak_gib"] = f.kv_peak_gib;
    run["steps"] = f.steps, run["step_seconds"] = f.step_seconds;
    run["forward_seconds"] = f.forward_seconds, run["scheduler_share"] = f.scheduler_share;
    run["decode_steps"] = f.decode_steps, run["decode_step_seconds"] = f.decode_step_seconds;
    run["decode_rows"] = f.decode_rows, run["floor_seconds"] = f.floor_seconds;
    run["read_bytes_per_second"] = f.read_bytes_per_second, run["flops_per_second"] = f.flops_per_second;
    list.push_back(std::move(run));
  }
  print_json(out, {{"workload",
                    {{"groups", spec.groups},
                     {"questions", spec.questions},
                     {"system_tokens", spec.system_tokens},
                     {"question_tokens", spec.question_tokens},
                     {"samples", spec.samples},
                     {"max_tokens", spec.max_tokens},
                     {"seed", spec.seed}}},
                   {"runs", std::move(list)}});
}

void write_csv(std::ostream& out, const std::vector<RunFigures>& runs) {
  out << "mode,rate,requests,sequences,wall_seconds,ttft_ms_p50,ttft_ms_p90,ttft_ms_p99,itl_ms_p50,itl_ms_p90,"
         "itl_ms_p99,generated_tokens,tokens_per_second,cache_hit_rate,kv_peak_gib,steps,step_seconds,"
         "forward_seconds,scheduler_share,decode_steps,decode_step_seconds,decode_rows,floor_seconds,"
         "read_bytes_per_second,flops_per_second\n";
  for (const RunFigures& f : runs) {
    out << f.mode << ',' << f.rate << ',' << f.requests << ',' << f.sequences << ',' << f.wall_seconds;
    for (double v : f.ttft_ms) out << ',' << v;
    for (double v : f.itl_ms) out << ',' << v;
    out << ',' << f.generated_tokens << ',' << f.tokens_per_second << ',' << f.cache_hit_rate << ',' << f.kv_peak_gib
        << ',' << f.steps << ',' << f.step_seconds << ',' << f.forward_seconds << ',' << f.scheduler_share << ','
        << f.decode_steps << ',' << f.decode_step_seconds << ',' << f.decode_rows << ',' << f.floor_seconds << ','
        << f.read_bytes_per_second << ',' << f.flops_per_second << '\n';
  }
}

// TTFT p50 (ms) and throughput (tokens/s) against the rate, one line per mode; rate 0 rows are left out.
void write_plots(const std::string& path, const std::vector<Mode>& modes, const std::vector<RunFigures>& runs) {
  for (int which = 0; which < 2; ++which) {
    PlotSpec spec;
    spec.title = which == 0 ? "Time to first token vs arrival rate" : "Generated tokens/s vs arrival rate";
    spec.subtitle = "bifurcate bench-serve: shared-prefix workload";
    spec.x_label = "arrival rate (requests/s)";
    spec.y_label = which == 0 ? "TTFT p50 (ms)" : "throughput (tokens/s)";
    for (size_t m = 0; m < modes.size(); ++m) {
      PlotSeries series;
      series.label = modes[m].name;
      series.dashed = modes[m].attention == bifurcate::AttentionMode::replicated;
      series.colour = int(m);
      for (const RunFigures& f : runs)
        if (f.mode == modes[m].name && f.rate > 0)
          series.points.emplace_back(f.rate, which == 0 ? f.ttft_ms[0] : f.tokens_per_second);
      if (!series.points.empty()) spec.series.push_back(series);
    }
    if (spec.series.empty()) {
      std::cerr << "no plot: no run with a rate > 0\n";
      return;
    }
    const std::string file = which == 0 ? path : path.substr(0, path.rfind(".svg")) + "-throughput.svg";
    write_plot(file, spec);
    std::cerr << "plot: " << file << '\n';
  }
}

}  // namespace

int run_bench_serve(int argc, char** argv) {
  BenchServeArgs a;
  FlagParser parser = make_flag_parser(a, "bench-serve",
                                       "Many concurrent requests sharing system prompts, in process: the prefix tree vs "
                                       "replicated attention without a cache.");
  if (parser.parse(argc, argv) == ParseResult::kShowHelp) {
    std::cout << parser.help();
    return 0;
  }
  ServeWorkloadSpec spec;
  spec.groups = checked(a.groups, "groups", 1, 10000);
  spec.questions = checked(a.questions, "questions", 1, 10000);
  spec.system_tokens = checked(a.system_tokens, "system-tokens", 0, 1 << 20);
  spec.question_tokens = checked(a.question_tokens, "question-tokens", 0, 1 << 20);
  spec.samples = checked(a.samples, "samples", 1, 4096);
  spec.max_tokens = checked(a.max_tokens, "max-tokens", 1, 1 << 20);
  spec.seed = a.seed;
  const std::vector<Mode> modes = parse_modes(a.modes);
  const std::vector<double> rates = parse_rates(a.rates);
  EngineOptions options;
  options.threads = parse_threads_flag(a.threads);
  options.kv_precision = parse_kv_type_flag(a.kv_type);
  options.kv_budget_bytes = a.kv_budget_gib == 0 ? 0 : parse_kv_budget_flag(a.kv_budget_gib);
  options.step_tokens = checked(a.step_tokens, "step-tokens", 1, 1 << 16);
  options.max_queued_requests = spec.groups * spec.questions;
  StatusLine status;
  options.model_path = model_or_default(a.model, a.model_cache, status);
  {
    EngineOptions probe = options;  // the vocabulary size for the workload's token ids
    const ModelInfo info = Engine(probe).model_info();
    // Requests generate text (stop strings, detokenized pieces): refuse now, not after the probes.
    require(info.has_vocabulary, options.model_path, " has no vocabulary (a model made by `bifurcate make-model` "
            "without --vocab); bench-serve's requests need one: make it with --vocab VOCAB.gguf");
    spec.n_vocab = info.n_vocab;
  }
  if (!a.workload_out.empty()) {
    std::ofstream out(a.workload_out);
    for (double r : rates) {
      ServeWorkloadSpec s = spec;
      s.rate = r;
      write_serve_workload_json(out, s, make_serve_workload(s));  // one JSON document per line and rate
    }
    require(bool(out), "could not write ", a.workload_out);
  }
  std::cerr << "bench-serve: " << spec.groups << " groups x " << spec.questions << " requests, system "
            << spec.system_tokens << " + question " << spec.question_tokens << " tokens, n " << spec.samples
            << ", " << spec.max_tokens << " tokens each\n";
  RooflineInputs roofline;
  {
    const auto model = model::Model::load(options.model_path);
    roofline.counts = count_model(model->config(), model->weights());
  }
  roofline.kv_elem_bytes = options.kv_precision == KvPrecision::f32 ? 4 : 2;
  roofline.probe_bytes = std::size_t(checked(a.probe_mib, "probe-mib", 1, 1 << 20)) << 20;
  ThreadPool probe_pool(options.threads > 0 ? options.threads : int(std::max(1u, std::thread::hardware_concurrency())));
  roofline.pool = &probe_pool;
  std::vector<RunFigures> runs;
  for (double rate : rates) {
    for (const Mode& mode : modes) {
      ServeWorkloadSpec s = spec;
      s.rate = rate;
      runs.push_back(run_workload(options, mode, s, roofline));
    }
  }
  print_table(std::cout, runs);
  if (!a.json.empty()) {
    std::ofstream out(a.json);
    write_json(out, spec, runs);
    require(bool(out), "could not write ", a.json);
  }
  if (!a.csv.empty()) {
    std::ofstream out(a.csv);
    write_csv(out, runs);
    require(bool(out), "could not write ", a.csv);
  }
  if (!a.plot.empty()) write_plots(a.plot, modes, runs);
  return 0;
}

}  // namespace bifurcate::cli
