// The validation commands of the built `bifurcate` program (tokenize,
// detokenize, logits, perplexity) on the real stories260K model and a tiny
// random model with a 32000-token SPM vocabulary: each command's output
// format, one value each recomputed here independently, and clear errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <numeric>

#include "cli_support.h"
#include "gguf/gguf_file.h"
#include "model/model.h"
#include "model/model_shapes.h"
#include "model/random_model.h"
#include "model/transformer.h"
#include "reference_model.h"
#include "tokenizer/tokenizer.h"

namespace bifurcate::cli_test {
namespace {

namespace fs = std::filesystem;

const std::string kStories = std::string(BIFURCATE_TESTDATA_DIR) + "/stories260K/stories260K.gguf";
const std::string kSpmVocab = std::string(BIFURCATE_TESTDATA_DIR) + "/vocab/ggml-vocab-llama-spm.gguf";

const std::vector<std::string> kTexts = {
    "Once upon a time, there was a little girl named Lily.",
    " leading space and  two spaces",
    "line one\nline two\n\ttabbed\n",
    "numbers 12345 and symbols !@#$%^&*()",
    "caf\xc3\xa9 na\xc3\xafve \xe2\x82\xac 100 \xf0\x9f\x98\x80",
};

std::string ids_csv(std::span<const int32_t> ids) {
  std::string out;
  for (int32_t id : ids) out += str(out.empty() ? "" : ",", id);
  return out;
}

// Every token's logits at every position, by the float64 reference of
// reference_model.h (independent of the library's forward): [n_tokens, n_vocab].
std::vector<float> reference_logits(const std::string& model_path, std::span<const int32_t> tokens) {
  const gguf::GgufFile file = gguf::GgufFile::open(model_path);
  const std::vector<std::vector<double>> rows =
      test_reference::ReferenceModel(file).logits(std::vector<int32_t>(tokens.begin(), tokens.end()));
  std::vector<float> logits;
  for (const auto& row : rows) logits.insert(logits.end(), row.begin(), row.end());
  return logits;
}

double log_sum_exp(const float* row, size_t n) {
  double m = -INFINITY;
  for (size_t i = 0; i < n; ++i) m = std::max(m, double(row[i]));
  double s = 0;
  for (size_t i = 0; i < n; ++i) s += std::exp(double(row[i]) - m);
  return m + std::log(s);
}

class CliValidateTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!fs::exists(program_path()) || !fs::exists(kStories) ||
        !fs::exists(kSpmVocab)) {
      return;
    }
    dir_ = new fs::path(fs::temp_directory_path() / str("bifurcate_cli_validate_", getpid()));
    fs::create_directories(*dir_);
    model::write_random_model(model::find_model_shape("tiny"), gguf::GgmlType::F32, kSpmVocab, 3,
                              (*dir_ / "tiny-spm.gguf").string());
  }
  static void TearDownTestSuite() {
    if (dir_ != nullptr) fs::remove_all(*dir_);
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override {
    if (!fs::exists(program_path())) {
      GTEST_SKIP() << "the bifurcate program is not built in " << BIFURCATE_BINARY_DIR;
    }
    if (dir_ == nullptr) GTEST_SKIP() << "test data missing: " << kStories << " or " << kSpmVocab;
  }
  static std::string tiny() { return (*dir_ / "tiny-spm.gguf").string(); }
  static std::string write_file(std::string_view name, std::string_view bytes) {
    const std::string path = (*dir_ / name).string();
    std::ofstream(path, std::ios::binary) << bytes;
    return path;
  }
  static Json run_json(const std::string& arguments) {
    const RunResult r = run_bifurcate(arguments);
    if (r.exit_code != 0) throw Error(str("bifurcate ", arguments, " exited with ", r.exit_code, ": ", r.err));
    return parse_json(r.out);
  }

  static inline fs::path* dir_ = nullptr;
};

