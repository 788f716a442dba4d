// UTF-8 text operations with Python's str semantics (what jinja2 templates
// see): indexing and lengths in code points, Python's whitespace set, full
// Unicode case mapping, repr() quoting and splitlines() boundaries.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace bifurcate::chat::text {

// Code points of valid UTF-8 (callers validate input first; invalid bytes
// decode as U+FFFD rather than failing).
std::u32string decode(std::string_view utf8);
std::string encode(std::u32string_view code_points);
void append_utf8(std::string& out, char32_t c);
std::size_t length(std::string_view utf8);  // in code points
// Byte offset of the first invalid UTF-8 sequence, or npos when valid.
std::size_t find_invalid_utf8(std::string_view bytes);

bool is_space(char32_t c);  // Python's str.isspace()
bool is_line_break(char32_t c);  // a str.splitlines() boundary

// str.strip()/lstrip()/rstrip(): `chars` empty (and !has_chars) strips
// whitespace, otherwise any of the code points in `chars`.
std::string strip(std::string_view s, bool left, bool right, const std::string* chars);
// str.split(sep, maxsplit): sep null splits on runs of whitespace.
std::vector<std::string> split(std::string_view s, const std::string* sep, long long maxsplit);
std::vector<std::string> rsplit(std::string_view s, const std::string* sep, long long maxsplit);
std::vector<std::string> splitlines(std::string_view s, bool keepends);
// str.replace(old, new, count); count < 0 = all.
std::string replace(std::string_view s, std::string_view from, std::string_view to, long long count);

std::string upper(std::string_view s);       // str.upper(), full case mapping
std::string lower(std::string_view s);       // str.lower()
std::string capitalize(std::string_view s);  // str.capitalize()
std::string title_case(std::string_view s);  // str.title()
bool is_printable(char32_t c);               // str.isprintable() of one code point

// Python's repr() of a str: single quotes unless the text has ' and no ".
std::string python_repr(std::string_view s);
// A JSON string literal as json.dumps(ensure_ascii=False) writes it.
std::string json_quote(std::string_view s);

}  // namespace bifurcate::chat::text
