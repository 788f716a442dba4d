// Parses jinja2 tokens into the statement tree of ast.h, following jinja2's
// grammar (parser.py): operator precedence, filters and tests binding to
// unary expressions, tuples, slices, call arguments, and the statements
// for/if/elif/else, set (with namespace attributes and blocks), macro, call,
// filter, with, raw and the loopcontrols extension's break/continue.
// Template inheritance (extends/block/include/import) is refused with an
// error: a chat template is one self-contained file.
#pragma once

#include <vector>

#include "chat/ast.h"
#include "chat/lexer.h"

namespace bifurcate::chat {

// Expressions and blocks nested deeper than this are a TemplateError, so
// the recursive parser and evaluator stay within a bounded stack.
inline constexpr int kMaxParseDepth = 200;

// Throws TemplateError naming the line and column of the offending token.
Body parse(const std::vector<Token>& tokens, const SourceMap& map);

}  // namespace bifurcate::chat
