// Engine::generate: prefill the prompt once, fork one leaf per sample, then
// decode all running samples together until each meets a stop rule.
#include <algorithm>
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

// One request from validation to ranked results. The KV blocks of every
// sample are released when it finishes, or by the destructor on an error.
class GenerationRun {
 public:
  GenerationRun(Engine::Impl& engine, const GenerationRequest& request, std::vector<int32_t> prompt,
                const GenerationCallbacks& callbacks, double t_submit)
      : e_(engine), request_(request), callbacks_(callbacks), prompt_(std::move(prompt)), t_submit_(t_submit) {
    const int n_prompt = int(prompt_.size());
    validate_request(request, n_prompt, e_.info.context_length);
    n_samples_ = std::max(request.n, request.best_of);
    max_new_ = std::min(request.max_tokens, e_.info.context_length - n_prompt);
    params_ = to_sampling_params(request.sampling);
    check_kv_budget();
  }

  ~GenerationRun() {
    for (auto& r : samples_) {
      if (r.running) e_.cache.release(r.leaf);
    }
  }

  GenerationResult run() {
    out_.stats.prompt_tokens = int(prompt_.size());
    out_.stats.queue_seconds = now_seconds() - t_submit_;
    prefill_and_fork();
    // The first token of every sample comes from the prompt's logits.
    for (int i = 0; i < n_samples_; ++i) accept(i, logits_.data());
    const double t_decode = now_seconds();
    while (decode_step()) {
    }
    out_.stats.decode_seconds = now_seconds() - t_decode;
    return collect_results();
  }

 private:
  // Refuses up front a request whose KV cache could outgrow the budget.
  void check_kv_budget() const {
    const size_t n_prompt = prompt_.size();
    const bool bifurcated = e_.options.attention == AttentionMode::bifurcated;
    // Bifurcated: the prompt once plus each sample's own tokens. Replicated:
    // the prompt is prefilled once, then copied whole into every sample.
    require_kv_budget(e_.cache, n_prompt, size_t(n_samples_),
                      bifurcated ? size_t(max_new_) : n_prompt + size_t(max_new_),
                      str("n=", n_samples_, " samples of up to ", max_new_, " tokens after a ", n_prompt,
                          "-token prompt in ", bifurcated ? "bifurcated" : "replicated", " mode"));
  }

  // Prefills the prompt once, then gives every sample its own leaf: an O(1)
  // fork when bifurcated, a full private copy of the prompt when replicated.
  void prefill_and_fork() {
    logits_.resize(size_t(e_.info.n_vocab));
    const double t_prefill = now_seconds();
    const kv::SegmentId root = prefill_root(e_, prompt_, logits_, false);
    out_.stats.prefill_seconds = now_seconds() - t_prefill;

    // fork_leaves releases what it made on error; every sample gets its live
    // leaf before anything else can throw, so the destructor releases each once.
    const std::vector<kv::SegmentId> leaves = fork_leaves(e_, root, n_samples_);
    samples_.resize(size_t(n_samples_));
    for (int i = 0; i < n_samples_; ++i) samples_[size_t(i)].leaf = leaves[size_t(i)];
    for (int i = 0; i < n_samples_; ++i) {
      RunningSample& r = samples_[size_t(i)];
      r.sampler.emplace(params_, uint64_t(i));
      r.detokenizer.emplace(*e_.tokenizer, /*continues_text=*/true);
      r.stop.emplace(request_.stop);
      r.history = prompt_;
      r.result.index = i;
    }
    out_.stats.kv_bytes_peak = e_.cache.bytes_in_use();
  }

  // Feeds every running sample's last token through the model and samples
  // the next; false once no sample is running.
  bool decode_step() {
    leaves_.clear(), tokens_.clear(), batch_.clear();
    for (int i = 0; i < n_samples_; ++i) {
      RunningSample& r = samples_[size_t(i)];
      if (!r.running) continue;
      if (callbacks_.cancel != nullptr && callbacks_.cancel->load()) {
        finish(i, FinishReason::cancelled);
        continue;
      }
      leaves_.push_back(r.leaf);
      tokens_.push_back(r.next_token);
      batch_.push_back(i);
    }
    if (batch_.empty()) return false;
    const size_t vocab = size_t(e_.info.n_vocab);
    logits_.resize(batch_.size() * vocab);
    e_.transformer.decode(e_.cache, leaves_, tokens_, logits_.data(), e_.pool);
    out_.stats.kv_bytes_peak = std::max(out_.stats.kv_bytes_peak, e_.cache.bytes_in_use());
    for (size_t row = 0; row < batch_.size(); ++row) accept(batch_[row], logits_.data() + row * vocab);
    ++out_.stats.decode_steps;
    if (callbacks_.on_step) {
      int active = 0;
      for (const auto& r : samples_) active += r.running ? 1 : 0;
      callbacks_.on_step(out_.stats.decode_steps, active);
    }
    return true;
  }

