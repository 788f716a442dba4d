#include "chat/lexer.h"

#include <algorithm>
#include <cctype>
#include <cstring>

#include "chat/chat_template.h"
#include "chat/text.h"

namespace bifurcate::chat {
namespace {

// Length of the Python-whitespace code point at s[pos], or 0.
std::size_t space_at(std::string_view s, std::size_t pos) {
  auto b = static_cast<unsigned char>(s[pos]);
  if (b < 0x80) return text::is_space(b) ? 1 : 0;
  std::size_t len = (b >> 5) == 0x6 ? 2 : (b >> 4) == 0xe ? 3 : (b >> 3) == 0x1e ? 4 : 1;
  if (pos + len > s.size()) return 0;
  std::u32string cp = text::decode(s.substr(pos, len));
  return cp.size() == 1 && text::is_space(cp[0]) ? len : 0;
}

std::size_t skip_spaces(std::string_view s, std::size_t pos) {
  while (pos < s.size()) {
    std::size_t n = space_at(s, pos);
    if (n == 0) break;
    pos += n;
  }
  return pos;
}

bool all_spaces(std::string_view s) { return !s.empty() && skip_spaces(s, 0) == s.size(); }

// Python's str.rstrip() on UTF-8.
std::string_view rstrip_spaces(std::string_view s) {
  std::size_t end = s.size();
  while (end > 0) {
    std::size_t start = end - 1;
    while (start > 0 && (static_cast<unsigned char>(s[start]) & 0xc0) == 0x80) --start;
    if (space_at(s, start) != end - start) break;
    end = start;
  }
  return s.substr(0, end);
}

bool is_name_start(unsigned char c) { return std::isalpha(c) || c == '_' || c >= 0x80; }
bool is_name_char(unsigned char c) { return std::isalnum(c) || c == '_' || c >= 0x80; }

class Lexer {
 public:
  Lexer(const std::string& source, const SourceMap& map) : src_(source), map_(map) {}

  std::vector<Token> run() {
    while (pos_ < src_.size()) lex_root();
    tokens_.push_back({TokenType::End, "", src_.size()});
    return std::move(tokens_);
  }

 private:
  [[noreturn]] void fail(std::size_t offset, const std::string& message) const {
    Position p = map_.position(offset);
    throw TemplateError(p.line, p.column, message);
  }

  bool starts_with(std::size_t at, std::string_view s) const {
    return src_.compare(at, s.size(), s) == 0;
  }

  // Emits text before a tag opening at `tag`, applying the tag's `-`/`+`
  // sign or lstrip_blocks (block and comment tags only).
  void emit_text(std::size_t begin, std::size_t tag, char sign, bool lstrip_applies) {
    std::string_view text(src_.data() + begin, tag - begin);
    if (sign == '-') {
      text = rstrip_spaces(text);
    } else if (sign != '+' && lstrip_applies) {
      std::size_t nl = text.rfind('\n');
      std::size_t line_start = nl == std::string_view::npos ? 0 : nl + 1;
      if ((line_start > 0 || line_starting_) && all_spaces(text.substr(line_start))) {
        text = text.substr(0, line_start);
      }
    }
    if (!text.empty()) tokens_.push_back({TokenType::Text, std::string(text), begin});
  }

  // Finds the earliest "{{", "{%" or "{#" at or after pos_.
  std::size_t find_tag() const {
    std::size_t at = pos_;
    while ((at = src_.find('{', at)) != std::string::npos) {
      if (at + 1 < src_.size() && (src_[at + 1] == '{' || src_[at + 1] == '%' || src_[at + 1] == '#')) return at;
      ++at;
    }
    return std::string::npos;
  }

  void lex_root() {
    std::size_t tag = find_tag();
    if (tag == std::string::npos) {
      tokens_.push_back({TokenType::Text, src_.substr(pos_), pos_});
      pos_ = src_.size();
      return;
    }
    char kind = src_[tag + 1];
    char sign = tag + 2 < src_.size() && (src_[tag + 2] == '-' || src_[tag + 2] == '+') ? src_[tag + 2] : 0;
    if (kind == '%' && lex_raw(tag, sign)) return;
    emit_text(pos_, tag, sign, kind != '{');
    std::size_t inner = tag + 2 + (sign ? 1 : 0);
    if (kind == '#') {
      lex_comment(tag, inner);
    } else {
      tokens_.push_back({kind == '{' ? TokenType::VariableBegin : TokenType::BlockBegin, "", tag});
      lex_tag(tag, inner, kind == '{');
    }
  }

