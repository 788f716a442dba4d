#include "chat/evaluator.h"

#include <ctime>

#include "chat/text.h"

namespace bifurcate::chat {

const Value* Scope::find(const std::string& name) const {
  for (const Scope* s = this; s; s = s->parent.get()) {
    auto it = s->variables.find(name);
    if (it != s->variables.end()) return &it->second;
  }
  return nullptr;
}

// Counts nesting of evaluation (expressions, statements, macro calls).
struct Evaluator::DepthGuard {
  Evaluator& e;
  explicit DepthGuard(Evaluator& evaluator) : e(evaluator) {
    if (++e.depth_ > e.limits_.max_depth) {
      --e.depth_;
      throw EvalError("template nested or recursing deeper than " + std::to_string(e.limits_.max_depth) +
                      " levels (RenderLimits::max_depth)");
    }
  }
  ~DepthGuard() { --e.depth_; }
  DepthGuard(const DepthGuard&) = delete;
  DepthGuard& operator=(const DepthGuard&) = delete;
};

namespace {

// A user-defined macro: its body runs in a scope whose parent is the scope
// that defined it, as that scope is when the macro is called.
class Macro : public Callable {
 public:
  Macro(const Stmt& stmt, std::weak_ptr<Scope> defining_scope, std::vector<Value> defaults)
      : stmt_(stmt), scope_(std::move(defining_scope)), defaults_(std::move(defaults)) {}

  Value call(Evaluator& evaluator, const CallArgs& args) const override {
    std::shared_ptr<Scope> parent = scope_.lock();
    if (!parent) throw EvalError("macro '" + stmt_.name + "' called after the scope that defined it ended");
    auto scope = std::make_shared<Scope>();
    scope->parent = std::move(parent);
    const auto& params = stmt_.params;
    List extra;
    for (std::size_t i = 0; i < args.positional.size(); ++i) {
      if (i < params.size()) {
        scope->variables[params[i]] = args.positional[i];
      } else {
        extra.push_back(args.positional[i]);
      }
    }
    Dict extra_keywords;
    for (const auto& [key, value] : args.keyword) {
      bool is_param = false;
      for (std::size_t i = 0; i < params.size(); ++i) {
        if (params[i] != key) continue;
        if (i < args.positional.size())
          throw EvalError("macro '" + stmt_.name + "' got multiple values for argument '" + key + "'");
        is_param = true;
      }
      if (is_param || key == "caller") {
        scope->variables[key] = value;
      } else {
        extra_keywords.set(Value(key), value);
      }
    }
    for (std::size_t i = 0; i < params.size(); ++i) {
      if (scope->variables.count(params[i])) continue;
      scope->variables[params[i]] =
          defaults_[i].is_undefined() && !stmt_.defaults[i]
              ? Value::undefined("parameter '" + params[i] + "' was not provided")
              : defaults_[i];
    }
    scope->variables["varargs"] = Value::tuple(std::move(extra));
    scope->variables["kwargs"] = Value::dict(std::move(extra_keywords));
    return Value(evaluator.run_body(stmt_.body, scope));
  }
  std::string type_name() const override { return "Macro"; }
  std::string repr() const override { return "<Macro '" + stmt_.name + "'>"; }

