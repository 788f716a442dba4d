#include "chat/parser.h"

#include <cerrno>
#include <cstdlib>
#include <initializer_list>

#include "chat/chat_template.h"

namespace bifurcate::chat {
namespace {

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

  // ---- statements ----

  // Parses until a {% tag %} whose name is in `end_names`; leaves the stream
  // at that name (after its BlockBegin).
  Body subparse(std::initializer_list<std::string_view> end_names) {
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
  Body parse_block(std::initializer_list<std::string_view> end_names) {
    skip_op(":");
    expect(TokenType::BlockEnd);
    return subparse(end_names);
  }

  StmtPtr make_stmt(StmtKind kind, std::size_t offset) {
    auto s = std::make_unique<Stmt>();
    s->kind = kind;
    s->offset = offset;
    return s;
  }

  StmtPtr parse_statement() {
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

  StmtPtr parse_for() {
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

  StmtPtr parse_if() {
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

  StmtPtr parse_set() {
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

  void parse_signature(Stmt& s) {
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

  StmtPtr parse_macro() {
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

  StmtPtr parse_call_block() {
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

  StmtPtr parse_filter_block() {
    auto s = make_stmt(StmtKind::FilterBlock, advance().offset);
    s->expr = parse_filters(nullptr, true);
    s->body = parse_block({"endfilter"});
    advance();
    return s;
  }

  StmtPtr parse_with() {
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
  ExprPtr parse_assign_target(std::initializer_list<std::string_view> extra_end) {
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

  // ---- expressions ----

  bool is_tuple_end(std::initializer_list<std::string_view> extra_end) const {
    const Token& t = current();
    if (t.type == TokenType::VariableEnd || t.type == TokenType::BlockEnd || t.type == TokenType::End) return true;
    if (t.type == TokenType::Operator && t.value == ")") return true;
    if (t.type == TokenType::Name)
      for (std::string_view end : extra_end)
        if (t.value == end) return true;
    return false;
  }

  // jinja2's parse_tuple: `a, b` without brackets is a tuple.
  ExprPtr parse_tuple(bool simplified, bool with_condition, std::initializer_list<std::string_view> extra_end,
                      bool explicit_parentheses = false) {
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

  ExprPtr parse_expression(bool with_condition) {
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

  ExprPtr binary(ExprKind kind, ExprPtr left, ExprPtr right, std::size_t offset, std::string op = {}) {
    auto e = make_expr(kind, offset);
    e->a = std::move(left);
    e->b = std::move(right);
    e->name = std::move(op);
    return e;
  }

  ExprPtr parse_or() {
    ExprPtr left = parse_and();
    while (is_name("or")) {
      std::size_t offset = advance().offset;
      left = binary(ExprKind::Or, std::move(left), parse_and(), offset);
    }
    return left;
  }

  ExprPtr parse_and() {
    ExprPtr left = parse_not();
    while (is_name("and")) {
      std::size_t offset = advance().offset;
      left = binary(ExprKind::And, std::move(left), parse_not(), offset);
    }
    return left;
  }

  ExprPtr parse_not() {
    DepthGuard guard(*this);
    if (is_name("not")) {
      auto e = make_expr(ExprKind::Not, advance().offset);
      e->a = parse_not();
      return e;
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
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

  ExprPtr parse_math1() {
    ExprPtr left = parse_concat();
    while (is_op("+") || is_op("-")) {
      const Token& op = advance();
      left = binary(ExprKind::Binary, std::move(left), parse_concat(), op.offset, op.value);
    }
    return left;
  }

  ExprPtr parse_concat() {
    ExprPtr left = parse_math2();
    while (is_op("~")) {
      const Token& op = advance();
      left = binary(ExprKind::Binary, std::move(left), parse_math2(), op.offset, "~");
    }
    return left;
  }

  ExprPtr parse_math2() {
    ExprPtr left = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      const Token& op = advance();
      left = binary(ExprKind::Binary, std::move(left), parse_pow(), op.offset, op.value);
    }
    return left;
  }

  ExprPtr parse_pow() {
    ExprPtr left = parse_unary(true);
    while (is_op("**")) {
      const Token& op = advance();
      left = binary(ExprKind::Binary, std::move(left), parse_unary(true), op.offset, "**");
    }
    return left;
  }

  ExprPtr parse_unary(bool with_filter) {
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

  ExprPtr parse_primary() {
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

  ExprPtr parse_list() {
    auto e = make_expr(ExprKind::List, advance().offset);
    while (!is_op("]")) {
      if (!e->items.empty()) expect_op(",");
      if (is_op("]")) break;
      e->items.push_back(parse_expression(true));
    }
    expect_op("]");
    return e;
  }

  ExprPtr parse_dict() {
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

  ExprPtr parse_postfix(ExprPtr node) {
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

  ExprPtr parse_filter_expr(ExprPtr node) {
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

  ExprPtr parse_subscript(ExprPtr node) {
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

  ExprPtr parse_subscribed() {
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

  CallArguments parse_call_args() {
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

  ExprPtr parse_call(ExprPtr node) {
    DepthGuard guard(*this);
    auto e = make_expr(ExprKind::Call, node->offset);  // errors point at the callee
    e->a = std::move(node);
    e->args = parse_call_args();
    return e;
  }

  std::string parse_dotted_name() {
    std::string name = expect_name().value;
    while (is_op(".")) {
      advance();
      name += "." + expect_name().value;
    }
    return name;
  }

  // `| name(args) | name ...`; start_inline: the first filter has no pipe.
  ExprPtr parse_filters(ExprPtr node, bool start_inline) {
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

  ExprPtr parse_test(ExprPtr node) {
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

  const std::vector<Token>& tokens_;
  const SourceMap& map_;
  std::size_t pos_ = 0;
  int depth_ = 0;
  int loop_depth_ = 0;
};

}  // namespace

Body parse(const std::vector<Token>& tokens, const SourceMap& map) { return Parser(tokens, map).parse_template(); }

}  // namespace bifurcate::chat