  // {% raw %}...{% endraw %}: the body is text, untouched by the lexer.
  bool lex_raw(std::size_t tag, char sign) {
    std::size_t p = skip_spaces(src_, tag + 2 + (sign ? 1 : 0));
    if (!starts_with(p, "raw")) return false;
    p = skip_spaces(src_, p + 3);
    std::size_t body;
    if (starts_with(p, "-%}")) {
      body = skip_spaces(src_, p + 3);
    } else if (starts_with(p, "%}")) {
      body = p + 2;
    } else {
      return false;
    }
    emit_text(pos_, tag, sign, true);
    for (std::size_t at = body; (at = src_.find("{%", at)) != std::string::npos; at += 2) {
      char end_sign = at + 2 < src_.size() && (src_[at + 2] == '-' || src_[at + 2] == '+') ? src_[at + 2] : 0;
      std::size_t q = skip_spaces(src_, at + 2 + (end_sign ? 1 : 0));
      if (!starts_with(q, "endraw")) continue;
      q = skip_spaces(src_, q + 6);
      std::size_t end;
      if (starts_with(q, "+%}")) {
        end = q + 3;
      } else if (starts_with(q, "-%}")) {
        end = skip_spaces(src_, q + 3);
      } else if (starts_with(q, "%}")) {
        end = q + 2 + (q + 2 < src_.size() && src_[q + 2] == '\n' ? 1 : 0);
      } else {
        continue;
      }
      line_starting_ = false;  // the raw begin tag never ends with a newline
      emit_text(body, at, end_sign, true);
      pos_ = end;
      line_starting_ = src_[end - 1] == '\n';
      return true;
    }
    fail(tag, "Missing end of raw directive");
  }

  void lex_comment(std::size_t tag, std::size_t inner) {
    std::size_t close = src_.find("#}", inner);
    if (close == std::string::npos) fail(tag, "Missing end of comment tag");
    std::size_t end;
    char sign = close > inner && (src_[close - 1] == '-' || src_[close - 1] == '+') ? src_[close - 1] : 0;
    if (sign == '-') {
      end = skip_spaces(src_, close + 2);
    } else if (sign == '+') {
      end = close + 2;
    } else {
      end = close + 2 + (close + 2 < src_.size() && src_[close + 2] == '\n' ? 1 : 0);
    }
    pos_ = end;
    line_starting_ = src_[end - 1] == '\n';
  }

  // The end of a {{ }} or {% %} tag at p, if there is one: sets pos_.
  bool lex_tag_end(std::size_t p, bool variable) {
    if (variable) {
      if (starts_with(p, "-}}")) {
        pos_ = skip_spaces(src_, p + 3);
      } else if (starts_with(p, "}}")) {
        pos_ = p + 2;
      } else {
        return false;
      }
      tokens_.push_back({TokenType::VariableEnd, "", p});
    } else {
      if (starts_with(p, "+%}")) {
        pos_ = p + 3;
      } else if (starts_with(p, "-%}")) {
        pos_ = skip_spaces(src_, p + 3);
      } else if (starts_with(p, "%}")) {
        pos_ = p + 2 + (p + 2 < src_.size() && src_[p + 2] == '\n' ? 1 : 0);
      } else {
        return false;
      }
      tokens_.push_back({TokenType::BlockEnd, "", p});
    }
    line_starting_ = src_[pos_ - 1] == '\n';
    return true;
  }

