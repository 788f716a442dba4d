// Fuzz target: the server's request validation (server/request_parse.h), an
// untrusted HTTP body turned into what the engine runs, exactly as
// HttpServer::handle_generation does it: parse_body, then
// parse_completion_request or parse_chat_request with the chat template
// rendered by make_chat_renderer, on a real Engine (stories260K, the built-in
// model) and the server's default limits.
//
// Input layout:
//   byte 0   bit 0: the route (0 /v1/completions, 1 /v1/chat/completions);
//            bits 1-3: the chat template (0 the model's own, which for
//            stories260K is the ChatML fallback the server uses; k > 0 the
//            k-th of the test data's chat-templates/*.jinja, sorted, modulo
//            their count). The seeds in fuzz/corpus/server_request/ start
//            with a letter: 'p' completions; 'a' chat (ChatML); 'c', 'e',
//            'g', 'i', 'k', 'm', 'o' chat with templates 1-7.
//   rest     the request body, as received
//
// The oracle is what the HTTP layer promises a client: a request either
// parses into a request within every limit (checked below), or ends in an
// ApiError 400 whose OpenAI error object serialises. Any other exception
// (which the HTTP layer would turn into a 500), a crash, a sanitizer
// report, a leak or a timeout is a finding.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bifurcate/engine.h"
#include "server/api_error.h"
#include "server/chat_renderer.h"
#include "server/generation_runner.h"
#include "server/request_parse.h"

namespace {

using namespace bifurcate;
using namespace bifurcate::server;
using nlohmann::json;
namespace fs = std::filesystem;

const std::string kModelId = "stories260K";  // the id the server gives stories260K.gguf (its file stem)

struct Served {
  std::unique_ptr<Engine> engine;
  ServerOptions limits;                 // the server's defaults
  std::vector<ChatRender> renderers;  // [0]: the model's own; then each testdata template
};

Served& served() {
  static Served s;
  return s;
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

[[noreturn]] void finding(const std::string& what, const std::string& body) {
  std::fprintf(stderr, "fuzz_server_request: %s\nbody: %.2000s\n", what.c_str(), body.c_str());
  std::abort();
}

void expect(bool ok, const char* what, const std::string& body) {
  if (!ok) finding(std::string("parsed request breaks a limit: ") + what, body);
}

// The error as the client receives it: status 400 and a serialisable
// {"error": {"message", "type", "param", "code"}}.
void check_error(const ApiError& e, const std::string& body) {
  if (e.status() != 400) finding("status " + std::to_string(e.status()) + ": " + e.what(), body);
  const json sent = json::parse(to_text(error_body(e)));
  const json& error = sent.at("error");
  if (!error.at("message").is_string() || error.at("message").get<std::string>().empty() ||
      error.at("type") != "invalid_request_error" || !(error.at("param").is_null() || error.at("param").is_string()) ||
      !(error.at("code").is_null() || error.at("code").is_string()))
    finding("malformed error object " + sent.dump(), body);
}

// What a successful parse promises the engine and the response writer.
void check_request(const ParsedRequest& r, const Served& s, const std::string& body) {
  const ModelInfo& info = s.engine->model_info();
  const GenerationRequest& g = r.generation;
  const SamplingOptions& o = g.sampling;
  expect(!r.prompts.empty() && r.prompts.size() <= size_t(s.limits.max_prompts), "prompt count", body);
  expect(!r.chat || r.prompts.size() == 1, "one chat prompt", body);
  for (const PromptInput& p : r.prompts) {
    expect(!p.tokens.empty() && p.tokens.size() < size_t(info.context_length), "prompt length", body);
    for (const int32_t t : p.tokens) expect(t >= 0 && t < info.n_vocab, "token id", body);
  }
  expect(g.n >= 1 && g.n <= s.limits.max_n && g.best_of >= g.n && g.best_of <= s.limits.max_best_of, "n/best_of", body);
  expect(g.max_tokens >= 1 && g.max_tokens <= s.limits.max_tokens, "max_tokens", body);
  expect(g.stop.size() <= 16, "stop count", body);
  for (const std::string& stop : g.stop) expect(!stop.empty(), "empty stop", body);
  expect(o.temperature >= 0 && o.temperature <= 2, "temperature", body);
  expect(o.top_p > 0 && o.top_p <= 1, "top_p", body);
  expect(o.top_k >= 0 && o.min_p >= 0 && o.min_p <= 1, "top_k/min_p", body);
  expect(std::fabs(o.presence_penalty) <= 2 && std::fabs(o.frequency_penalty) <= 2, "penalties", body);
  expect(o.repetition_penalty >= 0.01f && o.repetition_penalty <= 10, "repetition_penalty", body);
  expect(r.top_logprobs >= 0 && r.top_logprobs <= 20 && o.top_logprobs == r.top_logprobs, "top_logprobs", body);
  expect(r.top_logprobs == 0 || r.logprobs, "top_logprobs without logprobs", body);
  expect(!r.include_usage || r.stream, "include_usage without stream", body);
  expect(!r.stream || g.best_of == g.n, "best_of with stream", body);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  const fs::path testdata(BIFURCATE_TESTDATA_DIR);
  const fs::path model = testdata / "stories260K" / "stories260K.gguf";
  if (!fs::exists(model)) {
    std::fprintf(stderr, "fuzz_server_request: %s is missing; the test data is missing\n", model.c_str());
    std::exit(77);  // ctest's SKIP_RETURN_CODE for this target
  }
  Served& s = served();
  s.engine = std::make_unique<Engine>(EngineOptions{.model_path = model.string(), .threads = 1,
                                                    .kv_budget_bytes = std::size_t(64) << 20});
  s.renderers.push_back(make_chat_renderer(s.engine->model_info(), ""));
  std::vector<fs::path> templates;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(testdata / "chat-templates", ec)) {
    if (entry.path().extension() == ".jinja") templates.push_back(entry.path());
  }
  std::sort(templates.begin(), templates.end());
  for (const fs::path& path : templates) {
    ModelInfo info = s.engine->model_info();  // as if the model file carried this template
    info.chat_template = read_text(path);
    s.renderers.push_back(make_chat_renderer(info, ""));
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const Served& s = served();
  const bool chat = (data[0] & 1) != 0;
  const std::size_t template_index = ((data[0] >> 1) & 7) % s.renderers.size();
  const std::string body(reinterpret_cast<const char*>(data + 1), size - 1);
  try {
    const json parsed = parse_body(body);
    const ParsedRequest r = chat ? parse_chat_request(parsed, *s.engine, s.limits, kModelId, s.renderers[template_index])
                                 : parse_completion_request(parsed, *s.engine, s.limits, kModelId);
    check_request(r, s, body);
  } catch (const ApiError& e) {
    check_error(e, body);
  } catch (...) {
    // The HTTP layer's mapping of anything else (HttpServer::guarded).
    const ApiError mapped = api_error_from(std::current_exception());
    finding("not an ApiError (the client would get " + std::to_string(mapped.status()) + "): " + mapped.what(), body);
  }
  return 0;
}