TEST_F(CliValidateTest, TokenizeEqualsTokenizerEncodeAndPiecesSpellTheText) {
  for (const std::string& model : {kStories, tiny()}) {
    const gguf::GgufFile file = gguf::GgufFile::open(model);
    const tokenizer::Tokenizer tok = tokenizer::Tokenizer::from_gguf(file);
    for (size_t i = 0; i < kTexts.size(); ++i) {
      const std::string path = write_file(str("text", i, ".txt"), kTexts[i]);
      // Text mode: the ids separated by spaces, one line.
      const RunResult plain = run_bifurcate(str("tokenize -m '", model, "' --file '", path, "'"));
      ASSERT_EQ(plain.exit_code, 0) << plain.err;
      const std::vector<int32_t> expected = tok.encode(kTexts[i], true);
      std::string line = ids_csv(expected);
      std::replace(line.begin(), line.end(), ',', ' ');
      EXPECT_EQ(plain.out, line + "\n") << model << " text " << i;

      // JSON: ids, and pieces that concatenate back to the text (SPM: one leading space added).
      const Json j = run_json(str("tokenize --json --no-bos -m '", model, "' --file '", path, "'"));
      const std::vector<int32_t> no_bos = tok.encode(kTexts[i], false);
      ASSERT_EQ(j["n_tokens"].get<int64_t>(), int64_t(no_bos.size()));
      ASSERT_EQ(j["tokens"].size(), no_bos.size());
      std::string spelled;
      for (size_t t = 0; t < no_bos.size(); ++t) {
        EXPECT_EQ(j["tokens"][t]["id"].get<int64_t>(), no_bos[t]);
        const Json& piece = j["tokens"][t]["piece"];  // a string, or the bytes of a partial character
        if (piece.is_array()) {
          for (const Json& byte : piece) spelled += char(byte.get<int64_t>());
        } else {
          spelled += piece.get<std::string>();
        }
      }
      EXPECT_EQ(spelled, " " + kTexts[i]) << model << " text " << i;
    }
  }
}

TEST_F(CliValidateTest, DetokenizeOfTokenizeGivesTheTextBack) {
  for (const std::string& model : {kStories, tiny()}) {
    for (size_t i = 0; i < kTexts.size(); ++i) {
      const std::string path = write_file(str("round", i, ".txt"), kTexts[i]);
      const RunResult ids = run_bifurcate(str("tokenize -m '", model, "' --file '", path, "'"));
      ASSERT_EQ(ids.exit_code, 0) << ids.err;
      const RunResult text = run_bifurcate(str("detokenize -m '", model, "' ", ids.out));
      ASSERT_EQ(text.exit_code, 0) << text.err;
      EXPECT_EQ(text.out, kTexts[i] + "\n") << model << " text " << i;  // exact bytes + one newline
      const Json j = run_json(str("detokenize --json -m '", model, "' ", ids.out));
      EXPECT_EQ(j["text"].get<std::string>(), kTexts[i]);
    }
  }
}

// Checks `logits` JSON rows against reference logits: the top-K ids
// are the K largest logits, and logprob = logit - logsumexp.
void expect_top_k_matches(const Json& j, const std::vector<float>& ref, std::span<const int32_t> tokens,
                          size_t n_vocab, size_t k, bool all) {
  ASSERT_EQ(j["n_vocab"].get<int64_t>(), int64_t(n_vocab));
  ASSERT_EQ(j["positions"].size(), all ? tokens.size() : 1u);
  for (size_t r = 0; r < j["positions"].size(); ++r) {
    const Json& p = j["positions"][r];
    const size_t pos = size_t(p["position"].get<int64_t>());
    ASSERT_EQ(pos, all ? r : tokens.size() - 1);
    EXPECT_EQ(p["token"].get<int64_t>(), tokens[pos]);
    const float* row = ref.data() + pos * n_vocab;
    const double lse = log_sum_exp(row, n_vocab);
    std::vector<int32_t> order(n_vocab);
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return row[a] > row[b]; });
    ASSERT_EQ(p["top"].size(), k);
    for (size_t i = 0; i < k; ++i) {
      const int32_t id = int32_t(p["top"][i]["id"].get<int64_t>());
      const double tol = 1e-4 * std::max(1.0, std::fabs(double(row[order[0]])));
      // The i-th reported id holds the i-th largest logit (ids may swap only within rounding of a tie).
      EXPECT_NEAR(row[id], row[order[i]], tol) << "position " << pos << " rank " << i;
      EXPECT_NEAR(p["top"][i]["logit"].get<double>(), row[id], tol) << "position " << pos << " id " << id;
      EXPECT_NEAR(p["top"][i]["logprob"].get<double>(), double(row[id]) - lse, tol) << "position " << pos;
    }
    if (pos + 1 < tokens.size()) {
      EXPECT_NEAR(p["next_logprob"].get<double>(), double(row[tokens[pos + 1]]) - lse, 1e-4) << "position " << pos;
    }
  }
}

