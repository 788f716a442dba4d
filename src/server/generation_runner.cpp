#include "server/generation_runner.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <utility>

#include "util/error.h"
#include "util/timer.h"

namespace bifurcate::server {
namespace {

using nlohmann::json;

// Per sample, the time of its last token: the gaps are the inter-token latencies.
class TokenClock {
 public:
  explicit TokenClock(int samples) : last_(size_t(samples), 0.0) {}
  void tick(int index) {
    const double now = now_seconds();
    double& last = last_[size_t(index)];
    if (last > 0) gaps_.push_back(now - last);
    last = now;
  }
  const std::vector<double>& gaps() const { return gaps_; }

 private:
  std::vector<double> last_;
  std::vector<double> gaps_;
};

std::string sse(const json& value) { return "data: " + to_text(value) + "\n\n"; }

}  // namespace

void RequestRecord::add(const GenerationStats& stats) {
  if (first_token_seconds < 0 && stats.first_token_seconds > 0) first_token_seconds = stats.first_token_seconds;
  prompt_tokens += stats.prompt_tokens;
  cached_tokens += stats.cached_prompt_tokens;
  generated_tokens += stats.generated_tokens;
}

ApiError api_error_from(std::exception_ptr error) {
  try {
    std::rethrow_exception(error);
  } catch (const ApiError& e) {
    return e;
  } catch (const Overloaded& e) {
    return ApiError(429, e.what(), "", "server_overloaded");
  } catch (const Error& e) {
    return ApiError(400, e.what(), "", "invalid_request");
  } catch (const std::exception& e) {
    return ApiError(500, str("internal error: ", e.what()));
  } catch (...) {
    return ApiError(500, "internal error");
  }
}

GenerationRequest engine_request(const ParsedRequest& request, size_t p) {
  GenerationRequest g = request.generation;
  g.prompt_tokens = request.prompts[p].tokens;
  return g;
}

std::vector<GenerationResult> run_prompts(Engine& engine, const ParsedRequest& request, Generation& control,
                                          Metrics& metrics, RequestRecord& record) {
  std::vector<GenerationResult> results;
  for (size_t p = 0; p < request.prompts.size(); ++p) {
    const GenerationRequest g = engine_request(request, p);
    TokenClock clock(std::max(g.n, g.best_of));
    GenerationCallbacks callbacks;
    callbacks.cancel = &control.cancel;
    callbacks.on_token = [&clock](int index, const TokenEvent&) { clock.tick(index); };
    results.push_back(engine.generate(g, callbacks));
    metrics.count_generation(results.back().stats, clock.gaps());
    record.add(results.back().stats);
  }
  record.cancelled = control.cancel.load();
  return results;
}

std::vector<TokenLogprob> prompt_logprobs(Engine& engine, const std::vector<int32_t>& tokens, int top) {
  const size_t vocab = size_t(engine.model_info().n_vocab);
  const size_t bytes = tokens.size() * vocab * sizeof(float);
  if (bytes > (size_t(256) << 20))
    throw ApiError(400, str("'echo' with 'logprobs' needs the logits of every prompt position (", bytes >> 20,
                            " MiB for ", tokens.size(), " tokens); the limit is 256 MiB"), "echo");
  const std::vector<float> logits = engine.evaluate(tokens, /*all_positions=*/true);
  std::vector<TokenLogprob> out(tokens.size());
  std::vector<int32_t> order(vocab);
  for (size_t i = 0; i < tokens.size(); ++i) {
    out[i].token = tokens[i];
    if (i == 0) {
      out[i].has_logprob = false;
      continue;
    }
    const float* row = logits.data() + (i - 1) * vocab;
    const float peak = *std::max_element(row, row + vocab);
    double sum = 0;
    for (size_t v = 0; v < vocab; ++v) sum += std::exp(double(row[v]) - peak);
    const double lse = peak + std::log(sum);
    out[i].logprob = float(row[tokens[i]] - lse);
    const size_t k = std::min(size_t(top), vocab);
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + std::ptrdiff_t(k), order.end(),
                      [row](int32_t a, int32_t b) { return row[a] > row[b]; });
    for (size_t j = 0; j < k; ++j) out[i].top.emplace_back(order[j], float(row[order[j]] - lse));
  }
  return out;
}

StreamSession::StreamSession(Engine& engine, ParsedRequest request, ResponseIds ids, Metrics& metrics,
                             std::vector<std::vector<TokenLogprob>> echoed)
    : engine_(engine), request_(std::move(request)), ids_(std::move(ids)), echoed_(std::move(echoed)),
      metrics_(metrics) {
  choices_.resize(request_.prompts.size() * size_t(request_.generation.n));
}

StreamSession::~StreamSession() {
  control_.cancel.store(true);
  if (thread_.joinable()) thread_.join();
}

void StreamSession::push(Event event) {
  {
    std::lock_guard lock(mutex_);
    events_.push_back(std::move(event));
  }
  ready_.notify_one();
}

