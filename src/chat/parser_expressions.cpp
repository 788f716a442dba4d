// Expressions of the jinja2 grammar (parser_impl.h): precedence from
// conditional expressions down to primaries, postfix subscripts and calls,
// filters and tests.
#include <cerrno>
#include <cstdlib>

#include "chat/parser_impl.h"

namespace bifurcate::chat::detail {

bool Parser::is_tuple_end(std::initializer_list<std::string_view> extra_end) const {
  const Token& t = current();
  if (t.type == TokenType::VariableEnd || t.type == TokenType::BlockEnd || t.type == TokenType::End) return true;
  if (t.type == TokenType::Operator && t.value == ")") return true;
  if (t.type == TokenType::Name)
    for (std::string_view end : extra_end)
      if (t.value == end) return true;
  return false;
}

// jinja2's parse_tuple: `a, b` without brackets is a tuple.
ExprPtr Parser::parse_tuple(bool simplified, bool with_condition, std::initializer_list<std::string_view> extra_end,
                            bool explicit_parentheses) {
  DepthGuard guard(*this);
  std::size_t offset = current().offset;
  std::vector<ExprPtr> items;
  bool is_tuple = false;
  while (true) {
    if (!items.empty()) expect_op(",");
    if (is_tuple_end(extra_end)) break;
    items.push_back(simplified ? parse_primary() : parse_expression(with_condition));
    if (is_op(",")) {
      is_tuple = true;
    } else {
      break;
    }
  }
  if (!is_tuple) {
    if (!items.empty()) return std::move(items[0]);
    if (!explicit_parentheses) fail(current(), "Expected an expression, got '" + describe(current()) + "'");
  }
  auto tuple = make_expr(ExprKind::Tuple, offset);
  tuple->items = std::move(items);
  return tuple;
}

ExprPtr Parser::parse_expression(bool with_condition) {
  DepthGuard guard(*this);
  if (!with_condition) return parse_or();
  ExprPtr expr = parse_or();
  while (is_name("if")) {
    std::size_t offset = advance().offset;
    auto cond = make_expr(ExprKind::Condition, offset);
    cond->b = parse_or();
    cond->a = std::move(expr);
    if (skip_name("else")) cond->c = parse_expression(true);
    expr = std::move(cond);
  }
  return expr;
}

ExprPtr Parser::binary(ExprKind kind, ExprPtr left, ExprPtr right, std::size_t offset, std::string op) {
  auto e = make_expr(kind, offset);
  e->a = std::move(left);
  e->b = std::move(right);
  e->name = std::move(op);
  return e;
}

ExprPtr Parser::parse_or() {
  ExprPtr left = parse_and();
  while (is_name("or")) {
    std::size_t offset = advance().offset;
    left = binary(ExprKind::Or, std::move(left), parse_and(), offset);
  }
  return left;
}

ExprPtr Parser::parse_and() {
  ExprPtr left = parse_not();
  while (is_name("and")) {
    std::size_t offset = advance().offset;
    left = binary(ExprKind::And, std::move(left), parse_not(), offset);
  }
  return left;
}

ExprPtr Parser::parse_not() {
  DepthGuard guard(*this);
  if (is_name("not")) {
    auto e = make_expr(ExprKind::Not, advance().offset);
    e->a = parse_not();
    return e;
  }
  return parse_compare();
}

ExprPtr Parser::parse_compare() {
  std::size_t offset = current().offset;
  ExprPtr first = parse_math1();
  std::vector<std::pair<std::string, ExprPtr>> ops;
  while (true) {
    if (current().type == TokenType::Operator &&
        (is_op("==") || is_op("!=") || is_op("<") || is_op("<=") || is_op(">") || is_op(">="))) {
      std::string op = advance().value;
      ops.emplace_back(op, parse_math1());
    } else if (skip_name("in")) {
      ops.emplace_back("in", parse_math1());
    } else if (is_name("not") && peek().type == TokenType::Name && peek().value == "in") {
      advance();
      advance();
      ops.emplace_back("not in", parse_math1());
    } else {
      break;
    }
  }
  if (ops.empty()) return first;
  auto e = make_expr(ExprKind::Compare, offset);
  e->a = std::move(first);
  e->comparisons = std::move(ops);
  return e;
}

ExprPtr Parser::parse_math1() {
  ExprPtr left = parse_concat();
  while (is_op("+") || is_op("-")) {
    const Token& op = advance();
    left = binary(ExprKind::Binary, std::move(left), parse_concat(), op.offset, op.value);
  }
  return left;
}

ExprPtr Parser::parse_concat() {
  ExprPtr left = parse_math2();
  while (is_op("~")) {
    const Token& op = advance();
    left = binary(ExprKind::Binary, std::move(left), parse_math2(), op.offset, "~");
  }
  return left;
}

ExprPtr Parser::parse_math2() {
  ExprPtr left = parse_pow();
  while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
    const Token& op = advance();
    left = binary(ExprKind::Binary, std::move(left), parse_pow(), op.offset, op.value);
  }
  return left;
}

