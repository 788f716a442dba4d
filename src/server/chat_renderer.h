// The prompt of /v1/chat/completions: the conversation rendered with the
// model's Jinja chat template (chat/), a --chat-template file instead, or
// ChatML when the model has none (with a warning at startup).
#pragma once

#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "bifurcate/engine.h"
#include "server/request_parse.h"  // ChatRender

namespace bifurcate::server {

// Parses the template once. Throws Error if `template_file` cannot be read
// or parsed; a model's own template that does not parse falls back to
// ChatML with a warning. The renderer throws ApiError 400 when the template
// rejects a conversation (raise_exception, a runtime error).
ChatRender make_chat_renderer(const ModelInfo& info, const std::string& template_file);

}  // namespace bifurcate::server
