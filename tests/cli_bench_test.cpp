// `bifurcate bench`: roofline formulas against hand-computed numbers, the
// model counts against the file's own tensor table, skipped rows under a tiny
// KV budget, --repeat, and a tiny-model sweep and command run end to end (the
// plot and report writers on hand-made rows: cli_bench_report_test).
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include "bench_test_support.h"
#include "cli/args.h"
#include "cli/bench_report.h"
#include "cli/bench_roofline.h"
#include "cli/bench_sweep.h"
#include "cli/commands.h"
#include "cli_support.h"
#include "gguf/gguf_file.h"
#include "kernels/amx.h"
#include "kernels/peak_probe.h"
#include "model/model.h"
#include "model/model_shapes.h"
#include "model/random_model.h"
#include "model/transformer.h"
#include "util/error.h"

namespace bifurcate::cli {
namespace {

namespace fs = std::filesystem;

// A random "tiny" model (2 layers, dim 64, 4 heads / 2 KV heads, head size 16)
// written once for the whole test program.
class BenchTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(fs::temp_directory_path() / str("bifurcate_cli_bench_", getpid()));
    fs::create_directories(*dir_);
    model::write_random_model(model::find_model_shape("tiny"), gguf::GgmlType::F16, "", 3, model_path());
  }
  static void TearDownTestSuite() {
    fs::remove_all(*dir_);
    delete dir_;
  }
  static std::string model_path() { return (*dir_ / "tiny.gguf").string(); }
  static std::string path(const std::string& name) { return (*dir_ / name).string(); }

  static fs::path* dir_;
};
fs::path* BenchTest::dir_ = nullptr;

using bench_test::count;
using bench_test::expect_well_formed_xml;
using bench_test::read_text;
using bench_test::split;

TEST(BenchRoofline, FloorFormulasMatchHandComputedNumbers) {
  ModelCounts m;
  m.n_layers = 2, m.n_heads = 4, m.n_kv_heads = 2, m.head_size = 16;
  m.matrix_bytes = 1e6, m.matrix_elements = 5e5;
  // B = 4, m_c = 100, m_d = 5, f16 KV: one token's K+V over all layers is 2*2*2*16*2 = 256 bytes.
  const StepCost bif = decode_step_cost(m, 4, 100, 5.0, true, 2);
  const StepCost rep = decode_step_cost(m, 4, 100, 5.0, false, 2);
  EXPECT_DOUBLE_EQ(bif.weights.bytes, 1e6);
  EXPECT_DOUBLE_EQ(bif.weights.flops, 2.0 * 4 * 5e5);
  EXPECT_DOUBLE_EQ(bif.attention.bytes, 256.0 * (100 + 4 * 5));  // context once + 4 own parts
  EXPECT_DOUBLE_EQ(rep.attention.bytes, 256.0 * 4 * (100 + 5));  // 4 full copies
  EXPECT_DOUBLE_EQ(bif.attention.flops, 4.0 * 2 * 4 * 4 * 16 * 105);
  EXPECT_DOUBLE_EQ(rep.attention.flops, bif.attention.flops);
  // 1 MB/s and 100 MFLOP/s: weights are bytes-bound (1 s vs 0.04 s); attention
  // too (30720 B -> 30.72 ms vs 215040 FLOP -> 2.15 ms).
  const MachineCeilings machine{1e6, 1e8};
  EXPECT_NEAR(floor_seconds(bif, machine), 1.0 + 0.03072, 1e-12);
  EXPECT_NEAR(floor_seconds(rep, machine), 1.0 + 0.10752, 1e-12);
  // A FLOP-bound machine: 1 TB/s, 1 MFLOP/s -> the FLOP terms decide.
  const MachineCeilings slow_alu{1e12, 1e6};
  EXPECT_NEAR(floor_seconds(bif, slow_alu), (4e6 + 215040.0) / 1e6, 1e-9);
  // A three-level tree from its plan: a 100-token system prompt read once,
  // two 20-token questions, four 5-token leaves; every row sees 125 keys.
  const StepCost tree = step_cost_from_plan(m, 4, 100 + 2 * 20 + 4 * 5, 4 * 125, 2);
  EXPECT_DOUBLE_EQ(tree.attention.bytes, 256.0 * 160);
  EXPECT_DOUBLE_EQ(tree.attention.flops, 4.0 * 2 * 4 * 16 * 4 * 125);
  EXPECT_DOUBLE_EQ(tree.weights.flops, bif.weights.flops);
  // Own tokens seen by the 16 timed steps after one warm-up step: 2..17, mean 9.5.
  EXPECT_DOUBLE_EQ(mean_decoded_tokens(16), 9.5);
  EXPECT_DOUBLE_EQ(mean_decoded_tokens(1), 2.0);
  EXPECT_THROW(floor_seconds(bif, MachineCeilings{}), Error);

  // Matrices on the int8 path count against the int8 ceiling: 3e5 of the
  // 5e5 elements there, at 4 MOP/s beside 1 MFLOP/s FMA; attention stays FMA.
  m.int8_matrix_elements = 3e5;
  const StepCost mixed = decode_step_cost(m, 4, 100, 5.0, true, 2);
  EXPECT_DOUBLE_EQ(mixed.weights.int8_flops, 2.0 * 4 * 3e5);
  EXPECT_DOUBLE_EQ(mixed.attention.int8_flops, 0.0);
  const MachineCeilings with_int8{1e12, 1e6, 4e6};
  EXPECT_NEAR(floor_seconds(mixed, with_int8), (1.6e6 / 1e6 + 2.4e6 / 4e6) + 215040.0 / 1e6, 1e-9);
}

