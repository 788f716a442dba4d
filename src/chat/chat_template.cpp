#include "chat/chat_template.h"

#include "chat/evaluator.h"
#include "chat/lexer.h"
#include "chat/parser.h"
#include "chat/text.h"

namespace bifurcate::chat {
namespace {

std::string with_position(int line, int column, const std::string& message) {
  if (line <= 0) return message;
  return "line " + std::to_string(line) + ", column " + std::to_string(column) + ": " + message;
}

template <class Json>
Value to_value(const Json& j, const char* what) {
  try {
    return Value::from_json(j);
  } catch (const EvalError& e) {
    throw TemplateError(0, 0, std::string(what) + ": " + e.what());
  }
}

}  // namespace

TemplateError::TemplateError(int line, int column, std::string message)
    : Error(with_position(line, column, message)), line_(line), column_(column), message_(std::move(message)) {}

struct ChatTemplate::Parsed {
  std::string source;      // as given
  std::string normalized;  // as the lexer saw it (positions refer to this)
  SourceMap map;
  Body body;

  explicit Parsed(std::string src)
      : source(std::move(src)), normalized(normalize_source(source)), map(normalized) {}
};

ChatTemplate::ChatTemplate(std::string source) {
  std::size_t bad = text::find_invalid_utf8(source);
  if (bad != std::string::npos) {
    SourceMap raw(source);
    Position p = raw.position(bad);
    throw TemplateError(p.line, p.column, "template is not valid UTF-8");
  }
  auto parsed = std::make_unique<Parsed>(std::move(source));
  std::vector<Token> tokens = tokenize(parsed->normalized, parsed->map);
  parsed->body = parse(tokens, parsed->map);
  parsed_ = std::move(parsed);
}

ChatTemplate::~ChatTemplate() = default;
ChatTemplate::ChatTemplate(ChatTemplate&&) noexcept = default;
ChatTemplate& ChatTemplate::operator=(ChatTemplate&&) noexcept = default;

const std::string& ChatTemplate::source() const { return parsed_->source; }

std::string ChatTemplate::render(const nlohmann::json& messages, const RenderOptions& options) const {
  return render_parsed(to_value(messages, "messages"), options);
}

std::string ChatTemplate::render(const nlohmann::ordered_json& messages, const RenderOptions& options) const {
  return render_parsed(to_value(messages, "messages"), options);
}

std::string ChatTemplate::render_parsed(const Value& messages, const RenderOptions& options) const {
  auto root = std::make_shared<Scope>();
  add_globals(*root);
  if (!options.extra_variables.is_null()) {
    if (!options.extra_variables.is_object())
      throw TemplateError(0, 0, "RenderOptions::extra_variables must be a JSON object");
    for (auto it = options.extra_variables.begin(); it != options.extra_variables.end(); ++it)
      root->variables[it.key()] = to_value(it.value(), "extra_variables");
  }
  root->variables["messages"] = messages;
  root->variables["add_generation_prompt"] = Value(options.add_generation_prompt);
  root->variables["bos_token"] = Value(options.bos_token);
  root->variables["eos_token"] = Value(options.eos_token);
  root->variables["tools"] = !options.tools_ordered.is_null() ? to_value(options.tools_ordered, "tools")
                                                               : to_value(options.tools, "tools");
  Evaluator evaluator(parsed_->map, options.limits, options.now);
  return evaluator.render(parsed_->body, root);
}

std::string_view chatml_template() {
  return "{% for message in messages %}"
         "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
         "{% endfor %}"
         "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
}

}  // namespace bifurcate::chat
