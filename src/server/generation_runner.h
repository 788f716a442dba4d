// Runs a parsed completions/chat request through the Engine: every prompt in
// turn, with the request's cancel flag, recording latencies for /metrics and
// token counts for the access log. Non-streamed requests run on the calling
// (HTTP) thread; a streamed one generates on a thread of its own while the
// HTTP thread writes its Server-Sent Events, so the engine's callbacks only
// queue events and never wait on a slow client.
#pragma once

#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "bifurcate/engine.h"
#include "server/api_error.h"
#include "server/connection_watch.h"
#include "server/metrics.h"
#include "server/openai_format.h"
#include "server/request_parse.h"

namespace bifurcate::server {

// What the access log reports of one request.
struct RequestRecord {
  int prompt_tokens = 0;
  int cached_tokens = 0;
  int generated_tokens = 0;
  double first_token_seconds = -1;  // of the first prompt; < 0: none
  bool cancelled = false;
  void add(const GenerationStats& stats);
};

// The exception of a failed generate() as the API reports it: Overloaded
// 429, any other engine Error 400 (it rejected the request), else 500.
ApiError api_error_from(std::exception_ptr error);

// The engine request for prompt `p`.
GenerationRequest engine_request(const ParsedRequest& request, size_t p);

// Runs every prompt on this thread; throws what generate() throws.
std::vector<GenerationResult> run_prompts(Engine& engine, const ParsedRequest& request, Generation& control,
                                          Metrics& metrics, RequestRecord& record);

// The prompt's own tokens as echo with logprobs reports them (one
// Engine::evaluate over the prompt): the first has no log-prob, token i's
// comes from the logits after token i-1, with `top` alternatives. ApiError
// 400 when the prompt's logits would take more than 256 MiB.
std::vector<TokenLogprob> prompt_logprobs(Engine& engine, const std::vector<int32_t>& tokens, int top);

class StreamSession {
 public:
  // `echoed`: with echo and logprobs, each prompt's own tokens
  // (prompt_logprobs), sent with the echoed prompt in a choice's first chunk.
  StreamSession(Engine& engine, ParsedRequest request, ResponseIds ids, Metrics& metrics,
                std::vector<std::vector<TokenLogprob>> echoed = {});
  ~StreamSession();  // cancels and joins the generating thread
  StreamSession(const StreamSession&) = delete;
  StreamSession& operator=(const StreamSession&) = delete;

  Generation& control() { return control_; }

  // Starts generating; then waits for the first token. Returns the error if
  // the request failed before producing anything (the HTTP status can still
  // say so), nullopt once tokens flow.
  std::optional<ApiError> start();

  // Writes every event as `data: {json}\n\n`, then `data: [DONE]\n\n`;
  // the events queued at once go to `send` in one call. `send` returns false
  // when the client is gone: the generation is cancelled and writing stops.
  void write_events(const std::function<bool(std::string_view)>& send, RequestRecord& record);

 private:
  struct Event {
    enum class Kind { token, text, finish, prompt_done, error, done } kind;
    int prompt = 0;
    int index = 0;
    std::string text;
    TokenLogprob token;
    FinishReason reason = FinishReason::length;
    GenerationStats stats;
    std::optional<ApiError> error;
  };
  struct Choice {
    bool started = false;
    std::vector<TokenLogprob> pending;  // tokens whose text is not released yet
    std::size_t text_bytes = 0;         // text written so far (text_offset)
  };

  void push(Event event);
  void generate_all();
  bool write_choice(const std::function<bool(std::string_view)>& write, const Event& event, bool finish);

  Engine& engine_;
  const ParsedRequest request_;
  const ResponseIds ids_;
  const std::vector<std::vector<TokenLogprob>> echoed_;
  Metrics& metrics_;
  Generation control_;
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<Event> events_;
  std::vector<Choice> choices_;
  std::thread thread_;
};

}  // namespace bifurcate::server