// The int8 ceiling a row is judged by is that of the path its batch runs:
// AMX's tiles from kernels::kAmxMinBatch rows where the integer matmul uses
// them, the vector loop's below and wherever AMX is off.
TEST(BenchRoofline, Int8CeilingFollowsTheBatchsInstructionPath) {
  const MachineCeilings m{1e12, 1e6, 4e6, 9e7};
  const bool amx = kernels::amx_runs_batch(kernels::kAmxMinBatch);
  EXPECT_DOUBLE_EQ(ceilings_for_rows(m, double(kernels::kAmxMinBatch)).int8_ops_per_second, amx ? 9e7 : 4e6);
  EXPECT_DOUBLE_EQ(ceilings_for_rows(m, double(kernels::kAmxMinBatch - 1)).int8_ops_per_second, 4e6);
  EXPECT_DOUBLE_EQ(ceilings_for_rows(m, 1).int8_ops_per_second, 4e6);
  EXPECT_DOUBLE_EQ(ceilings_for_rows(m, 64).flops_per_second, 1e6);  // only the int8 ceiling changes
  kernels::set_amx_enabled(false);
  EXPECT_DOUBLE_EQ(ceilings_for_rows(m, 64).int8_ops_per_second, 4e6);
  kernels::set_amx_enabled(true);
  const MachineCeilings no_amx{1e12, 1e6, 4e6, 0};
  EXPECT_DOUBLE_EQ(ceilings_for_rows(no_amx, 64).int8_ops_per_second, 4e6);
}

// Where AMX runs, its tile loop must beat the vector int8 loop (each tdpbssd
// is 16 x 16 x 64 products: ~8x vpdpbusd's rate here); elsewhere it reports 0.
TEST(BenchRoofline, AmxCeilingIsZeroWithoutAmxAndAboveTheVectorLoopWithIt) {
  ThreadPool pool(2);
  const double amx = kernels::amx_int8_ceiling_ops(pool, 2);
  if (!kernels::amx_enabled()) {
    EXPECT_EQ(amx, 0.0);
    GTEST_SKIP() << "this CPU or OS offers no AMX tiles: the ceiling is 0, as checked";
  }
  EXPECT_GT(amx, 2 * kernels::int8_dot_ceiling_ops(pool, 2));
  EXPECT_LT(amx, 1e15);
  kernels::set_amx_enabled(false);
  EXPECT_EQ(kernels::amx_int8_ceiling_ops(pool, 1), 0.0);
  kernels::set_amx_enabled(true);
}

TEST_F(BenchTest, ModelCountsMatchTheFilesTensorTable) {
  const auto loaded = model::Model::load(model_path());
  const ModelCounts c = count_model(loaded->config(), loaded->weights());
  // Independent count: every 2-D tensor except the token embedding (tiny has its own output.weight).
  double elements = 0, bytes = 0;
  const gguf::GgufFile file = gguf::GgufFile::open(model_path());
  for (const gguf::TensorInfo& t : file.tensors()) {
    if (t.dims.size() != 2 || t.name == "token_embd.weight") continue;
    elements += double(t.n_elements());
    bytes += double(t.n_bytes);
  }
  EXPECT_DOUBLE_EQ(c.matrix_elements, elements);
  EXPECT_DOUBLE_EQ(c.matrix_bytes, bytes);
  EXPECT_EQ(c.n_layers, 2);
  EXPECT_EQ(c.n_heads, 4);
  EXPECT_EQ(c.n_kv_heads, 2);
  EXPECT_EQ(c.head_size, 16);
}