void StreamSession::generate_all() {
  try {
    for (size_t p = 0; p < request_.prompts.size() && !control_.cancel.load(); ++p) {
      const GenerationRequest g = engine_request(request_, p);
      TokenClock clock(g.n);
      GenerationCallbacks callbacks;
      callbacks.cancel = &control_.cancel;
      const int prompt = int(p);
      callbacks.on_token = [&, prompt](int index, const TokenEvent& t) {
        clock.tick(index);
        Event e{Event::Kind::token, prompt, index, {}, {}, FinishReason::length, {}, std::nullopt};
        e.token = {t.token, t.logprob, {t.top_logprobs.begin(), t.top_logprobs.end()}};
        push(std::move(e));
      };
      callbacks.on_text = [&, prompt](int index, std::string_view text) {
        push({Event::Kind::text, prompt, index, std::string(text), {}, FinishReason::length, {}, std::nullopt});
      };
      callbacks.on_finish = [&, prompt](int index, FinishReason reason) {
        push({Event::Kind::finish, prompt, index, {}, {}, reason, {}, std::nullopt});
      };
      const GenerationResult result = engine_.generate(g, callbacks);
      metrics_.count_generation(result.stats, clock.gaps());
      push({Event::Kind::prompt_done, prompt, 0, {}, {}, FinishReason::length, result.stats, std::nullopt});
    }
  } catch (...) {
    push({Event::Kind::error, 0, 0, {}, {}, FinishReason::length, {}, api_error_from(std::current_exception())});
  }
  push({Event::Kind::done, 0, 0, {}, {}, FinishReason::length, {}, std::nullopt});
}

std::optional<ApiError> StreamSession::start() {
  thread_ = std::thread([this] { generate_all(); });
  std::unique_lock lock(mutex_);
  ready_.wait(lock, [this] { return !events_.empty(); });
  if (events_.front().kind == Event::Kind::error) return events_.front().error;
  return std::nullopt;
}

// One chunk for a choice's text or finish, carrying the logprobs of the
// tokens accepted since its last chunk; the first chunk of a choice is
// preceded by chat's role delta or completions' echoed prompt.
bool StreamSession::write_choice(const std::function<bool(std::string_view)>& write, const Event& e, bool finish) {
  const int n = request_.generation.n;
  const int index = e.prompt * n + e.index;
  Choice& c = choices_[size_t(index)];
  const std::string& prompt_text = request_.prompts[size_t(e.prompt)].text;
  if (!c.started) {
    c.started = true;
    if (request_.chat) {
      if (!write(sse(chat_chunk(ids_, index, {{"role", "assistant"}, {"content", ""}}, nullptr, std::nullopt))))
        return false;
    } else if (request_.echo) {
      // As OpenAI: the prompt first, with its own tokens' logprobs when asked.
      const json prompt_logprobs = size_t(e.prompt) < echoed_.size()
                                       ? completion_logprobs(engine_, echoed_[size_t(e.prompt)], 0)
                                       : json(nullptr);
      if (!write(sse(completion_chunk(ids_, index, prompt_text, prompt_logprobs, std::nullopt)))) return false;
    }
  }
  json logprobs = nullptr;
  if (request_.logprobs && (!c.pending.empty() || !finish)) {
    logprobs = request_.chat ? chat_logprobs(engine_, c.pending, request_.top_logprobs)
                             : completion_logprobs(engine_, c.pending, prompt_text.size() + c.text_bytes);
  }
  c.pending.clear();
  const std::optional<FinishReason> reason = finish ? std::optional(e.reason) : std::nullopt;
  const std::string& text = finish ? std::string() : e.text;
  c.text_bytes += text.size();
  const json chunk = request_.chat
                         ? chat_chunk(ids_, index, finish ? json::object() : json{{"content", text}}, logprobs, reason)
                         : completion_chunk(ids_, index, text, logprobs, reason);
  return write(sse(chunk));
}

void StreamSession::write_events(const std::function<bool(std::string_view)>& send, RequestRecord& record) {
  Usage usage;
  bool writing = true;
  // Events that arrived together (one decode step's tokens of every choice)
  // go out in one write: fewer syscalls and packets than one per chunk.
  std::string buffer;
  const std::function<bool(std::string_view)> write = [&buffer](std::string_view data) {
    buffer += data;
    return true;
  };
  std::deque<Event> batch;
  for (;;) {
    if (batch.empty()) {
      if (writing && !buffer.empty() && !send(buffer)) {  // the client is gone: stop generating, keep draining
        writing = false;
        control_.cancel.store(true);
      }
      buffer.clear();
      std::unique_lock lock(mutex_);
      ready_.wait(lock, [this] { return !events_.empty(); });
      batch.swap(events_);
    }
    Event e = std::move(batch.front());
    batch.pop_front();
    const int index = e.prompt * request_.generation.n + e.index;
    switch (e.kind) {
      case Event::Kind::token:
        choices_[size_t(index)].pending.push_back(std::move(e.token));
        break;
      case Event::Kind::text:
        if (writing) write_choice(write, e, false);
        break;
      case Event::Kind::finish:
        if (writing) write_choice(write, e, true);
        break;
      case Event::Kind::prompt_done:
        usage.add(e.stats);
        record.add(e.stats);
        break;
      case Event::Kind::error:
        if (writing) write(sse(error_body(*e.error)));
        break;
      case Event::Kind::done:
        record.cancelled = control_.cancel.load();
        if (writing && request_.include_usage) write(sse(usage_chunk(ids_, request_.chat, usage)));
        if (writing) write("data: [DONE]\n\n");
        if (writing && !send(buffer)) control_.cancel.store(true);
        return;
    }
  }
}

}  // namespace bifurcate::server
