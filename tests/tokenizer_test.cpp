// Tokenizer unit tests: SPM and BPE merging against naive reference
// implementations written here, pre-tokenizer splits worked out by hand from
// the regexes, round trips, streaming, invalid UTF-8, BOS and special tokens.
#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#include "gguf/gguf_file.h"
#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace bifurcate::tokenizer {
namespace {

const std::string kTestData = BIFURCATE_TESTDATA_DIR;

// Loads a tokenizer from test data, or returns nullopt (the caller skips).
std::optional<Tokenizer> load(const std::string& relative) {
  const std::string path = kTestData + "/" + relative;
  if (!std::filesystem::exists(path)) return std::nullopt;
  return Tokenizer::from_gguf(gguf::GgufFile::open(path));
}

#define LOAD_OR_SKIP(var, path)                                             \
  auto var##_opt = load(path);                                              \
  if (!var##_opt) GTEST_SKIP() << "test data missing: " << kTestData << "/" << (path); \
  const Tokenizer& var = *var##_opt

// Naive SPM: repeatedly merge the adjacent pair with the highest-scoring token
// (leftmost on ties), then map symbols to tokens or <0xXX> bytes.
std::vector<int32_t> reference_spm(const Tokenizer& tok, std::string text, bool add_space_prefix) {
  if (add_space_prefix) text = " " + text;
  std::string escaped;
  for (char c : text) escaped += c == ' ' ? std::string("\xE2\x96\x81") : std::string(1, c);
  std::map<std::string, int32_t> ids;
  for (int32_t id = 0; id < tok.n_vocab(); ++id) ids[std::string(tok.token_text(id))] = id;
  std::vector<std::string> symbols;
  for (std::size_t i = 0; i < escaped.size();) {
    std::size_t n = utf8_sequence_length(static_cast<uint8_t>(escaped[i]));
    symbols.push_back(escaped.substr(i, n));
    i += n;
  }
  for (;;) {
    int best = -1;
    float best_score = 0;
    for (std::size_t i = 0; i + 1 < symbols.size(); ++i) {
      auto it = ids.find(symbols[i] + symbols[i + 1]);
      if (it == ids.end()) continue;
      const float score = tok.vocab().scores[it->second];
      if (best < 0 || score > best_score) best = static_cast<int>(i), best_score = score;
    }
    if (best < 0) break;
    symbols[best] += symbols[best + 1];
    symbols.erase(symbols.begin() + best + 1);
  }
  std::vector<int32_t> out;
  for (const std::string& s : symbols) {
    if (auto it = ids.find(s); it != ids.end()) {
      out.push_back(it->second);
      continue;
    }
    for (unsigned char c : s) {
      char name[8];
      std::snprintf(name, sizeof name, "<0x%02X>", c);
      out.push_back(ids.at(name));
    }
  }
  return out;
}

// Naive byte-level BPE of one pre-tokenized word: merge the lowest-rank pair
// (leftmost on ties) until none is left.
std::vector<int32_t> reference_bpe_word(const Tokenizer& tok, const std::map<std::string, int>& ranks,
                                        const std::string& word) {
  // GPT-2 byte alphabet, rebuilt here independently.
  std::vector<std::string> alphabet(256);
  int next = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    std::string s;
    append_utf8(s, printable ? b : next++);
    alphabet[b] = s;
  }
  std::vector<std::string> symbols;
  for (unsigned char c : word) symbols.push_back(alphabet[c]);
  for (;;) {
    int best = -1, best_rank = 0;
    for (std::size_t i = 0; i + 1 < symbols.size(); ++i) {
      auto it = ranks.find(symbols[i] + " " + symbols[i + 1]);
      if (it != ranks.end() && (best < 0 || it->second < best_rank)) best = static_cast<int>(i), best_rank = it->second;
    }
    if (best < 0) break;
    symbols[best] += symbols[best + 1];
    symbols.erase(symbols.begin() + best + 1);
  }
  std::vector<int32_t> out;
  for (const std::string& s : symbols) {
    for (int32_t id = 0; id < tok.n_vocab(); ++id) {
      if (tok.token_text(id) == s) {
        out.push_back(id);
        break;
      }
    }
  }
  return out;
}

// Random text mixing ASCII words, spaces, newlines, digits and multi-byte characters.
std::string random_text(std::mt19937& rng, int n_parts) {
  static const std::vector<std::string> parts = {
      "a", "b", "e", "th", "the", "ing", "Hello", " ", "  ", "\n", "\t", "1", "23", "456", "'s", "!", "?", ".",
      "é", "ß", "½", "ж", "日本", "🦙", "\xE2\x80\x8D", "Once", " upon", "time", "-", "__", "中文"};
  std::string s;
  for (int i = 0; i < n_parts; ++i) s += parts[rng() % parts.size()];
  return s;
}

TEST(SpmTokenizer, MatchesNaiveReferenceOnRandomText) {
  LOAD_OR_SKIP(tok, "stories260K/stories260K.gguf");
  std::mt19937 rng(17);
  for (int i = 0; i < 200; ++i) {
    const std::string text = random_text(rng, 1 + static_cast<int>(rng() % 12));
    ASSERT_EQ(tok.encode(text, false), reference_spm(tok, text, true)) << "text '" << text << "'";
  }
}

TEST(BpeTokenizer, MergesMatchNaiveReferenceOnRandomText) {
  LOAD_OR_SKIP(tok, "vocab/ggml-vocab-gpt-2.gguf");
  std::map<std::string, int> ranks;
  for (std::size_t r = 0; r < tok.vocab().merges.size(); ++r) ranks.emplace(tok.vocab().merges[r], static_cast<int>(r));
  std::mt19937 rng(37);
  for (int i = 0; i < 40; ++i) {
    const std::string text = random_text(rng, 1 + static_cast<int>(rng() % 8));
    std::vector<int32_t> expected;
    for (const std::string& word : pre_tokenize(PreTokenizer::Gpt2, text)) {
      const auto ids = reference_bpe_word(tok, ranks, word);
      expected.insert(expected.end(), ids.begin(), ids.end());
    }
    ASSERT_EQ(tok.encode(text, false), expected) << "text '" << text << "'";
  }
}

using Words = std::vector<std::string>;

TEST(PreTokenizer, Gpt2SplitsAsItsRegex) {
  // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  EXPECT_EQ(pre_tokenize(PreTokenizer::Gpt2, "Hello world"), (Words{"Hello", " world"}));
  EXPECT_EQ(pre_tokenize(PreTokenizer::Gpt2, "I've  12 apples!!\n"), (Words{"I", "'ve", " ", " 12", " apples", "!!", "\n"}));
  EXPECT_EQ(pre_tokenize(PreTokenizer::Gpt2, "a   b"), (Words{"a", "  ", " b"}));
  EXPECT_EQ(pre_tokenize(PreTokenizer::Gpt2, "x  "), (Words{"x", "  "}));
  EXPECT_EQ(pre_tokenize(PreTokenizer::Gpt2, "'RE"), (Words{"'", "RE"}));  // contractions are lowercase only
}

TEST(PreTokenizer, Llama3SplitsAsItsRegex) {
  // (?i:'s|...)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
  EXPECT_EQ(pre_tokenize(PreTokenizer::Llama3, "1234567"), (Words{"123", "456", "7"}));
  EXPECT_EQ(pre_tokenize(PreTokenizer::Llama3, "'RE you"), (Words{"'RE", " you"}));
  EXPECT_EQ(pre_tokenize(PreTokenizer::Llama3, "(hi) ..\n\n x"), (Words{"(hi", ")", " ..\n\n", " x"}));
  EXPECT_EQ(pre_tokenize(PreTokenizer::Llama3, "a \n \n  b"), (Words{"a", " \n \n", " ", " b"}));
}

TEST(PreTokenizer, Qwen2SplitsDigitsSingly) {
  EXPECT_EQ(pre_tokenize(PreTokenizer::Qwen2, "x1234"), (Words{"x", "1", "2", "3", "4"}));
  EXPECT_EQ(pre_tokenize(PreTokenizer::Qwen2, "Hi, there"), (Words{"Hi", ",", " there"}));
}

TEST(PreTokenizer, DeepseekCoderChain) {
  // [\r\n] | \s?\p{L}+ | \s?\p{P}+ | [CJK]+ | \p{N}, each splitting the previous pieces.
  EXPECT_EQ(pre_tokenize(PreTokenizer::DeepseekCoder, "ab 12\ncd, 中文"),
            (Words{"ab", " ", "1", "2", "\n", "cd", ",", " ", "中文"}));
}

TEST(PreTokenizer, StarcoderSplitsDigitsFirst) {
  EXPECT_EQ(pre_tokenize(PreTokenizer::Starcoder, "x 42"), (Words{"x", " ", "4", "2"}));
}

TEST(PreTokenizer, UnknownNameIsAnError) {
  EXPECT_THROW(pre_tokenizer_from_name("no-such-pre"), Error);
}

TEST(Tokenizer, RoundTripsAndStreamsRandomText) {
  std::string missing;
  for (const char* path : {"stories260K/stories260K.gguf", "vocab/ggml-vocab-llama-spm.gguf",
                           "vocab/ggml-vocab-gpt-2.gguf", "vocab/ggml-vocab-qwen2.gguf",
                           "vocab/ggml-vocab-deepseek-coder.gguf"}) {
    auto tok = load(path);
    if (!tok) {
      missing += str(" ", path);  // the other files are still tested
      continue;
    }
    std::mt19937 rng(5);
    for (int i = 0; i < 100; ++i) {
      const std::string text = random_text(rng, 1 + static_cast<int>(rng() % 10));
      for (bool bos : {false, true}) {
        const std::vector<int32_t> ids = tok->encode(text, bos);
        EXPECT_EQ(tok->decode(ids), text) << path << " bos=" << bos;
        StreamingDetokenizer stream(*tok);
        std::string streamed;
        for (int32_t id : ids) {
          const std::string out = stream.push(id);
          EXPECT_EQ(find_invalid_utf8(out), std::string::npos) << path << ": partial character emitted";
          streamed += out;
        }
        streamed += stream.finish();
        EXPECT_EQ(streamed, text) << path;
      }
    }
  }
  if (!missing.empty()) GTEST_SKIP() << "test data missing:" << missing;
}

TEST(StreamingDetokenizer, HoldsBackCharacterSplitAcrossByteTokens) {
  LOAD_OR_SKIP(tok, "stories260K/stories260K.gguf");
  // '½' (C2 BD) and '🦙' (F0 9F A6 99) are not among the 512 pieces: byte fallback.
  const std::vector<int32_t> ids = tok.encode("a½🦙", false);
  const std::vector<std::string> bytes_of_llama = {"<0xF0>", "<0x9F>", "<0xA6>", "<0x99>"};
  ASSERT_GE(ids.size(), 6u);
  const std::size_t first_byte = ids.size() - 6;
  EXPECT_EQ(tok.token_text(ids[first_byte]), "<0xC2>");
  EXPECT_EQ(tok.token_text(ids[first_byte + 1]), "<0xBD>");
  for (std::size_t i = 0; i < 4; ++i) EXPECT_EQ(tok.token_text(ids[first_byte + 2 + i]), bytes_of_llama[i]);

  StreamingDetokenizer stream(tok);
  std::string before;
  for (std::size_t i = 0; i < first_byte; ++i) before += stream.push(ids[i]);
  EXPECT_EQ(before, "a");
  EXPECT_EQ(stream.push(ids[first_byte]), "");
  EXPECT_EQ(stream.push(ids[first_byte + 1]), "½");
  EXPECT_EQ(stream.push(ids[first_byte + 2]), "");
  EXPECT_EQ(stream.push(ids[first_byte + 3]), "");
  EXPECT_EQ(stream.push(ids[first_byte + 4]), "");
  EXPECT_EQ(stream.push(ids[first_byte + 5]), "🦙");
  EXPECT_EQ(stream.finish(), "");

  StreamingDetokenizer truncated(tok);
  EXPECT_EQ(truncated.push(ids[first_byte]), "");
  EXPECT_EQ(truncated.finish(), "\xEF\xBF\xBD");
}

TEST(Tokenizer, InvalidUtf8IsAnErrorNamingTheOffset) {
  LOAD_OR_SKIP(tok, "stories260K/stories260K.gguf");
  const std::vector<std::pair<std::string, std::size_t>> cases = {
      {"ab\xFF", 2}, {"\xC3\x28", 0}, {"ok\xC0\xAF", 2}, {"x\xED\xA0\x80", 1}, {"abc\xE2\x82", 3}, {"\xF4\x90\x80\x80", 0}};
  for (const auto& [text, offset] : cases) {
    try {
      (void)tok.encode(text, false);
      ADD_FAILURE() << "no error for offset " << offset;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("byte offset " + std::to_string(offset)), std::string::npos) << e.what();
    }
  }
  EXPECT_NO_THROW((void)tok.encode("\xF0\x9F\xA6\x99 \xC3\xA9", false));
}