TEST(BenchRoofline, ProbesMeasurePositiveFiniteCeilings) {
  ThreadPool pool(2);
  const double bw = measure_read_bandwidth(pool, std::size_t(16) << 20, 2);
  MatmulProbe probe(64, 128, 64);
  const double peak = probe.peak(pool, 2);
  EXPECT_GT(bw, 1e7);   // > 10 MB/s on any machine
  EXPECT_LT(bw, 1e13);  // < 10 TB/s: a broken timer or skipped reads would exceed it
  EXPECT_GT(peak, 1e6);
  EXPECT_LT(peak, 1e14);
  EXPECT_GT(probe.flops_per_second(pool, 1, 1), 1e6);
  EXPECT_THROW(MatmulProbe(64, 100, 8), Error);                     // cols not a multiple of 32
  EXPECT_THROW(static_cast<void>(probe.flops_per_second(pool, 65, 1)), Error);  // batch past the inputs made
}

SweepConfig tiny_sweep() {
  SweepConfig c;
  c.contexts = {70, 40};
  c.ntg = 3;
  c.samples = {3, 1};
  c.modes = {AttentionMode::replicated, AttentionMode::bifurcated};
  c.kv_type = kernels::KvType::f16;
  c.kv_budget_bytes = std::size_t(64) << 20;
  return c;
}

// One block of the tiny model's cache: 32 tokens x 2 layers x 2 KV heads x (K,V) x 16 x f16.
constexpr std::size_t kTinyBlockBytes = 32 * 2 * 2 * 2 * 16 * 2;
std::size_t blocks(int64_t tokens) { return std::size_t((tokens + 31) / 32); }

TEST_F(BenchTest, TinySweepRunsEveryRowInOrderWithMeasuredFigures) {
  const auto loaded = model::Model::load(model_path());
  ThreadPool pool(2);
  std::vector<BenchRow> seen;
  SweepHooks hooks;
  hooks.on_row = [&](const BenchRow& r) { seen.push_back(r); };
  const SweepConfig config = tiny_sweep();
  const std::vector<BenchRow> rows = run_sweep(*loaded, config, pool, hooks);
  ASSERT_EQ(rows.size(), 8u);
  ASSERT_EQ(seen.size(), 8u);
  // Contexts ascending; bifurcated before replicated; B ascending.
  const int expected[8][3] = {{40, 0, 1}, {40, 0, 3}, {40, 1, 1}, {40, 1, 3},
                              {70, 0, 1}, {70, 0, 3}, {70, 1, 1}, {70, 1, 3}};
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const BenchRow& r = rows[i];
    SCOPED_TRACE(i);
    EXPECT_EQ(r.context, expected[i][0]);
    EXPECT_EQ(r.mode, expected[i][1] == 0 ? AttentionMode::bifurcated : AttentionMode::replicated);
    EXPECT_EQ(r.samples, expected[i][2]);
    EXPECT_FALSE(r.skipped);
    EXPECT_EQ(r.ntg, 3);
    EXPECT_GT(r.prefill_seconds, 0);
    EXPECT_GT(r.step_mean_seconds, 0);
    EXPECT_NEAR(r.decode_seconds, 3 * r.step_mean_seconds, 1e-12);
    EXPECT_GT(r.step_median_seconds, 0);
    EXPECT_GT(r.attention_share, 0);
    EXPECT_LT(r.attention_share, 1);
    EXPECT_GT(r.peak_rss_bytes, 0u);
    EXPECT_EQ(r.prefill_seconds, rows[i - i % 4].prefill_seconds);  // one prefill per context
    // KV held at the row's end: 1 warm-up + 3 timed tokens per sequence.
    const std::size_t kv = r.mode == AttentionMode::bifurcated
                               ? (blocks(r.context) + std::size_t(r.samples) * blocks(4)) * kTinyBlockBytes
                               : std::size_t(r.samples) * blocks(r.context + 4) * kTinyBlockBytes;
    EXPECT_EQ(r.kv_bytes, kv);
  }
  // The 70-token prompt continues the 40-token one: T_PP(70) includes T_PP(40).
  EXPECT_GT(rows[4].prefill_seconds, rows[0].prefill_seconds);
}

