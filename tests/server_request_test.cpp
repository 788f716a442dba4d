// The server's request parsing, response shapes and metrics (src/server/)
// without HTTP: a real Engine on stories260K, real tokenizer. The HTTP layer
// end to end is tests/server/*.test.mjs.
#include <gtest/gtest.h>

#include <filesystem>
#include <memory>

#include "server/api_error.h"
#include "server/metrics.h"
#include "server/openai_format.h"
#include "server/request_parse.h"

namespace bifurcate::server {
namespace {

using nlohmann::json;

const std::string kModel = std::string(BIFURCATE_TESTDATA_DIR) + "/stories260K/stories260K.gguf";

class ServerRequest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (std::filesystem::exists(kModel)) engine_ = std::make_unique<Engine>(EngineOptions{.model_path = kModel, .threads = 1});
  }
  static void TearDownTestSuite() { engine_.reset(); }
  void SetUp() override {
    if (!engine_) GTEST_SKIP() << "test data missing: " << kModel;
  }
  ParsedRequest parse(const json& body) { return parse_completion_request(body, *engine_, limits_, "m"); }
  // The ApiError a body raises (status 0 when none).
  ApiError error_of(const json& body) {
    try {
      parse(body);
    } catch (const ApiError& e) {
      return e;
    }
    return ApiError(0, "");
  }

  static std::unique_ptr<Engine> engine_;
  ServerOptions limits_;
};
std::unique_ptr<Engine> ServerRequest::engine_;

TEST_F(ServerRequest, PromptFormsTokenizeAsTheEngineDoes) {
  const std::vector<int32_t> once = engine_->tokenize("Once upon", true);
  ParsedRequest r = parse({{"prompt", "Once upon"}});
  ASSERT_EQ(r.prompts.size(), 1u);
  EXPECT_EQ(r.prompts[0].tokens, once);
  EXPECT_EQ(r.generation.max_tokens, 16);  // OpenAI's default
  r = parse({{"prompt", once}});
  EXPECT_EQ(r.prompts[0].tokens, once);
  EXPECT_EQ(r.prompts[0].text, engine_->detokenize(once));
  r = parse({{"prompt", {"Once upon", "The dog"}}, {"n", 2}});
  ASSERT_EQ(r.prompts.size(), 2u);
  EXPECT_EQ(r.prompts[1].tokens, engine_->tokenize("The dog", true));
  r = parse({{"prompt", json::array({once, once})}});
  EXPECT_EQ(r.prompts.size(), 2u);
}

TEST_F(ServerRequest, FieldsMapToTheEngineRequest) {
  const ParsedRequest r = parse({{"prompt", "x"}, {"n", 2}, {"best_of", 5}, {"max_tokens", 7}, {"temperature", 0.5},
                                 {"top_p", 0.9}, {"top_k", 3}, {"min_p", 0.1}, {"presence_penalty", 1.0},
                                 {"frequency_penalty", -1.0}, {"repetition_penalty", 1.2}, {"seed", 99},
                                 {"stop", "END"}, {"logprobs", 4}, {"echo", true}, {"model", "m"}});
  const GenerationRequest& g = r.generation;
  EXPECT_EQ(g.n, 2);
  EXPECT_EQ(g.best_of, 5);
  EXPECT_EQ(g.ranking, Ranking::mean_logprob);
  EXPECT_EQ(g.max_tokens, 7);
  EXPECT_FLOAT_EQ(g.sampling.temperature, 0.5f);
  EXPECT_FLOAT_EQ(g.sampling.top_p, 0.9f);
  EXPECT_EQ(g.sampling.top_k, 3);
  EXPECT_FLOAT_EQ(g.sampling.min_p, 0.1f);
  EXPECT_FLOAT_EQ(g.sampling.presence_penalty, 1.0f);
  EXPECT_FLOAT_EQ(g.sampling.frequency_penalty, -1.0f);
  EXPECT_FLOAT_EQ(g.sampling.repetition_penalty, 1.2f);
  EXPECT_EQ(g.sampling.seed, 99u);
  EXPECT_EQ(g.sampling.top_logprobs, 4);
  EXPECT_EQ(g.stop, std::vector<std::string>{"END"});
  EXPECT_TRUE(r.logprobs);
  EXPECT_TRUE(r.echo);
  // logit_bias: token id keys, biases as given (keys in nlohmann's sorted order).
  const ParsedRequest biased = parse({{"prompt", "x"}, {"logit_bias", {{"7", -100}, {"12", 3.5}}}});
  EXPECT_EQ(biased.generation.sampling.logit_bias, (std::vector<std::pair<int32_t, float>>{{12, 3.5f}, {7, -100.0f}}));
  EXPECT_TRUE(parse({{"prompt", "x"}, {"logit_bias", json::object()}}).generation.sampling.logit_bias.empty());
  // What clients send for "unset" or the default is accepted.
  EXPECT_NO_THROW(parse({{"prompt", "x"}, {"suffix", ""}, {"response_format", {{"type", "text"}}}}));
  EXPECT_NO_THROW(parse({{"prompt", "x"}, {"suffix", nullptr}}));
  // Without best_of the choices stay in draw order.
  EXPECT_EQ(parse({{"prompt", "x"}, {"n", 3}}).generation.ranking, Ranking::none);
}

