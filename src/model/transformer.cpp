#include "model/transformer.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/activation.h"
#include "kernels/norm.h"
#include "kernels/rope.h"
#include "tensor/dtype.h"
#include "util/error.h"
#include "util/f16.h"
#include "util/timer.h"

namespace bifurcate::model {

// What one forward call processes: `n` rows, each a token at `positions[i]`
// whose K/V goes to `slots[i]`; attention runs the step plan.
struct Transformer::Rows {
  int n = 0;
  std::vector<int> positions;
  std::vector<kv::KvCache::Slot> slots;
};

void Batch::add(kv::SegmentId segment, std::span<const int32_t> new_tokens, Logits logits) {
  const int first = rows();
  tokens.insert(tokens.end(), new_tokens.begin(), new_tokens.end());
  segments.insert(segments.end(), new_tokens.size(), segment);
  if (logits == Logits::all) {
    for (int i = first; i < rows(); ++i) logit_rows.push_back(i);
  } else if (logits == Logits::last && !new_tokens.empty()) {
    logit_rows.push_back(rows() - 1);
  }
}

Transformer::Transformer(const ModelConfig& config, const ModelWeights& weights)
    : config_(config), weights_(weights) {
  attention_shape_.n_heads = config.n_heads;
  attention_shape_.n_kv_heads = config.n_kv_heads;
  attention_shape_.head_size = config.head_size;
  attention_shape_.scale = 1.0f / std::sqrt(float(config.head_size));
}

kv::KvLayout Transformer::kv_layout(kernels::KvType type) const {
  kv::KvLayout layout{};
  layout.n_layers = config_.n_layers;
  layout.n_kv_heads = config_.n_kv_heads;
  layout.head_size = config_.head_size;
  layout.type = type;
  return layout;
}

void Transformer::reserve(int n_rows) {
  const size_t n = size_t(n_rows);
  if (x_.size() >= n * config_.dim) return;  // every buffer already holds n rows
  x_.resize(n * config_.dim);
  xb_.resize(n * config_.dim);
  q_.resize(n * config_.n_heads * config_.head_size);
  k_.resize(n * config_.n_kv_heads * config_.head_size);
  v_.resize(n * config_.n_kv_heads * config_.head_size);
  att_.resize(n * config_.n_heads * config_.head_size);
  gate_.resize(n * config_.ffn_dim);
  up_.resize(n * config_.ffn_dim);
}

void Transformer::embed(std::span<const int32_t> tokens) {
  const kernels::WeightMatrix& e = weights_.token_embedding;
  const uint64_t row_bytes = gguf::ggml_row_bytes(gguf::ggml_type_traits(e.type), uint64_t(e.cols));
  require_in_vocabulary(tokens, config_.n_vocab);  // checked here too: decode validates through this
  for (size_t i = 0; i < tokens.size(); ++i) {
    const int32_t t = tokens[i];
    const auto* row = static_cast<const uint8_t*>(e.data) + uint64_t(t) * row_bytes;
    tensor::dequantize_row(e.type, row, x_.data() + i * config_.dim, config_.dim);
  }
}

void Transformer::store_kv(kv::KvCache& cache, const Rows& rows, int layer) {
  const int hs = config_.head_size;
  const int kv_dim = config_.n_kv_heads * hs;
  const bool f16 = cache.layout().type == kernels::KvType::f16;
  for (int i = 0; i < rows.n; ++i) {
    for (int h = 0; h < config_.n_kv_heads; ++h) {
      const float* k = k_.data() + size_t(i) * kv_dim + h * hs;
      const float* v = v_.data() + size_t(i) * kv_dim + h * hs;
      void* k_dst = cache.k_row(rows.slots[i], layer, h);
      void* v_dst = cache.v_row(rows.slots[i], layer, h);
      if (f16) {
        f32_to_f16_row(k, static_cast<uint16_t*>(k_dst), hs);
        f32_to_f16_row(v, static_cast<uint16_t*>(v_dst), hs);
      } else {
        std::memcpy(k_dst, k, sizeof(float) * hs);
        std::memcpy(v_dst, v, sizeof(float) * hs);
      }
    }
  }
}

void Transformer::run_layers(kv::KvCache& cache, const Rows& rows, ThreadPool& pool) {
  const ModelConfig& c = config_;
  const int n = rows.n;
  const int q_dim = c.n_heads * c.head_size;
  const int kv_dim = c.n_kv_heads * c.head_size;
  attention_shape_.kv_type = cache.layout().type;

  for (int l = 0; l < c.n_layers; ++l) {
    const LayerWeights& L = weights_.layers[l];
    // Attention sublayer.
    for (int i = 0; i < n; ++i) {
      kernels::rmsnorm(x_.data() + size_t(i) * c.dim, L.attn_norm.data(), c.dim, c.rms_eps,
                       xb_.data() + size_t(i) * c.dim);
    }
    const kernels::MatmulTarget qkv[] = {{L.wq, q_.data()}, {L.wk, k_.data()}, {L.wv, v_.data()}};
    kernels::matmul_shared_input(qkv, xb_.data(), n, pool, matmul_scratch_);
    for (int i = 0; i < n; ++i) {
      float* q = q_.data() + size_t(i) * q_dim;
      float* k = k_.data() + size_t(i) * kv_dim;
      if (c.qkv_bias) {
        kernels::add(q, L.bq.data(), q_dim);
        kernels::add(k, L.bk.data(), kv_dim);
        kernels::add(v_.data() + size_t(i) * kv_dim, L.bv.data(), kv_dim);
      }
      kernels::rope(q, c.n_heads, c.head_size, rows.positions[i], c.rope_base, c.rope_style);
      kernels::rope(k, c.n_kv_heads, c.head_size, rows.positions[i], c.rope_base, c.rope_style);
    }
    store_kv(cache, rows, l);

    const double t0 = now_seconds();
    kernels::attend(step_plan_.for_layer(l), q_.data(), att_.data(), attention_workspace_, pool);
    timings_.attention += now_seconds() - t0;

    kernels::matmul(L.wo, att_.data(), n, xb_.data(), pool, matmul_scratch_);
    kernels::add(x_.data(), xb_.data(), int64_t(n) * c.dim);

    // Feed-forward sublayer (SwiGLU).
    for (int i = 0; i < n; ++i) {
      kernels::rmsnorm(x_.data() + size_t(i) * c.dim, L.ffn_norm.data(), c.dim, c.rms_eps,
                       xb_.data() + size_t(i) * c.dim);
    }
    const kernels::MatmulTarget gate_up[] = {{L.w_gate, gate_.data()}, {L.w_up, up_.data()}};
    kernels::matmul_shared_input(gate_up, xb_.data(), n, pool, matmul_scratch_);
    kernels::swiglu(gate_.data(), up_.data(), int64_t(n) * c.ffn_dim, gate_.data());
    kernels::matmul(L.w_down, gate_.data(), n, xb_.data(), pool, matmul_scratch_);
    kernels::add(x_.data(), xb_.data(), int64_t(n) * c.dim);
  }
}

void Transformer::compute_logits(std::span<const int> rows, float* logits, ThreadPool& pool) {
  // The wanted rows, normed, packed at the front of xb_ (rows ascending, so a
  // row is never overwritten before it is read).
  for (size_t i = 0; i < rows.size(); ++i) {
    kernels::rmsnorm(x_.data() + size_t(rows[i]) * config_.dim, weights_.output_norm.data(), config_.dim,
                     config_.rms_eps, xb_.data() + i * config_.dim);
  }
  if (!rows.empty())
    kernels::matmul(weights_.output, xb_.data(), int(rows.size()), logits, pool, matmul_scratch_);
}

// Everything forward() checks before the cache changes.
void Transformer::check_batch(const kv::KvCache& cache, const Batch& batch) {
  const int n = batch.rows();
  require(n >= 1, "forward needs at least one row");
  require(batch.segments.size() == size_t(n), "forward got ", n, " tokens but ", batch.segments.size(),
          " segments");
  require_in_vocabulary(batch.tokens, config_.n_vocab);
  for (size_t i = 0; i < batch.logit_rows.size(); ++i) {
    const int row = batch.logit_rows[i];
    require(row >= 0 && row < n && (i == 0 || row > batch.logit_rows[i - 1]), "forward: logit row ", row,
            " is out of range or out of order");
  }
  size_t new_blocks = 0;
  for (int begin = 0; begin < n;) {
    const kv::SegmentId s = batch.segments[size_t(begin)];
    int end = begin + 1;
    while (end < n && batch.segments[size_t(end)] == s) ++end;
    for (int later = end; later < n; ++later)
      require(batch.segments[size_t(later)] != s, "forward: the rows of segment ", s,
              " are not consecutive (rows ", begin, "..", end - 1, " and ", later, ")");
    require(cache.n_children(s) == 0 && !cache.is_frozen(s), "forward: segment ", s,
            " has been forked and no longer grows");
    const int last_position = cache.path_tokens(s) + (end - begin) - 1;
    require(last_position < config_.context_length, "forward: a sequence would reach position ", last_position,
            "; the model's context length is ", config_.context_length);
    new_blocks += cache.blocks_to_grow(s, end - begin);
    begin = end;
  }
  if (new_blocks > cache.blocks_available()) {
    throw Error(str("KV cache budget exceeded: a forward pass of ", n, " rows needs ", new_blocks,
                    " more blocks of ", cache.block_bytes(), " bytes; ", cache.blocks_available(),
                    " are free (budget ", cache.budget_bytes(), " bytes)"));
  }
}

void Transformer::forward(kv::KvCache& cache, const Batch& batch, float* logits, ThreadPool& pool) {
  check_batch(cache, batch);
  const double t_begin = now_seconds();
  const int n = batch.rows();
  Rows rows;
  rows.n = n;
  rows.positions.resize(size_t(n));
  rows.slots.resize(size_t(n));
  key_ends_.resize(size_t(n));
  for (int i = 0; i < n; ++i) {
    const kv::SegmentId s = batch.segments[size_t(i)];
    rows.positions[size_t(i)] = cache.path_tokens(s);
    rows.slots[size_t(i)] = cache.append_token(s);
    key_ends_[size_t(i)] = cache.tokens(s);  // itself and every earlier token of its segment
  }
  reserve(n);
  embed(batch.tokens);
  attention_shape_.kv_type = cache.layout().type;
  step_plan_.build(cache, batch.segments, key_ends_, attention_shape_);
  step_plan_.fold_nodes(cache);
  last_work_ = {n, 0, 0};
  for (const kernels::PlannedSegment& seg : step_plan_.plan().segments) {
    last_work_.keys_read += seg.tokens();
    for (size_t i = 0; i < seg.sequences.size(); ++i) last_work_.row_keys += seg.keys_seen(i);
  }
  run_layers(cache, rows, pool);
  compute_logits(batch.logit_rows, logits, pool);
  timings_.total += now_seconds() - t_begin;
}

void Transformer::prefill(kv::KvCache& cache, kv::SegmentId segment, std::span<const int32_t> tokens,
                          std::span<float> logits, bool all_logits, ThreadPool& pool, int chunk_tokens) {
  require(!tokens.empty(), "prefill needs at least one token");
  require(chunk_tokens >= 1, "prefill chunk size must be >= 1, got ", chunk_tokens);
  const int start = cache.path_tokens(segment);
  require(start + int64_t(tokens.size()) <= config_.context_length, "prompt of ", tokens.size(),
          " tokens after ", start, " cached tokens exceeds the model's context length ",
          config_.context_length);
  const size_t vocab = size_t(config_.n_vocab);
  const size_t needed = all_logits ? tokens.size() * vocab : vocab;
  require(logits.size() >= needed, "prefill logits buffer holds ", logits.size(), " floats, needs ", needed);
  require_in_vocabulary(tokens, config_.n_vocab);
  cache.check_budget(int64_t(tokens.size()), 1);

  for (size_t done = 0; done < tokens.size();) {
    const size_t n = std::min<size_t>(size_t(chunk_tokens), tokens.size() - done);
    const bool last = done + n == tokens.size();
    scratch_batch_.clear();
    scratch_batch_.add(segment, tokens.subspan(done, n),
                       all_logits ? Batch::Logits::all : (last ? Batch::Logits::last : Batch::Logits::none));
    forward(cache, scratch_batch_, logits.data() + (all_logits ? done * vocab : 0), pool);
    done += n;
  }
}

void Transformer::decode(kv::KvCache& cache, std::span<const kv::SegmentId> leaves,
                         std::span<const int32_t> tokens, float* logits, ThreadPool& pool) {
  require(!leaves.empty(), "decode needs at least one sequence");
  require(leaves.size() == tokens.size(), "decode got ", leaves.size(), " sequences but ", tokens.size(),
          " tokens");
  scratch_batch_.clear();
  for (size_t i = 0; i < leaves.size(); ++i) scratch_batch_.add(leaves[i], tokens.subspan(i, 1), Batch::Logits::last);
  forward(cache, scratch_batch_, logits, pool);
}

}  // namespace bifurcate::model