TEST(BenchSweep, PoolTimedStepsUsesEveryStepOfEveryRound) {
  BenchRow row;
  row.ntg = 3;
  row.rounds = 2;
  row.samples = 1;
  // Two rounds of 3 steps; one preempted step (100 ms) in the second round.
  pool_timed_steps({0.005, 0.001, 0.003, 0.100, 0.002, 0.004}, row);
  EXPECT_NEAR(row.decode_seconds, 0.115 / 2, 1e-15);  // one round's T_TG on average
  EXPECT_NEAR(row.step_mean_seconds, 0.115 / 6, 1e-15);
  EXPECT_NEAR(row.step_median_seconds, (0.003 + 0.004) / 2, 1e-15);  // sorted: 1 2 3 4 5 100
  EXPECT_DOUBLE_EQ(row.step_min_seconds, 0.001);
  EXPECT_DOUBLE_EQ(row.step_max_seconds, 0.100);
  EXPECT_NEAR(row.s_tg(), 1.0 * 3 / (0.115 / 2), 1e-9);
  row.rounds = 1;
  pool_timed_steps({0.002, 0.009, 0.001}, row);  // odd count: the middle one
  EXPECT_DOUBLE_EQ(row.step_median_seconds, 0.002);
  EXPECT_THROW(pool_timed_steps({}, row), Error);
}

// --repeat: each row runs N rounds of fresh sequences, a warm-up and ntg
// timed steps, round r of every row in pass r over the sweep (odd passes run
// the modes in the other order); the probe hooks run before every round, and
// a row's bandwidth and GEMM peak are the medians of its probes.
TEST_F(BenchTest, RepeatedRowsRunEveryRoundInPassesAndProbeBeforeEachRound) {
  const auto loaded = model::Model::load(model_path());
  ThreadPool pool(2);
  SweepConfig config = tiny_sweep();
  config.contexts = {40};
  config.repeat = 3;
  std::vector<std::string> lines;
  int probes = 0, peak_probes = 0;
  SweepHooks hooks;
  hooks.progress = [&](std::string_view line) { lines.emplace_back(line); };
  hooks.probe_bandwidth = [&] { return 1e9 * ++probes; };
  hooks.probe_peak = [&] { return 1e12 / ++peak_probes; };
  const std::vector<BenchRow> rows = run_sweep(*loaded, config, pool, hooks);
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_EQ(probes, 12);
  EXPECT_EQ(peak_probes, 12);
  // Passes: the first row's second round comes after the last row's first.
  const auto line_of = [&](const std::string& text) {
    return std::find(lines.begin(), lines.end(), text) - lines.begin();
  };
  const auto first_step = [&](const BenchRow& r, int round) {
    return line_of(str("row PP=40 B=", r.samples, " ", attention_mode_name(r.mode), ": round ", round, "/3, step 1/3"));
  };
  EXPECT_LT(first_step(rows[3], 1), first_step(rows[0], 2));
  // Rows 0, 1 are bifurcated, 2, 3 replicated; the second pass runs replicated first, the third bifurcated.
  EXPECT_LT(first_step(rows[1], 1), first_step(rows[2], 1));
  EXPECT_LT(first_step(rows[3], 2), first_step(rows[0], 2));
  EXPECT_LT(first_step(rows[1], 3), first_step(rows[2], 3));
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const BenchRow& r = rows[i];
    SCOPED_TRACE(i);
    EXPECT_EQ(r.rounds, 3);
    EXPECT_EQ(r.timed_steps(), 9);
    // Its probes ran before its rounds in passes 1, 2, 3: probe numbers i + 1, then 5 + (i + 2) % 4 (the
    // second pass runs rows 2, 3, 0, 1), then i + 9; the median is the second pass's.
    const double median_probe = 5 + double((i + 2) % 4);
    EXPECT_EQ(r.read_bytes_per_second, 1e9 * median_probe);
    EXPECT_EQ(r.flops_per_second, 1e12 / median_probe);  // the GEMM probes likewise, falling
    // Timed steps seen in the progress lines: rounds 1..3, steps 1..3 each.
    const std::string name = str("row PP=40 B=", r.samples, " ", attention_mode_name(r.mode), ": round ");
    int timed = 0;
    for (int round = 1; round <= 3; ++round) {
      for (int step = 1; step <= 3; ++step) {
        timed += int(std::count(lines.begin(), lines.end(), str(name, round, "/3, step ", step, "/3")));
      }
    }
    EXPECT_EQ(timed, 9);
    EXPECT_EQ(std::count(lines.begin(), lines.end(), str(name, "4/3, step 1/3")), 0);
    EXPECT_NEAR(r.decode_seconds, 3 * r.step_mean_seconds, 1e-12);  // T_TG: one round of 3 steps
    EXPECT_LE(r.step_min_seconds, r.step_median_seconds);
    EXPECT_LE(r.step_median_seconds, r.step_max_seconds);
    EXPECT_LT(r.step_min_seconds, r.step_max_seconds);  // 9 wall-clock timings are never all equal
    EXPECT_GT(r.attention_share, 0);
    EXPECT_LT(r.attention_share, 1);
    // The rounds are identical in memory: what one round of 1 + 3 tokens per sequence holds.
    const std::size_t kv = r.mode == AttentionMode::bifurcated
                               ? (blocks(40) + std::size_t(r.samples) * blocks(4)) * kTinyBlockBytes
                               : std::size_t(r.samples) * blocks(40 + 4) * kTinyBlockBytes;
    EXPECT_EQ(r.kv_bytes, kv);
  }
  config.repeat = 0;
  try {
    run_sweep(*loaded, config, pool, {});
    FAIL() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--repeat"), std::string::npos) << e.what();
  }
}

