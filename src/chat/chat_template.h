// Chat templates: renders a model's own Jinja chat template (the GGUF's
// `tokenizer.chat_template`) exactly as Hugging Face transformers'
// `apply_chat_template` does — jinja2's ImmutableSandboxedEnvironment with
// trim_blocks, lstrip_blocks and the loopcontrols extension; globals
// raise_exception and strftime_now; tojson as json.dumps(ensure_ascii=False).
//
// Templates are untrusted input (they come from model files). Parsing and
// rendering never crash, never recurse without bound and never run without
// bound: every failure is a TemplateError naming the template's line and
// column, and RenderLimits caps nesting depth, evaluation steps (which bounds
// loop iterations and time) and the size of the output and of every string
// or list a template builds.
//
// Usage:
//   chat::ChatTemplate tmpl(source);                 // throws TemplateError
//   std::string prompt = tmpl.render(messages, {.add_generation_prompt = true,
//                                               .bos_token = "<s>", .eos_token = "</s>"});
//
// Key order: Python dicts keep insertion order and HF's output depends on it
// wherever a template iterates a mapping or applies tojson (tool schemas,
// tool-call arguments). nlohmann::json sorts object keys; to match HF byte for
// byte, parse the request with nlohmann::ordered_json and use the
// ordered_json overload of render() and RenderOptions::tools_ordered.
//
// For fuzzing: `ChatTemplate(bytes).render(messages, options)` inside a
// try/catch of TemplateError is the whole entry point; nothing else throws
// for any input bytes (std::bad_alloc aside).
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "util/error.h"

namespace bifurcate::chat {

class Value;

// A syntax error, an unsupported construct, a runtime error (e.g. iterating
// None) or the template's own raise_exception(). what() is
// "line L, column C: message"; message() is the bare message, which for
// raise_exception() and for the common Python errors is the text jinja2
// itself would report (what reference_render.py prints as "error").
class TemplateError : public Error {
 public:
  TemplateError(int line, int column, std::string message);
  int line() const { return line_; }      // 1-based; 0 when no position applies
  int column() const { return column_; }  // 1-based, in bytes
  const std::string& message() const { return message_; }

 private:
  int line_;
  int column_;
  std::string message_;
};

// Caps on what one template may cost. Exceeding one is a TemplateError.
struct RenderLimits {
  // Nesting of expressions, blocks and macro calls together (bounds stack use
  // in the parser and the evaluator). Real templates nest < 20 deep.
  int max_depth = 200;
  // Evaluation steps: one per expression node, statement and loop iteration.
  // Real templates take a few thousand per conversation.
  std::size_t max_steps = 20'000'000;
  // Size of the output and of any string or list built while rendering.
  std::size_t max_output_bytes = 64u << 20;
};

struct RenderOptions {
  bool add_generation_prompt = true;
  std::string bos_token, eos_token;
  nlohmann::json tools;  // null = none (the template sees `tools` as None)

  // --- additions beyond the four fields above ---
  // When not null, used instead of `tools`, keeping the caller's key order.
  nlohmann::ordered_json tools_ordered;
  // More template variables, as apply_chat_template's **kwargs (e.g.
  // {"date_string": "02 Jan 2026"}); an object, or null for none. They cannot
  // replace messages, add_generation_prompt, bos_token, eos_token or tools.
  nlohmann::ordered_json extra_variables;
  // What strftime_now() formats, read as a UTC calendar time; unset = the
  // current local time (Python's datetime.now()). Tests fix it.
  std::optional<std::chrono::sys_seconds> now;
  RenderLimits limits;
};

class ChatTemplate {
 public:
  // Parses `source`; throws TemplateError ("line L, column C: ...") on a
  // syntax error or unsupported construct.
  explicit ChatTemplate(std::string source);
  ~ChatTemplate();
  ChatTemplate(ChatTemplate&&) noexcept;
  ChatTemplate& operator=(ChatTemplate&&) noexcept;

  // Renders with `messages` (normally a list of {"role", "content", ...}
  // objects; any JSON value is accepted and the template decides). Throws
  // TemplateError on a runtime error, an exceeded limit or raise_exception().
  std::string render(const nlohmann::json& messages, const RenderOptions& options) const;
  // The same, keeping every object's key order (see the top of this file).
  std::string render(const nlohmann::ordered_json& messages, const RenderOptions& options) const;

  const std::string& source() const;

 private:
  struct Parsed;
  std::string render_parsed(const Value& messages, const RenderOptions& options) const;
  std::unique_ptr<const Parsed> parsed_;
};

// The documented fallback when a model file carries no chat template:
// ChatML (<|im_start|>role\ncontent<|im_end|>\n per message, then
// <|im_start|>assistant\n when add_generation_prompt), the format
// transformers used as its default template.
std::string_view chatml_template();

}  // namespace bifurcate::chat
