#include "cli/chat_prompt.h"

#include <ctime>
#include <fstream>
#include <iostream>
#include <sstream>

#include "chat/chat_template.h"
#include "gguf/gguf_file.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace bifurcate::cli {
namespace {

std::string special_text(const tokenizer::Tokenizer& t, int32_t id) {
  return id < 0 ? std::string() : std::string(t.token_text(id));
}

std::string read_template_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  require(bool(in), "cannot open chat template '", path, "'");
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

PromptTemplate template_from_model(const std::string& gguf_path) {
  const gguf::GgufFile file = gguf::GgufFile::open(gguf_path);
  const tokenizer::Tokenizer tok = tokenizer::Tokenizer::from_gguf(file);
  PromptTemplate t;
  t.source = file.get_string_or("tokenizer.chat_template", "");
  t.bos_token = special_text(tok, tok.bos());
  t.eos_token = special_text(tok, tok.eos());
  if (t.source.empty()) {
    t.source = std::string(chat::chatml_template());
    t.from_fallback = true;
  }
  return t;
}

PromptTemplate template_for(const ModelInfo& info, const std::string& override_file) {
  PromptTemplate t;
  t.bos_token = info.bos_token;
  t.eos_token = info.eos_token;
  if (!override_file.empty()) {
    t.source = read_template_file(override_file);
  } else if (!info.chat_template.empty()) {
    t.source = info.chat_template;
  } else {
    std::cerr << "warning: " << info.path
              << " has no tokenizer.chat_template; using the ChatML format (<|im_start|>role ... <|im_end|>). "
                 "Pass --chat-template FILE to use the model's real format.\n";
    t.source = std::string(chat::chatml_template());
    t.from_fallback = true;
  }
  return t;
}

std::string format_date_string(std::optional<std::chrono::sys_seconds> now) {
  std::tm tm{};
  if (now) {
    std::time_t t = static_cast<std::time_t>(now->time_since_epoch().count());
    gmtime_r(&t, &tm);
  } else {
    std::time_t t = std::time(nullptr);
    localtime_r(&t, &tm);
  }
  char buf[64];
  std::size_t n = std::strftime(buf, sizeof buf, "%d %b %Y", &tm);
  return std::string(buf, n);
}

ChatPrompt render_chat_prompt(const PromptTemplate& tmpl, const std::string& system, const std::string& user) {
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();
  if (!system.empty()) messages.push_back({{"role", "system"}, {"content", system}});
  messages.push_back({{"role", "user"}, {"content", user}});
  chat::RenderOptions options;
  options.add_generation_prompt = true;
  options.bos_token = tmpl.bos_token;
  options.eos_token = tmpl.eos_token;
  ChatPrompt prompt;
  prompt.text = chat::ChatTemplate(tmpl.source).render(messages, options);
  prompt.starts_with_bos = !tmpl.bos_token.empty() && prompt.text.rfind(tmpl.bos_token, 0) == 0;
  return prompt;
}

}  // namespace bifurcate::cli
