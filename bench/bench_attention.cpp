// Replicated vs bifurcated decode attention (the paper's comparison).
//
// Setup: MHA, 32 heads x head size 128, f16 KV in 32-token blocks laid out as the
// KV block pool does (per block, per KV head: K [32, 128] then V [32, 128]);
// batch b in {1, 8, 16, 32}, shared context m_c in {2048, 8192}, m_d = 32 decoded
// tokens per sample. Replicated: every sample owns a private copy of the context
// (one segment of m_c + m_d tokens per sample). Bifurcated: one shared context
// segment attended by all b samples + one 32-token leaf per sample.
//
// Threads: 2 by default; override with --threads=N or BIFURCATE_THREADS=N.
// Prints Google Benchmark's lines, then a comparison table (GB/s = KV bytes the step
// must read / time; GFLOP/s counts QK^T and PV, 4 b h (m_c + m_d) k per step), then each
// step against its roofline floor, by wall time and by CPU time per thread (the figure to
// trust on a loaded machine), and the replicated/bifurcated speed-up over the predicted one.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "kernels/attention.h"
#include "kv/attention_cost.h"
#include "util/aligned_buffer.h"
#include "util/f16.h"
#include "util/thread_pool.h"

namespace bk = bifurcate::kernels;

namespace {

constexpr int kHeads = 32;
constexpr int kHeadSize = 128;
constexpr int kBlockTokens = 32;
constexpr int kDecoded = 32;  // m_d
constexpr std::size_t kRowBytes = kHeadSize * sizeof(uint16_t);
constexpr std::size_t kHeadStride = 2 * kBlockTokens * kRowBytes;  // K then V of one head
constexpr std::size_t kBlockBytes = kHeads * kHeadStride;
// Machine figures of the roofline (issue 6): DRAM read bandwidth and FMA peak at 2 threads.
constexpr double kBandwidth = 32e9;
constexpr double kPeak = 199e9;

// A pool of 32-token KV blocks, filled with f16 values.
struct BlockPool {
  bifurcate::AlignedBuffer<uint8_t> bytes;
  int n_blocks = 0;
  explicit BlockPool(int blocks) : bytes(std::size_t(blocks) * kBlockBytes), n_blocks(blocks) {}
  uint8_t* block(int i) { return bytes.data() + std::size_t(i) * kBlockBytes; }
};

void fill_random_f16(uint8_t* dst, std::size_t bytes, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<uint16_t> pattern(4096 + 7);  // a repeating pattern; content does not change the cost
  for (auto& h : pattern) h = bifurcate::f32_to_f16(u(rng));
  auto* out = reinterpret_cast<uint16_t*>(dst);
  for (std::size_t i = 0; i < bytes / 2; ++i) out[i] = pattern[i % pattern.size()];
}

// Appends blocks [first, first + count) of `pool` as chunks of a segment.
void add_blocks(bk::PlannedSegment& seg, BlockPool& pool, int first, int count) {
  for (int b = first; b < first + count; ++b)
    seg.chunks.push_back({pool.block(b), pool.block(b) + kBlockTokens * kRowBytes, kBlockTokens});
}

// The step's KV memory and plan for one mode; holds the memory the plan points into.
struct Setup {
  std::unique_ptr<BlockPool> pool;
  bk::AttentionPlan plan;
  double kv_bytes = 0;  // read per step
};

bk::AttentionShape shape() {
  return bk::AttentionShape{kHeads, kHeads, kHeadSize, bk::KvType::f16, 1.0f / std::sqrt(float(kHeadSize))};
}

Setup make_bifurcated(int b, int m_c) {
  const int context_blocks = m_c / kBlockTokens, leaf_blocks = kDecoded / kBlockTokens;
  Setup s{std::make_unique<BlockPool>(context_blocks + b * leaf_blocks), {shape(), b, {}}, 0};
  fill_random_f16(s.pool->bytes.data(), s.pool->bytes.size(), 1);
  bk::PlannedSegment context;
  context.head_stride = kHeadStride;
  add_blocks(context, *s.pool, 0, context_blocks);
  for (int i = 0; i < b; ++i) context.sequences.push_back(i);
  s.plan.segments.push_back(context);
  for (int i = 0; i < b; ++i) {
    bk::PlannedSegment leaf;
    leaf.head_stride = kHeadStride;
    add_blocks(leaf, *s.pool, context_blocks + i * leaf_blocks, leaf_blocks);
    leaf.sequences = {i};
    s.plan.segments.push_back(leaf);
  }
  s.kv_bytes = double(m_c + b * kDecoded) * kHeads * 2 * kRowBytes;
  return s;
}

Setup make_replicated(int b, int m_c) {
  const int blocks_per_sequence = (m_c + kDecoded) / kBlockTokens;
  Setup s{std::make_unique<BlockPool>(b * blocks_per_sequence), {shape(), b, {}}, 0};
  const std::size_t sequence_bytes = std::size_t(blocks_per_sequence) * kBlockBytes;
  fill_random_f16(s.pool->bytes.data(), sequence_bytes, 1);
  for (int i = 1; i < b; ++i)  // private copies of the same context
    std::memcpy(s.pool->block(i * blocks_per_sequence), s.pool->bytes.data(), sequence_bytes);
  for (int i = 0; i < b; ++i) {
    bk::PlannedSegment seg;
    seg.head_stride = kHeadStride;
    add_blocks(seg, *s.pool, i * blocks_per_sequence, blocks_per_sequence);
    seg.sequences = {i};
    s.plan.segments.push_back(seg);
  }
  s.kv_bytes = double(b) * (m_c + kDecoded) * kHeads * 2 * kRowBytes;
  return s;
}

double process_cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

int g_threads = 2;  // set once from the command line in main(), before any benchmark runs

void BM_attention(benchmark::State& state, bool bifurcated) {
  const int m_c = int(state.range(0)), b = int(state.range(1));
  Setup s = bifurcated ? make_bifurcated(b, m_c) : make_replicated(b, m_c);
  std::vector<float> q(std::size_t(b) * kHeads * kHeadSize), out(q.size());
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (float& x : q) x = u(rng);
  bifurcate::ThreadPool pool(g_threads);
  bk::AttentionWorkspace ws;
  bifurcate::kv::partition_attention(s.plan);  // the thread partition the engine's plans carry
  bk::attend(s.plan, q.data(), out.data(), ws, pool);  // warm-up: workspace grows once
  const double cpu_start = process_cpu_seconds();
  for (auto _ : state) {
    bk::attend(s.plan, q.data(), out.data(), ws, pool);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  const double cpu_per_step = (process_cpu_seconds() - cpu_start) / double(state.iterations());
  const double flops = 4.0 * b * kHeads * double(m_c + kDecoded) * kHeadSize;  // QK^T and PV
  using benchmark::Counter;
  state.counters["KV_bytes/step"] = Counter(s.kv_bytes, Counter::kDefaults, Counter::kIs1000);
  state.counters["KV_bytes/s"] = Counter(s.kv_bytes, Counter::kIsIterationInvariantRate, Counter::kIs1000);
  state.counters["FLOP/s"] = Counter(flops, Counter::kIsIterationInvariantRate, Counter::kIs1000);
  state.counters["threads"] = g_threads;
  // CPU seconds of ALL threads per step, / threads: the step time if every thread had a core to
  // itself (does not charge load imbalance or waiting; meaningful on a loaded machine).
  state.counters["cpu_ms/thread"] = cpu_per_step / g_threads * 1e3;
}

// The node rule of kv/attention_cost.h measured: a node of `t` tokens read by
// r sequences (each below it in a 32-token leaf of its own) read on its own
// (node + r leaves: one more task per head, one more partial state per row)
// or folded into each leaf's read (r segments of t + 32 tokens). Where the
// two cross gives the rule's task overhead T.
void BM_short_node(benchmark::State& state, bool folded) {
  const int t = int(state.range(0)), r = int(state.range(1));
  const int node_blocks = (t + kBlockTokens - 1) / kBlockTokens;
  BlockPool pool_memory(node_blocks + r);
  fill_random_f16(pool_memory.bytes.data(), pool_memory.bytes.size(), 3);
  bk::AttentionPlan plan{shape(), r, {}};
  bk::PlannedSegment node;
  node.head_stride = kHeadStride;
  add_blocks(node, pool_memory, 0, node_blocks);
  node.chunks.back().tokens = t - (node_blocks - 1) * kBlockTokens;
  for (int i = 0; i < r; ++i) {
    bk::PlannedSegment leaf;
    leaf.head_stride = kHeadStride;
    if (folded) leaf.chunks = node.chunks;
    add_blocks(leaf, pool_memory, node_blocks + i, 1);
    leaf.sequences = {i};
    plan.segments.push_back(leaf);
  }
  if (!folded) {
    for (int i = 0; i < r; ++i) node.sequences.push_back(i);
    plan.segments.insert(plan.segments.begin(), node);
  }
  bifurcate::kv::partition_attention(plan);
  std::vector<float> q(std::size_t(r) * kHeads * kHeadSize, 0.5f), out(q.size());
  bifurcate::ThreadPool pool(g_threads);
  bk::AttentionWorkspace ws;
  bk::attend(plan, q.data(), out.data(), ws, pool);
  for (auto _ : state) {
    bk::attend(plan, q.data(), out.data(), ws, pool);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  const double bytes = double(folded ? r * (t + kBlockTokens) : t + r * kBlockTokens) * kHeads * 2 * kRowBytes;
  state.counters["KV_bytes/step"] = benchmark::Counter(bytes);
  state.counters["cpu_ms/thread"] = 0;
}

// Iterations sized so each case takes about 0.5-1 s at ~20 GB/s (b=32, m_c=8192 replicated
// moves 4.3 GB per step).
int iterations_for(bool bifurcated, int b, int m_c) {
  double bytes = bifurcated ? double(m_c + b * kDecoded) : double(b) * (m_c + kDecoded);
  bytes *= kHeads * 2 * kRowBytes;
  return std::clamp(int(0.6 / (bytes / 20e9)), 3, 400);
}

// Console output as usual, plus the per-case real time kept for the closing table.
class TableReporter : public benchmark::ConsoleReporter {
 public:
  TableReporter() : ConsoleReporter(OO_Tabular) {}  // no colour codes: the output is read as text

  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& run : runs) {
      if (run.error_occurred) continue;
      const double seconds = run.GetAdjustedRealTime() / benchmark::GetTimeUnitMultiplier(run.time_unit);
      seconds_[run.benchmark_name()] = seconds;
      gbps_[run.benchmark_name()] = double(run.counters.at("KV_bytes/step")) / seconds / 1e9;
      cpu_seconds_[run.benchmark_name()] = double(run.counters.at("cpu_ms/thread")) / 1e3;
      bytes_[run.benchmark_name()] = double(run.counters.at("KV_bytes/step"));
    }
  }
  void print_comparison() const {
    std::printf("\nReplicated vs bifurcated attention, one decode step over all 32 heads\n");
    std::printf("(MHA 32x128, f16 KV in 32-token blocks, m_d = %d, %d thread%s)\n\n", kDecoded, g_threads,
                g_threads == 1 ? "" : "s");
    std::printf("%6s %4s | %12s %6s %7s | %12s %6s %7s | %8s\n", "m_c", "b", "replicated", "GB/s", "GFLOP/s",
                "bifurcated", "GB/s", "GFLOP/s", "speedup");
    std::printf("------------+-----------------------------+-----------------------------+---------\n");
    for (int m_c : {2048, 8192})
      for (int b : {1, 8, 16, 32}) {
        char rep_name[64], bif_name[64];
        std::snprintf(rep_name, sizeof rep_name, "replicated/%d/%d/", m_c, b);
        std::snprintf(bif_name, sizeof bif_name, "bifurcated/%d/%d/", m_c, b);
        double rep = find(seconds_, rep_name), bif = find(seconds_, bif_name);
        if (rep <= 0 || bif <= 0) continue;
        const double gflop = 4.0 * b * kHeads * double(m_c + kDecoded) * kHeadSize / 1e9;  // same for both
        std::printf("%6d %4d | %9.3f ms %6.1f %7.1f | %9.3f ms %6.1f %7.1f | %7.2fx\n", m_c, b, rep * 1e3,
                    find(gbps_, rep_name), gflop / rep, bif * 1e3, find(gbps_, bif_name), gflop / bif, rep / bif);
      }
    print_roofline();
  }

  // Time per step against the roofline floor max(bytes / bandwidth, flops / peak), using the
  // CPU time per thread (the loaded-machine estimate) and wall time.
  void print_roofline() const {
    std::printf("\nRoofline: floor = max(KV bytes / %.0f GB/s, FLOPs / %.0f GFLOP/s); 'cpu' = CPU time of all\n"
                "threads / %d (no imbalance or waiting charged), 'wall' = real time\n\n",
                kBandwidth / 1e9, kPeak / 1e9 * g_threads / 2, g_threads);
    std::printf("%6s %4s | %9s %8s %8s | %9s %8s %8s | %10s %10s\n", "m_c", "b", "rep floor", "x cpu", "x wall",
                "bif floor", "x cpu", "x wall", "ratio/pred", "(wall)");
    std::printf("------------+------------------------------+------------------------------+----------------------\n");
    for (int m_c : {2048, 8192})
      for (int b : {1, 8, 16, 32}) {
        char rep_name[64], bif_name[64];
        std::snprintf(rep_name, sizeof rep_name, "replicated/%d/%d/", m_c, b);
        std::snprintf(bif_name, sizeof bif_name, "bifurcated/%d/%d/", m_c, b);
        const double rep_cpu = find(cpu_seconds_, rep_name), bif_cpu = find(cpu_seconds_, bif_name);
        if (rep_cpu <= 0 || bif_cpu <= 0) continue;
        const double flops = 4.0 * b * kHeads * double(m_c + kDecoded) * kHeadSize;
        const double peak = kPeak * g_threads / 2;  // FMA peak scales with threads, DRAM does not
        const double rep_floor = std::max(find(bytes_, rep_name) / kBandwidth, flops / peak);
        const double bif_floor = std::max(find(bytes_, bif_name) / kBandwidth, flops / peak);
        const double rep = find(seconds_, rep_name), bif = find(seconds_, bif_name);
        // Measured replicated/bifurcated speed-up as a fraction of the one the floors predict.
        std::printf("%6d %4d | %6.3f ms %7.2fx %7.2fx | %6.3f ms %7.2fx %7.2fx | %9.2fx %9.2fx\n", m_c, b,
                    rep_floor * 1e3, rep_cpu / rep_floor, rep / rep_floor, bif_floor * 1e3, bif_cpu / bif_floor,
                    bif / bif_floor, (rep_cpu / bif_cpu) / (rep_floor / bif_floor), (rep / bif) / (rep_floor / bif_floor));
      }
  }

 private:
  static double find(const std::map<std::string, double>& m, const std::string& prefix) {
    for (const auto& [name, value] : m)
      if (name.rfind(prefix, 0) == 0) return value;
    return 0.0;
  }
  std::map<std::string, double> seconds_, gbps_, cpu_seconds_, bytes_;
};

// Removes --threads=N from argv (Google Benchmark rejects unknown flags).
int take_threads_flag(int& argc, char** argv) {
  int threads = 2;
  if (const char* env = std::getenv("BIFURCATE_THREADS")) threads = std::atoi(env);
  int kept = 1;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--threads=", 10) == 0) {
      threads = std::atoi(argv[i] + 10);
    } else {
      argv[kept++] = argv[i];
    }
  }
  argc = kept;
  return std::max(1, threads);
}

}  // namespace

int main(int argc, char** argv) {
  g_threads = take_threads_flag(argc, argv);
  for (int m_c : {2048, 8192})
    for (int b : {1, 8, 16, 32})
      for (bool bifurcated : {false, true}) {
        benchmark::RegisterBenchmark(bifurcated ? "bifurcated" : "replicated",
                                     [bifurcated](benchmark::State& st) { BM_attention(st, bifurcated); })
            ->Args({m_c, b})
            ->ArgNames({"", ""})
            ->Iterations(iterations_for(bifurcated, b, m_c))
            ->UseRealTime()
            ->Unit(benchmark::kMillisecond);
      }
  for (int r : {2, 4})
    for (int t : {1, 4, 8, 16, 32, 64})
      for (bool folded : {false, true}) {
        benchmark::RegisterBenchmark(folded ? "short_node_folded" : "short_node_own",
                                     [folded](benchmark::State& st) { BM_short_node(st, folded); })
            ->Args({t, r})
            ->ArgNames({"t", "r"})
            ->Repetitions(5)
            ->ReportAggregatesOnly(true)
            ->UseRealTime()
            ->Unit(benchmark::kMicrosecond);
      }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  TableReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  reporter.print_comparison();
  benchmark::Shutdown();
  return 0;
}