ExprPtr Parser::parse_pow() {
  ExprPtr left = parse_unary(true);
  while (is_op("**")) {
    const Token& op = advance();
    left = binary(ExprKind::Binary, std::move(left), parse_unary(true), op.offset, "**");
  }
  return left;
}

ExprPtr Parser::parse_unary(bool with_filter) {
  DepthGuard guard(*this);
  ExprPtr node;
  if (is_op("-") || is_op("+")) {
    const Token& op = advance();
    node = make_expr(op.value == "-" ? ExprKind::Negate : ExprKind::Plus, op.offset);
    node->a = parse_unary(false);
  } else {
    node = parse_primary();
  }
  node = parse_postfix(std::move(node));
  if (with_filter) node = parse_filter_expr(std::move(node));
  return node;
}

ExprPtr Parser::parse_primary() {
  DepthGuard guard(*this);
  const Token& t = current();
  switch (t.type) {
    case TokenType::Name: {
      advance();
      auto e = make_expr(ExprKind::Literal, t.offset);
      if (t.value == "true" || t.value == "True") {
        e->literal = Value(true);
      } else if (t.value == "false" || t.value == "False") {
        e->literal = Value(false);
      } else if (t.value == "none" || t.value == "None") {
        e->literal = Value::none();
      } else {
        e->kind = ExprKind::Name;
        e->name = t.value;
      }
      return e;
    }
    case TokenType::String: {
      auto e = make_expr(ExprKind::Literal, t.offset);
      std::string s;
      while (current().type == TokenType::String) s += advance().value;  // adjacent literals join
      e->literal = Value(std::move(s));
      return e;
    }
    case TokenType::Integer: {
      advance();
      auto e = make_expr(ExprKind::Literal, t.offset);
      int base = 10;
      std::string digits = t.value;
      if (digits.size() > 2 && digits[0] == '0' && std::isalpha(static_cast<unsigned char>(digits[1]))) {
        char b = static_cast<char>(std::tolower(static_cast<unsigned char>(digits[1])));
        base = b == 'x' ? 16 : b == 'o' ? 8 : 2;
        digits = digits.substr(2);
      }
      errno = 0;
      long long v = std::strtoll(digits.c_str(), nullptr, base);
      if (errno == ERANGE) fail(t, "integer literal too large: " + t.value);
      e->literal = Value(static_cast<std::int64_t>(v));
      return e;
    }
    case TokenType::Float: {
      advance();
      auto e = make_expr(ExprKind::Literal, t.offset);
      e->literal = Value(std::strtod(t.value.c_str(), nullptr));
      return e;
    }
    case TokenType::Operator:
      if (t.value == "(") {
        advance();
        ExprPtr e = parse_tuple(false, true, {}, true);
        expect_op(")");
        return e;
      }
      if (t.value == "[") return parse_list();
      if (t.value == "{") return parse_dict();
      break;
    default:
      break;
  }
  fail(t, "unexpected '" + describe(t) + "'");
}

ExprPtr Parser::parse_list() {
  auto e = make_expr(ExprKind::List, advance().offset);
  while (!is_op("]")) {
    if (!e->items.empty()) expect_op(",");
    if (is_op("]")) break;
    e->items.push_back(parse_expression(true));
  }
  expect_op("]");
  return e;
}

ExprPtr Parser::parse_dict() {
  auto e = make_expr(ExprKind::Dict, advance().offset);
  while (!is_op("}")) {
    if (!e->items.empty()) expect_op(",");
    if (is_op("}")) break;
    e->items.push_back(parse_expression(true));
    expect_op(":");
    e->items.push_back(parse_expression(true));
  }
  expect_op("}");
  return e;
}

ExprPtr Parser::parse_postfix(ExprPtr node) {
  while (true) {
    if (is_op(".") || is_op("[")) {
      node = parse_subscript(std::move(node));
    } else if (is_op("(")) {
      node = parse_call(std::move(node));
    } else {
      return node;
    }
  }
}

ExprPtr Parser::parse_filter_expr(ExprPtr node) {
  while (true) {
    if (is_op("|")) {
      node = parse_filters(std::move(node), false);
    } else if (is_name("is")) {
      node = parse_test(std::move(node));
    } else if (is_op("(")) {
      node = parse_call(std::move(node));
    } else {
      return node;
    }
  }
}