  void lex_tag(std::size_t tag, std::size_t p, bool variable) {
    std::string balance;  // expected closing brackets
    while (true) {
      if (balance.empty() && lex_tag_end(p, variable)) return;
      std::size_t after_space = skip_spaces(src_, p);
      if (after_space != p) {
        p = after_space;
        continue;
      }
      if (p >= src_.size()) {
        fail(tag, variable ? "unexpected end of template, expected '}}'" : "unexpected end of template, expected '%}'");
      }
      auto c = static_cast<unsigned char>(src_[p]);
      if (std::isdigit(c)) {
        p = lex_number(p);
      } else if (is_name_start(c)) {
        std::size_t end = p;
        while (end < src_.size() && is_name_char(static_cast<unsigned char>(src_[end]))) ++end;
        tokens_.push_back({TokenType::Name, src_.substr(p, end - p), p});
        p = end;
      } else if (c == '\'' || c == '"') {
        p = lex_string(p);
      } else {
        p = lex_operator(p, balance);
      }
    }
  }

  std::size_t lex_number(std::size_t p) {
    auto digits = [&](std::size_t at, auto is_digit) {
      // (_?digit)+ after a first digit: underscores only between digits.
      while (at < src_.size()) {
        if (is_digit(src_[at])) {
          ++at;
        } else if (src_[at] == '_' && at + 1 < src_.size() && is_digit(src_[at + 1])) {
          at += 2;
        } else {
          break;
        }
      }
      return at;
    };
    auto dec = [](char ch) { return std::isdigit(static_cast<unsigned char>(ch)) != 0; };
    auto strip_underscores = [](std::string s) {
      s.erase(std::remove(s.begin(), s.end(), '_'), s.end());
      return s;
    };
    if (src_[p] == '0' && p + 1 < src_.size() && std::strchr("bBoOxX", src_[p + 1]) && src_[p + 1] != 0) {
      char base = static_cast<char>(std::tolower(static_cast<unsigned char>(src_[p + 1])));
      auto in_base = [base](char ch) {
        if (base == 'b') return ch == '0' || ch == '1';
        if (base == 'o') return ch >= '0' && ch <= '7';
        return std::isxdigit(static_cast<unsigned char>(ch)) != 0;
      };
      std::size_t at = p + 2;
      if (at < src_.size() && src_[at] == '_') ++at;
      if (at < src_.size() && in_base(src_[at])) {
        std::size_t end = digits(at, in_base);
        tokens_.push_back({TokenType::Integer, strip_underscores(src_.substr(p, end - p)), p});
        return end;
      }
    }
    std::size_t int_end = digits(p, dec);
    std::size_t end = int_end;
    bool is_float = false;
    if (end + 1 < src_.size() && src_[end] == '.' && dec(src_[end + 1])) {
      end = digits(end + 1, dec);
      is_float = true;
    }
    if (end < src_.size() && (src_[end] == 'e' || src_[end] == 'E')) {
      std::size_t at = end + 1;
      if (at < src_.size() && (src_[at] == '+' || src_[at] == '-')) ++at;
      if (at < src_.size() && dec(src_[at])) {
        end = digits(at, dec);
        is_float = true;
      }
    }
    if (!is_float && src_[p] == '0') {
      // jinja2's integer rule accepts only zeros after a leading 0.
      end = p + 1;
      while (end < int_end && (src_[end] == '0' || src_[end] == '_')) ++end;
      while (end > p + 1 && src_[end - 1] == '_') --end;
    }
    tokens_.push_back(
        {is_float ? TokenType::Float : TokenType::Integer, strip_underscores(src_.substr(p, end - p)), p});
    return end;
  }

