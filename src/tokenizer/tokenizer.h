// Text <-> token ids for the two vocabulary families in GGUF files:
// SentencePiece (tokenizer.ggml.model "llama") and byte-level BPE ("gpt2"),
// matching llama.cpp's llm_tokenizer_spm / llm_tokenizer_bpe token for token.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/unicode.h"
#include "tokenizer/vocab.h"

namespace bifurcate::gguf {
class GgufFile;
}

namespace bifurcate::tokenizer {

class Tokenizer {
 public:
  // Throws Error naming the file/key if the vocab is missing or unsupported.
  static Tokenizer from_gguf(const gguf::GgufFile& file);
  // Throws Error if the vocab is inconsistent (sizes, special ids, pre-tokenizer).
  explicit Tokenizer(Vocab vocab);

  // Throws Error on invalid UTF-8 (naming the byte offset). add_bos: prepend
  // BOS if the vocab has one. parse_special: recognise control and
  // user-defined token texts such as "<|endoftext|>" in the input
  // (user-defined ones are recognised always, as in llama.cpp).
  std::vector<int32_t> encode(std::string_view text, bool add_bos, bool parse_special = false) const;

  // The token's bytes: SPM '▁' -> ' ', <0x0A> -> "\n"; BPE byte-decoded;
  // user-defined tokens as their text; control/unknown/unused tokens -> "".
  std::string token_to_piece(int32_t token) const;
  // Concatenated pieces; SPM drops the one leading space add_space_prefix put
  // at the start of the text (from the first non-empty piece).
  std::string decode(std::span<const int32_t> tokens) const;

  int32_t n_vocab() const { return static_cast<int32_t>(vocab_.tokens.size()); }
  int32_t bos() const { return vocab_.bos; }
  int32_t eos() const { return vocab_.eos; }
  bool add_bos_by_default() const { return vocab_.add_bos; }
  // Whether the model ends its turn with `token`: EOS or an end-of-turn token
  // (<|eot_id|>, <|im_end|>, <|endoftext|>, <|end|>, ...).
  bool is_end_of_generation(int32_t token) const { return end_of_generation_.count(token) > 0; }
  std::string_view token_text(int32_t token) const;
  TokenType token_type(int32_t token) const;
  const Vocab& vocab() const { return vocab_; }

 private:
  // A run of input text, or a special token recognised in it.
  struct Fragment {
    int32_t token;  // -1 for text
    std::string_view text;
  };

  void check_vocab();
  void build_merge_ranks();
  void index_tokens();
  std::string make_piece(int32_t id) const;
  void check_token(int32_t token) const;
  int32_t find_token(std::string_view text) const;  // -1 if absent
  std::vector<Fragment> split_special(std::string_view text, bool parse_special) const;
  void encode_spm(std::string_view text, std::vector<int32_t>& out) const;
  void encode_bpe(std::string_view text, std::vector<int32_t>& out) const;
  void merge_bpe_word(const std::string& word, std::vector<int32_t>& out) const;
  int32_t spm_byte_token(uint8_t byte) const;
  int find_merge_rank(std::string_view left, std::string_view right) const;  // -1 if none

  Vocab vocab_;
  PreTokenizer pre_ = PreTokenizer::Default;
  bool ignore_merges_ = false;  // Llama 3: a word that is a token is not merged
  std::unordered_map<std::string, int32_t> token_ids_;
  std::unordered_map<std::string, int32_t> merge_ranks_;  // "left\0right" -> rank
  std::vector<int32_t> special_tokens_;  // control/user-defined/unknown, longest text first
  std::unordered_set<int32_t> end_of_generation_;
  std::vector<std::string> pieces_;  // token_to_piece cache
  ByteAlphabet bytes_;
};

// Streams text as tokens arrive, emitting only complete UTF-8 sequences: a
// multi-byte character split across byte tokens is held back until complete.
// Output concatenates to tokenizer.decode(all tokens pushed).
class StreamingDetokenizer {
 public:
  // `continues_text`: the tokens follow text already shown (a prompt), so an
  // SPM piece's leading space is kept instead of dropped as a prefix space.
  explicit StreamingDetokenizer(const Tokenizer& tokenizer, bool continues_text = false);
  std::string push(int32_t token);
  // Flushes held bytes; an incomplete trailing sequence becomes U+FFFD.
  std::string finish();

 private:
  const Tokenizer* tokenizer_;
  std::string pending_;       // bytes of an incomplete trailing UTF-8 sequence
  bool at_start_ = true;      // no non-empty piece seen yet (SPM leading space)
};

}  // namespace bifurcate::tokenizer
