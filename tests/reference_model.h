// A float64 Llama/Qwen2 forward written for the tests, independent of the
// library's model code: it reads the hyper-parameters from the GGUF metadata
// keys itself (not through model::read_model_config, so a wrong key mapping
// cannot sit on both sides of a comparison), recomputes attention from
// scratch for every query as a plain softmax over all earlier positions, and
// shares with the library only the file reader and the row dequantisation.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "gguf/gguf_file.h"
#include "kernels/matmul.h"
#include "tensor/dtype.h"
#include "util/error.h"

namespace bifurcate::test_reference {

using Vec = std::vector<double>;

// The hyper-parameters, each from its llama.cpp metadata key.
struct ReferenceConfig {
  std::string architecture;  // "llama" or "qwen2"
  int dim = 0, n_layers = 0, n_heads = 0, n_kv_heads = 0, head_size = 0;
  double rope_base = 10000, rms_eps = 1e-5;
  bool neox_rope = false;  // qwen2: rotate (i, i + hs/2); llama: adjacent pairs (2i, 2i+1)
  bool qkv_bias = false;   // qwen2: attn_{q,k,v}.bias
};

inline ReferenceConfig read_reference_config(const gguf::GgufFile& f) {
  ReferenceConfig c;
  c.architecture = f.get_string("general.architecture");
  require(c.architecture == "llama" || c.architecture == "qwen2", "reference model: architecture ",
          c.architecture);
  const std::string a = c.architecture + ".";
  c.dim = int(f.get_uint(a + "embedding_length"));
  c.n_layers = int(f.get_uint(a + "block_count"));
  c.n_heads = int(f.get_uint(a + "attention.head_count"));
  c.n_kv_heads =
      f.find(a + "attention.head_count_kv") ? int(f.get_uint(a + "attention.head_count_kv")) : c.n_heads;
  c.head_size =
      f.find(a + "attention.key_length") ? int(f.get_uint(a + "attention.key_length")) : c.dim / c.n_heads;
  c.rope_base = f.get_float_or(a + "rope.freq_base", 10000.0);
  c.rms_eps = f.get_float_or(a + "attention.layer_norm_rms_epsilon", 1e-5);
  c.neox_rope = c.architecture == "qwen2";
  c.qkv_bias = c.architecture == "qwen2";
  return c;
}

// How the reference stores K and V between positions: exactly, or rounded to
// IEEE half precision (the compiler's _Float16, round to nearest even — not
// the library's converter), as an f16 KV cache stores them.
enum class ReferenceKv { exact, f16 };

class ReferenceModel {
 public:
  explicit ReferenceModel(const gguf::GgufFile& file, ReferenceKv kv = ReferenceKv::exact)
      : file_(file), c_(read_reference_config(file)), kv_(kv) {}

  const ReferenceConfig& config() const { return c_; }

  // Logits after each of `tokens` (row i: after tokens[0..i]).
  std::vector<Vec> logits(const std::vector<int32_t>& tokens) const {
    const int n = int(tokens.size()), hs = c_.head_size;
    std::vector<Vec> x(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) x[size_t(i)] = row("token_embd.weight", tokens[size_t(i)]);
    for (int l = 0; l < c_.n_layers; ++l) {
      const std::string p = "blk." + std::to_string(l) + ".";
      std::vector<Vec> q(x.size()), k(x.size()), v(x.size());
      for (size_t i = 0; i < x.size(); ++i) {
        const Vec h = rmsnorm(x[i], vector(p + "attn_norm.weight"));
        q[i] = matvec(p + "attn_q.weight", h);
        k[i] = matvec(p + "attn_k.weight", h);
        v[i] = matvec(p + "attn_v.weight", h);
        if (c_.qkv_bias) {
          add(q[i], vector(p + "attn_q.bias"));
          add(k[i], vector(p + "attn_k.bias"));
          add(v[i], vector(p + "attn_v.bias"));
        }
        rope(q[i], c_.n_heads, int(i));
        rope(k[i], c_.n_kv_heads, int(i));
        store(k[i]);
        store(v[i]);
      }
      const int group = c_.n_heads / c_.n_kv_heads;
      for (int i = 0; i < n; ++i) {
        Vec att(size_t(c_.n_heads) * size_t(hs), 0.0);
        for (int h = 0; h < c_.n_heads; ++h) {
          const size_t qo = size_t(h) * size_t(hs), ko = size_t(h / group) * size_t(hs);
          Vec scores(static_cast<size_t>(i) + 1);
          double max_score = -INFINITY;
          for (int j = 0; j <= i; ++j) {
            double s = 0;
            for (int e = 0; e < hs; ++e) s += q[size_t(i)][qo + size_t(e)] * k[size_t(j)][ko + size_t(e)];
            scores[size_t(j)] = s / std::sqrt(double(hs));
            max_score = std::max(max_score, scores[size_t(j)]);
          }
          double sum = 0;
          for (double& s : scores) sum += (s = std::exp(s - max_score));
          for (int j = 0; j <= i; ++j) {
            for (int e = 0; e < hs; ++e)
              att[qo + size_t(e)] += scores[size_t(j)] / sum * v[size_t(j)][ko + size_t(e)];
          }
        }
        Vec& xi = x[size_t(i)];
        add(xi, matvec(p + "attn_output.weight", att));
        const Vec h = rmsnorm(xi, vector(p + "ffn_norm.weight"));
        Vec gate = matvec(p + "ffn_gate.weight", h);
        const Vec up = matvec(p + "ffn_up.weight", h);
        for (size_t e = 0; e < gate.size(); ++e) gate[e] = gate[e] / (1 + std::exp(-gate[e])) * up[e];
        add(xi, matvec(p + "ffn_down.weight", gate));
      }
    }
    std::vector<Vec> out;
    const std::string output = file_.find_tensor("output.weight") ? "output.weight" : "token_embd.weight";
    for (const Vec& xi : x) out.push_back(matvec(output, rmsnorm(xi, vector("output_norm.weight"))));
    return out;
  }