 private:
  const Stmt& stmt_;
  std::weak_ptr<Scope> scope_;
  std::vector<Value> defaults_;
};

}  // namespace

Evaluator::Evaluator(const SourceMap& map, const RenderLimits& limits, std::optional<std::chrono::sys_seconds> now)
    : map_(map), limits_(limits), now_(now) {}

Evaluator::~Evaluator() {
  // Break namespace cycles ({% set ns.self = ns %}) so nothing leaks.
  for (auto& ns : namespaces_) ns->attributes = Dict();
}

void Evaluator::fail(std::size_t offset, const std::string& message) const {
  Position p = map_.position(offset);
  throw TemplateError(p.line, p.column, message);
}

void Evaluator::check_size(std::size_t size) const {
  if (size > limits_.max_output_bytes)
    throw EvalError("template built a value or output larger than " + std::to_string(limits_.max_output_bytes) +
                    " bytes (RenderLimits::max_output_bytes)");
}

void Evaluator::count_steps(std::size_t n) {
  steps_ += n;
  if (steps_ > limits_.max_steps)
    throw EvalError("template took more than " + std::to_string(limits_.max_steps) +
                    " evaluation steps (RenderLimits::max_steps)");
}

std::tm Evaluator::now() const {
  std::tm tm{};
  if (now_) {
    std::time_t t = static_cast<std::time_t>(now_->time_since_epoch().count());
    gmtime_r(&t, &tm);
  } else {
    std::time_t t = std::time(nullptr);
    localtime_r(&t, &tm);
  }
  return tm;
}

std::string Evaluator::render(const Body& body, std::shared_ptr<Scope> root) {
  std::string out;
  try {
    Flow flow = exec(body, root, out);
    (void)flow;
  } catch (const EvalError& e) {
    throw TemplateError(0, 0, e.what());
  }
  return out;
}

std::string Evaluator::run_body(const Body& body, const std::shared_ptr<Scope>& scope) {
  std::string out;
  std::shared_ptr<Scope> s = scope;
  exec(body, s, out);
  return out;
}

void Evaluator::append_output(std::string& out, std::string_view text) {
  check_size(out.size() + text.size());
  out.append(text);
}

Evaluator::Flow Evaluator::exec(const Body& body, std::shared_ptr<Scope>& scope, std::string& out) {
  for (const StmtPtr& stmt : body) {
    Flow flow = exec_statement(*stmt, scope, out);
    if (flow != Flow::Normal) return flow;
  }
  return Flow::Normal;
}

Evaluator::Flow Evaluator::exec_statement(const Stmt& stmt, std::shared_ptr<Scope>& scope, std::string& out) {
  try {
    DepthGuard guard(*this);
    count_steps(1);
    switch (stmt.kind) {
      case StmtKind::Text:
        append_output(out, stmt.text);
        return Flow::Normal;
      case StmtKind::Print:
        append_output(out, to_str(eval(*stmt.expr, scope)));
        return Flow::Normal;
      case StmtKind::If:
        for (const auto& [condition, body] : stmt.branches)
          if (truthy(eval(*condition, scope))) return exec(body, scope, out);
        return exec(stmt.else_body, scope, out);
      case StmtKind::For:
        return exec_for(stmt, scope, out);
      case StmtKind::Set:
        assign(*stmt.target, eval(*stmt.expr, scope), *scope);
        return Flow::Normal;
      case StmtKind::SetBlock: {
        std::string captured = run_body(stmt.body, scope);
        Value value(std::move(captured));
        if (stmt.expr) {
          const Expr* filter = stmt.expr.get();
          std::vector<const Expr*> chain;
          for (; filter; filter = filter->a.get()) chain.push_back(filter);
          for (auto it = chain.rbegin(); it != chain.rend(); ++it)
            value = call_filter((*it)->name, value, eval_args((*it)->args, scope));
        }
        assign(*stmt.target, value, *scope);
        return Flow::Normal;
      }
      case StmtKind::Macro:
        define_macro(stmt, scope);
        return Flow::Normal;
      case StmtKind::CallBlock: {
        std::vector<Value> defaults;
        for (const ExprPtr& d : stmt.defaults) defaults.push_back(d ? eval(*d, scope) : Value());
        Value caller = Value::callable(std::make_shared<Macro>(stmt, scope, std::move(defaults)));
        auto call_scope = std::make_shared<Scope>();
        call_scope->parent = scope;
        call_scope->variables["caller"] = caller;
        const Expr& call = *stmt.expr;
        Value callee = eval(*call.a, call_scope);
        CallArgs args = eval_args(call.args, call_scope);
        args.keyword.emplace_back("caller", caller);  // a macro receives it as `caller`
        append_output(out, to_str(call_value(callee, args)));
        return Flow::Normal;
      }
      case StmtKind::FilterBlock: {
        Value value(run_body(stmt.body, scope));
        std::vector<const Expr*> chain;
        for (const Expr* f = stmt.expr.get(); f; f = f->a.get()) chain.push_back(f);
        for (auto it = chain.rbegin(); it != chain.rend(); ++it)
          value = call_filter((*it)->name, value, eval_args((*it)->args, scope));
        append_output(out, to_str(value));
        return Flow::Normal;
      }
      case StmtKind::With: {
        auto inner = std::make_shared<Scope>();
        inner->parent = scope;
        for (std::size_t i = 0; i < stmt.targets.size(); ++i) assign(*stmt.targets[i], eval(*stmt.values[i], scope), *inner);
        return exec(stmt.body, inner, out);
      }
      case StmtKind::Break: return Flow::Break;
      case StmtKind::Continue: return Flow::Continue;
    }
  } catch (const EvalError& e) {
    fail(stmt.offset, e.what());
  }
  return Flow::Normal;
}

void Evaluator::define_macro(const Stmt& stmt, const std::shared_ptr<Scope>& scope) {
  std::vector<Value> defaults;
  for (const ExprPtr& d : stmt.defaults) defaults.push_back(d ? eval(*d, scope) : Value());
  scope->variables[stmt.name] = Value::callable(std::make_shared<Macro>(stmt, scope, std::move(defaults)));
}

Evaluator::Flow Evaluator::exec_for(const Stmt& stmt, std::shared_ptr<Scope>& scope, std::string& out) {
  List items = iterate(eval(*stmt.expr, scope));
  if (stmt.condition) {
    List kept;
    for (Value& item : items) {
      count_steps(1);
      auto probe = std::make_shared<Scope>();
      probe->parent = scope;
      assign(*stmt.target, item, *probe);
      if (truthy(eval(*stmt.condition, probe))) kept.push_back(std::move(item));
    }
    items = std::move(kept);
  }
  if (items.empty()) return exec(stmt.else_body, scope, out);
  const auto n = static_cast<std::int64_t>(items.size());
  for (std::int64_t i = 0; i < n; ++i) {
    count_steps(1);
    auto body_scope = std::make_shared<Scope>();
    body_scope->parent = scope;
    Dict loop;
    loop.set(Value("index"), Value(i + 1));
    loop.set(Value("index0"), Value(i));
    loop.set(Value("revindex"), Value(n - i));
    loop.set(Value("revindex0"), Value(n - i - 1));
    loop.set(Value("first"), Value(i == 0));
    loop.set(Value("last"), Value(i == n - 1));
    loop.set(Value("length"), Value(n));
    loop.set(Value("depth"), Value(1));
    loop.set(Value("depth0"), Value(0));
    loop.set(Value("previtem"), i > 0 ? items[static_cast<std::size_t>(i - 1)]
                                      : Value::undefined("there is no previous item"));
    loop.set(Value("nextitem"), i + 1 < n ? items[static_cast<std::size_t>(i + 1)]
                                          : Value::undefined("there is no next item"));
    body_scope->variables["loop"] = Value::dict(std::move(loop));
    assign(*stmt.target, items[static_cast<std::size_t>(i)], *body_scope);
    Flow flow = exec(stmt.body, body_scope, out);
    if (flow == Flow::Break) break;
  }
  return Flow::Normal;
}

void Evaluator::assign(const Expr& target, const Value& value, Scope& scope) {
  switch (target.kind) {
    case ExprKind::Name:
      scope.variables[target.name] = value;
      return;
    case ExprKind::Tuple: {
      if (!value.is_sequence() && !value.is_string() && value.kind() != Kind::Dict)
        throw EvalError("cannot unpack non-iterable " + type_name(value) + " object");
      List parts = iterate(value);
      std::size_t want = target.items.size();
      if (parts.size() > want) throw EvalError("too many values to unpack (expected " + std::to_string(want) + ")");
      if (parts.size() < want)
        throw EvalError("not enough values to unpack (expected " + std::to_string(want) + ", got " +
                        std::to_string(parts.size()) + ")");
      for (std::size_t i = 0; i < want; ++i) assign(*target.items[i], parts[i], scope);
      return;
    }
    case ExprKind::GetAttr: {
      const Value* ns = scope.find(target.a->name);
      if (!ns || ns->kind() != Kind::Namespace) throw EvalError("cannot assign attribute on non-namespace object");
      ns->as_namespace().attributes.set(Value(target.name), value);
      return;
    }
    default:
      throw EvalError("can't assign to this expression");
  }
}

Value Evaluator::eval(const Expr& expr, const std::shared_ptr<Scope>& scope) {
  try {
    DepthGuard guard(*this);
    count_steps(1);
    return eval_unchecked(expr, scope);
  } catch (const EvalError& e) {
    fail(expr.offset, e.what());
  }
}

CallArgs Evaluator::eval_args(const CallArguments& args, const std::shared_ptr<Scope>& scope) {
  CallArgs out;
  for (const ExprPtr& a : args.positional) out.positional.push_back(eval(*a, scope));
  if (args.star) {
    for (Value& v : iterate(eval(*args.star, scope))) out.positional.push_back(std::move(v));
  }
  for (const auto& [key, value] : args.keyword) out.keyword.emplace_back(key, eval(*value, scope));
  if (args.star_star) {
    Value extra = eval(*args.star_star, scope);
    if (extra.kind() != Kind::Dict) throw EvalError("argument after ** must be a mapping, not " + type_name(extra));
    for (const auto& [key, value] : extra.as_dict().entries()) {
      if (!key.is_string()) throw EvalError("keywords must be strings");
      out.keyword.emplace_back(key.as_string(), value);
    }
  }
  return out;
}

Value Evaluator::call_value(const Value& callee, const CallArgs& args) {
  if (callee.kind() == Kind::Callable) return callee.as_callable().call(*this, args);
  if (callee.is_undefined()) throw EvalError(callee.undefined_message());
  throw EvalError("'" + type_name(callee) + "' object is not callable");
}

Value Evaluator::eval_call(const Expr& expr, const std::shared_ptr<Scope>& scope) {
  Value callee = eval(*expr.a, scope);
  CallArgs args = eval_args(expr.args, scope);
  return call_value(callee, args);
}

Value Evaluator::eval_unchecked(const Expr& expr, const std::shared_ptr<Scope>& scope) {
  switch (expr.kind) {
    case ExprKind::Literal: return expr.literal;
    case ExprKind::Name: {
      const Value* v = scope->find(expr.name);
      return v ? *v : Value::undefined("'" + expr.name + "' is undefined");
    }
    case ExprKind::List:
    case ExprKind::Tuple: {
      List items;
      for (const ExprPtr& item : expr.items) items.push_back(eval(*item, scope));
      check_size(items.size());
      return expr.kind == ExprKind::List ? Value::list(std::move(items)) : Value::tuple(std::move(items));
    }
    case ExprKind::Dict: {
      Dict d;
      for (std::size_t i = 0; i + 1 < expr.items.size(); i += 2) {
        Value key = eval(*expr.items[i], scope);
        d.set(key, eval(*expr.items[i + 1], scope));
      }
      return Value::dict(std::move(d));
    }
    case ExprKind::GetAttr: return get_attribute(eval(*expr.a, scope), expr.name);
    case ExprKind::GetItem: {
      Value object = eval(*expr.a, scope);
      if (expr.b->kind == ExprKind::Slice) {
        const Expr& s = *expr.b;
        return slice(object, s.a ? eval(*s.a, scope) : Value::none(), s.b ? eval(*s.b, scope) : Value::none(),
                     s.c ? eval(*s.c, scope) : Value::none());
      }
      return get_item(object, eval(*expr.b, scope));
    }
    case ExprKind::Slice: throw EvalError("a slice is only valid inside []");
    case ExprKind::Call: return eval_call(expr, scope);
    case ExprKind::Filter: {
      Value target = expr.a ? eval(*expr.a, scope) : Value();
      return call_filter(expr.name, target, eval_args(expr.args, scope));
    }
    case ExprKind::Test: {
      Value target = eval(*expr.a, scope);
      return Value(call_test(expr.name, target, eval_args(expr.args, scope)));
    }
    case ExprKind::Not: return Value(!truthy(eval(*expr.a, scope)));
    case ExprKind::Negate:
    case ExprKind::Plus: {
      Value v = eval(*expr.a, scope);
      if (v.is_undefined()) throw EvalError(v.undefined_message());
      const char* op = expr.kind == ExprKind::Negate ? "-" : "+";
      if (!v.is_number()) throw EvalError(std::string("bad operand type for unary ") + op + ": '" + type_name(v) + "'");
      if (expr.kind == ExprKind::Plus) return v.kind() == Kind::Bool ? Value(v.as_int()) : v;
      if (v.kind() == Kind::Float) return Value(-v.as_float());
      if (v.as_int() == INT64_MIN) throw EvalError("integer overflow");
      return Value(-v.as_int());
    }
    case ExprKind::Binary: return eval_binary(expr, scope);
    case ExprKind::And: {
      Value left = eval(*expr.a, scope);
      return truthy(left) ? eval(*expr.b, scope) : left;
    }
    case ExprKind::Or: {
      Value left = eval(*expr.a, scope);
      return truthy(left) ? left : eval(*expr.b, scope);
    }
    case ExprKind::Compare: return eval_compare(expr, scope);
    case ExprKind::Condition:
      if (truthy(eval(*expr.b, scope))) return eval(*expr.a, scope);
      if (expr.c) return eval(*expr.c, scope);
      return Value::undefined("the inline if-expression on line " + std::to_string(map_.position(expr.offset).line) +
                              " evaluated to false and no else section was defined.");
  }
  throw EvalError("unknown expression");
}

Value Evaluator::eval_binary(const Expr& expr, const std::shared_ptr<Scope>& scope) {
  Value a = eval(*expr.a, scope);
  Value b = eval(*expr.b, scope);
  return binary_op(expr.name, a, b, *this);
}

Value Evaluator::eval_compare(const Expr& expr, const std::shared_ptr<Scope>& scope) {
  Value left = eval(*expr.a, scope);
  for (const auto& [op, operand] : expr.comparisons) {
    Value right = eval(*operand, scope);
    bool result;
    if (op == "==") {
      result = equals(left, right);
    } else if (op == "!=") {
      result = !equals(left, right);
    } else if (op == "in") {
      result = contains(right, left);
    } else if (op == "not in") {
      result = !contains(right, left);
    } else {
      int c = compare(left, right, op);
      result = op == "<" ? c < 0 : op == "<=" ? c <= 0 : op == ">" ? c > 0 : c >= 0;
    }
    if (!result) return Value(false);
    left = std::move(right);
  }
  return Value(true);
}

}  // namespace bifurcate::chat