TEST_F(ServerRequest, BadFieldsAre400sNamingTheField) {
  const std::vector<std::pair<json, std::string>> cases = {
      {{{"prompt", "x"}, {"n", "2"}}, "n"},
      {{{"prompt", "x"}, {"n", 0}}, "n"},
      {{{"prompt", "x"}, {"n", 17}}, "n"},  // over --max-n
      {{{"prompt", "x"}, {"max_tokens", 1.5}}, "max_tokens"},
      {{{"prompt", "x"}, {"max_tokens", 4097}}, "max_tokens"},
      {{{"prompt", "x"}, {"temperature", -0.1}}, "temperature"},
      {{{"prompt", "x"}, {"best_of", 1}, {"n", 2}}, "best_of"},
      {{{"prompt", "x"}, {"best_of", 2}, {"stream", true}}, "best_of"},
      {{{"prompt", "x"}, {"stop", json::array({1})}}, "stop"},
      {{{"prompt", "x"}, {"logit_bias", {{"one", 5}}}}, "logit_bias"},
      {{{"prompt", "x"}, {"logit_bias", {{"-1", 5}}}}, "logit_bias"},
      {{{"prompt", "x"}, {"logit_bias", {{"512", 5}}}}, "logit_bias"},  // the vocabulary is 512
      {{{"prompt", "x"}, {"logit_bias", {{"7", 100.5}}}}, "logit_bias"},
      {{{"prompt", "x"}, {"logit_bias", {{"7", "5"}}}}, "logit_bias"},
      {{{"prompt", "x"}, {"logit_bias", json::array({7, 5})}}, "logit_bias"},
      {{{"prompt", "x"}, {"suffix", "the end"}}, "suffix"},
      {{{"prompt", "x"}, {"response_format", {{"type", "json_object"}}}}, "response_format"},
      {{{"prompt", "x"}, {"response_format", "json"}}, "response_format"},
      {{{"prompt", "x"}, {"response_format", {{"type", 1}}}}, "response_format"},
      {{{"prompt", json::array({0, 512})}}, "prompt"},
      {{{"prompt", json::array()}}, "prompt"},
      {{{"prompt", "x"}, {"model", "other"}}, "model"},
  };
  for (const auto& [body, param] : cases) {
    const ApiError e = error_of(body);
    EXPECT_EQ(e.status(), 400) << body.dump();
    EXPECT_EQ(e.param(), param) << body.dump() << ": " << e.what();
  }
  EXPECT_EQ(error_of(json::array()).status(), 400);
  EXPECT_THROW(parse_body("{\"prompt\": "), ApiError);
}

// What reaches the chat template as `tools`, and every malformed tools or
// content part is a 400 naming its field (never a JSON type error, a 500).
TEST_F(ServerRequest, ChatToolsReachTheTemplateUnlessWithheld) {
  json seen_tools = "not called";
  const ChatRender render = [&](const json& messages, const json& tools) {
    seen_tools = tools;
    return messages[0]["content"].get<std::string>();
  };
  const json tools = json::array({{{"type", "function"}, {"function", {{"name", "get_weather"}}}}});
  const json messages = json::array({{{"role", "user"}, {"content", "hi"}}});
  auto chat = [&](json extra) {
    extra["messages"] = messages;
    return parse_chat_request(extra, *engine_, limits_, "m", render);
  };
  chat({{"tools", tools}});
  EXPECT_EQ(seen_tools, tools);
  chat({{"tools", tools}, {"tool_choice", "auto"}});
  EXPECT_EQ(seen_tools, tools);
  chat({{"tools", tools}, {"tool_choice", "none"}});
  EXPECT_TRUE(seen_tools.is_null());
  chat(json::object());
  EXPECT_TRUE(seen_tools.is_null());
  const std::vector<std::pair<json, std::string>> cases = {
      {{{"tools", tools}, {"tool_choice", "required"}}, "tool_choice"},
      {{{"tools", tools}, {"tool_choice", {{"type", "function"}, {"function", {{"name", "get_weather"}}}}}}, "tool_choice"},
      {{{"tools", json::array({{{"type", 7}, {"function", {{"name", "f"}}}}})}}, "tools"},
      {{{"tools", json::array({{{"type", "function"}, {"function", {{"name", 1}}}}})}}, "tools"},
      {{{"tools", "get_weather"}}, "tools"},
  };
  for (const auto& [extra, param] : cases) {
    try {
      chat(extra);
      ADD_FAILURE() << "accepted " << extra.dump();
    } catch (const ApiError& e) {
      EXPECT_EQ(e.status(), 400) << extra.dump();
      EXPECT_EQ(e.param(), param) << extra.dump() << ": " << e.what();
    }
  }
  try {
    parse_chat_request({{"messages", json::array({{{"role", "user"}, {"content", json::array({{{"type", 1}}})}}})}},
                       *engine_, limits_, "m", render);
    ADD_FAILURE() << "accepted a content part whose type is a number";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.param(), "messages") << e.what();
  }
}

