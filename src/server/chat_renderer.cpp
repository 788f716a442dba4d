#include "server/chat_renderer.h"

#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>

#include "chat/chat_template.h"
#include "server/api_error.h"
#include "util/error.h"

namespace bifurcate::server {
namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  require(bool(in), "cannot read chat template file '", path, "'");
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

std::shared_ptr<const chat::ChatTemplate> load_template(const ModelInfo& info, const std::string& file) {
  if (!file.empty()) {
    try {
      return std::make_shared<const chat::ChatTemplate>(read_file(file));
    } catch (const chat::TemplateError& e) {
      throw Error(str("chat template '", file, "': ", e.what()));
    }
  }
  if (!info.chat_template.empty()) {
    try {
      return std::make_shared<const chat::ChatTemplate>(info.chat_template);
    } catch (const chat::TemplateError& e) {
      std::fprintf(stderr, "warning: the model's chat template does not parse (%s); using ChatML\n", e.what());
    }
  } else {
    std::fprintf(stderr,
                 "warning: %s has no tokenizer.chat_template; /v1/chat/completions uses ChatML "
                 "(<|im_start|>role ... <|im_end|>); pass --chat-template FILE for the model's real format\n",
                 info.path.c_str());
  }
  return std::make_shared<const chat::ChatTemplate>(std::string(chat::chatml_template()));
}

}  // namespace

ChatRender make_chat_renderer(const ModelInfo& info, const std::string& template_file) {
  std::shared_ptr<const chat::ChatTemplate> tmpl = load_template(info, template_file);
  chat::RenderOptions options;
  options.add_generation_prompt = true;
  options.bos_token = info.bos_token;
  options.eos_token = info.eos_token;
  return [tmpl, options](const nlohmann::json& messages, const nlohmann::json& tools) {
    try {
      chat::RenderOptions with_tools = options;
      with_tools.tools = tools;
      return tmpl->render(messages, with_tools);
    } catch (const chat::TemplateError& e) {
      throw ApiError(400, str("the chat template rejected the messages: ", e.what()), "messages", "template_error");
    }
  };
}

}  // namespace bifurcate::server
