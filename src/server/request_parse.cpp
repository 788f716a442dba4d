#include "server/request_parse.h"

#include <cctype>
#include <cmath>
#include <functional>
#include <limits>
#include <random>

#include "server/api_error.h"
#include "util/error.h"

namespace bifurcate::server {
namespace {

using nlohmann::json;

std::string type_name(const json& v) {
  if (v.is_number_integer()) return "an integer";
  if (v.is_number()) return "a number";
  if (v.is_string()) return "a string";
  if (v.is_boolean()) return "a boolean";
  if (v.is_array()) return "an array";
  if (v.is_object()) return "an object";
  return "null";
}

// Typed, range-checked access to the fields of a request object. A field
// that is absent or null takes its default (clients send null for "unset").
class Fields {
 public:
  explicit Fields(const json& body) : body_(body) {}

  const json* find(const std::string& name) const {
    auto it = body_.find(name);
    return (it == body_.end() || it->is_null()) ? nullptr : &*it;
  }

  int64_t integer(const std::string& name, int64_t fallback, int64_t lo, int64_t hi) const {
    const json* v = find(name);
    if (v == nullptr) return fallback;
    // 2.0 is accepted as 2 (JavaScript clients have no integer type); 2.5 is not.
    int64_t x = 0;
    if (v->is_number_integer()) {
      if (v->is_number_unsigned() && v->get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max()))
        throw invalid_param(name, str("'", name, "' is too large"));
      x = v->get<int64_t>();
    } else if (v->is_number_float() && std::trunc(v->get<double>()) == v->get<double>() &&
               std::fabs(v->get<double>()) < 9e15) {
      x = int64_t(v->get<double>());
    } else {
      throw invalid_param(name, str("'", name, "' must be an integer, got ", type_name(*v)));
    }
    if (x < lo || x > hi) throw invalid_param(name, str("'", name, "' must be in [", lo, ", ", hi, "], got ", x));
    return x;
  }

  double number(const std::string& name, double fallback, double lo, double hi) const {
    const json* v = find(name);
    if (v == nullptr) return fallback;
    if (!v->is_number()) throw invalid_param(name, str("'", name, "' must be a number, got ", type_name(*v)));
    const double x = v->get<double>();
    if (!(x >= lo && x <= hi)) throw invalid_param(name, str("'", name, "' must be in [", lo, ", ", hi, "], got ", x));
    return x;
  }

  bool boolean(const std::string& name, bool fallback) const {
    const json* v = find(name);
    if (v == nullptr) return fallback;
    if (!v->is_boolean()) throw invalid_param(name, str("'", name, "' must be a boolean, got ", type_name(*v)));
    return v->get<bool>();
  }

  std::optional<std::string> string(const std::string& name) const {
    const json* v = find(name);
    if (v == nullptr) return std::nullopt;
    if (!v->is_string()) throw invalid_param(name, str("'", name, "' must be a string, got ", type_name(*v)));
    return v->get<std::string>();
  }

