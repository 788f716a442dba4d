#include <algorithm>
#include <thread>

#include "engine/engine_impl.h"
#include "util/error.h"
#include "util/memory_info.h"

namespace bifurcate {
namespace {

int resolve_threads(int requested) {
  require(requested >= 0, "threads must be >= 0 (0 = all hardware threads), got ", requested);
  if (requested > 0) return requested;
  return std::max(1, int(std::thread::hardware_concurrency()));
}

kernels::KvType to_kv_type(KvPrecision p) { return p == KvPrecision::f32 ? kernels::KvType::f32 : kernels::KvType::f16; }

std::string special_text(const tokenizer::Tokenizer& t, int32_t id) {
  return id < 0 ? std::string() : std::string(t.token_text(id));
}

ModelInfo describe(const model::Model& m, const tokenizer::Tokenizer* t) {
  const model::ModelConfig& c = m.config();
  ModelInfo info{m.file().path(), c.architecture, c.name,      c.n_vocab,        c.dim,
                 c.n_layers,      c.n_heads,      c.n_kv_heads, c.head_size,      c.ffn_dim,
                 c.context_length, "",            "",           ""};
  info.chat_template = m.file().get_string_or("tokenizer.chat_template", "");
  info.has_vocabulary = t != nullptr;
  if (t != nullptr) {
    info.bos_token = special_text(*t, t->bos());
    info.eos_token = special_text(*t, t->eos());
  }
  return info;
}

// A weights-only file (`make-model` without --vocab writes
// tokenizer.ggml.model = "none") still evaluates token ids; any other
// vocabulary problem is an error at load.
std::unique_ptr<tokenizer::Tokenizer> load_tokenizer(const gguf::GgufFile& file) {
  const std::string kind = file.get_string_or("tokenizer.ggml.model", "none");
  if (kind == "none") return nullptr;
  return std::make_unique<tokenizer::Tokenizer>(tokenizer::Tokenizer::from_gguf(file));
}

}  // namespace

std::string_view finish_reason_name(FinishReason reason) {
  switch (reason) {
    case FinishReason::length: return "length";
    case FinishReason::stop: return "stop";
    case FinishReason::eos: return "eos";
    case FinishReason::cancelled: return "cancelled";
  }
  return "unknown";
}

Engine::Impl::Impl(const EngineOptions& opts)
    : options(opts),
      model(model::Model::load(opts.model_path)),
      tokenizer(load_tokenizer(model->file())),
      info(describe(*model, tokenizer.get())),
      pool(resolve_threads(opts.threads)),
      transformer(model->config(), model->weights()),
      cache(transformer.kv_layout(to_kv_type(opts.kv_precision)), resolve_kv_budget(opts.kv_budget_bytes)) {
  require(opts.prefill_chunk >= 1, "prefill chunk must be >= 1, got ", opts.prefill_chunk);
  require(opts.step_tokens >= 1, "step tokens must be >= 1, got ", opts.step_tokens);
  require(opts.max_queued_requests >= 0, "max queued requests must be >= 0, got ", opts.max_queued_requests);
  options.kv_budget_bytes = cache.budget_bytes();
  scheduler = std::make_unique<engine::Scheduler>(*this);
}

Engine::Impl::~Impl() { scheduler.reset(); }

std::size_t resolve_kv_budget(std::size_t requested) {
  return requested > 0 ? requested : default_kv_budget_bytes();
}

const tokenizer::Tokenizer& Engine::Impl::require_tokenizer() const {
  if (tokenizer == nullptr) {
    throw Error(str(info.path, " has no vocabulary (tokenizer.ggml.model is 'none'; a model made by "
                    "`bifurcate make-model` without --vocab), so it cannot turn text into tokens or back: "
                    "make it again with --vocab VOCAB.gguf, or give token ids (`bifurcate logits --tokens 1,2,3`)"));
  }
  return *tokenizer;
}

Engine::Engine(const EngineOptions& options) : impl_(std::make_unique<Impl>(options)) {}
Engine::~Engine() = default;

std::vector<int32_t> Engine::tokenize(std::string_view text, bool add_bos, bool parse_special) const {
  const tokenizer::Tokenizer& t = impl_->require_tokenizer();
  return t.encode(text, add_bos && t.add_bos_by_default(), parse_special);
}

std::string Engine::detokenize(std::span<const int32_t> tokens) const {
  model::require_in_vocabulary(tokens, impl_->info.n_vocab);
  return impl_->require_tokenizer().decode(tokens);
}

const ModelInfo& Engine::model_info() const { return impl_->info; }
const EngineOptions& Engine::options() const { return impl_->options; }

EngineStatus Engine::status() const { return impl_->scheduler->status(); }

kv::SegmentId prefill_root(Engine::Impl& engine, std::span<const int32_t> tokens, std::span<float> logits,
                           bool all_positions) {
  const kv::SegmentId root = engine.cache.create_root();
  try {
    engine.transformer.prefill(engine.cache, root, tokens, logits, all_positions, engine.pool,
                               engine.options.prefill_chunk);
  } catch (...) {
    engine.cache.release(root);
    throw;
  }
  return root;
}

std::vector<kv::SegmentId> fork_leaves(Engine::Impl& engine, kv::SegmentId root, int n) {
  const bool shared = engine.options.attention == AttentionMode::bifurcated;
  std::vector<kv::SegmentId> leaves;
  try {
    for (int i = 0; i < n; ++i) leaves.push_back(shared ? engine.cache.fork(root) : engine.cache.copy_path(root));
  } catch (...) {
    for (kv::SegmentId leaf : leaves) engine.cache.release(leaf);
    if (!shared || leaves.empty()) engine.cache.release(root);
    throw;
  }
  if (!shared) engine.cache.release(root);
  return leaves;
}

void require_kv_budget(const kv::KvCache& cache, size_t root_tokens, size_t n_leaves, size_t leaf_tokens,
                       const std::string& what) {
  const size_t needed =
      cache.bytes_for_tokens(int64_t(root_tokens)) + n_leaves * cache.bytes_for_tokens(int64_t(leaf_tokens));
  const size_t available = cache.budget_bytes() - cache.bytes_in_use();
  const auto gib = [](size_t bytes) { return double(bytes) / double(size_t(1) << 30); };
  require(needed <= available, what, " need ", needed, " bytes (", gib(needed),
          " GiB) of KV cache; the budget has ", available, " bytes (", gib(available), " GiB) free");
}

sampling::SamplingParams to_sampling_params(const SamplingOptions& o) {
  sampling::SamplingParams p;
  p.temperature = o.temperature;
  p.top_k = o.top_k;
  p.top_p = o.top_p;
  p.min_p = o.min_p;
  p.repetition_penalty = o.repetition_penalty;
  p.presence_penalty = o.presence_penalty;
  p.frequency_penalty = o.frequency_penalty;
  p.repeat_last_n = o.repeat_last_n;
  p.seed = o.seed;
  p.top_logprobs = o.top_logprobs;
  p.logit_bias = o.logit_bias;
  sampling::validate(p);
  return p;
}

void rank_samples(std::vector<Sample>& samples, Ranking ranking, int n) {
  auto key = [ranking](const Sample& s) { return ranking == Ranking::sum_logprob ? s.sum_logprob : s.mean_logprob; };
  if (ranking != Ranking::none) {
    std::stable_sort(samples.begin(), samples.end(), [&](const Sample& a, const Sample& b) { return key(a) > key(b); });
  }
  if (samples.size() > size_t(n)) samples.resize(size_t(n));
}

}  // namespace bifurcate
