// The prompt of /v1/chat/completions: the conversation rendered with the
// model's Jinja chat template (chat/), a --chat-template file instead, or
// ChatML when the model has none (with a warning at startup).
#pragma once

#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "bifurcate/engine.h"

namespace bifurcate::server {

// The messages and the offered tools (null: none) to the prompt text.
using ChatRenderer = std::function<std::string(const nlohmann::json& messages, const nlohmann::json& tools)>;

// Parses the template once. Throws Error if `template_file` cannot be read
// or parsed; a model's own template that does not parse falls back to
// ChatML with a warning. The renderer throws ApiError 400 when the template
// rejects a conversation (raise_exception, a runtime error).
ChatRenderer make_chat_renderer(const ModelInfo& info, const std::string& template_file);

}  // namespace bifurcate::server
