#include "chat/text.h"

#include <unicode/uchar.h>
#include <unicode/ustring.h>

#include <cstdio>

namespace bifurcate::chat::text {
namespace {

// Decodes one code point at s[i], advancing i; U+FFFD on a bad sequence.
char32_t next_code_point(std::string_view s, std::size_t& i) {
  auto b = static_cast<unsigned char>(s[i]);
  int extra = b < 0x80 ? 0 : (b >> 5) == 0x6 ? 1 : (b >> 4) == 0xe ? 2 : (b >> 3) == 0x1e ? 3 : -1;
  if (extra == 0) {
    ++i;
    return b;
  }
  if (extra < 0 || i + extra >= s.size()) {
    ++i;
    return 0xFFFD;
  }
  char32_t c = b & (0x3f >> extra);
  for (int k = 1; k <= extra; ++k) {
    auto cont = static_cast<unsigned char>(s[i + k]);
    if ((cont & 0xc0) != 0x80) {
      ++i;
      return 0xFFFD;
    }
    c = (c << 6) | (cont & 0x3f);
  }
  i += extra + 1;
  return c;
}

// Applies an ICU whole-string case mapping (full mappings, root locale).
template <class Mapping>
std::string map_case(std::string_view s, Mapping mapping) {
  if (s.empty()) return {};
  UErrorCode status = U_ZERO_ERROR;
  int32_t utf16_len = 0;
  u_strFromUTF8(nullptr, 0, &utf16_len, s.data(), static_cast<int32_t>(s.size()), &status);
  std::u16string in(static_cast<std::size_t>(utf16_len), u'\0');
  status = U_ZERO_ERROR;
  u_strFromUTF8(in.data(), utf16_len, nullptr, s.data(), static_cast<int32_t>(s.size()), &status);
  std::u16string out(in.size() * 3 + 4, u'\0');
  status = U_ZERO_ERROR;
  int32_t n = mapping(out.data(), static_cast<int32_t>(out.size()), in.data(), utf16_len, &status);
  if (U_FAILURE(status)) return std::string(s);
  std::string result(static_cast<std::size_t>(n) * 3 + 4, '\0');
  int32_t bytes = 0;
  status = U_ZERO_ERROR;
  u_strToUTF8(result.data(), static_cast<int32_t>(result.size()), &bytes, out.data(), n, &status);
  if (U_FAILURE(status)) return std::string(s);
  result.resize(static_cast<std::size_t>(bytes));
  return result;
}

bool is_cased(char32_t c) {
  int8_t type = u_charType(static_cast<UChar32>(c));
  return type == U_UPPERCASE_LETTER || type == U_LOWERCASE_LETTER || type == U_TITLECASE_LETTER;
}

bool in_set(char32_t c, const std::u32string& set) { return set.find(c) != std::u32string::npos; }

}  // namespace

void append_utf8(std::string& out, char32_t c) {
  if (c < 0x80) {
    out += static_cast<char>(c);
  } else if (c < 0x800) {
    out += static_cast<char>(0xc0 | (c >> 6));
    out += static_cast<char>(0x80 | (c & 0x3f));
  } else if (c < 0x10000) {
    out += static_cast<char>(0xe0 | (c >> 12));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (c & 0x3f));
  } else {
    out += static_cast<char>(0xf0 | (c >> 18));
    out += static_cast<char>(0x80 | ((c >> 12) & 0x3f));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (c & 0x3f));
  }
}

std::u32string decode(std::string_view utf8) {
  std::u32string out;
  out.reserve(utf8.size());
  for (std::size_t i = 0; i < utf8.size();) out += next_code_point(utf8, i);
  return out;
}

std::string encode(std::u32string_view code_points) {
  std::string out;
  out.reserve(code_points.size());
  for (char32_t c : code_points) append_utf8(out, c);
  return out;
}

std::size_t length(std::string_view utf8) {
  std::size_t n = 0;
  for (unsigned char b : utf8) n += (b & 0xc0) != 0x80;
  return n;
}

