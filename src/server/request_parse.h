// Reads the body of a /v1/completions or /v1/chat/completions request into
// what the engine runs: every field type- and range-checked against OpenAI's
// rules and the server's limits, prompts tokenized and checked against the
// model's context. Every mistake is an ApiError 400 naming the field.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bifurcate/engine.h"
#include "server/server_options.h"

namespace bifurcate::server {

struct PromptInput {
  std::vector<int32_t> tokens;  // what the engine runs (BOS included for text prompts)
  std::string text;             // the prompt as text (echo, text_offset)
};

struct ParsedRequest {
  bool chat = false;
  std::string model;
  std::vector<PromptInput> prompts;  // completions: one or more; chat: the rendered conversation
  GenerationRequest generation;      // everything but the prompt
  bool stream = false;
  bool include_usage = false;        // stream_options.include_usage
  bool echo = false;                 // completions: the prompt is prepended to each choice
  bool logprobs = false;             // report each token's log-probability
  int top_logprobs = 0;              // and this many alternatives
};

// Parses a request body; throws ApiError 400 (invalid JSON or nested deeper
// than 128 levels, and in the functions below: not an object, a
// wrong type or an out-of-range value, an unknown model, a prompt as long as
// the context).
nlohmann::json parse_body(const std::string& body);

// Fields shared by both endpoints (sampling, n, best_of, stop, stream, ...).
// `model_id` is the served model's id: another model name is a 400.
ParsedRequest parse_completion_request(const nlohmann::json& body, const Engine& engine,
                                       const ServerOptions& limits, const std::string& model_id);

// The chat template: the validated `messages` and `tools` (null when none
// are offered) to the prompt text.
using ChatRender = std::function<std::string(const nlohmann::json& messages, const nlohmann::json& tools)>;

// `render` turns the validated `messages` array into the prompt text (the
// chat template); its TemplateError becomes a 400.
ParsedRequest parse_chat_request(const nlohmann::json& body, const Engine& engine, const ServerOptions& limits,
                                 const std::string& model_id, const ChatRender& render);

// Tokens of a prompt text that already holds its special tokens (a rendered
// chat template): control tokens parsed, BOS added only when the text does
// not start with the BOS text already.
std::vector<int32_t> tokenize_rendered(const Engine& engine, const std::string& text);

}  // namespace bifurcate::server
