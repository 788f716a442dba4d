// The recursive-descent parser behind parse() (parser.h), split over
// parser.cpp (statements) and parser_expressions.cpp (expressions).
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "chat/ast.h"
#include "chat/chat_template.h"
#include "chat/lexer.h"
#include "chat/parser.h"

namespace bifurcate::chat::detail {

// How jinja2 names a token in its messages.
std::string describe(const Token& t);
ExprPtr make_expr(ExprKind kind, std::size_t offset);

class Parser {
 public:
  Parser(const std::vector<Token>& tokens, const SourceMap& map) : tokens_(tokens), map_(map) {}

  Body parse_template() {
    Body body = subparse({});
    if (current().type != TokenType::End) fail(current(), "unexpected '" + describe(current()) + "'");
    return body;
  }

 private:
  // Guards recursion depth for the current parse function.
  struct DepthGuard {
    Parser& p;
    explicit DepthGuard(Parser& parser) : p(parser) {
      if (++p.depth_ > kMaxParseDepth)
        p.fail(p.current(), "template nested deeper than " + std::to_string(kMaxParseDepth) + " levels");
    }
    ~DepthGuard() { --p.depth_; }
    DepthGuard(const DepthGuard&) = delete;
    DepthGuard& operator=(const DepthGuard&) = delete;
  };

  [[noreturn]] void fail(const Token& at, const std::string& message) const {
    Position p = map_.position(at.offset);
    throw TemplateError(p.line, p.column, message);
  }

  const Token& current() const { return tokens_[pos_]; }
  const Token& peek(std::size_t ahead = 1) const {
    return tokens_[std::min(pos_ + ahead, tokens_.size() - 1)];
  }
  const Token& advance() {
    const Token& t = tokens_[pos_];
    if (pos_ + 1 < tokens_.size()) ++pos_;
    return t;
  }
  bool is_op(std::string_view op) const { return current().type == TokenType::Operator && current().value == op; }
  bool is_name(std::string_view name) const { return current().type == TokenType::Name && current().value == name; }
  bool skip_op(std::string_view op) {
    if (!is_op(op)) return false;
    advance();
    return true;
  }
  bool skip_name(std::string_view name) {
    if (!is_name(name)) return false;
    advance();
    return true;
  }
  const Token& expect_op(std::string_view op) {
    if (!is_op(op)) fail(current(), "expected token '" + std::string(op) + "', got '" + describe(current()) + "'");
    return advance();
  }
  const Token& expect_name() {
    if (current().type != TokenType::Name) fail(current(), "expected token 'name', got '" + describe(current()) + "'");
    return advance();
  }
  void expect_name(std::string_view name) {
    if (!is_name(name))
      fail(current(), "expected token '" + std::string(name) + "', got '" + describe(current()) + "'");
    advance();
  }
  void expect(TokenType type) {
    if (current().type != type) {
      Token want{type, "", 0};
      fail(current(), "expected token '" + describe(want) + "', got '" + describe(current()) + "'");
    }
    advance();
  }

  // ---- statements (parser.cpp) ----
  // Parses until a {% tag %} whose name is in `end_names`; leaves the stream
  // at that name (after its BlockBegin).
  Body subparse(std::initializer_list<std::string_view> end_names);
  // The body of a block statement: `%}`, statements, up to an end tag.
  Body parse_block(std::initializer_list<std::string_view> end_names);
  StmtPtr make_stmt(StmtKind kind, std::size_t offset);
  StmtPtr parse_statement();
  StmtPtr parse_for();
  StmtPtr parse_if();
  StmtPtr parse_set();
  void parse_signature(Stmt& s);
  StmtPtr parse_macro();
  StmtPtr parse_call_block();
  StmtPtr parse_filter_block();
  StmtPtr parse_with();
  // Names or tuples of names (for/set targets).
  ExprPtr parse_assign_target(std::initializer_list<std::string_view> extra_end);

  // ---- expressions (parser_expressions.cpp) ----
  bool is_tuple_end(std::initializer_list<std::string_view> extra_end) const;
  // jinja2's parse_tuple: `a, b` without brackets is a tuple.
  ExprPtr parse_tuple(bool simplified, bool with_condition, std::initializer_list<std::string_view> extra_end,
                      bool explicit_parentheses = false);
  ExprPtr parse_expression(bool with_condition);
  ExprPtr binary(ExprKind kind, ExprPtr left, ExprPtr right, std::size_t offset, std::string op = {});
  ExprPtr parse_or();
  ExprPtr parse_and();
  ExprPtr parse_not();
  ExprPtr parse_compare();
  ExprPtr parse_math1();
  ExprPtr parse_concat();
  ExprPtr parse_math2();
  ExprPtr parse_pow();
  ExprPtr parse_unary(bool with_filter);
  ExprPtr parse_primary();
  ExprPtr parse_list();
  ExprPtr parse_dict();
  ExprPtr parse_postfix(ExprPtr node);
  ExprPtr parse_filter_expr(ExprPtr node);
  ExprPtr parse_subscript(ExprPtr node);
  ExprPtr parse_subscribed();
  CallArguments parse_call_args();
  ExprPtr parse_call(ExprPtr node);
  std::string parse_dotted_name();
  // `| name(args) | name ...`; start_inline: the first filter has no pipe.
  ExprPtr parse_filters(ExprPtr node, bool start_inline);
  ExprPtr parse_test(ExprPtr node);

  const std::vector<Token>& tokens_;
  const SourceMap& map_;
  std::size_t pos_ = 0;
  int depth_ = 0;
  int loop_depth_ = 0;
};

}  // namespace bifurcate::chat::detail