 private:
  // Every tensor is dequantized once, on first use, to float64: [rows][cols].
  const Vec& dequantized(const std::string& name) const {
    auto it = dequantized_.find(name);
    if (it != dequantized_.end()) return it->second;
    const gguf::TensorInfo& t = file_.tensor(name);
    const int64_t cols = int64_t(t.dims[0]), rows = int64_t(t.n_elements()) / cols;
    std::vector<float> f(static_cast<size_t>(cols));
    Vec all;
    all.reserve(size_t(rows * cols));
    for (int64_t r = 0; r < rows; ++r) {
      tensor::dequantize_row(t.type, t.data + r * tensor::row_bytes(t.type, cols), f.data(), cols);
      all.insert(all.end(), f.begin(), f.end());
    }
    return dequantized_.emplace(name, std::move(all)).first->second;
  }
  Vec row(const std::string& name, int64_t r) const {
    const size_t cols = file_.tensor(name).dims[0];
    const Vec& all = dequantized(name);
    return Vec(all.begin() + std::ptrdiff_t(size_t(r) * cols),
               all.begin() + std::ptrdiff_t(size_t(r + 1) * cols));
  }
  Vec vector(const std::string& name) const { return dequantized(name); }
  // x as the int8 path sees it: per 256 elements, dx = amax / 127 and
  // q = round-half-even(x * (127 / amax)), both in f32; x̂ = dx * q.
  static Vec int8_rounded(const Vec& x) {
    Vec out(x.size());
    for (size_t b = 0; b < x.size(); b += 256) {
      const size_t end = std::min(x.size(), b + 256);
      float amax = 0;
      for (size_t e = b; e < end; ++e) amax = std::max(amax, std::fabs(float(x[e])));
      const float dx = amax / 127.0f;
      const float inv = amax > 0 ? 127.0f / amax : 0.0f;
      for (size_t e = b; e < end; ++e) out[e] = double(dx) * double(std::nearbyint(float(x[e]) * inv));
    }
    return out;
  }
  Vec matvec(const std::string& name, const Vec& x) const {
    const gguf::TensorInfo& t = file_.tensor(name);
    require(t.dims[0] == x.size(), "reference model: ", name, " has rows of ", t.dims[0], ", input ",
            x.size());
    const Vec& w = dequantized(name);
    // Where the library multiplies by int8 dot products, it multiplies the
    // weights by x rounded to int8 per 256-element superblock (the rule is
    // written out here, after kernels::matmul_quantizes_activations): the
    // reference does the same, or int8 rounding (~1e-2 of the logits) would
    // hide every other error.
    const Vec xq = kernels::matmul_quantizes_activations(t.type) ? int8_rounded(x) : x;
    Vec y(t.dims[1]);
    for (size_t r = 0; r < y.size(); ++r) {
      const double* wr = w.data() + r * x.size();
      double sum = 0;
      for (size_t e = 0; e < x.size(); ++e) sum += wr[e] * xq[e];
      y[r] = sum;
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
  void rope(Vec& x, int n_heads, int position) const {
    const int hs = c_.head_size;
    for (int h = 0; h < n_heads; ++h) {
      for (int i = 0; i < hs / 2; ++i) {
        const double angle = position * std::pow(c_.rope_base, -2.0 * i / hs);
        const size_t a = size_t(h * hs) + (c_.neox_rope ? size_t(i) : size_t(2 * i));
        const size_t b = a + (c_.neox_rope ? size_t(hs / 2) : 1);
        const double x0 = x[a], x1 = x[b];
        x[a] = x0 * std::cos(angle) - x1 * std::sin(angle);
        x[b] = x0 * std::sin(angle) + x1 * std::cos(angle);
      }
    }
  }
  void store(Vec& kv) const {
    if (kv_ == ReferenceKv::f16) {
      for (double& e : kv) e = double(static_cast<_Float16>(e));
    }
  }

  const gguf::GgufFile& file_;
  ReferenceConfig c_;
  ReferenceKv kv_;
  mutable std::map<std::string, Vec> dequantized_;
};

}  // namespace bifurcate::test_reference
