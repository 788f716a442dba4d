#include "tokenizer/unicode.h"

#include <unicode/uchar.h>

#include "util/error.h"

namespace bifurcate::tokenizer {

std::size_t utf8_sequence_length(uint8_t lead) {
  if (lead < 0xC0) return 1;
  if (lead < 0xE0) return 2;
  if (lead < 0xF0) return 3;
  return 4;
}

namespace {

// Decodes one sequence at `pos`; returns its length, or 0 if it is invalid.
std::size_t decode_one(std::string_view text, std::size_t pos, uint32_t& codepoint) {
  const auto byte = [&](std::size_t i) { return static_cast<uint8_t>(text[i]); };
  const uint8_t lead = byte(pos);
  if (lead < 0x80) {
    codepoint = lead;
    return 1;
  }
  std::size_t length;
  uint32_t min_value;
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2, min_value = 0x80, codepoint = lead & 0x1F;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3, min_value = 0x800, codepoint = lead & 0x0F;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4, min_value = 0x10000, codepoint = lead & 0x07;
  } else {
    return 0;
  }
  if (pos + length > text.size()) return 0;
  for (std::size_t i = 1; i < length; ++i) {
    if ((byte(pos + i) & 0xC0) != 0x80) return 0;
    codepoint = (codepoint << 6) | (byte(pos + i) & 0x3F);
  }
  const bool surrogate = codepoint >= 0xD800 && codepoint <= 0xDFFF;
  if (codepoint < min_value || codepoint > 0x10FFFF || surrogate) return 0;
  return length;
}

}  // namespace

std::size_t find_invalid_utf8(std::string_view text) {
  uint32_t codepoint = 0;
  for (std::size_t pos = 0; pos < text.size();) {
    const std::size_t length = decode_one(text, pos, codepoint);
    if (length == 0) return pos;
    pos += length;
  }
  return std::string_view::npos;
}

std::vector<uint32_t> decode_utf8(std::string_view text) {
  std::vector<uint32_t> codepoints;
  codepoints.reserve(text.size());
  for (std::size_t pos = 0; pos < text.size();) {
    uint32_t codepoint = 0;
    const std::size_t length = decode_one(text, pos, codepoint);
    require(length != 0, "invalid UTF-8 at byte offset ", pos, " (byte 0x", std::hex,
            static_cast<int>(static_cast<uint8_t>(text[pos])), ")");
    codepoints.push_back(codepoint);
    pos += length;
  }
  return codepoints;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

CodepointClass classify(uint32_t codepoint) {
  CodepointClass c;
  const auto cp = static_cast<UChar32>(codepoint);
  c.whitespace = u_isUWhiteSpace(cp);
  switch (u_charType(cp)) {
    case U_UPPERCASE_LETTER:
    case U_LOWERCASE_LETTER:
    case U_TITLECASE_LETTER:
    case U_MODIFIER_LETTER:
    case U_OTHER_LETTER:
      c.letter = true;
      break;
    case U_DECIMAL_DIGIT_NUMBER:
    case U_LETTER_NUMBER:
    case U_OTHER_NUMBER:
      c.number = true;
      break;
    case U_CONNECTOR_PUNCTUATION:
    case U_DASH_PUNCTUATION:
    case U_START_PUNCTUATION:
    case U_END_PUNCTUATION:
    case U_INITIAL_PUNCTUATION:
    case U_FINAL_PUNCTUATION:
    case U_OTHER_PUNCTUATION:
      c.punctuation = true;
      break;
    default:
      break;
  }
  c.defined = c.whitespace || u_charType(cp) != U_UNASSIGNED;
  return c;
}

ByteAlphabet::ByteAlphabet() {
  codepoint_to_byte_.fill(-1);
  const auto printable = [](int b) {
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
  };
  uint32_t next_unprintable = 256;
  for (int b = 0; b < 256; ++b) {
    const uint32_t cp = printable(b) ? static_cast<uint32_t>(b) : next_unprintable++;
    append_utf8(byte_to_utf8_[b], cp);
    codepoint_to_byte_[cp] = static_cast<int16_t>(b);
  }
}

int ByteAlphabet::decode(uint32_t codepoint) const {
  return codepoint < codepoint_to_byte_.size() ? codepoint_to_byte_[codepoint] : -1;
}

}  // namespace bifurcate::tokenizer