std::size_t find_invalid_utf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    auto b = static_cast<unsigned char>(s[i]);
    int extra = b < 0x80 ? 0 : (b >> 5) == 0x6 ? 1 : (b >> 4) == 0xe ? 2 : (b >> 3) == 0x1e ? 3 : -1;
    if (extra < 0 || i + extra >= s.size() + (extra == 0)) return i;
    char32_t c = b & (0x3f >> extra);
    for (int k = 1; k <= extra; ++k) {
      auto cont = static_cast<unsigned char>(s[i + k]);
      if ((cont & 0xc0) != 0x80) return i;
      c = (c << 6) | (cont & 0x3f);
    }
    static constexpr char32_t kMin[] = {0, 0x80, 0x800, 0x10000};
    if (c < kMin[extra] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return i;
    i += extra + 1;
  }
  return std::string_view::npos;
}

bool is_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f ||
         c == 0x3000;
}

bool is_line_break(char32_t c) {
  return c == '\n' || c == '\r' || c == 0x0b || c == 0x0c || (c >= 0x1c && c <= 0x1e) || c == 0x85 ||
         c == 0x2028 || c == 0x2029;
}

std::string strip(std::string_view s, bool left, bool right, const std::string* chars) {
  std::u32string cps = decode(s);
  std::u32string set = chars ? decode(*chars) : std::u32string();
  auto strippable = [&](char32_t c) { return chars ? in_set(c, set) : is_space(c); };
  std::size_t begin = 0, end = cps.size();
  if (left)
    while (begin < end && strippable(cps[begin])) ++begin;
  if (right)
    while (end > begin && strippable(cps[end - 1])) --end;
  return encode(std::u32string_view(cps).substr(begin, end - begin));
}

std::vector<std::string> split(std::string_view s, const std::string* sep, long long maxsplit) {
  std::vector<std::string> out;
  if (sep) {
    std::size_t pos = 0;
    while (maxsplit < 0 || static_cast<long long>(out.size()) < maxsplit) {
      std::size_t hit = s.find(*sep, pos);
      if (hit == std::string_view::npos) break;
      out.emplace_back(s.substr(pos, hit - pos));
      pos = hit + sep->size();
    }
    out.emplace_back(s.substr(pos));
    return out;
  }
  std::u32string cps = decode(s);
  std::size_t i = 0;
  while (true) {
    while (i < cps.size() && is_space(cps[i])) ++i;
    if (i == cps.size()) break;
    if (maxsplit >= 0 && static_cast<long long>(out.size()) == maxsplit) {
      std::size_t end = cps.size();
      while (end > i && is_space(cps[end - 1])) --end;
      out.push_back(encode(std::u32string_view(cps).substr(i, end - i)));
      break;
    }
    std::size_t start = i;
    while (i < cps.size() && !is_space(cps[i])) ++i;
    out.push_back(encode(std::u32string_view(cps).substr(start, i - start)));
  }
  return out;
}

std::vector<std::string> rsplit(std::string_view s, const std::string* sep, long long maxsplit) {
  if (maxsplit < 0) return split(s, sep, maxsplit);
  std::vector<std::string> out;
  if (sep) {
    std::size_t end = s.size();
    while (static_cast<long long>(out.size()) < maxsplit) {
      if (end < sep->size()) break;
      std::size_t hit = s.rfind(*sep, end - sep->size());
      if (hit == std::string_view::npos) break;
      out.emplace_back(s.substr(hit + sep->size(), end - hit - sep->size()));
      end = hit;
    }
    out.emplace_back(s.substr(0, end));
  } else {
    std::u32string cps = decode(s);
    std::size_t i = cps.size();
    while (true) {
      while (i > 0 && is_space(cps[i - 1])) --i;
      if (i == 0) break;
      if (static_cast<long long>(out.size()) == maxsplit) {
        std::size_t begin = 0;
        while (begin < i && is_space(cps[begin])) ++begin;
        out.push_back(encode(std::u32string_view(cps).substr(begin, i - begin)));
        break;
      }
      std::size_t end = i;
      while (i > 0 && !is_space(cps[i - 1])) --i;
      out.push_back(encode(std::u32string_view(cps).substr(i, end - i)));
    }
  }
  return {out.rbegin(), out.rend()};
}

