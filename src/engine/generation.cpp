// Engine::generate: validates a request on the caller's thread, submits it to
// the scheduler (scheduler.h), and waits for its result.
#include <algorithm>

#include "engine/engine_impl.h"
#include "util/error.h"
#include "util/timer.h"

namespace bifurcate {
namespace {

std::vector<int32_t> prompt_tokens(const Engine& engine, const GenerationRequest& r) {
  if (!r.prompt_tokens.empty()) return r.prompt_tokens;
  require(!r.prompt.empty(), "the prompt is empty");
  return engine.tokenize(r.prompt, r.add_bos);
}

void validate_request(const GenerationRequest& r, std::span<const int32_t> prompt, const ModelInfo& info) {
  require(r.n >= 1, "n must be >= 1, got ", r.n);
  require(r.best_of == 0 || r.best_of >= r.n, "best_of (", r.best_of, ") must be >= n (", r.n, ")");
  require(r.max_tokens >= 1, "max_tokens must be >= 1, got ", r.max_tokens);
  for (const auto& s : r.stop) require(!s.empty(), "stop strings must not be empty");
  model::require_in_vocabulary(prompt, info.n_vocab);
  require(int(prompt.size()) < info.context_length, "the prompt has ", prompt.size(),
          " tokens; the model's context length is ", info.context_length,
          " (the prompt must leave room for at least one generated token)");
}

}  // namespace

GenerationResult Engine::generate(const GenerationRequest& request, const GenerationCallbacks& callbacks) {
  auto s = std::make_shared<engine::Submission>();
  s->t_submit = now_seconds();
  s->request = &request;
  s->callbacks = &callbacks;
  s->prompt = prompt_tokens(*this, request);
  validate_request(request, s->prompt, impl_->info);
  s->n_samples = std::max(request.n, request.best_of);
  s->max_new_tokens = std::min(request.max_tokens, impl_->info.context_length - int(s->prompt.size()));
  s->params = to_sampling_params(request.sampling);

  // A request that could not run even alone, with nothing cached, is refused now.
  const engine::Scheduler& scheduler = *impl_->scheduler;
  const size_t need = scheduler.worst_case_blocks(int(s->prompt.size()), 0, s->n_samples, s->max_new_tokens) *
                      impl_->cache.block_bytes();
  const size_t budget = impl_->cache.capacity_blocks() * impl_->cache.block_bytes();
  const auto gib = [](size_t bytes) { return double(bytes) / double(size_t(1) << 30); };
  const bool bifurcated = impl_->options.attention == AttentionMode::bifurcated;
  require(need <= budget, "n=", s->n_samples, " samples of up to ", s->max_new_tokens, " tokens after a ",
          s->prompt.size(), "-token prompt in ", bifurcated ? "bifurcated" : "replicated", " mode need ", need,
          " bytes (", gib(need), " GiB) of KV cache; the budget is ", budget, " bytes (", gib(budget), " GiB)");
  return impl_->scheduler->submit(std::move(s)).get();
}

}  // namespace bifurcate