TEST_F(CliValidateTest, LogitsTopKEqualIndependentPrefill) {
  for (const std::string& path : {kStories, tiny()}) {
    const auto m = model::Model::load(path);
    const size_t n_vocab = size_t(m->config().n_vocab);
    const std::vector<int32_t> tokens = {1, 403, 407, 261, 378, 383, 286, 261, 280, 294};
    const std::vector<float> ref = reference_logits(path, tokens);
    const Json all = run_json(str("logits -m '", path, "' --kv-type f32 --all --top 6 --tokens ", ids_csv(tokens)));
    expect_top_k_matches(all, ref, tokens, n_vocab, 6, true);
    // Text prompt, last position only: the prompt is tokenized like `tokenize`.
    const Json last = run_json(str("logits -m '", path, "' --kv-type f32 -k 3 -p 'Once upon a time'"));
    const gguf::GgufFile file = gguf::GgufFile::open(path);
    const std::vector<int32_t> text_tokens = tokenizer::Tokenizer::from_gguf(file).encode("Once upon a time", true);
    ASSERT_EQ(last["tokens"].size(), text_tokens.size());
    expect_top_k_matches(last, reference_logits(path, text_tokens), text_tokens, n_vocab, 3, false);
  }
}

// --samples: B forked samples decode the last token; the reported largest
// difference matches the one recomputed here and is within 1e-5 (f32 KV).
TEST_F(CliValidateTest, ForkedSamplesReproduceTheSingleSequenceLogits) {
  const auto m = model::Model::load(tiny());
  const size_t n_vocab = size_t(m->config().n_vocab);
  const std::vector<int32_t> tokens = {1, 450, 4996, 17354, 1701, 432, 17204, 975, 278, 17366, 11203, 29889};
  const int b = 5;
  for (const char* mode : {"bifurcated", "replicated"}) {
    const RunResult r = run_bifurcate(str("logits -m '", tiny(), "' -t 1 --kv-type f32 -a ", mode,
                                          " --samples ", b, " --tokens ", ids_csv(tokens)));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_TRUE(contains(r.err, "fork check: 5 samples")) << r.err;
    const Json c = parse_json(r.out)["fork_check"];
    EXPECT_EQ(c["attention"].get<std::string>(), mode);
    EXPECT_EQ(c["n_samples"].get<int64_t>(), b);
    EXPECT_LE(c["max_rel_diff"].get<double>(), 1e-5) << mode;
    EXPECT_TRUE(c["ok"].get<bool>());

    // Recompute: the single sequence (prefill all) vs b forks decoding the last token.
    model::Transformer forward(m->config(), m->weights());
    kv::KvCache cache(forward.kv_layout(kernels::KvType::f32), size_t(64) << 20);
    ThreadPool pool(1);
    std::vector<float> single(n_vocab), forked(size_t(b) * n_vocab), scratch(n_vocab);
    kv::SegmentId root = cache.create_root();
    forward.prefill(cache, root, tokens, single, false, pool);
    cache.release(root);
    root = cache.create_root();
    forward.prefill(cache, root, std::span(tokens).first(tokens.size() - 1), scratch, false, pool);
    std::vector<kv::SegmentId> leaves;
    for (int i = 0; i < b; ++i) leaves.push_back(mode[0] == 'b' ? cache.fork(root) : cache.copy_path(root));
    if (mode[0] == 'r') cache.release(root);
    const std::vector<int32_t> last(size_t(b), tokens.back());
    forward.decode(cache, leaves, last, forked.data(), pool);
    double max_abs = 0, scale = 0;
    for (size_t i = 0; i < n_vocab; ++i) scale = std::max(scale, std::fabs(double(single[i])));
    for (size_t i = 0; i < forked.size(); ++i) {
      max_abs = std::max(max_abs, std::fabs(double(forked[i]) - double(single[i % n_vocab])));
    }
    EXPECT_NEAR(c["max_abs_diff"].get<double>(), max_abs, 1e-7 + 0.05 * max_abs) << mode;
    EXPECT_NEAR(c["max_rel_diff"].get<double>(), max_abs / scale, 1e-9 + 0.05 * max_abs / scale) << mode;
  }
}

