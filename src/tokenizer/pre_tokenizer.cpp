#include "tokenizer/pre_tokenizer.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <functional>

#include "tokenizer/unicode.h"
#include "util/error.h"

namespace bifurcate::tokenizer {

namespace {

// A half-open range of code point indices.
struct Span {
  std::size_t begin, end;
};

// The text being split, with the classes of every code point precomputed.
class Text {
 public:
  explicit Text(std::string_view utf8) : cps_(decode_utf8(utf8)) {
    classes_.reserve(cps_.size());
    for (uint32_t cp : cps_) classes_.push_back(classify(cp));
  }
  std::size_t size() const { return cps_.size(); }
  const std::vector<uint32_t>& codepoints() const { return cps_; }

  // Accessors bounded by the piece being matched: outside it, a code point
  // reads as kNone and its class as all-false (like end of input).
  static constexpr uint32_t kNone = 0xFFFFFFFF;
  uint32_t at(std::size_t pos, Span piece) const {
    return pos >= piece.begin && pos < piece.end ? cps_[pos] : kNone;
  }
  CodepointClass cls(std::size_t pos, Span piece) const {
    return pos >= piece.begin && pos < piece.end ? classes_[pos] : CodepointClass{};
  }

 private:
  std::vector<uint32_t> cps_;
  std::vector<CodepointClass> classes_;
};

// Returns the length of the match starting at `pos` (0 if none).
using Matcher = std::function<std::size_t(const Text&, std::size_t pos, Span piece)>;

// How code points that no alternative matches are handled.
enum class Unmatched {
  Gap,         // std::regex_iterator semantics: the text between matches is one piece
  SingleChar,  // llama.cpp's hand-written splitters: each such code point is a piece
};

// Splits every piece by the leftmost-first matches of `match`.
std::vector<Span> split(const Text& text, const std::vector<Span>& pieces, const Matcher& match,
                        Unmatched unmatched) {
  std::vector<Span> out;
  out.reserve(pieces.size() * 2);
  for (const Span piece : pieces) {
    std::size_t gap_begin = piece.begin;
    for (std::size_t pos = piece.begin; pos < piece.end;) {
      std::size_t length = match(text, pos, piece);
      if (length == 0 && unmatched == Unmatched::SingleChar) length = 1;
      if (length == 0) {
        ++pos;
        continue;
      }
      if (gap_begin < pos) out.push_back({gap_begin, pos});
      out.push_back({pos, pos + length});
      pos += length;
      gap_begin = pos;
    }
    if (gap_begin < piece.end) out.push_back({gap_begin, piece.end});
  }
  return out;
}

bool is_ascii_lower(uint32_t cp, char c) { return cp == static_cast<uint32_t>(c) || cp == static_cast<uint32_t>(c - 32); }

// (?i:'s|'t|'re|'ve|'m|'ll|'d); `ignore_case` false gives the lowercase-only form.
std::size_t match_contraction(const Text& t, std::size_t pos, Span piece, bool ignore_case) {
  if (t.at(pos, piece) != '\'') return 0;
  const auto is = [&](std::size_t p, char c) {
    const uint32_t cp = t.at(p, piece);
    return ignore_case ? is_ascii_lower(cp, c) : cp == static_cast<uint32_t>(c);
  };
  if (is(pos + 1, 's') || is(pos + 1, 't') || is(pos + 1, 'm') || is(pos + 1, 'd')) return 2;
  if ((is(pos + 1, 'r') && is(pos + 2, 'e')) || (is(pos + 1, 'v') && is(pos + 2, 'e')) ||
      (is(pos + 1, 'l') && is(pos + 2, 'l'))) {
    return 3;
  }
  return 0;
}

// Length of the run of code points from `pos` satisfying `pred(class, cp)`.
template <class Pred>
std::size_t run_length(const Text& t, std::size_t pos, Span piece, Pred pred) {
  std::size_t end = pos;
  while (end < piece.end && pred(t.cls(end, piece), t.at(end, piece))) ++end;
  return end - pos;
}

bool is_other(const CodepointClass& c) { return !(c.whitespace || c.letter || c.number); }

// \s+(?!\S)|\s+ over a whitespace run of length n starting at pos: a run
// followed by a non-space keeps its last space for the next word.
std::size_t match_trailing_space(std::size_t pos, std::size_t n, Span piece) {
  if (n > 1 && pos + n < piece.end) return n - 1;
  return n;
}

// GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// As llama.cpp's unicode_regex_split_custom_gpt2: unassigned code points match
// no alternative (each becomes a word of its own).
std::size_t match_gpt2(const Text& t, std::size_t pos, Span piece) {
  if (const std::size_t n = match_contraction(t, pos, piece, false)) return n;
  const bool space = t.at(pos, piece) == ' ';
  const CodepointClass c = t.cls(pos + space, piece);
  const std::size_t start = pos + space;
  if (c.letter) return space + run_length(t, start, piece, [](auto k, auto) { return k.letter; });
  if (c.number) return space + run_length(t, start, piece, [](auto k, auto) { return k.number; });
  if (is_other(c) && c.defined) {
    return space + run_length(t, start, piece, [](auto k, auto) { return is_other(k) && k.defined; });
  }
  const std::size_t n = run_length(t, pos, piece, [](auto k, auto) { return k.whitespace; });
  return match_trailing_space(pos, n, piece);
}

bool is_newline(uint32_t cp) { return cp == '\r' || cp == '\n'; }

// Llama 3 and Qwen2 (they differ in \p{N}{1,3} vs \p{N}):
// (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,max_digits}|
//  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
// `hand_written` reproduces llama.cpp's custom Llama 3 splitter, where an
// unassigned code point ends a punctuation run (Qwen2 goes through std::regex,
// where it is just another non-letter).
std::size_t match_llama3_family(const Text& t, std::size_t pos, Span piece, std::size_t max_digits,
                                bool hand_written) {
  if (const std::size_t n = match_contraction(t, pos, piece, true)) return n;
  const uint32_t cp = t.at(pos, piece);
  const CodepointClass c = t.cls(pos, piece);
  const auto letter = [](auto k, auto) { return k.letter; };
  if (!is_newline(cp) && !c.number && (c.letter || t.cls(pos + 1, piece).letter)) {
    return 1 + run_length(t, pos + 1, piece, letter);
  }
  if (c.number) {
    const std::size_t n = run_length(t, pos, piece, [](auto k, auto) { return k.number; });
    return std::min(n, max_digits);
  }
  const bool space = cp == ' ';
  const CodepointClass c2 = t.cls(pos + space, piece);
  const bool starts_other = hand_written ? is_other(c2) && c.defined : is_other(c2) && pos + space < piece.end;
  if (starts_other) {
    std::size_t end = pos + space;
    end += run_length(t, end, piece, [&](auto k, auto) { return is_other(k) && (k.defined || !hand_written); });
    end += run_length(t, end, piece, [](auto, auto p) { return is_newline(p); });
    return end - pos;
  }
  std::size_t n = 0, newline_end = 0;
  for (; pos + n < piece.end && t.cls(pos + n, piece).whitespace; ++n) {
    if (is_newline(t.at(pos + n, piece))) newline_end = n + 1;
  }
  if (newline_end > 0) return newline_end;  // \s*[\r\n]+
  return match_trailing_space(pos, n, piece);
}

// A run of code points satisfying `pred` (regex `[...]+`), or one (`[...]`).
Matcher class_matcher(std::function<bool(const CodepointClass&, uint32_t)> pred, bool repeat) {
  return [pred = std::move(pred), repeat](const Text& t, std::size_t pos, Span piece) -> std::size_t {
    if (!repeat) return pred(t.cls(pos, piece), t.at(pos, piece)) ? 1 : 0;
    return run_length(t, pos, piece, pred);
  };
}

// \s?X+ where X is given by `pred`.
Matcher optional_space_then_run(bool (*pred)(const CodepointClass&)) {
  return [pred](const Text& t, std::size_t pos, Span piece) -> std::size_t {
    const auto run = [&](std::size_t p) {
      return run_length(t, p, piece, [pred](auto k, auto) { return pred(k); });
    };
    if (t.cls(pos, piece).whitespace && pred(t.cls(pos + 1, piece))) return 1 + run(pos + 1);
    return run(pos);
  };
}

bool is_letter(const CodepointClass& c) { return c.letter; }
bool is_punctuation(const CodepointClass& c) { return c.punctuation; }

// [一-龥ࠀ-一가-퟿]: CJK ideographs U+4E00..U+9FA5, U+0800..U+4E00 and
// Hangul U+AC00..U+D7FF. llama.cpp hides non-ASCII whitespace from std::wregex,
// so U+3000 does not count although it lies in the range.
bool is_deepseek_cjk(const CodepointClass& c, uint32_t cp) {
  const bool in_range = (cp >= 0x4E00 && cp <= 0x9FA5) || (cp >= 0x0800 && cp <= 0x4E00) ||
                        (cp >= 0xAC00 && cp <= 0xD7FF);
  return in_range && !c.whitespace;
}

std::vector<Span> run_chain(PreTokenizer kind, const Text& t) {
  std::vector<Span> pieces;
  if (t.size() > 0) pieces.push_back({0, t.size()});
  const auto number = [](const CodepointClass& c, uint32_t) { return c.number; };
  switch (kind) {
    case PreTokenizer::Gpt2:
      return split(t, pieces, match_gpt2, Unmatched::SingleChar);
    case PreTokenizer::Llama3:
      return split(
          t, pieces, [](const Text& x, std::size_t p, Span s) { return match_llama3_family(x, p, s, 3, true); },
          Unmatched::SingleChar);
    case PreTokenizer::Qwen2:
      return split(
          t, pieces, [](const Text& x, std::size_t p, Span s) { return match_llama3_family(x, p, s, 1, false); },
          Unmatched::Gap);
    case PreTokenizer::Starcoder:
      pieces = split(t, pieces, class_matcher(number, false), Unmatched::Gap);  // \p{N}
      return split(t, pieces, match_gpt2, Unmatched::SingleChar);
    case PreTokenizer::DeepseekCoder:
      pieces = split(t, pieces, class_matcher([](auto&, uint32_t cp) { return is_newline(cp); }, false),
                     Unmatched::Gap);                                                       // [\r\n]
      pieces = split(t, pieces, optional_space_then_run(is_letter), Unmatched::Gap);       // \s?\p{L}+
      pieces = split(t, pieces, optional_space_then_run(is_punctuation), Unmatched::Gap);  // \s?\p{P}+
      pieces = split(t, pieces, class_matcher(is_deepseek_cjk, true), Unmatched::Gap);
      return split(t, pieces, class_matcher(number, false), Unmatched::Gap);  // \p{N}
    case PreTokenizer::Default: {
      // [\p{P}\$\+<=>\^~\|]+
      const auto punct_or_sym = [](const CodepointClass& c, uint32_t cp) {
        return c.punctuation || (cp < 0x80 && std::string_view("$+<=>^~|").find(static_cast<char>(cp)) !=
                                                  std::string_view::npos);
      };
      pieces = split(t, pieces, class_matcher(punct_or_sym, true), Unmatched::Gap);
      pieces = split(t, pieces, match_gpt2, Unmatched::SingleChar);
      pieces = split(t, pieces, class_matcher(number, true), Unmatched::Gap);  // \p{N}+
      const Matcher three_digits = [](const Text& x, std::size_t p, Span s) -> std::size_t {
        const auto digit = [&](std::size_t i) { return x.at(i, s) >= '0' && x.at(i, s) <= '9'; };
        return digit(p) && digit(p + 1) && digit(p + 2) ? 3 : 0;
      };
      return split(t, pieces, three_digits, Unmatched::Gap);  // [0-9][0-9][0-9]
    }
  }
  return pieces;
}

}  // namespace

PreTokenizer pre_tokenizer_from_name(std::string_view name) {
  struct Entry {
    std::string_view name;
    PreTokenizer kind;
  };
  static constexpr std::array kNames = {
      Entry{"default", PreTokenizer::Default},          Entry{"gpt-2", PreTokenizer::Gpt2},
      Entry{"phi-2", PreTokenizer::Gpt2},               Entry{"mpt", PreTokenizer::Gpt2},
      Entry{"olmo", PreTokenizer::Gpt2},                Entry{"jais", PreTokenizer::Gpt2},
      Entry{"llama3", PreTokenizer::Llama3},            Entry{"llama-v3", PreTokenizer::Llama3},
      Entry{"llama-bpe", PreTokenizer::Llama3},         Entry{"falcon3", PreTokenizer::Llama3},
      Entry{"smaug-bpe", PreTokenizer::Llama3},         Entry{"dbrx", PreTokenizer::Llama3},
      Entry{"qwen2", PreTokenizer::Qwen2},              Entry{"stablelm2", PreTokenizer::Qwen2},
      Entry{"deepseek-r1-qwen", PreTokenizer::Qwen2},   Entry{"starcoder", PreTokenizer::Starcoder},
      Entry{"refact", PreTokenizer::Starcoder},         Entry{"command-r", PreTokenizer::Starcoder},
      Entry{"smollm", PreTokenizer::Starcoder},         Entry{"codeshell", PreTokenizer::Starcoder},
      Entry{"exaone", PreTokenizer::Starcoder},         Entry{"minerva-7b", PreTokenizer::Starcoder},
      Entry{"deepseek-coder", PreTokenizer::DeepseekCoder},
  };
  for (const Entry& e : kNames) {
    if (e.name == name) return e.kind;
  }
  throw Error(str("unsupported pre-tokenizer '", name, "'"));
}

std::vector<std::string> pre_tokenize(PreTokenizer kind, std::string_view text) {
  const Text t(text);
  const std::vector<Span> pieces = run_chain(kind, t);
  std::vector<std::string> words;
  words.reserve(pieces.size());
  for (const Span s : pieces) {
    std::string& word = words.emplace_back();
    for (std::size_t i = s.begin; i < s.end; ++i) append_utf8(word, t.codepoints()[i]);
  }
  return words;
}

}  // namespace bifurcate::tokenizer
