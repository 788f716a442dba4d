// Splits a template into text and tag tokens the way jinja2's lexer does
// with trim_blocks and lstrip_blocks on: newlines normalised to \n, one
// trailing newline dropped, `-` / `+` whitespace control on tags, a newline
// after a block or comment tag removed, indentation before a block or
// comment tag at the start of a line removed, {% raw %} kept verbatim.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace bifurcate::chat {

enum class TokenType {
  Text,           // template data, already whitespace-controlled
  VariableBegin,  // {{
  VariableEnd,    // }}
  BlockBegin,     // {%
  BlockEnd,       // %}
  Name,
  String,   // value: the decoded literal
  Integer,  // value: the digits with '_' removed (base prefix kept)
  Float,
  Operator,  // value: the operator's text, e.g. "//" or "("
  End,
};

struct Token {
  TokenType type;
  std::string value;
  std::size_t offset;  // byte offset in the normalised source, for positions
};

struct Position {
  int line;
  int column;
};

class SourceMap {
 public:
  explicit SourceMap(std::string_view source);
  Position position(std::size_t offset) const;

 private:
  std::vector<std::size_t> line_starts_;
};

// The source as jinja2 sees it: \r\n and \r become \n, and one trailing
// newline is dropped (keep_trailing_newline is off).
std::string normalize_source(std::string_view source);

// Tokenizes a normalised source. Throws TemplateError with the position of a
// bad character, an unterminated tag, comment or string, or unbalanced
// brackets.
std::vector<Token> tokenize(const std::string& source, const SourceMap& map);

}  // namespace bifurcate::chat
