// The engine's forward pass against a naive float64 reference written here
// (its own loops; only the file reading and row dequantisation are shared),
// on tiny random models of every attention style, for the prefill and several
// decode steps; and the bifurcated path against the replicated one.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <random>
#include <vector>

#include "gguf/gguf_file.h"
#include "kv/kv_cache.h"
#include "model/model.h"
#include "model/random_model.h"
#include "model/transformer.h"
#include "numeric_test_support.h"
#include "tensor/dtype.h"
#include "util/thread_pool.h"

namespace bifurcate::model {
namespace {

using Vec = std::vector<double>;

// A float64 Llama/Qwen2 forward over a whole token sequence, recomputed from
// scratch for every query: attention is a plain softmax over all positions.
class ReferenceModel {
 public:
  explicit ReferenceModel(const gguf::GgufFile& file) : file_(file), c_(read_model_config(file)) {}

  // Logits after each of `tokens` (row i: after tokens[0..i]).
  std::vector<Vec> logits(const std::vector<int32_t>& tokens) const {
    const int n = int(tokens.size()), hs = c_.head_size;
    std::vector<Vec> x(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) x[i] = row("token_embd.weight", tokens[i]);
    for (int l = 0; l < c_.n_layers; ++l) {
      const std::string p = "blk." + std::to_string(l) + ".";
      std::vector<Vec> q(x.size()), k(x.size()), v(x.size());
      for (int i = 0; i < n; ++i) {
        const Vec h = rmsnorm(x[i], vector(p + "attn_norm.weight"));
        q[i] = matvec(p + "attn_q.weight", h);
        k[i] = matvec(p + "attn_k.weight", h);
        v[i] = matvec(p + "attn_v.weight", h);
        if (c_.qkv_bias) {
          add(q[i], vector(p + "attn_q.bias"));
          add(k[i], vector(p + "attn_k.bias"));
          add(v[i], vector(p + "attn_v.bias"));
        }
        rope(q[i], c_.n_heads, i);
        rope(k[i], c_.n_kv_heads, i);
      }
      const int group = c_.n_heads / c_.n_kv_heads;
      for (int i = 0; i < n; ++i) {
        Vec att(size_t(c_.n_heads) * hs, 0.0);
        for (int h = 0; h < c_.n_heads; ++h) {
          const int kvh = h / group;
          Vec scores(static_cast<size_t>(i) + 1);
          double max_score = -INFINITY;
          for (int j = 0; j <= i; ++j) {
            double s = 0;
            for (int e = 0; e < hs; ++e) s += q[i][size_t(h * hs + e)] * k[j][size_t(kvh * hs + e)];
            scores[j] = s / std::sqrt(double(hs));
            max_score = std::max(max_score, scores[j]);
          }
          double sum = 0;
          for (double& s : scores) sum += (s = std::exp(s - max_score));
          for (int j = 0; j <= i; ++j) {
            for (int e = 0; e < hs; ++e) {
              att[size_t(h * hs + e)] += scores[j] / sum * v[j][size_t(kvh * hs + e)];
            }
          }
        }
        add(x[i], matvec(p + "attn_output.weight", att));
        const Vec h = rmsnorm(x[i], vector(p + "ffn_norm.weight"));
        Vec gate = matvec(p + "ffn_gate.weight", h);
        const Vec up = matvec(p + "ffn_up.weight", h);
        for (size_t e = 0; e < gate.size(); ++e) gate[e] = gate[e] / (1 + std::exp(-gate[e])) * up[e];
        add(x[i], matvec(p + "ffn_down.weight", gate));
      }
    }
    std::vector<Vec> out;
    const std::string output = file_.find_tensor("output.weight") ? "output.weight" : "token_embd.weight";
    for (int i = 0; i < n; ++i) out.push_back(matvec(output, rmsnorm(x[i], vector("output_norm.weight"))));
    return out;
  }

