// `bifurcate generate` end to end on the built-in stories260K model: the JSON
// document's fields and scores are consistent, text mode ranks by mean
// log-prob, and bad command lines or requests fail with a clear message.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "cli_support.h"

namespace bifurcate {
namespace {

using cli_test::Json;
using cli_test::parse_json;
using cli_test::run_bifurcate;

class CliGenerateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(std::string(BIFURCATE_TESTDATA_DIR) + "/stories260K/stories260K.gguf")) {
      GTEST_SKIP() << "test data missing: stories260K";
    }
  }
};

TEST_F(CliGenerateTest, JsonHasEverySampleRankedWithConsistentScores) {
  const auto r = run_bifurcate("generate --samples 4 -n 12 --seed 3 --logprobs 2 --json -t 1");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const Json doc = parse_json(r.out);
  ASSERT_EQ(doc["samples"].size(), 4u);
  EXPECT_EQ(doc["attention"].get<std::string>(), "bifurcated");
  double previous_mean = INFINITY;
  for (size_t i = 0; i < 4; ++i) {
    const Json& s = doc["samples"][i];
    EXPECT_EQ(s["rank"].get<int64_t>(), int64_t(i + 1));
    const Json& tokens = s["tokens"];
    ASSERT_EQ(size_t(s["n_tokens"].get<int64_t>()), tokens.size());
    double sum = 0;
    std::string text;
    for (size_t t = 0; t < tokens.size(); ++t) {
      sum += tokens[t]["logprob"].get<double>();
      text += tokens[t]["piece"].get<std::string>();
      EXPECT_EQ(tokens[t]["top_logprobs"].size(), 2u);
    }
    EXPECT_NEAR(s["sum_logprob"].get<double>(), sum, 1e-4);
    EXPECT_NEAR(s["mean_logprob"].get<double>(), sum / double(tokens.size()), 1e-5);
    EXPECT_EQ(s["text"].get<std::string>(), text);  // no stop strings: the text is the pieces joined
    EXPECT_LE(s["mean_logprob"].get<double>(), previous_mean + 1e-12) << "ranked by mean log-prob";
    previous_mean = s["mean_logprob"].get<double>();
  }
  EXPECT_GT(doc["stats"]["decode_steps"].get<int64_t>(), 0);
  EXPECT_NE(r.err.find("decode:"), std::string::npos) << "timing on stderr";
}

TEST_F(CliGenerateTest, SameSeedSameOutputInBothAttentionModes) {
  const std::string args = "generate -np 3 --n-predict 16 --seed 11 --json --kv-type f32";
  const auto a = run_bifurcate(args + " --attention bifurcated -t 2");
  const auto b = run_bifurcate(args + " --attention replicated --threads 1");
  ASSERT_EQ(a.exit_code, 0) << a.err;
  ASSERT_EQ(b.exit_code, 0) << b.err;
  const Json ja = parse_json(a.out), jb = parse_json(b.out);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(ja["samples"][i]["text"].get<std::string>(), jb["samples"][i]["text"].get<std::string>());
}

TEST_F(CliGenerateTest, ErrorsNameTheProblem) {
  struct Case {
    std::string args;
    int exit_code;
    std::string message;
  };
  const Case cases[] = {
      {"generate -np 0", 2, "flag -np: 0 is out of range"},
      {"generate -n 0", 2, "flag --n-predict: 0 tokens"},
      {"generate -p ''", 1, "prompt is empty"},
      {"generate --temp -1", 2, "flag --temp"},
      {"generate --attention sideways", 2, "--attention"},
      {"generate --kv-type f8", 2, "--kv-type"},
      {"generate --bogus", 2, "bogus"},
      {"generate -m /nonexistent.gguf", 1, "/nonexistent.gguf"},
      {"generate --samples 5000 --max-tokens 500 --kv-budget-gib 0.01", 1, "KV cache"},
      {"generate -f /nonexistent-prompt.txt", 1, "nonexistent-prompt.txt"},
  };
  for (const Case& c : cases) {
    const auto r = run_bifurcate(c.args);
    EXPECT_EQ(r.exit_code, c.exit_code) << c.args << "\n" << r.err;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << c.args << "\n" << r.err;
  }
}

}  // namespace
}  // namespace bifurcate
