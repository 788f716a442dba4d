// bifurcate's public C++ API: load a GGUF model once, then generate many
// continuations of a prompt, prefilled once and decoded together.
//
//   bifurcate::Engine engine({.model_path = "model.gguf"});
//   bifurcate::GenerationRequest request{.prompt = "def fib(n):", .n = 8, .max_tokens = 64};
//   for (const auto& sample : engine.generate(request).samples) std::cout << sample.text;
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace bifurcate {

// How the samples of one request read the shared prompt's KV cache.
enum class AttentionMode {
  bifurcated,  // the prompt's KV is stored once and read once per step for all samples
  replicated,  // each sample owns a private copy of the prompt's KV (the paper's baseline)
};

// "bifurcated" or "replicated": the name flags and reports use.
inline std::string_view attention_mode_name(AttentionMode mode) {
  return mode == AttentionMode::bifurcated ? "bifurcated" : "replicated";
}

enum class KvPrecision { f16, f32 };

struct EngineOptions {
  std::string model_path;
  int threads = 0;                                  // 0: one per hardware thread
  AttentionMode attention = AttentionMode::bifurcated;
  KvPrecision kv_precision = KvPrecision::f16;
  // KV cache memory; 0: half of MemAvailable when the engine starts (after
  // the model is loaded), at least 64 MiB. A request that could never fit is refused up front.
  std::size_t kv_budget_bytes = 0;
  int prefill_chunk = 256;                          // prompt tokens per prefill matmul batch
  // Rows of one forward pass: every running sample's decode row, then prefill
  // chunks of admitted prompts with what is left (at least a quarter of it).
  // 256 by measurement (docs/perf-notes.md S3, bench-serve's default
  // workload): against 128, TTFT p50 -27 % and throughput +9 %, for +17 %
  // inter-token latency p50 while prompts prefill.
  int step_tokens = 256;
  bool prefix_cache = true;      // keep prompts' KV for later requests that share a prefix
  int max_queued_requests = 256; // requests waiting for admission beyond this are refused (Overloaded)
};

struct SamplingOptions {
  float temperature = 1.0f;  // 0: greedy
  int top_k = 0;             // 0: off
  float top_p = 1.0f;        // 1: off
  float min_p = 0.0f;        // 0: off
  float repetition_penalty = 1.0f;
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  int repeat_last_n = 64;
  uint64_t seed = 0;
  int top_logprobs = 0;      // alternatives reported per generated token
  std::vector<std::pair<int32_t, float>> logit_bias;  // (token, bias) added to its logit before sampling
};

enum class Ranking {
  none,          // samples in the order they were drawn
  mean_logprob,  // highest mean log-probability per token first (the paper's re-ranking)
  sum_logprob,   // highest total log-probability first
};

struct GenerationRequest {
  std::string prompt;
  std::vector<int32_t> prompt_tokens;  // used instead of `prompt` when not empty
  bool add_bos = true;                 // prepend BOS when the vocabulary asks for one
  int n = 1;                           // samples returned
  int best_of = 0;                     // samples drawn (0: n); the best n by `ranking` are returned
  int max_tokens = 16;
  std::vector<std::string> stop;       // stop strings (not included in the text)
  bool ignore_eos = false;
  SamplingOptions sampling;
  Ranking ranking = Ranking::mean_logprob;
};

enum class FinishReason { length, stop, eos, cancelled };
std::string_view finish_reason_name(FinishReason reason);

struct Sample {
  int index = 0;                        // draw order, 0 .. best_of-1
  std::string text;
  std::vector<int32_t> tokens;          // generated tokens (EOS excluded)
  std::vector<float> logprobs;          // model log-probability of each generated token
  std::vector<std::vector<std::pair<int32_t, float>>> top_logprobs;  // per token, if asked
  FinishReason finish_reason = FinishReason::length;
  double sum_logprob = 0;
  double mean_logprob = 0;
};

struct GenerationStats {
  int prompt_tokens = 0;
  int cached_prompt_tokens = 0;  // prompt tokens whose KV came from the prefix cache (not prefilled)
  double queue_seconds = 0;      // submission to admission
  double first_token_seconds = 0;  // submission to the first generated token
  int generated_tokens = 0;     // over all samples
  int decode_steps = 0;
  double prefill_seconds = 0;
  double decode_seconds = 0;
  std::size_t kv_bytes_peak = 0;
};

struct GenerationResult {
  std::vector<Sample> samples;  // n samples, ranked as requested
  GenerationStats stats;
};

// One generated token as it is accepted, before its text is released.
struct TokenEvent {
  int32_t token = -1;
  float logprob = 0;                                        // the model's (raw logits)
  std::span<const std::pair<int32_t, float>> top_logprobs;  // empty unless asked
};

// Callbacks run on the thread that runs the model (not the caller's): keep
// them short and never call back into the Engine from them.
struct GenerationCallbacks {
  // Text of sample `index` that became final (UTF-8 complete, stop strings resolved).
  std::function<void(int index, std::string_view text)> on_text;
  // Every generated token of sample `index`, in order (EOS excluded).
  std::function<void(int index, const TokenEvent& token)> on_token;
  // Sample `index` finished; its last on_text came before.
  std::function<void(int index, FinishReason reason)> on_finish;
  // After each decode step: the step number and how many samples are still running.
  std::function<void(int step, int active_samples)> on_step;
  // Polled between steps; when it becomes true the samples finish as `cancelled`.
  const std::atomic<bool>* cancel = nullptr;
};

struct ModelInfo {
  std::string path, architecture, name;
  int n_vocab, dim, n_layers, n_heads, n_kv_heads, head_size, ffn_dim, context_length;
  std::string chat_template;         // tokenizer.chat_template; "" when the file has none
  std::string bos_token, eos_token;  // their text; "" when the vocabulary has none
  // False for a weights-only file (`make-model` without --vocab): evaluate()
  // works on token ids, while tokenize, detokenize, token_to_piece and
  // generate throw an Error that says so.
  bool has_vocabulary = true;
};

// A snapshot of the engine's load, for metrics and health checks.
struct EngineStatus {
  int running_requests = 0;
  int queued_requests = 0;
  std::size_t kv_bytes_used = 0;    // held by running sequences and cached prefixes
  std::size_t kv_bytes_cached = 0;  // held by cached prefixes no running sequence uses (evictable)
  std::size_t kv_bytes_budget = 0;
  // Since the engine started, on the model thread: steps run, seconds inside
  // steps, and of those inside the model's forward passes (the rest is the
  // scheduler: admission, batching, sampling, callbacks).
  int64_t steps = 0;
  double step_seconds = 0;
  double forward_seconds = 0;
  // Of those, the steps of decode rows only (no prompt being prefilled): their
  // forward seconds, rows, and attention work summed over the steps (per layer
  // and KV head, from each step's plan: tokens read, tokens × rows reading
  // them), so a client can set the steady decode step against its roofline.
  int64_t decode_steps = 0;
  double decode_forward_seconds = 0;
  int64_t decode_rows = 0;
  int64_t decode_keys_read = 0;
  int64_t decode_row_keys = 0;
};

class Engine {
 public:
  // Loads the model and its tokenizer. Error names the file and the problem.
  explicit Engine(const EngineOptions& options);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Validates the request (empty prompt, n, best_of, max_tokens, prompt
  // longer than the context, KV budget) before any work; Error on a bad one,
  // Overloaded (util/error.h) when the admission queue is full. Safe to call
  // from many threads at once: concurrent requests decode together in one
  // batch, sharing the KV of common prompt prefixes.
  GenerationResult generate(const GenerationRequest& request, const GenerationCallbacks& callbacks = {});

  // Runs `tokens` as one sequence (its own KV, freed afterwards) and returns
  // the logits after the last token, or with `all_positions` after every
  // token: [rows, n_vocab]. Error for no tokens, an id outside the
  // vocabulary, more tokens than the context, or too small a KV budget.
  std::vector<float> evaluate(std::span<const int32_t> tokens, bool all_positions);

  // The decode path as generate() runs it: prefills all tokens but the last
  // once, forks `n_samples` sequences from it (shared or copied, per
  // options().attention) and decodes the last token in all of them in one
  // batch. Returns [n_samples, n_vocab]; each row should equal
  // evaluate(tokens, false) up to float rounding. Needs >= 2 tokens.
  std::vector<float> evaluate_forked(std::span<const int32_t> tokens, int n_samples);

  // parse_special: control tokens written in the text (<|im_start|>) become their ids.
  std::vector<int32_t> tokenize(std::string_view text, bool add_bos, bool parse_special = false) const;
  std::string detokenize(std::span<const int32_t> tokens) const;
  // One token's bytes as they appear inside a text (SPM keeps the leading
  // space that detokenize drops at the start); "" for control tokens.
  std::string token_to_piece(int32_t token) const;
  const ModelInfo& model_info() const;
  const EngineOptions& options() const;
  EngineStatus status() const;  // thread-safe

  struct Impl;  // opaque: defined by the engine library

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace bifurcate