 private:
  Vec row(const std::string& name, int64_t r) const {
    const gguf::TensorInfo& t = file_.tensor(name);
    const int64_t cols = int64_t(t.dims[0]);
    std::vector<float> f(static_cast<size_t>(cols));
    tensor::dequantize_row(t.type, t.data + r * tensor::row_bytes(t.type, cols), f.data(), cols);
    return Vec(f.begin(), f.end());
  }
  Vec vector(const std::string& name) const { return row(name, 0); }
  Vec matvec(const std::string& name, const Vec& x) const {
    const gguf::TensorInfo& t = file_.tensor(name);
    Vec y(t.dims[1]);
    for (size_t r = 0; r < y.size(); ++r) {
      const Vec w = row(name, int64_t(r));
      for (size_t e = 0; e < x.size(); ++e) y[r] += w[e] * x[e];
    }
    return y;
  }
  Vec rmsnorm(const Vec& x, const Vec& w) const {
    double ss = 0;
    for (double v : x) ss += v * v;
    const double scale = 1 / std::sqrt(ss / double(x.size()) + c_.rms_eps);
    Vec y(x.size());
    for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] * scale * w[i];
    return y;
  }
  static void add(Vec& x, const Vec& y) {
    for (size_t i = 0; i < x.size(); ++i) x[i] += y[i];
  }
  // Llama rotates adjacent pairs (2i, 2i+1); Qwen2 (NeoX) rotates (i, i + hs/2).
  void rope(Vec& x, int n_heads, int position) const {
    const int hs = c_.head_size;
    for (int h = 0; h < n_heads; ++h) {
      for (int i = 0; i < hs / 2; ++i) {
        const double angle = position * std::pow(double(c_.rope_base), -2.0 * i / hs);
        const size_t a = size_t(h * hs) + (c_.rope_style == kernels::RopeStyle::neox ? size_t(i) : size_t(2 * i));
        const size_t b = a + (c_.rope_style == kernels::RopeStyle::neox ? size_t(hs / 2) : 1);
        const double x0 = x[a], x1 = x[b];
        x[a] = x0 * std::cos(angle) - x1 * std::sin(angle);
        x[b] = x0 * std::sin(angle) + x1 * std::cos(angle);
      }
    }
  }