// The incremental prefill (40 then 30 more tokens) leaves exactly the K/V a
// fresh 70-token prefill does: the bench's copy of the prompt is that prompt.
TEST_F(BenchTest, IncrementalPrefillEqualsOnePrefill) {
  const auto loaded = model::Model::load(model_path());
  ThreadPool pool(2);
  model::Transformer t(loaded->config(), loaded->weights());
  const kv::KvLayout layout = t.kv_layout(kernels::KvType::f32);
  kv::KvCache whole(layout, std::size_t(1) << 20), parts(layout, std::size_t(1) << 20);
  std::vector<int32_t> tokens(70);
  for (int i = 0; i < 70; ++i) tokens[std::size_t(i)] = (i * 37 + 11) % loaded->config().n_vocab;
  std::vector<float> logits(std::size_t(loaded->config().n_vocab));
  const kv::SegmentId a = whole.create_root(), b = parts.create_root();
  t.prefill(whole, a, tokens, logits, false, pool, 16);
  t.prefill(parts, b, std::span(tokens).first(40), logits, false, pool, 16);
  t.prefill(parts, b, std::span(tokens).subspan(40), logits, false, pool, 16);
  double worst_k = 0, worst_v = 0;
  auto worst_difference = [&](const void* x, const void* y) {
    const auto* fx = static_cast<const float*>(x);
    const auto* fy = static_cast<const float*>(y);
    double worst = 0;
    for (int e = 0; e < layout.head_size; ++e) worst = std::max(worst, double(std::abs(fx[e] - fy[e])));
    return worst;
  };
  for (int i = 0; i < 70; ++i) {
    for (int layer = 0; layer < layout.n_layers; ++layer) {
      for (int head = 0; head < layout.n_kv_heads; ++head) {
        const kv::KvCache::Slot x = whole.slot(a, i), y = parts.slot(b, i);
        worst_k =
            std::max(worst_k, worst_difference(whole.k_row(x, layer, head), parts.k_row(y, layer, head)));
        worst_v =
            std::max(worst_v, worst_difference(whole.v_row(x, layer, head), parts.v_row(y, layer, head)));
      }
    }
  }
  EXPECT_LT(worst_k, 1e-5);
  EXPECT_LT(worst_v, 1e-5);
}

