// The response bodies of /v1/completions and /v1/chat/completions in
// OpenAI's shapes: whole responses, stream chunks, logprobs and usage.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "bifurcate/engine.h"
#include "server/request_parse.h"

namespace bifurcate::server {

// What identifies one response and all of its chunks.
struct ResponseIds {
  std::string id;       // "cmpl-..." or "chatcmpl-..."
  int64_t created = 0;  // Unix seconds
  std::string model;
};
ResponseIds new_response_ids(bool chat, const std::string& model);

// One generated token with what the sampler reported about it.
struct TokenLogprob {
  int32_t token = -1;
  float logprob = 0;
  std::vector<std::pair<int32_t, float>> top;
  bool has_logprob = true;  // false for a prompt's first token (nothing predicts it): null in JSON
};
std::vector<TokenLogprob> sample_logprobs(const Sample& sample);

// OpenAI's finish reasons: stop strings and end-of-generation are "stop";
// length and a cancelled request (disconnect, drain, timeout) are "length".
std::string finish_reason_text(FinishReason reason);

// Completions' logprobs: tokens, token_logprobs, top_logprobs (per token a
// map piece -> logprob holding the alternatives and the chosen token, as
// OpenAI's "up to logprobs + 1"), text_offset (bytes into the choice's text,
// counted from `first_offset`).
nlohmann::json completion_logprobs(const Engine& engine, std::span<const TokenLogprob> tokens,
                                   std::size_t first_offset);
// Chat's logprobs.content: per token {token, logprob, bytes, top_logprobs}.
nlohmann::json chat_logprobs(const Engine& engine, std::span<const TokenLogprob> tokens, int top_logprobs);

struct Usage {
  int prompt_tokens = 0;      // once per prompt
  int completion_tokens = 0;  // over every sample drawn
  int cached_tokens = 0;      // prompt tokens served from the prefix cache
  void add(const GenerationStats& stats);
};
nlohmann::json usage_json(const Usage& usage);

// A whole non-streamed response: prompt p's choices are indices p*n .. p*n+n-1.
// With echo and logprobs, `prompt_logprobs[p]` (the prompt's own tokens,
// offsets from 0) come before each choice's tokens (offsets from the end of
// the prompt's text).
nlohmann::json completion_response(const ResponseIds& ids, const ParsedRequest& request,
                                   const std::vector<GenerationResult>& results, const Engine& engine,
                                   const std::vector<std::vector<TokenLogprob>>& prompt_logprobs = {});
nlohmann::json chat_response(const ResponseIds& ids, const ParsedRequest& request, const GenerationResult& result,
                             const Engine& engine);

// Stream chunks. `logprobs` is null when none were asked for.
nlohmann::json completion_chunk(const ResponseIds& ids, int index, const std::string& text,
                                const nlohmann::json& logprobs, std::optional<FinishReason> finish);
nlohmann::json chat_chunk(const ResponseIds& ids, int index, const nlohmann::json& delta,
                          const nlohmann::json& logprobs, std::optional<FinishReason> finish);
// The last chunk with stream_options.include_usage: no choices, the usage.
nlohmann::json usage_chunk(const ResponseIds& ids, bool chat, const Usage& usage);

}  // namespace bifurcate::server
