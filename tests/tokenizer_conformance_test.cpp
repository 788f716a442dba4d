// Conformance with llama.cpp's tokenizer reference vectors: for each vocab-only
// GGUF, NAME.gguf.inp holds inputs separated by "\n__ggml_vocab_test__\n" and
// NAME.gguf.out the expected ids (no BOS), one line per input.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "gguf/gguf_file.h"
#include "tokenizer/tokenizer.h"

namespace bifurcate::tokenizer {
namespace {

const std::string kTestData = BIFURCATE_TESTDATA_DIR;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// As llama.cpp's test-tokenizer-0: split on the separator line; the text
// after the last separator is empty and not a case.
std::vector<std::string> read_inputs(const std::string& path) {
  const std::string text = read_file(path);
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> inputs;
  std::size_t pos = 0;
  for (std::size_t hit; (hit = text.find(sep, pos)) != std::string::npos; pos = hit + sep.size()) {
    inputs.push_back(text.substr(pos, hit - pos));
  }
  return inputs;
}

std::vector<std::vector<int32_t>> read_outputs(const std::string& path) {
  std::vector<std::vector<int32_t>> outputs;
  std::istringstream in(read_file(path));
  for (std::string line; std::getline(in, line);) {
    std::istringstream ids(line);
    std::vector<int32_t>& row = outputs.emplace_back();
    for (int32_t id; ids >> id;) row.push_back(id);
  }
  return outputs;
}

std::string ids_to_string(const std::vector<int32_t>& ids) {
  std::ostringstream s;
  for (const int32_t id : ids) s << ' ' << id;
  return s.str();
}

class Conformance : public ::testing::TestWithParam<std::string> {};

TEST_P(Conformance, MatchesLlamaCppReference) {
  const std::string base = kTestData + "/" + GetParam();
  if (!std::filesystem::exists(base) || !std::filesystem::exists(base + ".inp")) {
    GTEST_SKIP() << "test data missing: " << base << " (.inp/.out)";
  }
  const gguf::GgufFile file = gguf::GgufFile::open(base);
  const Tokenizer tok = Tokenizer::from_gguf(file);
  const auto inputs = read_inputs(base + ".inp");
  const auto expected = read_outputs(base + ".out");
  ASSERT_EQ(inputs.size(), expected.size()) << base;
  ASSERT_GT(inputs.size(), 0u);

  std::size_t passed = 0;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    const std::vector<int32_t> got = tok.encode(inputs[i], /*add_bos=*/false);
    // Byte-level BPE and SPM with byte fallback are lossless on valid UTF-8.
    EXPECT_EQ(tok.decode(got), inputs[i]) << GetParam() << " case " << i << ": decode(encode(x)) != x";
    if (got == expected[i]) {
      ++passed;
    } else {
      ADD_FAILURE() << GetParam() << " case " << i << " input '" << inputs[i] << "'\n  expected"
                    << ids_to_string(expected[i]) << "\n  got     " << ids_to_string(got);
    }
  }
  std::cout << GetParam() << ": " << passed << "/" << inputs.size() << " cases passed\n";
  RecordProperty("cases_passed", std::to_string(passed) + "/" + std::to_string(inputs.size()));
  EXPECT_EQ(passed, inputs.size());
}

INSTANTIATE_TEST_SUITE_P(Vocabs, Conformance,
                         ::testing::Values("vocab/ggml-vocab-llama-spm.gguf", "vocab/ggml-vocab-phi-3.gguf",
                                           "stories260K/stories260K.gguf", "vocab/ggml-vocab-gpt-2.gguf",
                                           "vocab/ggml-vocab-llama-bpe.gguf", "vocab/ggml-vocab-qwen2.gguf",
                                           "vocab/ggml-vocab-starcoder.gguf",
                                           "vocab/ggml-vocab-deepseek-coder.gguf"),
                         [](const auto& info) {
                           std::string name = std::filesystem::path(info.param).stem().string();
                           for (char& c : name) {
                             if (!isalnum(static_cast<unsigned char>(c))) c = '_';
                           }
                           return name;
                         });

}  // namespace
}  // namespace bifurcate::tokenizer