TEST_F(BenchTest, RowsThatExceedTheBudgetAreSkippedWithWhatTheyNeed) {
  const auto loaded = model::Model::load(model_path());
  ThreadPool pool(1);
  SweepConfig config = tiny_sweep();
  config.contexts = {70};  // 3 blocks of prompt
  // Per sequence, whole blocks of its tokens: 4 own tokens (1 block) bifurcated, 74 (3 blocks) replicated.
  // Bifurcated B=3: 3 + 3*1 = 6; replicated B=1: 3 + 3 = 6; replicated B=3: 3 + 3*3 = 12 > 10.
  config.kv_budget_bytes = 10 * kTinyBlockBytes;
  const std::vector<BenchRow> rows = run_sweep(*loaded, config, pool, {});
  ASSERT_EQ(rows.size(), 4u);
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(rows[std::size_t(i)].skipped) << i;
  const BenchRow& skipped = rows[3];
  EXPECT_EQ(skipped.mode, AttentionMode::replicated);
  EXPECT_EQ(skipped.samples, 3);
  EXPECT_TRUE(skipped.skipped);
  EXPECT_EQ(skipped.kv_needed_bytes, 12 * kTinyBlockBytes);
  EXPECT_EQ(skipped.kv_budget_bytes, 10 * kTinyBlockBytes);
  EXPECT_EQ(skipped.step_mean_seconds, 0);
  BenchReport report;
  report.rows = rows;
  std::ostringstream out;
  print_rows_table(out, report);
  EXPECT_NE(out.str().find("skipped: needs 0.00 GiB > budget 0.00 GiB"), std::string::npos) << out.str();

  // The budget check itself, on a cache holding a 70-token prompt.
  kv::KvLayout layout{2, 2, 16, kernels::KvType::f16, 32};
  kv::KvCache cache(layout, 10 * kTinyBlockBytes);
  const kv::SegmentId root = cache.create_root();
  std::vector<kv::KvCache::Slot> slots;
  cache.append_tokens(root, 70, slots);
  const RowBudget fits = check_row_budget(cache, AttentionMode::replicated, 70, 1, 4);
  EXPECT_TRUE(fits.fits);
  EXPECT_EQ(fits.needed_bytes, (3 + 1 * 3) * kTinyBlockBytes);
  const RowBudget rep3 = check_row_budget(cache, AttentionMode::replicated, 70, 3, 4);
  EXPECT_FALSE(rep3.fits);
  EXPECT_EQ(rep3.needed_bytes, (3 + 3 * 3) * kTinyBlockBytes);
  const RowBudget bif =
      check_row_budget(cache, AttentionMode::bifurcated, 70, 7, 33);  // 1 + 1 blocks per leaf
  EXPECT_FALSE(bif.fits);
  EXPECT_EQ(bif.needed_bytes, (3 + 7 * 2) * kTinyBlockBytes);
}

// Rows admitted by check_row_budget must run, even one that fits exactly:
// the decode step's own check must never fire inside an admitted row.
TEST_F(BenchTest, AdmittedRowsNeverHitTheDecodeBudgetCheck) {
  const auto loaded = model::Model::load(model_path());
  ThreadPool pool(1);
  SweepConfig config = tiny_sweep();
  config.contexts = {64};
  config.ntg = 2;
  config.samples = {1, 2, 7, 8};
  config.kv_budget_bytes = 9 * kTinyBlockBytes;
  std::vector<BenchRow> rows;
  ASSERT_NO_THROW(rows = run_sweep(*loaded, config, pool, {}));
  ASSERT_EQ(rows.size(), 8u);
  // 3 own tokens per leaf (1 block). Bifurcated B=7: 2 + 7 = 9 blocks, exactly the
  // budget, runs; B=8: 10 > 9 blocks, is skipped, not run into the check.
  EXPECT_FALSE(rows[2].skipped);
  EXPECT_TRUE(rows[3].skipped);
  EXPECT_EQ(rows[3].kv_needed_bytes, 10 * kTinyBlockBytes);
}

TEST_F(BenchTest, SweepRejectsContextsBeyondTheModel) {
  const auto loaded = model::Model::load(model_path());
  ThreadPool pool(1);
  SweepConfig config = tiny_sweep();
  config.contexts = {509};  // tiny's context is 512: 509 + 1 warm-up + 3 > 512
  try {
    run_sweep(*loaded, config, pool, {});
    FAIL() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("509"), std::string::npos) << e.what();
  }
}