// The windows perplexity scores, derived here from the documented rule:
// starts 0, S, 2S, ...; the first scores all but token 0, later ones only
// tokens past the previous end.
struct TestWindow {
  size_t start, end, first;
};
std::vector<TestWindow> expected_windows(size_t n, size_t ctx, size_t stride) {
  std::vector<TestWindow> w;
  size_t prev_end = 1;
  for (size_t start = 0;; start += stride) {
    const size_t end = std::min(n, start + ctx);
    w.push_back({start, end, std::max(prev_end, start + 1)});
    if (end == n) return w;
    prev_end = end;
  }
}

TEST_F(CliValidateTest, PerplexityIsExpOfMeanNllFromLogitsAll) {
  const std::string text =
      "Once upon a time, there was a little girl named Lily. She loved to play outside. One day, she saw a "
      "big red ball in the park. She was very happy.";
  const std::string path = write_file("story.txt", text);
  const size_t ctx = 24, stride = 10;
  const RunResult r =
      run_bifurcate(str("perplexity -m '", kStories, "' --kv-type f32 -f '", path, "' --ctx-size ", ctx, " --stride ", stride,
                        " --json"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const Json j = parse_json(r.out);

  const Json toks = run_json(str("tokenize --json -m '", kStories, "' --file '", path, "'"));
  std::vector<int32_t> tokens;
  for (const Json& t : toks["tokens"]) tokens.push_back(int32_t(t["id"].get<int64_t>()));
  ASSERT_EQ(j["n_tokens"].get<int64_t>(), int64_t(tokens.size()));
  const std::vector<TestWindow> windows = expected_windows(tokens.size(), ctx, stride);
  ASSERT_EQ(j["windows"].size(), windows.size());
  EXPECT_TRUE(contains(r.err, str("[", windows.size(), "/", windows.size(), "] ppl "))) << r.err;

  // Each window through `logits --all` with the full vocabulary; BOS replaces its first token.
  double nll = 0;
  size_t n_scored = 0;
  for (size_t w = 0; w < windows.size(); ++w) {
    std::vector<int32_t> input(tokens.begin() + long(windows[w].start), tokens.begin() + long(windows[w].end));
    input.front() = 1;  // stories260K's BOS
    const Json l = run_json(str("logits -m '", kStories, "' --kv-type f32 --all --top 512 --tokens ", ids_csv(input)));
    double window_nll = 0;
    for (size_t t = windows[w].first; t < windows[w].end; ++t) {
      const Json& top = l["positions"][t - 1 - windows[w].start]["top"];
      std::vector<float> row(512, -INFINITY);
      for (const Json& e : top) row[size_t(e["id"].get<int64_t>())] = float(e["logit"].get<double>());
      window_nll += log_sum_exp(row.data(), row.size()) - double(row[size_t(tokens[t])]);
      ++n_scored;
    }
    EXPECT_EQ(j["windows"][w]["start"].get<int64_t>(), int64_t(windows[w].start));
    EXPECT_EQ(j["windows"][w]["first_scored"].get<int64_t>(), int64_t(windows[w].first));
    EXPECT_NEAR(j["windows"][w]["nll_sum"].get<double>(), window_nll, 1e-4 * std::max(1.0, window_nll)) << "window " << w;
    nll += window_nll;
  }
  ASSERT_EQ(n_scored, tokens.size() - 1);  // every token but the first, once
  EXPECT_EQ(j["n_scored"].get<int64_t>(), int64_t(n_scored));
  const double ppl = std::exp(nll / double(n_scored));
  EXPECT_NEAR(j["perplexity"].get<double>(), ppl, 1e-5 * ppl);
  EXPECT_GT(j["uncertainty"].get<double>(), 0);

  // Text mode: "perplexity: X ± Y over N tokens" on stdout.
  const RunResult t = run_bifurcate(str("perplexity -m '", kStories, "' --kv-type f32 -f '", path, "' --ctx ", ctx,
                                        " --stride ", stride));
  ASSERT_EQ(t.exit_code, 0) << t.err;
  double shown = 0, err = 0;
  long long n = 0;
  ASSERT_EQ(std::sscanf(t.out.c_str(), "perplexity: %lf \xc2\xb1 %lf over %lld tokens", &shown, &err, &n), 3) << t.out;
  EXPECT_NEAR(shown, ppl, 1e-4 * ppl);
  EXPECT_EQ(n, (long long)n_scored);
}

struct ErrorCase {
  std::string arguments;
  int exit_code;
  std::vector<std::string> message_parts;
};

TEST_F(CliValidateTest, ClearErrors) {
  const std::string missing = (*dir_ / "no-such-model.gguf").string();
  const std::string not_gguf = write_file("not-a-model.gguf", "this is not a GGUF file");
  const std::string empty = write_file("empty.txt", "");
  std::string too_long;  // 513 tokens > stories260K's 512-token context
  for (int i = 0; i < 513; ++i) too_long += i ? ",1" : "1";
  const std::string m = str(" -m '", kStories, "' ");
  const std::vector<ErrorCase> cases = {
      {str("tokenize -m '", missing, "' -p hi"), 1, {missing}},
      {str("detokenize -m '", missing, "' 1 2"), 1, {missing}},
      {str("logits -m '", missing, "' -p hi"), 1, {missing}},
      {str("perplexity -m '", missing, "' -p 'hi there'"), 1, {missing}},
      {str("logits -m '", not_gguf, "' -p hi"), 1, {not_gguf}},
      {str("tokenize -m '", not_gguf, "' -p hi"), 1, {not_gguf}},
      {"tokenize" + m + "-p ''", 1, {"empty"}},
      {"tokenize" + m + "--file '" + empty + "'", 1, {empty, "empty"}},
      {"logits" + m + "-p ''", 1, {"empty"}},
      {"perplexity" + m + "-f '" + empty + "'", 1, {empty, "empty"}},
      {"perplexity" + m + "-f '" + (*dir_ / "absent.txt").string() + "'", 1, {"absent.txt"}},
      {"detokenize" + m + "1 99999", 1, {"99999", "outside the vocabulary [0, 512)"}},
      {"logits" + m + "--tokens 1,512,3", 1, {"512", "outside the vocabulary"}},
      {"logits" + m + "--tokens 1,x", 2, {"'x' is not a token id"}},
      {"detokenize" + m, 2, {"missing argument ID"}},
      {"logits" + m + "--tokens " + too_long, 1, {"513 tokens", "context length is 512"}},
      {"perplexity" + m + "-p 'Once upon a time' -c 1024", 1, {"--ctx-size 1024", "context length 512"}},
      {"perplexity" + m + "-p 'Once upon a time' --ctx 16 --stride 16", 2, {"--stride", "16"}},
      {"perplexity" + m + "-p 'x' -f '" + empty + "'", 2, {"not both"}},
      {"logits" + m + "-p hi --top 0", 2, {"--top"}},
      {"logits" + m + "--tokens 1 -np 2", 1, {"at least 2 tokens"}},
  };
  for (const ErrorCase& c : cases) {
    const RunResult r = run_bifurcate(c.arguments);
    EXPECT_EQ(r.exit_code, c.exit_code) << c.arguments << "\n" << r.err;
    EXPECT_TRUE(contains(r.err, "bifurcate: error: ")) << c.arguments << "\n" << r.err;
    for (const std::string& part : c.message_parts) {
      EXPECT_TRUE(contains(r.err, part)) << c.arguments << "\nwanted: " << part << "\ngot: " << r.err;
    }
  }
}

TEST_F(CliValidateTest, CommandsAreListedWithHelp) {
  const RunResult usage = run_bifurcate("--help");
  ASSERT_EQ(usage.exit_code, 0);
  for (const char* command : {"tokenize", "detokenize", "logits", "perplexity"}) {
    EXPECT_TRUE(contains(usage.out, command)) << usage.out;
    const RunResult help = run_bifurcate(str(command, " --help"));
    EXPECT_EQ(help.exit_code, 0) << command;
    EXPECT_TRUE(contains(help.out, str("usage: bifurcate ", command))) << help.out;
  }
}

}  // namespace
}  // namespace bifurcate::cli_test
