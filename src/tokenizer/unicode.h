// Unicode helpers for the tokenizers: strict UTF-8 decoding, the character
// classes the pre-tokenizer regexes use (from ICU), and GPT-2's byte-to-unicode
// alphabet that byte-level BPE vocabularies are written in.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace bifurcate::tokenizer {

// Length in bytes of the UTF-8 sequence a lead byte announces (1 for stray
// continuation bytes, like llama.cpp, so a scan always advances).
std::size_t utf8_sequence_length(uint8_t lead);

// Decodes strictly (no overlongs, surrogates or values above U+10FFFF).
// Throws Error naming the byte offset of the first invalid sequence.
std::vector<uint32_t> decode_utf8(std::string_view text);

// Returns the byte offset of the first invalid UTF-8 sequence, or npos.
std::size_t find_invalid_utf8(std::string_view text);

void append_utf8(std::string& out, uint32_t codepoint);

// The classes llama.cpp's unicode tables give a code point (general category
// groups plus the White_Space property). `defined` is false only for
// unassigned code points, which some matchers treat specially.
struct CodepointClass {
  bool letter = false;       // \p{L}
  bool number = false;       // \p{N}
  bool punctuation = false;  // \p{P}
  bool whitespace = false;   // White_Space
  bool defined = false;      // any category but Cn
};
CodepointClass classify(uint32_t codepoint);

// GPT-2's reversible map from bytes to printable code points: printable
// Latin-1 bytes map to themselves, the other 68 to U+0100.. in byte order.
class ByteAlphabet {
 public:
  ByteAlphabet();
  // UTF-8 of the code point standing for `byte`.
  const std::string& encode(uint8_t byte) const { return byte_to_utf8_[byte]; }
  // The byte a code point stands for, or -1 if it stands for none.
  int decode(uint32_t codepoint) const;

 private:
  std::array<std::string, 256> byte_to_utf8_;
  std::array<int16_t, 324> codepoint_to_byte_;  // code points 0..323 cover the map
};

}  // namespace bifurcate::tokenizer
