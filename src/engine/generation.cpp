// Engine::generate: prefill the prompt once, fork one leaf per sample, then
// decode all running samples together until each meets a stop rule.
#include <algorithm>
#include <cmath>
#include <optional>

#include "engine/engine_impl.h"
#include "engine/stop_matcher.h"
#include "util/error.h"
#include "util/timer.h"

namespace bifurcate {
namespace {

// One sample's decoding state between steps.
struct RunningSample {
  kv::SegmentId leaf = -1;
  std::optional<sampling::Sampler> sampler;
  std::optional<tokenizer::StreamingDetokenizer> detokenizer;
  std::optional<engine::StopMatcher> stop;
  std::vector<int32_t> history;  // prompt + generated, for penalties
  int32_t next_token = -1;       // sampled, not yet fed to the model
  bool running = true;
  Sample result;
};

std::vector<int32_t> prompt_tokens(const Engine& engine, const GenerationRequest& r) {
  if (!r.prompt_tokens.empty()) return r.prompt_tokens;
  require(!r.prompt.empty(), "the prompt is empty");
  return engine.tokenize(r.prompt, r.add_bos);
}

void validate_request(const GenerationRequest& r, int n_prompt, int context_length) {
  require(r.n >= 1, "n must be >= 1, got ", r.n);
  require(r.best_of == 0 || r.best_of >= r.n, "best_of (", r.best_of, ") must be >= n (", r.n, ")");
  require(r.max_tokens >= 1, "max_tokens must be >= 1, got ", r.max_tokens);
  for (const auto& s : r.stop) require(!s.empty(), "stop strings must not be empty");
  require(n_prompt < context_length, "the prompt has ", n_prompt, " tokens; the model's context length is ",
          context_length, " (the prompt must leave room for at least one generated token)");
}

// Bytes of KV cache the request needs at most, for the up-front budget check.
std::size_t kv_bytes_needed(const kv::KvCache& cache, AttentionMode mode, int n_prompt, int n_samples,
                            int max_new) {
  if (mode == AttentionMode::bifurcated) {
    return cache.bytes_for_tokens(n_prompt) + std::size_t(n_samples) * cache.bytes_for_tokens(max_new);
  }
  // The prompt is prefilled once, then copied into every sample.
  return cache.bytes_for_tokens(n_prompt) +
         std::size_t(n_samples) * cache.bytes_for_tokens(n_prompt + max_new);
}

double gib(std::size_t bytes) { return double(bytes) / double(std::size_t(1) << 30); }

}  // namespace

GenerationResult Engine::generate(const GenerationRequest& request, const GenerationCallbacks& callbacks) {
  Impl& s = *impl_;
  const std::vector<int32_t> prompt = prompt_tokens(*this, request);
  const int n_prompt = int(prompt.size());
  const int context = s.info.context_length;
  validate_request(request, n_prompt, context);
  const int n_samples = std::max(request.n, request.best_of);
  const int max_new = std::min(request.max_tokens, context - n_prompt);
  const sampling::SamplingParams params = to_sampling_params(request.sampling);

  const std::size_t needed = kv_bytes_needed(s.cache, s.options.attention, n_prompt, n_samples, max_new);
  const std::size_t available = s.cache.budget_bytes() - s.cache.bytes_in_use();
  require(needed <= available, "n=", n_samples, " samples of up to ", max_new, " tokens after a ", n_prompt,
          "-token prompt need ", needed, " bytes (", gib(needed), " GiB) of KV cache in ",
          s.options.attention == AttentionMode::bifurcated ? "bifurcated" : "replicated",
          " mode; the budget has ", available, " bytes (", gib(available), " GiB) free");

  GenerationResult out;
  out.stats.prompt_tokens = n_prompt;
  std::vector<float> logits(size_t(s.info.n_vocab));

  // Prefill once.
  const double t_prefill = now_seconds();
  const kv::SegmentId root = s.cache.create_root();
  try {
    s.transformer.prefill(s.cache, root, prompt, logits, false, s.pool, s.options.prefill_chunk);
  } catch (...) {
    s.cache.release(root);
    throw;
  }
  out.stats.prefill_seconds = now_seconds() - t_prefill;

  // Fork one leaf per sample: O(1) when bifurcated, a full copy when replicated.
  std::vector<RunningSample> samples(static_cast<size_t>(n_samples));
  for (int i = 0; i < n_samples; ++i) {
    RunningSample& r = samples[size_t(i)];
    r.leaf = s.options.attention == AttentionMode::bifurcated ? s.cache.fork(root) : s.cache.copy_path(root);
    r.sampler.emplace(params, uint64_t(i));
    r.detokenizer.emplace(*s.tokenizer, /*continues_text=*/true);
    r.stop.emplace(request.stop);
    r.history = prompt;
    r.result.index = i;
  }
  // A forked root is freed with its last leaf; copies no longer need theirs.
  if (s.options.attention == AttentionMode::replicated) s.cache.release(root);
  out.stats.kv_bytes_peak = s.cache.bytes_in_use();

  auto emit = [&](int index, const std::string& text) {
    if (text.empty()) return;
    samples[size_t(index)].result.text += text;
    if (callbacks.on_text) callbacks.on_text(index, text);
  };
  auto finish = [&](int index, FinishReason reason) {
    RunningSample& r = samples[size_t(index)];
    if (reason != FinishReason::stop) emit(index, r.stop->push(r.detokenizer->finish()) + r.stop->finish());
    r.result.finish_reason = reason;
    r.running = false;
    s.cache.release(r.leaf);
  };
  // Records a sampled token and applies the stop rules; true if the sample goes on.
  auto accept = [&](int index, const float* token_logits) {
    RunningSample& r = samples[size_t(index)];
    const sampling::TokenChoice choice =
        r.sampler->sample(std::span<const float>(token_logits, size_t(s.info.n_vocab)), r.history);
    if (!request.ignore_eos && s.tokenizer->is_end_of_generation(choice.token)) {
      finish(index, FinishReason::eos);
      return;
    }
    r.history.push_back(choice.token);
    r.result.tokens.push_back(choice.token);
    r.result.logprobs.push_back(choice.logprob);
    if (params.top_logprobs > 0) r.result.top_logprobs.push_back(choice.top);
    r.next_token = choice.token;
    emit(index, r.stop->push(r.detokenizer->push(choice.token)));
    if (r.stop->stopped()) {
      finish(index, FinishReason::stop);
    } else if (int(r.result.tokens.size()) >= max_new) {
      finish(index, FinishReason::length);
    }
  };

  // On any error, the KV blocks of unfinished samples go back to the pool.
  try {
    // The first token of every sample comes from the prompt's logits.
    for (int i = 0; i < n_samples; ++i) accept(i, logits.data());

    const double t_decode = now_seconds();
    std::vector<kv::SegmentId> leaves;
    std::vector<int32_t> tokens;
    std::vector<int> batch;  // sample index of each batch row
    logits.resize(size_t(n_samples) * size_t(s.info.n_vocab));
    for (;;) {
      leaves.clear(), tokens.clear(), batch.clear();
      for (int i = 0; i < n_samples; ++i) {
        if (!samples[size_t(i)].running) continue;
        if (callbacks.cancel != nullptr && callbacks.cancel->load()) {
          finish(i, FinishReason::cancelled);
          continue;
        }
        leaves.push_back(samples[size_t(i)].leaf);
        tokens.push_back(samples[size_t(i)].next_token);
        batch.push_back(i);
      }
      if (batch.empty()) break;
      s.transformer.decode(s.cache, leaves, tokens, logits.data(), s.pool);
      out.stats.kv_bytes_peak = std::max(out.stats.kv_bytes_peak, s.cache.bytes_in_use());
      for (size_t row = 0; row < batch.size(); ++row) {
        accept(batch[row], logits.data() + row * size_t(s.info.n_vocab));
      }
      ++out.stats.decode_steps;
      if (callbacks.on_step) {
        int active = 0;
        for (const auto& r : samples) active += r.running ? 1 : 0;
        callbacks.on_step(out.stats.decode_steps, active);
      }
    }
    out.stats.decode_seconds = now_seconds() - t_decode;
  } catch (...) {
    for (auto& r : samples) {
      if (r.running) s.cache.release(r.leaf);
    }
    throw;
  }

  for (auto& r : samples) {
    Sample& res = r.result;
    for (float lp : res.logprobs) res.sum_logprob += lp;
    res.mean_logprob = res.tokens.empty() ? 0.0 : res.sum_logprob / double(res.tokens.size());
    out.stats.generated_tokens += int(res.tokens.size());
    out.samples.push_back(std::move(res));
  }
  const Ranking ranking =
      (n_samples > request.n && request.ranking == Ranking::none) ? Ranking::mean_logprob : request.ranking;
  rank_samples(out.samples, ranking, request.n);
  return out;
}

}  // namespace bifurcate
