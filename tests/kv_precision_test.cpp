// f16 KV — what users run by default — against f32 KV and the float64
// reference, for prefill and for forked decode.
//
// The tolerance, derived from f16 rounding. Storing K and V in f16 rounds
// each element to the nearest of its 11 significant bits: a relative change
// of at most u = 2^-11 per element, which the rest of the network amplifies
// by its own conditioning (no useful analytic bound). So the test does not
// guess that amplification; the float64 reference (reference_model.h)
// computes it, run twice over the same tokens: once keeping K and V exact,
// once rounding them to f16 (_Float16, round to nearest even) exactly where
// an f16 cache stores them. D = |ref_f16 - ref_exact| (per row of logits,
// relative to its largest logit) is then the effect of f16 rounding itself.
// The engine rounds its own float32 K/V, which differ from the float64 ones
// by ~1e-6: an element within that distance of a rounding midpoint goes to
// the other neighbour, 1 f16 ulp (2u) away instead of <= u. One such element
// is as large a perturbation as all the rounding of its row, so on rare
// inputs the engine's f16 result is a sizeable fraction of D away from
// ref_f16 (over 300 fresh seeds: typically 1e-2 D, at worst 0.35 D in RMS,
// 1.3 (D + 2 eps) per row). With eps = 1e-5 (float32 arithmetic; measured
// < 1e-6 with f32 KV):
//   1. per row, f32-KV logits are within eps of ref_exact, and f16-KV logits
//      within 3 D + 2 eps of the f32-KV ones (the rounding, plus the
//      elements that round the other way);
//   2. over all rows, the RMS of (f16 KV - ref_f16) is below 0.7 of the RMS
//      of D: f16 storage follows round-to-nearest f16 (an engine that kept
//      f32 gives 1.0, truncation to f16 ~2.4, bf16 ~8);
//   3. D is O(u): below 64 u of the largest logit, and the RMS of D is more
//      than 10x the f32-KV error, so check 2 can tell the formats apart.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "bifurcate/engine.h"
#include "gguf/gguf_file.h"
#include "kv/kv_cache.h"
#include "model/model.h"
#include "model/model_shapes.h"
#include "model/random_model.h"
#include "model/transformer.h"
#include "model_file_support.h"
#include "numeric_test_support.h"
#include "reference_model.h"
#include "util/thread_pool.h"

namespace bifurcate {
namespace {

using test_reference::ReferenceKv;
using test_reference::ReferenceModel;
using test_reference::Vec;

constexpr double kU = 1.0 / 2048;  // f16 unit roundoff, 2^-11
constexpr double kEps = 1e-5;      // float32 arithmetic

// max |a - b| / max |b| over a row of doubles.
double relative_difference(const Vec& a, const Vec& b) {
  double worst = 0, scale = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    worst = std::max(worst, std::abs(a[i] - b[i]));
    scale = std::max(scale, std::abs(b[i]));
  }
  return worst / scale;
}

// Checks 1 and 3 per row; sums what checks 2 and 3 compare over all rows.
class F16KvChecks {
 public:
  void row(const float* f16, const float* f32, const Vec& ref_f16, const Vec& ref_exact,
           const std::string& what) {
    const double d = relative_difference(ref_f16, ref_exact);
    EXPECT_LT(relative_error(f32, ref_exact), kEps) << what << ": f32 KV vs the exact reference";
    const Vec f32_row(f32, f32 + ref_exact.size());
    EXPECT_LE(relative_error(f16, f32_row), 3 * d + 2 * kEps)
        << what << ": f16 KV vs f32 KV beyond 3 D + 2 eps";
    EXPECT_LT(d, 64 * kU) << what << ": f16 rounding of K/V moved the logits by more than O(u)";
    for (size_t i = 0; i < ref_exact.size(); ++i) {
      f16_vs_rounded_ += square(f16[i] - ref_f16[i]);
      f32_vs_exact_ += square(f32[i] - ref_exact[i]);
      rounding_ += square(ref_f16[i] - ref_exact[i]);
    }
  }
  // Checks 2 and 3 over every row seen.
  void finish() const {
    EXPECT_LT(std::sqrt(f16_vs_rounded_), 0.7 * std::sqrt(rounding_))
        << "f16-KV logits do not follow f16 rounding of K/V";
    EXPECT_GT(std::sqrt(rounding_), 10 * std::sqrt(f32_vs_exact_))
        << "f16 rounding is not visible above float32 noise here: the test cannot tell f16 from f32";
  }

