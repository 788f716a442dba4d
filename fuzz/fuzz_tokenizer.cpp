// Fuzz target: every tokenizer of the test data (fuzz_vocabularies.h), each
// loaded once, encoding arbitrary bytes and decoding arbitrary ids.
//
// Input layout:
//   byte 0   which vocabulary (modulo their count)
//   byte 1   options: bit 0 add_bos, bit 1 parse_special, bit 2 raw ids
//   rest     the payload, used twice:
//            - as text to encode;
//            - as little-endian int32 ids to decode: raw (bit 2 set; almost
//              all out of range, testing the refusal) or folded into
//              [-1, n_vocab] (mostly valid, with both edges just outside).
//
// Beyond "no crash, no sanitizer report, only bifurcate::Error", it checks
// what the tokenizer promises (tokenizer.h):
//   - encode refuses exactly the texts that are not valid UTF-8;
//   - encoded ids lie in the vocabulary, starting with BOS when asked for;
//   - byte-level BPE loses nothing: decode(encode(text)) == text, when every
//     byte of the text has its single-byte token (llama.cpp, and so this
//     tokenizer, silently drops a byte whose token the vocabulary lacks:
//     starcoder's lacks 0xF1, the lead byte of U+40000..U+7FFFF) and without
//     parse_special (which turns control-token texts into tokens with no text);
//   - decode refuses exactly the id lists holding an id outside the vocabulary;
//   - StreamingDetokenizer's output concatenates to decode(ids).
#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "fuzz_vocabularies.h"
#include "gguf/gguf_file.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"
#include "util/error.h"

namespace {

using namespace bifurcate;
using tokenizer::Tokenizer;

struct LoadedTokenizer {
  std::unique_ptr<Tokenizer> tok;
  std::array<bool, 256> byte_has_token{};  // byte-level BPE: the byte's alphabet symbol is a token
};

std::vector<LoadedTokenizer>& tokenizers() {
  static std::vector<LoadedTokenizer> loaded;
  return loaded;
}

std::array<bool, 256> bytes_with_tokens(const Tokenizer& tok) {
  const std::unordered_set<std::string> texts(tok.vocab().tokens.begin(), tok.vocab().tokens.end());
  const tokenizer::ByteAlphabet alphabet;
  std::array<bool, 256> has{};
  for (int b = 0; b < 256; ++b) has[std::size_t(b)] = texts.count(alphabet.encode(uint8_t(b))) > 0;
  return has;
}

void check(bool condition, const char* what, std::string_view vocab_name) {
  if (!condition) {
    std::fprintf(stderr, "fuzz_tokenizer: %s: invariant violated: %s\n", std::string(vocab_name).c_str(), what);
    std::abort();
  }
}

void fuzz_encode(const LoadedTokenizer& loaded, std::string_view text, bool add_bos, bool parse_special,
                 std::string_view name) {
  const Tokenizer& tok = *loaded.tok;
  const bool valid_utf8 = tokenizer::find_invalid_utf8(text) == std::string_view::npos;
  std::vector<int32_t> ids;
  try {
    ids = tok.encode(text, add_bos, parse_special);
  } catch (const Error&) {
    check(!valid_utf8, "encode refused valid UTF-8", name);
    return;
  }
  check(valid_utf8, "encode accepted invalid UTF-8", name);
  for (const int32_t id : ids) check(id >= 0 && id < tok.n_vocab(), "encode returned an id outside the vocabulary", name);
  if (add_bos && tok.bos() >= 0) check(!ids.empty() && ids.front() == tok.bos(), "add_bos without BOS first", name);
  const std::string decoded = tok.decode(ids);
  const bool bytes_covered =
      std::all_of(text.begin(), text.end(), [&](char c) { return loaded.byte_has_token[uint8_t(c)]; });
  if (tok.vocab().kind == tokenizer::VocabKind::Bpe && !parse_special && bytes_covered) {
    check(decoded == text, "byte-level BPE did not round-trip: decode(encode(text)) != text", name);
  }
}

void fuzz_decode(const Tokenizer& tok, std::string_view payload, bool raw_ids, std::string_view name) {
  std::vector<int32_t> ids(payload.size() / 4);
  bool all_valid = true;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    uint32_t bits = 0;
    std::memcpy(&bits, payload.data() + 4 * i, 4);  // x86: little-endian
    const int32_t id = raw_ids ? static_cast<int32_t>(bits)
                               : static_cast<int32_t>(bits % (uint32_t(tok.n_vocab()) + 2)) - 1;
    ids[i] = id;
    all_valid = all_valid && id >= 0 && id < tok.n_vocab();
  }
  std::string decoded;
  try {
    decoded = tok.decode(ids);
  } catch (const Error&) {
    check(!all_valid, "decode refused ids that are all in the vocabulary", name);
    return;
  }
  check(all_valid, "decode accepted an id outside the vocabulary", name);

  tokenizer::StreamingDetokenizer stream(tok);
  std::string streamed;
  for (const int32_t id : ids) {
    (void)tok.token_text(id);
    (void)tok.token_type(id);
    (void)tok.is_end_of_generation(id);
    streamed += stream.push(id);
  }
  check(decoded.starts_with(streamed), "streamed text is not a prefix of decode(ids)", name);
  const std::string tail = stream.finish();
  // finish() holds back only an incomplete trailing UTF-8 sequence, emitted as U+FFFD.
  if (tail.empty()) check(streamed == decoded, "streamed text differs from decode(ids)", name);
  else check(tail == "\xEF\xBF\xBD" && streamed.size() < decoded.size(), "finish() returned more than U+FFFD", name);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  const std::vector<std::string> paths = fuzz::vocabulary_paths(BIFURCATE_TESTDATA_DIR);
  if (paths.empty()) {
    std::fprintf(stderr, "fuzz_tokenizer: no vocabularies in %s/vocab; the test data is missing\n",
                 BIFURCATE_TESTDATA_DIR);
    std::exit(77);  // ctest's SKIP_RETURN_CODE for this target
  }
  for (const std::string& path : paths) {
    auto tok = std::make_unique<Tokenizer>(Tokenizer::from_gguf(gguf::GgufFile::open(path)));
    const std::array<bool, 256> has = bytes_with_tokens(*tok);
    tokenizers().push_back({std::move(tok), has});
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const auto& all = tokenizers();
  const std::size_t which = data[0] % all.size();
  const LoadedTokenizer& loaded = all[which];
  const Tokenizer& tok = *loaded.tok;
  const std::string name = tok.vocab().model_name.empty() ? std::to_string(which) : tok.vocab().model_name;
  const bool add_bos = (data[1] & 1) != 0;
  const bool parse_special = (data[1] & 2) != 0;
  const bool raw_ids = (data[1] & 4) != 0;
  const std::string_view payload(reinterpret_cast<const char*>(data + 2), size - 2);
  fuzz_encode(loaded, payload, add_bos, parse_special, name);
  fuzz_decode(tok, payload, raw_ids, name);
  return 0;
}
