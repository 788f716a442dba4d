// Statements of the jinja2 grammar and the token helpers (parser_impl.h);
// expressions are in parser_expressions.cpp.
#include "chat/parser.h"

#include <initializer_list>

#include "chat/chat_template.h"
#include "chat/parser_impl.h"

namespace bifurcate::chat {
namespace detail {

std::string describe(const Token& t) {
  switch (t.type) {
    case TokenType::Text: return "template data";
    case TokenType::VariableBegin: return "begin of print statement";
    case TokenType::VariableEnd: return "end of print statement";
    case TokenType::BlockBegin: return "begin of statement block";
    case TokenType::BlockEnd: return "end of statement block";
    case TokenType::String: return "string";
    case TokenType::Integer: return "integer";
    case TokenType::Float: return "float";
    case TokenType::End: return "end of template";
    default: return t.value;
  }
}

ExprPtr make_expr(ExprKind kind, std::size_t offset) {
  auto e = std::make_unique<Expr>();
  e->kind = kind;
  e->offset = offset;
  return e;
}

// Parses until a {% tag %} whose name is in `end_names`; leaves the stream
// at that name (after its BlockBegin).
Body Parser::subparse(std::initializer_list<std::string_view> end_names) {
  DepthGuard guard(*this);
  Body body;
  while (current().type != TokenType::End) {
    const Token& t = current();
    if (t.type == TokenType::Text) {
      auto s = std::make_unique<Stmt>();
      s->kind = StmtKind::Text;
      s->offset = t.offset;
      s->text = t.value;
      body.push_back(std::move(s));
      advance();
    } else if (t.type == TokenType::VariableBegin) {
      advance();
      auto s = std::make_unique<Stmt>();
      s->kind = StmtKind::Print;
      s->offset = t.offset;
      s->expr = parse_tuple(false, true, {});
      expect(TokenType::VariableEnd);
      body.push_back(std::move(s));
    } else if (t.type == TokenType::BlockBegin) {
      advance();
      for (std::string_view end : end_names)
        if (is_name(end)) return body;
      body.push_back(parse_statement());
      expect(TokenType::BlockEnd);
    } else {
      fail(t, "unexpected '" + describe(t) + "'");
    }
  }
  if (end_names.size() != 0) {
    std::string want;
    for (std::string_view end : end_names) want += (want.empty() ? "'" : " or '") + std::string(end) + "'";
    fail(current(), "unexpected end of template, expected " + want);
  }
  return body;
}

// The body of a block statement: `%}`, statements, up to an end tag.
Body Parser::parse_block(std::initializer_list<std::string_view> end_names) {
  skip_op(":");
  expect(TokenType::BlockEnd);
  return subparse(end_names);
}

StmtPtr Parser::make_stmt(StmtKind kind, std::size_t offset) {
  auto s = std::make_unique<Stmt>();
  s->kind = kind;
  s->offset = offset;
  return s;
}

StmtPtr Parser::parse_statement() {
  DepthGuard guard(*this);
  const Token& t = current();
  if (t.type != TokenType::Name) fail(t, "tag name expected");
  const std::string& tag = t.value;
  if (tag == "for") return parse_for();
  if (tag == "if") return parse_if();
  if (tag == "set") return parse_set();
  if (tag == "macro") return parse_macro();
  if (tag == "call") return parse_call_block();
  if (tag == "filter") return parse_filter_block();
  if (tag == "with") return parse_with();
  if (tag == "break" || tag == "continue") {
    if (loop_depth_ == 0) fail(t, "'" + tag + "' outside of a loop");
    advance();
    return make_stmt(tag == "break" ? StmtKind::Break : StmtKind::Continue, t.offset);
  }
  if (tag == "extends" || tag == "include" || tag == "import" || tag == "from" || tag == "block")
    fail(t, "'" + tag + "' is not supported: a chat template must be a single self-contained template");
  if (tag.rfind("end", 0) == 0 || tag == "elif" || tag == "else")
    fail(t, "Encountered unknown tag '" + tag + "'. There is no block open that it could close.");
  fail(t, "Encountered unknown tag '" + tag + "'.");
}

StmtPtr Parser::parse_for() {
  auto s = make_stmt(StmtKind::For, advance().offset);
  s->target = parse_assign_target({"in"});
  expect_name("in");
  s->expr = parse_tuple(false, false, {"recursive"});
  if (skip_name("if")) s->condition = parse_expression(true);
  if (is_name("recursive")) fail(current(), "recursive loops are not supported");
  ++loop_depth_;
  s->body = parse_block({"endfor", "else"});
  --loop_depth_;
  if (advance().value == "else") {
    // A loop's else runs after the loop, outside it: break is not allowed.
    int saved = loop_depth_;
    loop_depth_ = 0;
    s->else_body = parse_block({"endfor"});
    loop_depth_ = saved;
    advance();
  }
  return s;
}

StmtPtr Parser::parse_if() {
  auto s = make_stmt(StmtKind::If, advance().offset);
  while (true) {
    ExprPtr condition = parse_tuple(false, false, {});
    Body body = parse_block({"elif", "else", "endif"});
    s->branches.emplace_back(std::move(condition), std::move(body));
    const Token& t = advance();
    if (t.value == "elif") continue;
    if (t.value == "else") {
      s->else_body = parse_block({"endif"});
      advance();
    }
    break;
  }
  return s;
}

StmtPtr Parser::parse_set() {
  std::size_t offset = advance().offset;
  ExprPtr target;
  if (current().type == TokenType::Name && peek().type == TokenType::Operator && peek().value == ".") {
    const Token& ns = advance();
    advance();
    const Token& attr = expect_name();
    target = make_expr(ExprKind::GetAttr, ns.offset);
    target->a = make_expr(ExprKind::Name, ns.offset);
    target->a->name = ns.value;
    target->name = attr.value;
  } else {
    target = parse_assign_target({});
  }
  if (skip_op("=")) {
    auto s = make_stmt(StmtKind::Set, offset);
    s->target = std::move(target);
    s->expr = parse_tuple(false, true, {});
    return s;
  }
  auto s = make_stmt(StmtKind::SetBlock, offset);
  s->target = std::move(target);
  if (is_op("|")) s->expr = parse_filters(nullptr, false);
  s->body = parse_block({"endset"});
  advance();
  return s;
}

void Parser::parse_signature(Stmt& s) {
  expect_op("(");
  while (!is_op(")")) {
    if (!s.params.empty()) expect_op(",");
    const Token& name = expect_name();
    s.params.push_back(name.value);
    if (skip_op("=")) {
      s.defaults.push_back(parse_expression(true));
    } else {
      if (!s.defaults.empty() && s.defaults.back()) fail(name, "non-default argument follows default argument");
      s.defaults.push_back(nullptr);
    }
  }
  expect_op(")");
}

StmtPtr Parser::parse_macro() {
  auto s = make_stmt(StmtKind::Macro, advance().offset);
  s->name = expect_name().value;
  parse_signature(*s);
  int saved = loop_depth_;
  loop_depth_ = 0;
  s->body = parse_block({"endmacro"});
  loop_depth_ = saved;
  advance();
  return s;
}

StmtPtr Parser::parse_call_block() {
  auto s = make_stmt(StmtKind::CallBlock, advance().offset);
  if (is_op("(")) parse_signature(*s);
  const Token& at = current();
  s->expr = parse_expression(true);
  if (s->expr->kind != ExprKind::Call) fail(at, "expected call");
  int saved = loop_depth_;
  loop_depth_ = 0;
  s->body = parse_block({"endcall"});
  loop_depth_ = saved;
  advance();
  return s;
}

StmtPtr Parser::parse_filter_block() {
  auto s = make_stmt(StmtKind::FilterBlock, advance().offset);
  s->expr = parse_filters(nullptr, true);
  s->body = parse_block({"endfilter"});
  advance();
  return s;
}

StmtPtr Parser::parse_with() {
  auto s = make_stmt(StmtKind::With, advance().offset);
  while (current().type != TokenType::BlockEnd) {
    if (!s->targets.empty()) expect_op(",");
    s->targets.push_back(parse_assign_target({}));
    expect_op("=");
    s->values.push_back(parse_expression(true));
  }
  s->body = parse_block({"endwith"});
  advance();
  return s;
}

// Names or tuples of names (for/set targets).
ExprPtr Parser::parse_assign_target(std::initializer_list<std::string_view> extra_end) {
  ExprPtr target = parse_tuple(true, true, extra_end);
  auto check = [&](const Expr& e) {
    if (e.kind != ExprKind::Name) {
      Token at{TokenType::Name, "", e.offset};
      fail(at, "can't assign to this expression");
    }
    if (e.name == "true" || e.name == "false" || e.name == "none" || e.name == "True" || e.name == "False" ||
        e.name == "None") {
      Token at{TokenType::Name, "", e.offset};
      fail(at, "can't assign to '" + e.name + "'");
    }
  };
  if (target->kind == ExprKind::Tuple) {
    for (const ExprPtr& item : target->items) check(*item);
  } else {
    check(*target);
  }
  return target;
}

}  // namespace detail

Body parse(const std::vector<Token>& tokens, const SourceMap& map) {
  return detail::Parser(tokens, map).parse_template();
}

}  // namespace bifurcate::chat