 private:
  const json& body_;
};

std::vector<int32_t> token_list(const json& items, const Engine& engine, const std::string& param) {
  std::vector<int32_t> tokens;
  const int n_vocab = engine.model_info().n_vocab;
  for (const json& t : items) {
    if (!t.is_number_integer()) throw invalid_param(param, str("'", param, "' token ids must be integers"));
    const int64_t id = t.get<int64_t>();
    if (id < 0 || id >= n_vocab)
      throw invalid_param(param, str("'", param, "' token id ", id, " is outside the vocabulary [0, ", n_vocab, ")"));
    tokens.push_back(int32_t(id));
  }
  return tokens;
}

PromptInput text_prompt(const Engine& engine, const std::string& text) {
  return {engine.tokenize(text, /*add_bos=*/true), text};
}

PromptInput token_prompt(const Engine& engine, const json& items, const std::string& param) {
  PromptInput p;
  p.tokens = token_list(items, engine, param);
  p.text = engine.detokenize(p.tokens);
  return p;
}

// OpenAI's prompt: a string, an array of token ids, or an array of either.
std::vector<PromptInput> parse_prompts(const json& body, const Engine& engine, int max_prompts) {
  auto it = body.find("prompt");
  if (it == body.end() || it->is_null()) throw invalid_param("prompt", "'prompt' is required");
  const json& p = *it;
  std::vector<PromptInput> prompts;
  if (p.is_string()) {
    prompts.push_back(text_prompt(engine, p.get<std::string>()));
  } else if (p.is_array()) {
    if (p.empty()) throw invalid_param("prompt", "'prompt' must not be an empty array");
    if (p[0].is_number_integer()) {
      prompts.push_back(token_prompt(engine, p, "prompt"));
    } else {
      if (p.size() > size_t(max_prompts))
        throw invalid_param("prompt", str("'prompt' has ", p.size(), " prompts; the limit is ", max_prompts));
      for (const json& item : p) {
        if (item.is_string()) {
          prompts.push_back(text_prompt(engine, item.get<std::string>()));
        } else if (item.is_array() && !item.empty()) {
          prompts.push_back(token_prompt(engine, item, "prompt"));
        } else {
          throw invalid_param("prompt",
                              "'prompt' must be a string, an array of token ids, or an array of strings or of "
                              "non-empty token arrays");
        }
      }
    }
  } else {
    throw invalid_param("prompt", str("'prompt' must be a string or an array, got ", type_name(p)));
  }
  return prompts;
}

std::vector<std::string> parse_stop(const Fields& f) {
  const json* v = f.find("stop");
  if (v == nullptr) return {};
  std::vector<std::string> stop;
  auto add = [&](const json& s) {
    if (!s.is_string()) throw invalid_param("stop", "'stop' must be a string or an array of strings");
    if (s.get<std::string>().empty()) throw invalid_param("stop", "'stop' strings must not be empty");
    stop.push_back(s.get<std::string>());
  };
  if (v->is_array()) {
    if (v->size() > 16) throw invalid_param("stop", str("'stop' has ", v->size(), " strings; the limit is 16"));
    for (const json& s : *v) add(s);
  } else {
    add(*v);
  }
  return stop;
}

// OpenAI's logit_bias: {"token id": bias in [-100, 100]}, added to the
// token's logit before sampling (sampling/sampler.h).
std::vector<std::pair<int32_t, float>> parse_logit_bias(const Fields& f, const Engine& engine) {
  const json* v = f.find("logit_bias");
  if (v == nullptr) return {};
  if (!v->is_object())
    throw invalid_param("logit_bias", str("'logit_bias' must be an object mapping token ids to biases, got ", type_name(*v)));
  const int n_vocab = engine.model_info().n_vocab;
  std::vector<std::pair<int32_t, float>> bias;
  for (const auto& [key, value] : v->items()) {
    size_t used = 0;
    long long id = -1;
    try {
      id = std::stoll(key, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != key.size() || !std::isdigit(static_cast<unsigned char>(key[0])))
      throw invalid_param("logit_bias", str("'logit_bias' keys must be token ids, got '", key, "'"));
    if (id >= n_vocab)
      throw invalid_param("logit_bias", str("'logit_bias' token id ", id, " is outside the vocabulary [0, ", n_vocab, ")"));
    if (!value.is_number() || !(value.get<double>() >= -100 && value.get<double>() <= 100))
      throw invalid_param("logit_bias", str("'logit_bias' of token ", id, " must be a number in [-100, 100]"));
    bias.emplace_back(int32_t(id), float(value.get<double>()));
  }
  return bias;
}

// The fields both endpoints share; `max_tokens_default` is what an absent
// max_tokens means (16 for completions as OpenAI, the rest of the context for chat).
ParsedRequest parse_common(const json& body, const Engine& engine, const ServerOptions& limits,
                           const std::string& model_id, int max_tokens_default) {
  if (!body.is_object()) throw ApiError(400, "the request body must be a JSON object");
  const Fields f(body);
  ParsedRequest r;
  r.model = f.string("model").value_or(model_id);
  if (r.model != model_id)
    throw ApiError(400, str("the model '", r.model, "' does not exist; this server serves '", model_id, "'"), "model",
                   "model_not_found");

  GenerationRequest& g = r.generation;
  g.n = int(f.integer("n", 1, 1, limits.max_n));
  g.best_of = int(f.integer("best_of", g.n, 1, limits.max_best_of));
  if (g.best_of < g.n) throw invalid_param("best_of", str("'best_of' (", g.best_of, ") must be >= 'n' (", g.n, ")"));
  const char* max_name = body.contains("max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
  g.max_tokens = int(f.integer(max_name, std::min(max_tokens_default, limits.max_tokens), 1, limits.max_tokens));
  g.stop = parse_stop(f);
  // Draw order unless best_of asks for the best n (then by mean log-prob,
  // the paper's re-ranking), so a streamed choice i is the returned choice i.
  g.ranking = g.best_of > g.n ? Ranking::mean_logprob : Ranking::none;
  g.ignore_eos = f.boolean("ignore_eos", false);  // llama.cpp's extension

  SamplingOptions& s = g.sampling;
  s.temperature = float(f.number("temperature", 1.0, 0.0, 2.0));
  s.top_p = float(f.number("top_p", 1.0, 0.0, 1.0));
  if (s.top_p <= 0) throw invalid_param("top_p", "'top_p' must be > 0");
  s.top_k = int(f.integer("top_k", 0, 0, 1 << 20));
  s.min_p = float(f.number("min_p", 0.0, 0.0, 1.0));
  s.presence_penalty = float(f.number("presence_penalty", 0.0, -2.0, 2.0));
  s.frequency_penalty = float(f.number("frequency_penalty", 0.0, -2.0, 2.0));
  s.repetition_penalty = float(f.number("repetition_penalty", 1.0, 0.01, 10.0));
  // No seed: a fresh one per request, as OpenAI's sampling is not reproducible without one.
  const json* seed = f.find("seed");
  s.seed = seed != nullptr ? uint64_t(f.integer("seed", 0, std::numeric_limits<int64_t>::min(),
                                                std::numeric_limits<int64_t>::max()))
                           : std::random_device{}();
  if (auto user = f.string("user")) (void)user;  // accepted and ignored, as OpenAI's abuse-monitoring id

  if (const json* format = f.find("response_format")) {
    // Constrained output (JSON mode, JSON schemas) needs grammar-guided
    // sampling, which this engine does not have: refused rather than ignored.
    if (!format->is_object() || !format->contains("type") || !(*format)["type"].is_string())
      throw invalid_param("response_format", "'response_format' must be an object with a string 'type'");
    const std::string type = (*format)["type"].get<std::string>();
    if (type != "text")
      throw invalid_param("response_format",
                          str("'response_format' of type '", type,
                              "' is not supported: this server cannot constrain output to JSON; only 'text'"));
  }
  r.stream = f.boolean("stream", false);
  if (const json* so = f.find("stream_options")) {
    if (!so->is_object()) throw invalid_param("stream_options", "'stream_options' must be an object");
    if (!r.stream) throw invalid_param("stream_options", "'stream_options' is only allowed with 'stream': true");
    r.include_usage = Fields(*so).boolean("include_usage", false);
  }
  if (r.stream && g.best_of != g.n)
    throw invalid_param("best_of", "'best_of' cannot be used with 'stream' (the best choices are known only at the end)");
  s.logit_bias = parse_logit_bias(f, engine);
  return r;
}

void check_context(const ParsedRequest& r, const Engine& engine) {
  const int context = engine.model_info().context_length;
  for (size_t i = 0; i < r.prompts.size(); ++i) {
    const size_t n = r.prompts[i].tokens.size();
    if (n == 0) throw invalid_param(r.chat ? "messages" : "prompt", "the prompt has no tokens");
    if (n >= size_t(context)) {
      throw ApiError(400,
                     str(r.prompts.size() > 1 ? str("prompt ", i, " has ") : std::string("the prompt has "), n,
                         " tokens; the model's context length is ", context,
                         " tokens (the prompt must leave room for at least one generated token)"),
                     r.chat ? "messages" : "prompt", "context_length_exceeded");
    }
  }
}

// OpenAI's tools (function definitions, which the chat template renders
// into the prompt) and tool_choice. Without constrained sampling the model
// cannot be made to call a tool: "auto" offers the tools, "none" does not,
// "required" and a named function are refused. Returns what the template
// gets as `tools` (null: none).
json parse_tools(const Fields& f) {
  const json* tools = f.find("tools");
  std::string choice = "auto";
  if (const json* c = f.find("tool_choice")) {
    if (!c->is_string() || (c->get<std::string>() != "auto" && c->get<std::string>() != "none"))
      throw invalid_param("tool_choice",
                          "'tool_choice' may be \"auto\" or \"none\": this server cannot force a tool call "
                          "(\"required\" or a named function)");
    choice = c->get<std::string>();
  }
  if (tools == nullptr) return nullptr;
  if (!tools->is_array()) throw invalid_param("tools", "'tools' must be an array");
  for (size_t i = 0; i < tools->size(); ++i) {
    const json& t = (*tools)[i];
    const bool ok = t.is_object() && t.contains("type") && t["type"] == "function" && t.contains("function") &&
                    t["function"].is_object() && t["function"].contains("name") && t["function"]["name"].is_string();
    if (!ok)
      throw invalid_param("tools", str("tools[", i, "] must be {\"type\": \"function\", \"function\": {\"name\": ...}}"));
  }
  if (choice == "none" || tools->empty()) return nullptr;
  return *tools;
}

std::string message_content(const json& m, size_t index) {
  auto it = m.find("content");
  if (it == m.end() || it->is_null()) return "";
  if (it->is_string()) return it->get<std::string>();
  if (it->is_array()) {  // content parts: only text parts can reach a text model
    std::string text;
    for (const json& part : *it) {
      if (!part.is_object() || !part.contains("type") || part["type"] != "text" || !part.contains("text") ||
          !part["text"].is_string())
        throw invalid_param("messages", str("messages[", index, "].content: only parts of type 'text' are supported"));
      text += part["text"].get<std::string>();
    }
    return text;
  }
  throw invalid_param("messages", str("messages[", index, "].content must be a string or an array of parts"));
}

// Copying, rendering and printing a JSON value recurse once per level (a
// 4 MiB body of '[' overflowed the stack); no request needs this many.
constexpr int kMaxJsonDepth = 128;

}  // namespace

json parse_body(const std::string& body) {
  auto depth_limit = [](int depth, json::parse_event_t, json&) {
    if (depth > kMaxJsonDepth)
      throw ApiError(400, str("the request body nests JSON deeper than ", kMaxJsonDepth, " levels"), "",
                     "invalid_json");
    return true;
  };
  try {
    return json::parse(body, depth_limit);
  } catch (const json::exception& e) {  // parse_error, or out_of_range for a number beyond a double (1e400)
    throw ApiError(400, str("the request body is not valid JSON: ", e.what()), "", "invalid_json");
  }
}

ParsedRequest parse_completion_request(const json& body, const Engine& engine, const ServerOptions& limits,
                                       const std::string& model_id) {
  ParsedRequest r = parse_common(body, engine, limits, model_id, 16);
  const Fields f(body);
  r.echo = f.boolean("echo", false);
  // OpenAI's limit is 5; the engine reports up to 20 alternatives.
  const json* lp = f.find("logprobs");
  if (lp != nullptr) {
    r.logprobs = true;
    r.top_logprobs = int(f.integer("logprobs", 0, 0, 20));
  }
  // Insertion needs a model trained for fill-in-the-middle and its FIM
  // tokens (llama.cpp serves it as /infill); this server has no infill mode.
  if (auto suffix = f.string("suffix"); suffix && !suffix->empty())
    throw invalid_param("suffix", "'suffix' (insertion, fill-in-the-middle) is not supported by this server");
  r.prompts = parse_prompts(body, engine, limits.max_prompts);
  r.generation.sampling.top_logprobs = r.top_logprobs;
  check_context(r, engine);
  return r;
}

ParsedRequest parse_chat_request(const json& body, const Engine& engine, const ServerOptions& limits,
                                 const std::string& model_id,
                                 const ChatRender& render) {
  ParsedRequest r = parse_common(body, engine, limits, model_id, limits.max_tokens);
  r.chat = true;
  const Fields f(body);
  r.logprobs = f.boolean("logprobs", false);
  r.top_logprobs = int(f.integer("top_logprobs", 0, 0, 20));
  if (r.top_logprobs > 0 && !r.logprobs)
    throw invalid_param("top_logprobs", "'top_logprobs' needs 'logprobs': true");
  r.generation.sampling.top_logprobs = r.top_logprobs;

  const json* messages = f.find("messages");
  if (messages == nullptr || !messages->is_array() || messages->empty())
    throw invalid_param("messages", "'messages' must be a non-empty array");
  json normalized = json::array();
  for (size_t i = 0; i < messages->size(); ++i) {
    const json& m = (*messages)[i];
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string())
      throw invalid_param("messages", str("messages[", i, "] must be an object with a string 'role'"));
    json copy = m;
    copy["content"] = message_content(m, i);
    normalized.push_back(std::move(copy));
  }
  const std::string text = render(normalized, parse_tools(f));
  r.prompts.push_back({tokenize_rendered(engine, text), text});
  check_context(r, engine);
  return r;
}

std::vector<int32_t> tokenize_rendered(const Engine& engine, const std::string& text) {
  const std::string& bos = engine.model_info().bos_token;
  const bool has_bos = !bos.empty() && text.compare(0, bos.size(), bos) == 0;
  return engine.tokenize(text, /*add_bos=*/!has_bos, /*parse_special=*/true);
}

}  // namespace bifurcate::server
