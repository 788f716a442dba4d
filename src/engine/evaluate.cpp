// Engine::evaluate / evaluate_forked: logits of a fixed token sequence, for
// validation tools (`bifurcate logits`, `bifurcate perplexity`) that compare
// this engine against another one, and the decode path against prefill.
#include <vector>

#include "engine/engine_impl.h"
#include "util/error.h"

namespace bifurcate {
namespace {

// Checks a sequence before any work: non-empty, ids in the vocabulary, fits the context.
void validate_tokens(std::span<const int32_t> tokens, const ModelInfo& info) {
  require(!tokens.empty(), "no tokens to evaluate");
  model::require_in_vocabulary(tokens, info.n_vocab);
  require(int64_t(tokens.size()) <= info.context_length, "the sequence has ", tokens.size(),
          " tokens; the model's context length is ", info.context_length);
}

}  // namespace

std::string Engine::token_to_piece(int32_t token) const {
  model::require_in_vocabulary(std::span(&token, 1), impl_->info.n_vocab);
  return impl_->tokenizer->token_to_piece(token);
}

// Both run on the model thread between steps, beside whatever requests are
// running: cached prefixes make room first; the blocks promised to running
// requests are given back before the next step.
std::vector<float> Engine::evaluate(std::span<const int32_t> tokens, bool all_positions) {
  Impl& s = *impl_;
  validate_tokens(tokens, s.info);
  const size_t rows = all_positions ? tokens.size() : 1;
  std::vector<float> logits(rows * size_t(s.info.n_vocab));
  s.scheduler->run_on_model_thread([&] {
    s.scheduler->make_room(s.cache.blocks_for_tokens(int64_t(tokens.size())));
    require_kv_budget(s.cache, tokens.size(), 0, 0, str("evaluating ", tokens.size(), " tokens would"));
    s.cache.release(prefill_root(s, tokens, logits, all_positions));
  });
  return logits;
}

std::vector<float> Engine::evaluate_forked(std::span<const int32_t> tokens, int n_samples) {
  Impl& s = *impl_;
  validate_tokens(tokens, s.info);
  require(tokens.size() >= 2, "forked evaluation needs at least 2 tokens (a prefix to share and one to decode), got ",
          tokens.size());
  require(n_samples >= 1, "n_samples must be >= 1, got ", n_samples);
  const std::span<const int32_t> prefix = tokens.first(tokens.size() - 1);
  const bool shared = s.options.attention == AttentionMode::bifurcated;
  const size_t n_vocab = size_t(s.info.n_vocab);
  std::vector<float> logits(size_t(n_samples) * n_vocab);
  s.scheduler->run_on_model_thread([&] {
    // Bifurcated: one decoded token per leaf; replicated: a private copy of the whole sequence per leaf.
    const size_t leaf_tokens = shared ? 1 : tokens.size();
    s.scheduler->make_room(s.cache.blocks_for_tokens(int64_t(prefix.size())) +
                           size_t(n_samples) * s.cache.blocks_for_tokens(int64_t(leaf_tokens)));
    require_kv_budget(s.cache, prefix.size(), size_t(n_samples), leaf_tokens,
                      str("evaluating ", prefix.size(), " tokens forked into ", n_samples, " sequences would"));
    const kv::SegmentId root = prefill_root(s, prefix, std::span<float>(logits).first(n_vocab), false);
    const std::vector<kv::SegmentId> leaves = fork_leaves(s, root, n_samples);
    const std::vector<int32_t> last(size_t(n_samples), tokens.back());
    try {
      s.transformer.decode(s.cache, leaves, last, logits.data(), s.pool);
    } catch (...) {
      for (kv::SegmentId leaf : leaves) s.cache.release(leaf);
      throw;
    }
    for (kv::SegmentId leaf : leaves) s.cache.release(leaf);
  });
  return logits;
}

}  // namespace bifurcate
