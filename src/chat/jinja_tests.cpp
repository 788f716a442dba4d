// jinja2's tests (`x is defined`, `x is string`, ...), as its tests.py
// defines them, with Undefined answering as jinja2's Undefined class does.
#include <algorithm>

#include "chat/evaluator.h"
#include "chat/text.h"

namespace bifurcate::chat {
namespace {


const Value& test_arg(const CallArgs& args, const std::string& name) {
  if (args.positional.empty()) throw EvalError("test '" + name + "' needs an argument");
  return args.positional[0];
}

bool run_test(Evaluator& e, const std::string& name, const Value& v, const CallArgs& args) {
  Kind k = v.kind();
  if (name == "defined") return k != Kind::Undefined;
  if (name == "undefined") return k == Kind::Undefined;
  if (name == "none") return k == Kind::None;
  if (name == "boolean") return k == Kind::Bool;
  if (name == "true") return k == Kind::Bool && v.as_bool();
  if (name == "false") return k == Kind::Bool && !v.as_bool();
  if (name == "integer") return k == Kind::Int;
  if (name == "float") return k == Kind::Float;
  if (name == "number") return v.is_number();
  if (name == "string") return k == Kind::String;
  if (name == "mapping") return k == Kind::Dict;
  // Undefined iterates as empty, has len() and [] (which raise): jinja2 says yes.
  if (name == "iterable") return k == Kind::String || v.is_sequence() || k == Kind::Dict || k == Kind::Undefined;
  if (name == "sequence") return k == Kind::String || v.is_sequence() || k == Kind::Dict || k == Kind::Undefined;
  if (name == "callable") return k == Kind::Callable || k == Kind::Undefined;
  if (name == "escaped") return false;
  if (name == "odd" || name == "even") {
    if (k != Kind::Int && k != Kind::Bool) throw EvalError("not all arguments converted during string formatting");
    return (v.as_int() % 2 != 0) == (name == "odd");
  }
  if (name == "divisibleby") {
    const Value& n = test_arg(args, name);
    if (!v.is_number() || !n.is_number()) throw EvalError("unsupported operand type(s) for %");
    return equals(binary_op("%", v, n, e), Value(static_cast<std::int64_t>(0)));
  }
  if (name == "lower") return v.is_string() && text::lower(v.as_string()) == v.as_string() && text::upper(v.as_string()) != v.as_string();
  if (name == "upper") return v.is_string() && text::upper(v.as_string()) == v.as_string() && text::lower(v.as_string()) != v.as_string();
  if (name == "sameas") {
    const Value& other = test_arg(args, name);
    if (v.kind() != other.kind()) return false;
    if (k == Kind::None || k == Kind::Bool || k == Kind::Undefined) return equals(v, other);
    return equals(v, other) && (k == Kind::Int || k == Kind::String);
  }
  if (name == "in") return contains(test_arg(args, name), v);
  if (name == "eq" || name == "equalto" || name == "==") return equals(v, test_arg(args, name));
  if (name == "ne" || name == "!=") return !equals(v, test_arg(args, name));
  if (name == "lt" || name == "lessthan" || name == "<") return compare(v, test_arg(args, name), "<") < 0;
  if (name == "le" || name == "<=") return compare(v, test_arg(args, name), "<=") <= 0;
  if (name == "gt" || name == "greaterthan" || name == ">") return compare(v, test_arg(args, name), ">") > 0;
  if (name == "ge" || name == ">=") return compare(v, test_arg(args, name), ">=") >= 0;
  if (name == "filter") return v.is_string() && is_filter(v.as_string());
  if (name == "test") {
    static const char* const kTests[] = {"defined", "undefined", "none", "boolean", "true", "false", "integer",
                                         "float", "number", "string", "mapping", "iterable", "sequence",
                                         "callable", "escaped", "odd", "even", "divisibleby", "lower", "upper",
                                         "sameas", "in", "eq", "equalto", "ne", "lt", "lessthan", "le", "gt",
                                         "greaterthan", "ge", "filter", "test"};
    if (!v.is_string()) return false;
    const std::string& t = v.as_string();
    return std::any_of(std::begin(kTests), std::end(kTests), [&](const char* n) { return t == n; });
  }
  throw EvalError("No test named '" + name + "'.");
}

}  // namespace

bool Evaluator::call_test(const std::string& name, const Value& target, const CallArgs& args) {
  return run_test(*this, name, target, args);
}

}  // namespace bifurcate::chat