  // Samples sample `index`'s next token from its logits and applies the stop rules.
  void accept(int index, const float* token_logits) {
    RunningSample& r = samples_[size_t(index)];
    const sampling::TokenChoice choice =
        r.sampler->sample(std::span<const float>(token_logits, size_t(e_.info.n_vocab)), r.history);
    if (!request_.ignore_eos && e_.tokenizer->is_end_of_generation(choice.token)) {
      finish(index, FinishReason::eos);
      return;
    }
    r.history.push_back(choice.token);
    r.result.tokens.push_back(choice.token);
    r.result.logprobs.push_back(choice.logprob);
    if (params_.top_logprobs > 0) r.result.top_logprobs.push_back(choice.top);
    r.next_token = choice.token;
    if (out_.stats.first_token_seconds == 0) out_.stats.first_token_seconds = now_seconds() - t_submit_;
    if (callbacks_.on_token) callbacks_.on_token(index, TokenEvent{choice.token, choice.logprob, choice.top});
    emit(index, r.stop->push(r.detokenizer->push(choice.token)));
    if (r.stop->stopped()) {
      finish(index, FinishReason::stop);
    } else if (int(r.result.tokens.size()) >= max_new_) {
      finish(index, FinishReason::length);
    }
  }

  void emit(int index, const std::string& text) {
    if (text.empty()) return;
    samples_[size_t(index)].result.text += text;
    if (callbacks_.on_text) callbacks_.on_text(index, text);
  }

  // Ends a sample: flushes held-back text (unless a stop string cut it) and
  // returns its leaf's KV blocks to the pool; the batch shrinks.
  void finish(int index, FinishReason reason) {
    RunningSample& r = samples_[size_t(index)];
    if (reason != FinishReason::stop) emit(index, r.stop->push(r.detokenizer->finish()) + r.stop->finish());
    r.result.finish_reason = reason;
    r.running = false;
    e_.cache.release(r.leaf);
    if (callbacks_.on_finish) callbacks_.on_finish(index, reason);
  }

  GenerationResult collect_results() {
    for (auto& r : samples_) {
      Sample& res = r.result;
      for (float lp : res.logprobs) res.sum_logprob += lp;
      res.mean_logprob = res.tokens.empty() ? 0.0 : res.sum_logprob / double(res.tokens.size());
      out_.stats.generated_tokens += int(res.tokens.size());
      out_.samples.push_back(std::move(res));
    }
    // best_of without a ranking still keeps the best: OpenAI's semantics.
    const Ranking ranking =
        (n_samples_ > request_.n && request_.ranking == Ranking::none) ? Ranking::mean_logprob : request_.ranking;
    rank_samples(out_.samples, ranking, request_.n);
    return std::move(out_);
  }

  Engine::Impl& e_;
  const GenerationRequest& request_;
  const GenerationCallbacks& callbacks_;
  const std::vector<int32_t> prompt_;
  const double t_submit_;
  int n_samples_ = 0;
  int max_new_ = 0;
  sampling::SamplingParams params_;
  std::vector<RunningSample> samples_;
  GenerationResult out_;
  // Per-step scratch: batch row i is sample batch_[i], fed tokens_[i] at leaves_[i].
  std::vector<float> logits_;
  std::vector<kv::SegmentId> leaves_;
  std::vector<int32_t> tokens_;
  std::vector<int> batch_;
};

}  // namespace

namespace {

// Counts a request in a status field for its lifetime.
class StatusCount {
 public:
  StatusCount(Engine::Impl& e, int EngineStatus::*field) : e_(e), field_(field) { add(+1); }
  ~StatusCount() { add(-1); }
  StatusCount(const StatusCount&) = delete;
  StatusCount& operator=(const StatusCount&) = delete;

 private:
  void add(int d) {
    std::lock_guard lock(e_.status_mutex);
    e_.status.*field_ += d;
    e_.status.kv_bytes_used = e_.cache.bytes_in_use();
    e_.status.kv_bytes_budget = e_.options.kv_budget_bytes;
  }
  Engine::Impl& e_;
  int EngineStatus::*field_;
};

}  // namespace

GenerationResult Engine::generate(const GenerationRequest& request, const GenerationCallbacks& callbacks) {
  const double t_submit = now_seconds();
  impl_->require_tokenizer();  // generated tokens become text even when the prompt is token ids
  std::vector<int32_t> prompt = prompt_tokens(*this, request);
  std::unique_lock<std::mutex> run_lock;
  {
    StatusCount queued(*impl_, &EngineStatus::queued_requests);
    {
      std::lock_guard lock(impl_->status_mutex);
      if (impl_->status.queued_requests > impl_->options.max_queued_requests)
        throw Overloaded(str("the queue is full (", impl_->options.max_queued_requests, " requests waiting)"));
    }
    run_lock = std::unique_lock(impl_->run_mutex);
  }
  StatusCount running(*impl_, &EngineStatus::running_requests);
  return GenerationRun(*impl_, request, std::move(prompt), callbacks, t_submit).run();
}

}  // namespace bifurcate