TEST(Tokenizer, BosHandling) {
  LOAD_OR_SKIP(spm, "stories260K/stories260K.gguf");
  EXPECT_EQ(spm.bos(), 1);
  EXPECT_EQ(spm.eos(), 2);
  EXPECT_TRUE(spm.add_bos_by_default());
  const std::vector<int32_t> plain = spm.encode("Once upon a time", false);
  std::vector<int32_t> with_bos = {1};
  with_bos.insert(with_bos.end(), plain.begin(), plain.end());
  EXPECT_EQ(spm.encode("Once upon a time", true), with_bos);
  EXPECT_EQ(spm.encode("", true), std::vector<int32_t>{1});
  EXPECT_TRUE(spm.encode("", false).empty());
  EXPECT_EQ(spm.token_to_piece(1), "");
  EXPECT_TRUE(spm.is_end_of_generation(2));
  EXPECT_FALSE(spm.is_end_of_generation(1));

  LOAD_OR_SKIP(qwen, "vocab/ggml-vocab-qwen2.gguf");
  EXPECT_EQ(qwen.bos(), -1);  // Qwen2 has no BOS: add_bos adds nothing
  EXPECT_EQ(qwen.encode("Hello", true), qwen.encode("Hello", false));
}

TEST(Tokenizer, ParsesSpecialTokensOnlyWhenAsked) {
  LOAD_OR_SKIP(tok, "vocab/ggml-vocab-llama-bpe.gguf");
  EXPECT_EQ(tok.bos(), 128000);
  EXPECT_TRUE(tok.add_bos_by_default());
  EXPECT_EQ(tok.token_text(128009), "<|eot_id|>");
  const std::vector<int32_t> special = tok.encode("hi<|eot_id|>", false, true);
  ASSERT_EQ(special.size(), 2u);
  EXPECT_EQ(special[1], 128009);
  const std::vector<int32_t> plain = tok.encode("hi<|eot_id|>", false, false);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), 128009), 0);
  EXPECT_EQ(tok.decode(plain), "hi<|eot_id|>");
  EXPECT_TRUE(tok.is_end_of_generation(128009));
  EXPECT_TRUE(tok.is_end_of_generation(tok.eos()));
  EXPECT_FALSE(tok.is_end_of_generation(special[0]));
  EXPECT_EQ(tok.token_to_piece(128009), "");  // control tokens have no text
}

TEST(Tokenizer, SpmPieces) {
  LOAD_OR_SKIP(tok, "vocab/ggml-vocab-llama-spm.gguf");
  EXPECT_EQ(tok.token_text(13), "<0x0A>");
  EXPECT_EQ(tok.token_to_piece(13), "\n");
  EXPECT_EQ(tok.token_to_piece(15043), " Hello");  // "▁Hello"
  const std::vector<int32_t> ids = {15043, 3186};
  EXPECT_EQ(tok.decode(ids), "Hello world");
  EXPECT_THROW((void)tok.token_to_piece(tok.n_vocab()), Error);
}

}  // namespace
}  // namespace bifurcate::tokenizer