TEST_F(BenchTest, CommandWritesTableCsvJsonAndPlot) {
  const std::string csv = path("rows.csv"), json = path("rows.json"), svg = path("plot.svg");
  std::vector<std::string> args = {"bench", "-m",    model_path(), "--npp", "40,80",  "--ntg",
                                   "2",     "--npl", "1,2",        "-t",    "2",      "--no-roofline",
                                   "--csv", csv,     "--json",     json,    "--plot", svg};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  testing::internal::CaptureStdout();
  const int rc = run_bench(int(argv.size()), argv.data());
  const std::string out = testing::internal::GetCapturedStdout();
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(count(out, "| bifurcated |"), 4u) << out;
  EXPECT_EQ(count(out, "| replicated |"), 4u) << out;
  EXPECT_NE(out.find("speedup (replicated / bifurcated"), std::string::npos);
  EXPECT_NE(out.find("plot written to " + svg), std::string::npos);
  EXPECT_EQ(split(read_text(csv), '\n').size(), 10u);  // header + 8 rows + trailing empty
  EXPECT_EQ(count(read_text(json), "\"mode\""), 8u);
  // --no-roofline: no bandwidth probe, no floor; one round of 2 steps.
  const cli_test::Json doc = cli_test::parse_json(read_text(json));
  ASSERT_EQ(doc["rows"].size(), 8u);
  for (const cli_test::Json& row : doc["rows"]) {
    EXPECT_TRUE(row["read_gb_per_s"].is_null());
    EXPECT_TRUE(row["fma_gflop_per_s"].is_null());
    EXPECT_TRUE(row["floor_ms"].is_null());
    EXPECT_TRUE(row["measured_over_floor"].is_null());
    EXPECT_EQ(row["rounds"].get<double>(), 1);
    EXPECT_EQ(row["timed_steps"].get<double>(), 2);
  }
  EXPECT_TRUE(doc["ceilings"].is_null());
  const std::string plot = read_text(svg);
  expect_well_formed_xml(plot);
  EXPECT_EQ(count(plot, "<polyline class='series'"), 4u);  // 2 contexts x 2 modes
  EXPECT_EQ(count(plot, "class='marker'"), 8u);

  // One mode: rows, but no speedup table (it would be all dashes).
  std::vector<std::string> one_mode = {
      "bench", "-m", model_path(), "--npp",         "40",       "--ntg", "1", "--npl",
      "1",     "-a", "bifurcated", "--no-roofline", "--no-plot"};
  std::vector<char*> one_argv;
  for (std::string& a : one_mode) one_argv.push_back(a.data());
  testing::internal::CaptureStdout();
  EXPECT_EQ(run_bench(int(one_argv.size()), one_argv.data()), 0);
  const std::string one_out = testing::internal::GetCapturedStdout();
  EXPECT_EQ(count(one_out, "| bifurcated |"), 1u) << one_out;
  EXPECT_EQ(one_out.find("speedup"), std::string::npos) << one_out;

  std::vector<std::string> bad = {"bench", "-m", model_path(), "--npl", "1,x"};
  std::vector<char*> bad_argv;
  for (std::string& a : bad) bad_argv.push_back(a.data());
  EXPECT_THROW(run_bench(int(bad_argv.size()), bad_argv.data()), UsageError);
}

using cli_test::run_bifurcate;