TEST_F(ServerRequest, PromptAsLongAsTheContextNamesBothCounts) {
  const std::vector<int32_t> tokens(512, 100);
  const ApiError e = error_of({{"prompt", tokens}});
  EXPECT_EQ(e.status(), 400);
  EXPECT_EQ(e.code(), "context_length_exceeded");
  EXPECT_NE(std::string(e.what()).find("512 tokens; the model's context length is 512"), std::string::npos) << e.what();
}

TEST_F(ServerRequest, RenderedChatPromptGetsOneBos) {
  const std::string bos = engine_->model_info().bos_token;
  ASSERT_FALSE(bos.empty());
  const std::vector<int32_t> plain = tokenize_rendered(*engine_, "Hello");
  const std::vector<int32_t> with_bos = tokenize_rendered(*engine_, bos + "Hello");
  EXPECT_EQ(plain, with_bos);
  EXPECT_EQ(plain, engine_->tokenize("Hello", true));
}

TEST_F(ServerRequest, CompletionLogprobsOffsetsFollowThePieces) {
  const std::vector<int32_t> ids = engine_->tokenize("Once upon a time", false);
  std::vector<TokenLogprob> tokens;
  for (int32_t id : ids) tokens.push_back({id, -0.5f, {{id, -0.5f}}});
  const json lp = completion_logprobs(*engine_, tokens, 4);
  std::string joined;
  size_t offset = 4;
  for (size_t i = 0; i < ids.size(); ++i) {
    EXPECT_EQ(lp["text_offset"][i], offset);
    offset += lp["tokens"][i].get<std::string>().size();
    joined += lp["tokens"][i].get<std::string>();
    EXPECT_EQ(lp["top_logprobs"][i].size(), 1u);  // the alternative is the chosen token itself
  }
  EXPECT_EQ(joined, " Once upon a time");  // SPM pieces keep their leading space
}

TEST(ServerMetrics, HistogramIsCumulativeAndCountersAdd) {
  Metrics m;
  GenerationStats s;
  s.prompt_tokens = 10, s.cached_prompt_tokens = 4, s.generated_tokens = 6, s.first_token_seconds = 0.02;
  m.count_generation(s, {0.003, 0.003, 0.2});
  m.count_request("/v1/completions", 200);
  m.count_request("/v1/completions", 200);
  m.count_request("other", 404);
  const std::string text = m.render(nullptr, 0, true);
  auto has = [&](const std::string& line) { return text.find(line + "\n") != std::string::npos; };
  EXPECT_TRUE(has("bifurcate_http_requests_total{route=\"/v1/completions\",status=\"200\"} 2")) << text;
  EXPECT_TRUE(has("bifurcate_http_requests_total{route=\"other\",status=\"404\"} 1"));
  EXPECT_TRUE(has("bifurcate_prompt_tokens_total 10"));
  EXPECT_TRUE(has("bifurcate_prompt_cached_tokens_total 4"));
  EXPECT_TRUE(has("bifurcate_generated_tokens_total 6"));
  EXPECT_TRUE(has("bifurcate_inter_token_latency_seconds_bucket{le=\"0.0025\"} 0"));
  EXPECT_TRUE(has("bifurcate_inter_token_latency_seconds_bucket{le=\"0.005\"} 2"));
  EXPECT_TRUE(has("bifurcate_inter_token_latency_seconds_bucket{le=\"0.25\"} 3"));
  EXPECT_TRUE(has("bifurcate_inter_token_latency_seconds_bucket{le=\"+Inf\"} 3"));
  EXPECT_TRUE(has("bifurcate_inter_token_latency_seconds_count 3"));
  EXPECT_TRUE(has("bifurcate_time_to_first_token_seconds_bucket{le=\"0.01\"} 0"));
  EXPECT_TRUE(has("bifurcate_time_to_first_token_seconds_bucket{le=\"0.025\"} 1"));
  EXPECT_TRUE(has("# TYPE bifurcate_kv_bytes_used gauge"));
}

TEST(ServerErrors, OpenAiErrorObject) {
  const json body = error_body(ApiError(429, "the queue is full", "", "server_overloaded"));
  EXPECT_EQ(body, json::parse(R"({"error": {"message": "the queue is full", "type": "rate_limit_error",
                                            "param": null, "code": "server_overloaded"}})"));
  EXPECT_EQ(error_body(404, "no route")["error"]["type"], "not_found_error");
  EXPECT_EQ(to_text(json(std::string("a\xff"))), "\"a\xef\xbf\xbd\"");
}

}  // namespace
}  // namespace bifurcate::server