std::vector<std::string> splitlines(std::string_view s, bool keepends) {
  std::u32string cps = decode(s);
  std::vector<std::string> out;
  std::size_t start = 0;
  for (std::size_t i = 0; i < cps.size(); ++i) {
    if (!is_line_break(cps[i])) continue;
    std::size_t end = i;
    if (cps[i] == '\r' && i + 1 < cps.size() && cps[i + 1] == '\n') ++i;
    out.push_back(encode(std::u32string_view(cps).substr(start, (keepends ? i + 1 : end) - start)));
    start = i + 1;
  }
  if (start < cps.size()) out.push_back(encode(std::u32string_view(cps).substr(start)));
  return out;
}

std::string replace(std::string_view s, std::string_view from, std::string_view to, long long count) {
  std::string out;
  if (from.empty()) {
    // Python inserts `to` before every code point and at the end.
    std::u32string cps = decode(s);
    long long done = 0;
    for (char32_t c : cps) {
      if (count < 0 || done < count) {
        out += to;
        ++done;
      }
      append_utf8(out, c);
    }
    if (count < 0 || done < count) out += to;
    return out;
  }
  std::size_t pos = 0;
  long long done = 0;
  while (count < 0 || done < count) {
    std::size_t hit = s.find(from, pos);
    if (hit == std::string_view::npos) break;
    out.append(s.substr(pos, hit - pos));
    out.append(to);
    pos = hit + from.size();
    ++done;
  }
  out.append(s.substr(pos));
  return out;
}

std::string upper(std::string_view s) {
  return map_case(s, [](UChar* dest, int32_t cap, const UChar* src, int32_t len, UErrorCode* status) {
    return u_strToUpper(dest, cap, src, len, "", status);
  });
}

std::string lower(std::string_view s) {
  return map_case(s, [](UChar* dest, int32_t cap, const UChar* src, int32_t len, UErrorCode* status) {
    return u_strToLower(dest, cap, src, len, "", status);
  });
}

std::string capitalize(std::string_view s) {
  std::u32string cps = decode(s);
  if (cps.empty()) return {};
  std::string out;
  append_utf8(out, static_cast<char32_t>(u_totitle(static_cast<UChar32>(cps[0]))));
  return out + lower(encode(std::u32string_view(cps).substr(1)));
}

std::string title_case(std::string_view s) {
  std::string out;
  bool previous_cased = false;
  for (char32_t c : decode(s)) {
    if (previous_cased) {
      out += lower(encode(std::u32string(1, c)));
    } else {
      append_utf8(out, static_cast<char32_t>(u_totitle(static_cast<UChar32>(c))));
    }
    previous_cased = is_cased(c);
  }
  return out;
}

bool is_printable(char32_t c) {
  if (c == ' ') return true;
  switch (u_charType(static_cast<UChar32>(c))) {
    case U_CONTROL_CHAR:
    case U_FORMAT_CHAR:
    case U_SURROGATE:
    case U_PRIVATE_USE_CHAR:
    case U_UNASSIGNED:
    case U_LINE_SEPARATOR:
    case U_PARAGRAPH_SEPARATOR:
    case U_SPACE_SEPARATOR:
      return false;
    default:
      return true;
  }
}

std::string python_repr(std::string_view s) {
  bool has_single = s.find('\'') != std::string_view::npos;
  bool has_double = s.find('"') != std::string_view::npos;
  char quote = has_single && !has_double ? '"' : '\'';
  std::string out(1, quote);
  for (char32_t c : decode(s)) {
    if (c == static_cast<char32_t>(quote) || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x7f ? c < 0x20 : !is_printable(c)) {
      char buf[12];
      if (c < 0x100) {
        std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned>(c));
      } else if (c < 0x10000) {
        std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
      } else {
        std::snprintf(buf, sizeof buf, "\\U%08x", static_cast<unsigned>(c));
      }
      out += buf;
    } else {
      append_utf8(out, c);
    }
  }
  out += quote;
  return out;
}

std::string json_quote(std::string_view s) {
  std::string out = "\"";
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += ch;
        }
    }
  }
  out += '"';
  return out;
}

}  // namespace bifurcate::chat::text