// The real program: --repeat 2 with the roofline on; the JSON rows pool
// 2 x ntg steps, carry the bandwidth and GEMM peak probed before each row's
// rounds, and x floor is the median step over the floor.
TEST_F(BenchTest, ProgramRepeatPoolsRoundsAndProbesBandwidthAndPeakPerRow) {
  if (!fs::exists(cli_test::program_path()))
    GTEST_SKIP() << "the bifurcate program is not built in " << BIFURCATE_BINARY_DIR;
  const std::string json = path("repeat.json"), csv = path("repeat.csv");
  const cli_test::RunResult r = run_bifurcate(
      // A small DRAM probe (16 MiB x3, then 4 MiB before each round): this
      // checks that the probes run and are reported, not the machine.
      str("bench -m '", model_path(), "' --npp 40 --ntg 3 --npl 1,2 -t 2 --repeat 2 --no-plot --probe-mib 16 --json '", json,
          "' --csv '", csv, "'"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("rows: 2 rounds of 1 warm-up + 3 timed steps"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("| BW GB/s | FMA GF/s | floor ms | x floor |"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("roofline: DRAM read"), std::string::npos) << r.out;  // the start-of-sweep line stays
  const cli_test::Json doc = cli_test::parse_json(read_text(json));
  ASSERT_EQ(doc["rows"].size(), 4u);
  for (std::size_t i = 0; i < 4; ++i) {
    const cli_test::Json& row = doc["rows"][i];
    SCOPED_TRACE(i);
    EXPECT_EQ(row["rounds"].get<double>(), 2);
    EXPECT_EQ(row["timed_steps"].get<double>(), 6);
    const double mean = row["step_ms_mean"].get<double>(), median = row["step_ms_median"].get<double>();
    const double lo = row["step_ms_min"].get<double>(), hi = row["step_ms_max"].get<double>();
    EXPECT_GT(lo, 0);
    EXPECT_LE(lo, median);
    EXPECT_LE(median, hi);
    EXPECT_LE(lo, mean);
    EXPECT_LE(mean, hi);
    // T_TG is one round's 3 steps on average: sum of the 6 / 2 = 3 x mean.
    EXPECT_NEAR(row["t_tg"].get<double>(), 3 * mean / 1e3, 1e-9 + 1e-6 * row["t_tg"].get<double>());
    EXPECT_NEAR(row["s_tg"].get<double>(), row["b"].get<double>() * 3 / row["t_tg"].get<double>(), 1e-6 * row["s_tg"].get<double>());
    ASSERT_TRUE(row["read_gb_per_s"].is_number());
    EXPECT_GT(row["read_gb_per_s"].get<double>(), 0.1);  // > 100 MB/s on any machine
    EXPECT_LT(row["read_gb_per_s"].get<double>(), 1e4);  // < 10 TB/s: a skipped read would exceed it
    EXPECT_EQ(row["bw_scope"].get<std::string>(), "row");
    ASSERT_TRUE(row["fma_gflop_per_s"].is_number());
    EXPECT_GT(row["fma_gflop_per_s"].get<double>(), 0.1);  // > 100 MFLOP/s on any machine
    EXPECT_LT(row["fma_gflop_per_s"].get<double>(), 1e5);  // < 100 TFLOP/s: a skipped matmul would exceed it
    EXPECT_EQ(row["peak_scope"].get<std::string>(), "row");
    EXPECT_NEAR(row["measured_over_floor"].get<double>(), median / row["floor_ms"].get<double>(),
                1e-6 * row["measured_over_floor"].get<double>());
  }
  // Each row's floor uses its own bandwidth and GEMM peak, recomputed here
  // from the file's tensor table: tiny has L = 2, g = 2,
  // h = 4, k = 16, f16 KV; m_c = 40, m_d = (3 + 3) / 2 = 3.
  double elements = 0, weight_bytes = 0;
  const gguf::GgufFile file = gguf::GgufFile::open(model_path());
  for (const gguf::TensorInfo& t : file.tensors()) {
    if (t.dims.size() != 2 || t.name == "token_embd.weight") continue;
    elements += double(t.n_elements());
    weight_bytes += double(t.n_bytes);
  }
  for (std::size_t i = 0; i < 4; ++i) {
    const cli_test::Json& row = doc["rows"][i];
    const double b = row["b"].get<double>(), bw = 1e9 * row["read_gb_per_s"].get<double>();
    const double peak = 1e9 * row["fma_gflop_per_s"].get<double>();
    const double kv_bytes =
        2.0 * 2 * 2 * 16 * 2 * (row["mode"].get<std::string>() == "bifurcated" ? 40 + b * 3 : b * (40 + 3));
    const double attn_flops = 4.0 * 2 * b * 4 * 16 * (40 + 3);
    const double floor =
        std::max(weight_bytes / bw, 2 * b * elements / peak) + std::max(kv_bytes / bw, attn_flops / peak);
    EXPECT_NEAR(row["floor_ms"].get<double>(), 1e3 * floor, 1e-6 * 1e3 * floor) << i;
  }
  const std::vector<std::string> lines = split(read_text(csv), '\n');
  ASSERT_EQ(lines.size(), 6u);
  const std::vector<std::string> header = split(lines[0], ',');
  const auto column = std::find(header.begin(), header.end(), "timed_steps") - header.begin();
  for (int i = 1; i <= 4; ++i) EXPECT_EQ(split(lines[std::size_t(i)], ',')[std::size_t(column)], "6");
}

TEST_F(BenchTest, ProgramRejectsARepeatBelowOneOrNotANumber) {
  if (!fs::exists(cli_test::program_path()))
    GTEST_SKIP() << "the bifurcate program is not built in " << BIFURCATE_BINARY_DIR;
  for (const char* bad : {"0", "x", "-1"}) {
    SCOPED_TRACE(bad);
    const cli_test::RunResult r = run_bifurcate(
        str("bench -m '", model_path(), "' --npp 40 --ntg 1 --npl 1 --no-roofline --no-plot --repeat ", bad));
    EXPECT_EQ(r.exit_code, 2) << r.out;
    EXPECT_NE(r.err.find("--repeat"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(bad), std::string::npos) << r.err;
    EXPECT_EQ(r.out.find("| bifurcated |"), std::string::npos) << "no row may run: " << r.out;
  }
}

}  // namespace
}  // namespace bifurcate::cli
