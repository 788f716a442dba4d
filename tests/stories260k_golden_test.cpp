// Whole-model golden test: the real stories260K model, greedy, must reproduce
// the continuation recorded from llama2.c's run.c (an independent
// implementation), for one sample and for many samples decoded together,
// in both attention modes, from both GGUF conversions of the model, with the
// default f16 KV cache and with f32. Every sample's tokens equal sample 0's,
// so with the reference text equal across cases, bifurcated and replicated
// decoding give the same greedy tokens for each KV type.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "bifurcate/engine.h"

namespace bifurcate {
namespace {

const std::string kDir = std::string(BIFURCATE_TESTDATA_DIR) + "/stories260K/";
const std::string kPrompt = "Once upon a time";

// Reads the one continuation in greedy-reference.json (a JSON string value:
// only \n, \" and \\ escapes occur in it).
std::string read_reference() {
  std::ifstream in(kDir + "greedy-reference.json");
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string json = buffer.str();
  const std::string key = "\"" + kPrompt + "\": \"";
  size_t i = json.find(key);
  if (i == std::string::npos) return "";
  std::string text;
  for (i += key.size(); i < json.size() && json[i] != '"'; ++i) {
    if (json[i] == '\\') {
      ++i;
      text += json[i] == 'n' ? '\n' : json[i];
    } else {
      text += json[i];
    }
  }
  while (!text.empty() && text.back() == '\n') text.pop_back();
  return text;
}

struct Case {
  std::string file;
  AttentionMode mode;
  int n;
  KvPrecision kv;
};

class Stories260kGolden : public ::testing::TestWithParam<Case> {};

TEST_P(Stories260kGolden, GreedyMatchesLlama2cReference) {
  const Case& c = GetParam();
  const std::string path = kDir + c.file;
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "test data missing: " << path;
  const std::string reference = read_reference();
  ASSERT_GT(reference.size(), 200u) << "could not read greedy-reference.json";

  EngineOptions options;
  options.model_path = path;
  options.threads = 2;
  options.attention = c.mode;
  options.kv_precision = c.kv;
  Engine engine(options);

  GenerationRequest request;
  request.prompt = kPrompt;
  request.n = c.n;
  request.max_tokens = 160;
  request.ignore_eos = true;
  request.ranking = Ranking::none;
  request.sampling.temperature = 0;
  const GenerationResult result = engine.generate(request);
  ASSERT_EQ(result.samples.size(), size_t(c.n));
  for (const Sample& sample : result.samples) {
    const std::string text = kPrompt + sample.text;
    EXPECT_EQ(text.substr(0, reference.size()), reference) << "sample " << sample.index;
    EXPECT_EQ(sample.tokens, result.samples[0].tokens) << "sample " << sample.index;
  }
}

constexpr auto kF16 = KvPrecision::f16;
constexpr auto kF32 = KvPrecision::f32;
INSTANTIATE_TEST_SUITE_P(
    Stories260k, Stories260kGolden,
    ::testing::Values(Case{"stories260K.gguf", AttentionMode::bifurcated, 1, kF16},
                      Case{"stories260K.gguf", AttentionMode::bifurcated, 5, kF16},
                      Case{"stories260K.gguf", AttentionMode::replicated, 5, kF16},
                      Case{"stories260K-ggml-org.gguf", AttentionMode::bifurcated, 17, kF16},
                      Case{"stories260K.gguf", AttentionMode::bifurcated, 1, kF32},
                      Case{"stories260K.gguf", AttentionMode::bifurcated, 5, kF32},
                      Case{"stories260K.gguf", AttentionMode::replicated, 5, kF32},
                      Case{"stories260K-ggml-org.gguf", AttentionMode::bifurcated, 1, kF32},
                      Case{"stories260K-ggml-org.gguf", AttentionMode::bifurcated, 17, kF32}),
    [](const auto& info) {
      const Case& c = info.param;
      return std::string(c.file.find("ggml-org") != std::string::npos ? "GgmlOrg" : "Llama2c") +
             (c.mode == AttentionMode::bifurcated ? "Bifurcated" : "Replicated") + "N" + std::to_string(c.n) +
             (c.kv == kF16 ? "KvF16" : "KvF32");
    });

}  // namespace
}  // namespace bifurcate
