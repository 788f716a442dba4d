// The values a template computes with, modelled on the Python objects
// jinja2 sees: None, bool, int, float, str, list, tuple, dict (insertion
// ordered), jinja2's Undefined, namespace() objects and callables (macros,
// globals, bound methods). Strings are UTF-8; lists, dicts and strings are
// shared and immutable (the sandbox forbids mutation), so copies are cheap.
// Only a Namespace changes after creation, through {% set ns.x = ... %}.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace bifurcate::chat {

class Value;
class Dict;
struct Namespace;
class Callable;
using List = std::vector<Value>;

// A runtime error without a position yet; the evaluator adds the line and
// column of the node being evaluated when it turns this into a TemplateError.
class EvalError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class Kind { Undefined, None, Bool, Int, Float, String, List, Tuple, Dict, Namespace, Callable };

class Value {
 public:
  Value() : kind_(Kind::Undefined) {}  // an Undefined without a name
  static Value undefined(std::string message);  // message: what using it reports
  static Value none() { return Value(Kind::None); }
  Value(bool b) : kind_(Kind::Bool) { scalar_.b = b; }  // NOLINT(google-explicit-constructor)
  Value(std::int64_t i) : kind_(Kind::Int) { scalar_.i = i; }  // NOLINT
  Value(int i) : Value(static_cast<std::int64_t>(i)) {}        // NOLINT
  Value(double f) : kind_(Kind::Float) { scalar_.f = f; }      // NOLINT
  Value(std::string s);                                        // NOLINT
  Value(const char* s) : Value(std::string(s)) {}              // NOLINT
  static Value list(List items);
  static Value tuple(List items);
  static Value dict(Dict d);
  static Value dict(std::shared_ptr<const Dict> d);
  static Value callable(std::shared_ptr<const Callable> f);
  static Value namespace_object(std::shared_ptr<Namespace> ns);

  template <class Json>
  static Value from_json(const Json& j);  // nlohmann::json or ordered_json

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::Undefined; }
  bool is_none() const { return kind_ == Kind::None; }
  bool is_string() const { return kind_ == Kind::String; }
  bool is_number() const { return kind_ == Kind::Int || kind_ == Kind::Float || kind_ == Kind::Bool; }
  bool is_sequence() const { return kind_ == Kind::List || kind_ == Kind::Tuple; }

  bool as_bool() const { return scalar_.b; }
  std::int64_t as_int() const { return kind_ == Kind::Bool ? scalar_.b : scalar_.i; }  // Int or Bool
  double as_float() const { return kind_ == Kind::Float ? scalar_.f : static_cast<double>(as_int()); }
  const std::string& as_string() const { return *static_cast<const std::string*>(ptr_.get()); }
  const List& as_list() const { return *static_cast<const List*>(ptr_.get()); }  // List or Tuple
  const Dict& as_dict() const { return *static_cast<const Dict*>(ptr_.get()); }
  Namespace& as_namespace() const { return *static_cast<Namespace*>(ptr_.get()); }
  const Callable& as_callable() const { return *static_cast<const Callable*>(ptr_.get()); }
  // What using an Undefined reports ("'x' is undefined", ...).
  std::string undefined_message() const;
  bool has_message() const { return kind_ == Kind::Undefined && ptr_ != nullptr; }
  std::uint32_t nesting() const { return nesting_; }

 private:
  explicit Value(Kind kind) : kind_(kind) {}
  Kind kind_;
  union {
    bool b;
    std::int64_t i;
    double f;
  } scalar_{};
  std::shared_ptr<void> ptr_;  // String, List/Tuple, Dict, Namespace, Callable, Undefined's message
  // Nesting of lists, tuples and dicts (0 for the rest): capped at
  // kMaxNesting on creation so destroying, printing or comparing a value
  // never recurses without bound.
  std::uint32_t nesting_ = 0;
};

// The deepest nesting of lists and dicts a value may have (input JSON or
// built by a template); deeper is an EvalError.
inline constexpr std::uint32_t kMaxNesting = 256;

// Python's dict: insertion-ordered, keys compared as Python compares them
// (1, 1.0 and True are one key). Keys must be hashable (no lists or dicts).
class Dict {
 public:
  void set(const Value& key, Value value);  // throws EvalError for an unhashable key
  const Value* find(const Value& key) const;
  std::size_t size() const { return entries_.size(); }
  bool empty() const { return entries_.empty(); }
  const std::vector<std::pair<Value, Value>>& entries() const { return entries_; }

 private:
  std::vector<std::pair<Value, Value>> entries_;
  std::unordered_map<std::string, std::size_t> index_;  // hash_key(key) -> position
};

struct Namespace {
  Dict attributes;
};

struct CallArgs {
  List positional;
  std::vector<std::pair<std::string, Value>> keyword;
  // The keyword argument `name`, or null.
  const Value* find(std::string_view name) const;
};

class Evaluator;
class Callable {
 public:
  virtual ~Callable() = default;
  virtual Value call(Evaluator& evaluator, const CallArgs& args) const = 0;
  virtual std::string type_name() const { return "builtin_function_or_method"; }
  virtual std::string repr() const = 0;
};

// Python's type(x).__name__, for error messages as jinja2 words them.
std::string type_name(const Value& v);
// jinja2's object_type_repr: "dict object", "None", ...
std::string object_type_repr(const Value& v);

bool truthy(const Value& v);
std::string to_str(const Value& v);  // Python str(); Undefined prints as ""
std::string repr(const Value& v);    // Python repr()
std::string float_repr(double f);    // Python repr() of a float
bool equals(const Value& a, const Value& b);
// <0, 0, >0 as Python orders them; EvalError ("'<' not supported between
// instances of 'str' and 'int'") for unordered types. `op` names the operator.
int compare(const Value& a, const Value& b, std::string_view op);
// A string equal for keys Python's dict treats as equal; EvalError for
// unhashable values.
std::string hash_key(const Value& v);

// json.dumps(v, ensure_ascii=False, indent=indent, sort_keys=...) with
// Python's default separators. indent < 0 = none.
std::string to_json(const Value& v, int indent, bool sort_keys);

}  // namespace bifurcate::chat