  const gguf::GgufFile& file_;
  ModelConfig c_;
};

// Writes a tiny random model to a file private to this process (ctest runs
// tests in parallel processes), loads it, and unlinks the file (the mapping
// stays valid).
std::unique_ptr<Model> tiny_model(const std::string& shape, gguf::GgmlType type) {
  const std::string path =
      (std::filesystem::temp_directory_path() /
       ("bifurcate_forward_" + shape + "_" + std::to_string(int(type)) + "_" + std::to_string(getpid()) + ".gguf"))
          .string();
  write_random_model(find_model_shape(shape), type, "", 7, path);
  auto model = Model::load(path);
  std::filesystem::remove(path);
  return model;
}

std::vector<int32_t> random_tokens(int n, int n_vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (auto& x : t) x = int32_t(rng() % uint32_t(n_vocab));
  return t;
}

class ForwardVsReference : public ::testing::TestWithParam<std::tuple<std::string, gguf::GgmlType>> {};

// Prefill of a prompt, then decode steps one token at a time, against the
// reference recomputed over the whole sequence.
TEST_P(ForwardVsReference, PrefillAndDecodeMatchFloat64) {
  const auto& [shape, type] = GetParam();
  auto model = tiny_model(shape, type);
  ReferenceModel reference(model->file());
  Transformer forward(model->config(), model->weights());
  kv::KvCache cache(forward.kv_layout(kernels::KvType::f32), size_t(64) << 20);
  ThreadPool pool(2);
  const int n_vocab = model->config().n_vocab;

  const std::vector<int32_t> tokens = random_tokens(45, n_vocab, 11);
  const std::vector<Vec> expected = reference.logits(tokens);
  const int n_prompt = 37;  // prefill in chunks of 16: ragged last chunk
  std::vector<float> logits(size_t(n_prompt) * n_vocab);
  const kv::SegmentId root = cache.create_root();
  forward.prefill(cache, root, std::span(tokens).first(n_prompt), logits, /*all_logits=*/true, pool, 16);
  for (int i = 0; i < n_prompt; ++i) {
    EXPECT_LT(relative_error(logits.data() + size_t(i) * n_vocab, expected[i]), 1e-4) << "prefill token " << i;
  }
  const kv::SegmentId leaf = cache.fork(root);
  for (int i = n_prompt; i < int(tokens.size()); ++i) {
    std::fill(logits.begin(), logits.end(), NAN);
    forward.decode(cache, std::span(&leaf, 1), std::span(&tokens[i], 1), logits.data(), pool);
    EXPECT_LT(relative_error(logits.data(), expected[i]), 1e-4) << "decode token " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(TinyModels, ForwardVsReference,
                         ::testing::Values(std::tuple{"tiny", gguf::GgmlType::F32},
                                           std::tuple{"tiny-mha", gguf::GgmlType::F32},
                                           std::tuple{"tiny-mqa", gguf::GgmlType::F32},
                                           std::tuple{"tiny-qwen2", gguf::GgmlType::F32},
                                           std::tuple{"tiny-wide-head", gguf::GgmlType::F32},
                                           std::tuple{"tiny", gguf::GgmlType::F16},
                                           std::tuple{"tiny", gguf::GgmlType::Q8_0}),
                         [](const auto& info) {
                           std::string name = std::get<0>(info.param) + "_" +
                                              std::string(gguf::ggml_type_traits(std::get<1>(info.param)).name);
                           for (char& ch : name) ch = std::isalnum(static_cast<unsigned char>(ch)) ? ch : '_';
                           return name;
                         });

// b samples forked from one prompt: bifurcated (shared prompt KV) and
// replicated (a private copy each) give the same logits at every step, and
// equal the single-sequence logits for the same tokens.
class BifurcatedVsReplicated : public ::testing::TestWithParam<std::tuple<std::string, int>> {};

TEST_P(BifurcatedVsReplicated, LogitsAgreeAtEveryStep) {
  const auto& [shape, b] = GetParam();
  auto model = tiny_model(shape, gguf::GgmlType::F32);
  const int n_vocab = model->config().n_vocab;
  ThreadPool pool(2);
  const std::vector<int32_t> prompt = random_tokens(29, n_vocab, 5);
  const int steps = 6;
  std::vector<std::vector<int32_t>> step_tokens;
  for (int s = 0; s < steps; ++s) step_tokens.push_back(random_tokens(b, n_vocab, 100 + uint32_t(s)));

  // logits[mode][step] : [b, n_vocab]
  std::vector<std::vector<std::vector<float>>> logits(2);
  for (int mode = 0; mode < 2; ++mode) {
    Transformer forward(model->config(), model->weights());
    kv::KvCache cache(forward.kv_layout(kernels::KvType::f32), size_t(256) << 20);
    std::vector<float> last(static_cast<size_t>(n_vocab));
    const kv::SegmentId root = cache.create_root();
    forward.prefill(cache, root, prompt, last, false, pool);
    std::vector<kv::SegmentId> leaves;
    for (int i = 0; i < b; ++i) leaves.push_back(mode == 0 ? cache.fork(root) : cache.copy_path(root));
    if (mode == 1) cache.release(root);  // forked roots are freed with their last leaf
    for (int s = 0; s < steps; ++s) {
      std::vector<float> out(size_t(b) * n_vocab, NAN);
      forward.decode(cache, leaves, step_tokens[s], out.data(), pool);
      logits[mode].push_back(std::move(out));
    }
  }
  for (int s = 0; s < steps; ++s) {
    for (int i = 0; i < b; ++i) {
      const float* bif = logits[0][s].data() + size_t(i) * n_vocab;
      const float* rep = logits[1][s].data() + size_t(i) * n_vocab;
      const Vec ref(rep, rep + n_vocab);
      EXPECT_LT(relative_error(bif, ref), 1e-5) << "step " << s << " sample " << i;
    }
  }
  // Sample 0 against a single sequence fed the same tokens.
  ReferenceModel reference(model->file());
  std::vector<int32_t> seq = prompt;
  for (int s = 0; s < steps; ++s) seq.push_back(step_tokens[s][0]);
  const std::vector<Vec> expected = reference.logits(seq);
  for (int s = 0; s < steps; ++s) {
    EXPECT_LT(relative_error(logits[0][s].data(), expected[prompt.size() + size_t(s)]), 1e-4) << "step " << s;
  }
}

INSTANTIATE_TEST_SUITE_P(Batches, BifurcatedVsReplicated,
                         ::testing::Combine(::testing::Values("tiny", "tiny-mqa", "tiny-qwen2"),
                                            ::testing::Values(1, 4, 17)),
                         [](const auto& info) {
                           std::string name = std::get<0>(info.param) + "_b" + std::to_string(std::get<1>(info.param));
                           for (char& ch : name) ch = std::isalnum(static_cast<unsigned char>(ch)) ? ch : '_';
                           return name;
                         });

}  // namespace
}  // namespace bifurcate::model