 private:
  static double square(double x) { return x * x; }
  double f16_vs_rounded_ = 0, f32_vs_exact_ = 0, rounding_ = 0;
};

// The same forward with either KV type, straight through the model layer:
// prefill of all but the last 3 tokens (all positions' logits), then 3
// forked leaves decoding 3 steps, each leaf its own tokens.
class TinyModelKvPrecision : public ::testing::TestWithParam<std::string> {};

TEST_P(TinyModelKvPrecision, F16LogitsFollowF16RoundingOfKv) {
  const unsigned seed = fresh_seed();
  std::mt19937 rng(seed);
  test_models::ScratchDir dir("kv_precision");
  const std::string path = dir.path("model.gguf");
  model::write_random_model(model::find_model_shape(GetParam()), gguf::GgmlType::F32, "", seed, path, {}, 1);
  const auto m = model::Model::load(path);
  const int n_vocab = m->config().n_vocab, n_prompt = 40, b = 3, steps = 3;
  std::vector<int32_t> prompt(n_prompt);
  for (auto& t : prompt) t = int32_t(rng() % uint32_t(n_vocab));
  std::vector<std::vector<int32_t>> own(b);
  for (auto& seq : own) {
    for (int s = 0; s < steps; ++s) seq.push_back(int32_t(rng() % uint32_t(n_vocab)));
  }

  // logits[type]: the prompt's rows, then per step the b leaves' rows.
  std::vector<float> logits[2];
  ThreadPool pool(2);
  for (int type = 0; type < 2; ++type) {
    model::Transformer forward(m->config(), m->weights());
    kv::KvCache cache(forward.kv_layout(type == 0 ? kernels::KvType::f16 : kernels::KvType::f32), size_t(64)
                                                                                                      << 20);
    logits[type].resize(size_t(n_prompt + steps * b) * size_t(n_vocab));
    const kv::SegmentId root = cache.create_root();
    forward.prefill(cache, root, prompt, std::span(logits[type]).first(size_t(n_prompt) * size_t(n_vocab)),
                    true, pool, 16);
    std::vector<kv::SegmentId> leaves;
    for (int i = 0; i < b; ++i) leaves.push_back(cache.fork(root));
    for (int s = 0; s < steps; ++s) {
      std::vector<int32_t> next;
      for (int i = 0; i < b; ++i) next.push_back(own[size_t(i)][size_t(s)]);
      forward.decode(cache, leaves, next, logits[type].data() + size_t(n_prompt + s * b) * size_t(n_vocab),
                     pool);
    }
    for (kv::SegmentId leaf : leaves) cache.release(leaf);
  }

  const ReferenceModel exact(m->file()), rounded(m->file(), ReferenceKv::f16);
  const std::vector<Vec> prompt_exact = exact.logits(prompt), prompt_rounded = rounded.logits(prompt);
  F16KvChecks checks;
  for (int i = 0; i < n_prompt; ++i) {
    const size_t at = size_t(i) * size_t(n_vocab);
    checks.row(logits[0].data() + at, logits[1].data() + at, prompt_rounded[size_t(i)],
               prompt_exact[size_t(i)], str("prefill position ", i));
  }
  for (int i = 0; i < b; ++i) {
    std::vector<int32_t> seq = prompt;
    seq.insert(seq.end(), own[size_t(i)].begin(), own[size_t(i)].end());
    const std::vector<Vec> seq_exact = exact.logits(seq), seq_rounded = rounded.logits(seq);
    for (int s = 0; s < steps; ++s) {
      const size_t at = size_t(n_prompt + s * b + i) * size_t(n_vocab), pos = size_t(n_prompt + s);
      checks.row(logits[0].data() + at, logits[1].data() + at, seq_rounded[pos], seq_exact[pos],
                 str("decode step ", s, " leaf ", i));
    }
  }
  checks.finish();
}

INSTANTIATE_TEST_SUITE_P(TinyModels, TinyModelKvPrecision,
                         ::testing::Values("tiny", "tiny-qwen2", "tiny-wide-head"), [](const auto& info) {
                           std::string name = info.param;
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

// The same checks through the public API with the default options (f16 KV)
// on the real stories260K model: Engine::evaluate (prefill, every position)
// and Engine::evaluate_forked (4 forked samples decoding the last token), in
// both attention modes.
TEST(KvPrecision, Stories260kDefaultEngineFollowsF16RoundingOfKv) {
  const std::string path = std::string(BIFURCATE_TESTDATA_DIR) + "/stories260K/stories260K.gguf";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "test data missing: " << path;
  const gguf::GgufFile file = gguf::GgufFile::open(path);
  const ReferenceModel exact(file), rounded(file, ReferenceKv::f16);
  F16KvChecks checks;
  for (AttentionMode mode : {AttentionMode::bifurcated, AttentionMode::replicated}) {
    EngineOptions o;
    o.model_path = path;
    o.threads = 2;
    o.attention = mode;
    Engine f16(o);
    ASSERT_EQ(f16.options().kv_precision, KvPrecision::f16) << "the default changed";
    o.kv_precision = KvPrecision::f32;
    Engine f32(o);
    const std::vector<int32_t> tokens = f16.tokenize(
        "Once upon a time, there was a little girl named Lily. She loved to play with her ball in "
        "the park. One day, she saw a big dog.",
        true);
    ASSERT_GE(tokens.size(), 30u);
    const size_t n_vocab = size_t(f16.model_info().n_vocab);
    const std::vector<Vec> ref_exact = exact.logits(tokens), ref_rounded = rounded.logits(tokens);

    const std::vector<float> all16 = f16.evaluate(tokens, true), all32 = f32.evaluate(tokens, true);
    for (size_t i = 0; i < tokens.size(); ++i) {
      checks.row(all16.data() + i * n_vocab, all32.data() + i * n_vocab, ref_rounded[i], ref_exact[i],
                 str("prefill position ", i));
    }
    const int b = 4;
    const std::vector<float> forked16 = f16.evaluate_forked(tokens, b),
                             forked32 = f32.evaluate_forked(tokens, b);
    for (int i = 0; i < b; ++i) {
      checks.row(forked16.data() + size_t(i) * n_vocab, forked32.data() + size_t(i) * n_vocab,
                 ref_rounded.back(), ref_exact.back(),
                 str(mode == AttentionMode::bifurcated ? "bifurcated" : "replicated", " forked sample ", i));
    }
  }
  checks.finish();
}

}  // namespace
}  // namespace bifurcate
