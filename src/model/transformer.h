// The Llama-family forward pass: causal prefill of a prompt into a KV
// segment, and decode steps for a batch of sequences that attend through
// the KV segment tree (bifurcated: shared context read once per step).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "kernels/attention.h"
#include "kernels/matmul.h"
#include "kv/attention_plan.h"
#include "kv/kv_cache.h"
#include "model/model_config.h"
#include "model/model_weights.h"
#include "util/aligned_buffer.h"
#include "util/thread_pool.h"

namespace bifurcate::model {

// One forward pass's work (DESIGN.md §7): rows of tokens, each appended to a
// growing KV segment. The rows of one segment are consecutive and in token
// order — a prefill chunk, or a decode step's one token per sequence. A row
// attends to every token of its segment's ancestors and, causally, to its own
// segment up to and including itself, so decode rows of running sequences and
// prefill chunks of new prompts (below any existing path) run in one pass.
struct Batch {
  std::vector<int32_t> tokens;          // (rows)
  std::vector<kv::SegmentId> segments;  // (rows) the growing segment each row's K/V is appended to
  std::vector<int> logit_rows;          // ascending rows whose logits are computed, in this order

  int rows() const { return int(tokens.size()); }
  void clear() { tokens.clear(), segments.clear(), logit_rows.clear(); }
  // Appends `tokens` to `segment`'s rows; `logits`: none, the last row's, or every row's.
  enum class Logits { none, last, all };
  void add(kv::SegmentId segment, std::span<const int32_t> tokens, Logits logits);
};

// Seconds spent per phase since the last reset; for `bench`.
struct ForwardTimings {
  double attention = 0;  // attention kernels (incl. plan building)
  double total = 0;      // whole forward calls
};

// What the last forward pass's attention read and computed, per layer and
// KV head, from its plan after folding (the roofline's KV terms).
struct ForwardWork {
  int rows = 0;
  int64_t keys_read = 0;  // Σ planned segments' tokens: each is read once
  int64_t row_keys = 0;   // Σ over segments of tokens × rows reading them (q·K and p·V work)
};

class Transformer {
 public:
  Transformer(const ModelConfig& config, const ModelWeights& weights);

  const ModelConfig& config() const { return config_; }
  kv::KvLayout kv_layout(kernels::KvType type) const;

  // Runs `batch` once: appends every row's K/V to its segment (all or
  // nothing: Error before any change when the KV budget, the context length
  // or a token id is exceeded) and writes logits[i * n_vocab ...] for row
  // batch.logit_rows[i].
  void forward(kv::KvCache& cache, const Batch& batch, float* logits, ThreadPool& pool);

  // Runs `tokens` through the model in chunks of at most `chunk_tokens`,
  // appending their K/V to `segment`, a growing segment anywhere in the tree
  // (it attends to its ancestors' tokens). Writes the logits of the last token
  // to logits[0, n_vocab), or with `all_logits` those of every token to
  // logits[i * n_vocab ...]. logits.size() must fit what is written.
  void prefill(kv::KvCache& cache, kv::SegmentId segment, std::span<const int32_t> tokens,
               std::span<float> logits, bool all_logits, ThreadPool& pool, int chunk_tokens = 256);

  // One decode step for a batch: tokens[i] is the next token of the sequence
  // ending in leaves[i]; its K/V is appended to that leaf. logits: [b, n_vocab].
  void decode(kv::KvCache& cache, std::span<const kv::SegmentId> leaves, std::span<const int32_t> tokens,
              float* logits, ThreadPool& pool);

  const ForwardTimings& timings() const { return timings_; }
  const ForwardWork& last_work() const { return last_work_; }
  void reset_timings() { timings_ = {}; }

 private:
  struct Rows;  // per-call row bookkeeping, defined in the .cpp

  void check_batch(const kv::KvCache& cache, const Batch& batch);
  void embed(std::span<const int32_t> tokens);
  void run_layers(kv::KvCache& cache, const Rows& rows, ThreadPool& pool);
  void store_kv(kv::KvCache& cache, const Rows& rows, int layer);
  void compute_logits(std::span<const int> rows, float* logits, ThreadPool& pool);
  void reserve(int n_rows);

  ModelConfig config_;
  const ModelWeights& weights_;
  kernels::AttentionShape attention_shape_{};
  kernels::AttentionWorkspace attention_workspace_;
  kernels::MatmulScratch matmul_scratch_;
  kv::StepAttentionPlan step_plan_;  // built once per forward, shifted per layer
  std::vector<int> key_ends_;        // (rows) scratch: keys of its own segment each row sees
  Batch scratch_batch_;              // prefill / decode wrappers
  ForwardTimings timings_;
  ForwardWork last_work_;

  // Activations for up to x_.size() / dim rows (tokens of a chunk, or samples of a step);
  // reserve() only grows them, all together.
  AlignedBuffer<float> x_;       // (rows, dim) residual stream
  AlignedBuffer<float> xb_;      // (rows, dim) normed input / sublayer output
  AlignedBuffer<float> q_;       // (rows, n_heads*head_size)
  AlignedBuffer<float> k_;       // (rows, n_kv_heads*head_size)
  AlignedBuffer<float> v_;       // (rows, n_kv_heads*head_size)
  AlignedBuffer<float> att_;     // (rows, n_heads*head_size)
  AlignedBuffer<float> gate_;    // (rows, ffn_dim)
  AlignedBuffer<float> up_;      // (rows, ffn_dim)
};

}  // namespace bifurcate::model