ExprPtr Parser::parse_subscript(ExprPtr node) {
  DepthGuard guard(*this);
  const Token& t = advance();
  if (t.value == ".") {
    const Token& attr = advance();
    if (attr.type == TokenType::Name) {
      auto e = make_expr(ExprKind::GetAttr, t.offset);
      e->a = std::move(node);
      e->name = attr.value;
      return e;
    }
    if (attr.type != TokenType::Integer) fail(attr, "expected name or number");
    auto e = make_expr(ExprKind::GetItem, t.offset);
    e->a = std::move(node);
    e->b = make_expr(ExprKind::Literal, attr.offset);
    e->b->literal = Value(static_cast<std::int64_t>(std::strtoll(attr.value.c_str(), nullptr, 10)));
    return e;
  }
  std::vector<ExprPtr> args;
  while (!is_op("]")) {
    if (!args.empty()) expect_op(",");
    args.push_back(parse_subscribed());
  }
  expect_op("]");
  auto e = make_expr(ExprKind::GetItem, t.offset);
  e->a = std::move(node);
  if (args.size() == 1) {
    e->b = std::move(args[0]);
  } else {
    e->b = make_expr(ExprKind::Tuple, t.offset);
    e->b->items = std::move(args);
  }
  return e;
}

ExprPtr Parser::parse_subscribed() {
  std::size_t offset = current().offset;
  ExprPtr start;
  if (!skip_op(":")) {
    start = parse_expression(true);
    if (!skip_op(":")) return start;
  }
  auto slice = make_expr(ExprKind::Slice, offset);
  slice->a = std::move(start);
  if (!is_op(":") && !is_op("]") && !is_op(",")) slice->b = parse_expression(true);
  if (skip_op(":")) {
    if (!is_op("]") && !is_op(",")) slice->c = parse_expression(true);
  }
  return slice;
}

CallArguments Parser::parse_call_args() {
  const Token& open = expect_op("(");
  CallArguments args;
  bool require_comma = false;
  auto ensure = [&](bool ok) {
    if (!ok) fail(open, "invalid syntax for function call expression");
  };
  while (!is_op(")")) {
    if (require_comma) {
      expect_op(",");
      if (is_op(")")) break;
    }
    if (skip_op("*")) {
      ensure(!args.star && !args.star_star);
      args.star = parse_expression(true);
    } else if (skip_op("**")) {
      ensure(!args.star_star);
      args.star_star = parse_expression(true);
    } else if (current().type == TokenType::Name && peek().type == TokenType::Operator && peek().value == "=") {
      ensure(!args.star_star);
      std::string key = advance().value;
      advance();
      args.keyword.emplace_back(std::move(key), parse_expression(true));
    } else {
      ensure(!args.star && !args.star_star && args.keyword.empty());
      args.positional.push_back(parse_expression(true));
    }
    require_comma = true;
  }
  expect_op(")");
  return args;
}

ExprPtr Parser::parse_call(ExprPtr node) {
  DepthGuard guard(*this);
  auto e = make_expr(ExprKind::Call, node->offset);  // errors point at the callee
  e->a = std::move(node);
  e->args = parse_call_args();
  return e;
}

std::string Parser::parse_dotted_name() {
  std::string name = expect_name().value;
  while (is_op(".")) {
    advance();
    name += "." + expect_name().value;
  }
  return name;
}

// `| name(args) | name ...`; start_inline: the first filter has no pipe.
ExprPtr Parser::parse_filters(ExprPtr node, bool start_inline) {
  DepthGuard guard(*this);
  while (is_op("|") || start_inline) {
    if (!start_inline) advance();
    start_inline = false;
    auto e = make_expr(ExprKind::Filter, current().offset);
    e->name = parse_dotted_name();
    if (is_op("(")) e->args = parse_call_args();
    e->a = std::move(node);
    node = std::move(e);
  }
  return node;
}

ExprPtr Parser::parse_test(ExprPtr node) {
  DepthGuard guard(*this);
  std::size_t offset = advance().offset;
  bool negated = skip_name("not");
  auto e = make_expr(ExprKind::Test, offset);
  e->name = parse_dotted_name();
  const Token& t = current();
  if (is_op("(")) {
    e->args = parse_call_args();
  } else if ((t.type == TokenType::Name || t.type == TokenType::String || t.type == TokenType::Integer ||
              t.type == TokenType::Float || is_op("(") || is_op("[") || is_op("{")) &&
             !is_name("else") && !is_name("or") && !is_name("and")) {
    if (is_name("is")) fail(t, "You cannot chain multiple tests with is");
    e->args.positional.push_back(parse_postfix(parse_primary()));
  }
  e->a = std::move(node);
  if (!negated) return e;
  auto n = make_expr(ExprKind::Not, offset);
  n->a = std::move(e);
  return n;
}

}  // namespace bifurcate::chat::detail
