// Chat prompts for the CLI: which template a model uses (its own
// tokenizer.chat_template, a --chat-template file, or the ChatML fallback)
// and rendering one conversation into the prompt text the model expects.
#pragma once

#include <chrono>
#include <optional>
#include <string>

#include "bifurcate/engine.h"

namespace bifurcate::cli {

struct PromptTemplate {
  std::string source;                // Jinja text
  std::string bos_token, eos_token;  // the model's BOS/EOS texts ("" when none)
  bool from_fallback = false;        // the model has no template: ChatML is used
};

// The template and BOS/EOS texts of a GGUF file (only its metadata and
// vocabulary are read, so vocab-only files work).
PromptTemplate template_from_model(const std::string& gguf_path);
// For a loaded model: `override_file` when given, else the model's own
// template, else ChatML with a warning on stderr.
PromptTemplate template_for(const ModelInfo& info, const std::string& override_file);

// date_string as transformers' Llama 3.1 examples pass it: "02 Jan 2026".
// `now` unset = today.
std::string format_date_string(std::optional<std::chrono::sys_seconds> now);

struct ChatPrompt {
  std::string text;
  bool starts_with_bos = false;  // the template wrote the BOS text itself: do not add another
};

// Renders [system (when not empty), user] with add_generation_prompt.
// Throws chat::TemplateError.
ChatPrompt render_chat_prompt(const PromptTemplate& tmpl, const std::string& system, const std::string& user);

}  // namespace bifurcate::cli