  std::size_t lex_string(std::size_t p) {
    char quote = src_[p];
    std::string value;
    std::size_t at = p + 1;
    auto hex = [&](std::size_t from, int count) -> char32_t {
      char32_t v = 0;
      for (int k = 0; k < count; ++k) {
        std::size_t i = from + static_cast<std::size_t>(k);
        if (i >= src_.size() || !std::isxdigit(static_cast<unsigned char>(src_[i]))) {
          fail(p, count == 2 ? "truncated \\xXX escape" : count == 4 ? "truncated \\uXXXX escape"
                                                                    : "truncated \\UXXXXXXXX escape");
        }
        char ch = static_cast<char>(std::tolower(static_cast<unsigned char>(src_[i])));
        v = v * 16 + static_cast<char32_t>(ch <= '9' ? ch - '0' : ch - 'a' + 10);
      }
      return v;
    };
    while (true) {
      if (at >= src_.size()) fail(p, "unexpected end of template inside a string literal");
      char c = src_[at];
      if (c == quote) break;
      if (c != '\\') {
        value += c;
        ++at;
        continue;
      }
      if (at + 1 >= src_.size()) fail(p, "unexpected end of template inside a string literal");
      char e = src_[at + 1];
      at += 2;
      switch (e) {
        case '\n': break;
        case '\\': value += '\\'; break;
        case '\'': value += '\''; break;
        case '"': value += '"'; break;
        case 'a': value += '\a'; break;
        case 'b': value += '\b'; break;
        case 'f': value += '\f'; break;
        case 'n': value += '\n'; break;
        case 'r': value += '\r'; break;
        case 't': value += '\t'; break;
        case 'v': value += '\v'; break;
        case 'x': text::append_utf8(value, hex(at, 2)); at += 2; break;
        case 'u': text::append_utf8(value, hex(at, 4)); at += 4; break;
        case 'U': {
          char32_t cp = hex(at, 8);
          if (cp > 0x10FFFF) fail(p, "illegal Unicode character");
          text::append_utf8(value, cp);
          at += 8;
          break;
        }
        default:
          if (e >= '0' && e <= '7') {
            char32_t v = static_cast<char32_t>(e - '0');
            for (int k = 0; k < 2 && at < src_.size() && src_[at] >= '0' && src_[at] <= '7'; ++k, ++at)
              v = v * 8 + static_cast<char32_t>(src_[at] - '0');
            text::append_utf8(value, v);
          } else {
            value += '\\';  // Python keeps unknown escapes as they are
            at -= 1;
          }
      }
    }
    // Lone surrogates from \uD800 escapes cannot be UTF-8; refuse them.
    if (text::find_invalid_utf8(value) != std::string::npos) fail(p, "string literal is not valid Unicode");
    tokens_.push_back({TokenType::String, std::move(value), p});
    return at + 1;
  }

  std::size_t lex_operator(std::size_t p, std::string& balance) {
    static constexpr std::string_view kTwo[] = {"//", "**", "==", "!=", ">=", "<="};
    for (std::string_view op : kTwo) {
      if (starts_with(p, op)) {
        tokens_.push_back({TokenType::Operator, std::string(op), p});
        return p + 2;
      }
    }
    char c = src_[p];
    static constexpr std::string_view kOne = "+-/*%~[](){}><=.:|,;";
    if (kOne.find(c) == std::string_view::npos) {
      std::size_t len = 1;
      while (p + len < src_.size() && (static_cast<unsigned char>(src_[p + len]) & 0xc0) == 0x80) ++len;
      fail(p, "unexpected char '" + src_.substr(p, len) + "'");
    }
    if (c == '(' || c == '[' || c == '{') {
      balance += c == '(' ? ')' : c == '[' ? ']' : '}';
    } else if (c == ')' || c == ']' || c == '}') {
      if (balance.empty()) fail(p, std::string("unexpected '") + c + "'");
      if (balance.back() != c) fail(p, std::string("unexpected '") + c + "', expected '" + balance.back() + "'");
      balance.pop_back();
    }
    tokens_.push_back({TokenType::Operator, std::string(1, c), p});
    return p + 1;
  }

  const std::string& src_;
  const SourceMap& map_;
  std::vector<Token> tokens_;
  std::size_t pos_ = 0;
  bool line_starting_ = true;
};

}  // namespace

SourceMap::SourceMap(std::string_view source) {
  line_starts_.push_back(0);
  for (std::size_t i = 0; i < source.size(); ++i)
    if (source[i] == '\n') line_starts_.push_back(i + 1);
}

Position SourceMap::position(std::size_t offset) const {
  auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), offset);
  std::size_t line = static_cast<std::size_t>(it - line_starts_.begin());
  return {static_cast<int>(line), static_cast<int>(offset - line_starts_[line - 1] + 1)};
}

std::string normalize_source(std::string_view source) {
  std::string out;
  out.reserve(source.size());
  for (std::size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      out += '\n';
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      out += source[i];
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

std::vector<Token> tokenize(const std::string& source, const SourceMap& map) {
  return Lexer(source, map).run();
}

}  // namespace bifurcate::chat
