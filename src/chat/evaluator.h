// Runs a parsed template: statements write to an output string,
// expressions evaluate to Values, with jinja2's scoping (a for-loop body is
// a fresh scope each iteration, if-bodies are not scopes, macros see their
// defining scope as it is when called) and its Undefined rules. Enforces
// RenderLimits and turns every runtime failure into a TemplateError naming
// the line and column of the expression that failed.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "chat/ast.h"
#include "chat/chat_template.h"
#include "chat/lexer.h"
#include "chat/value.h"

namespace bifurcate::chat {

struct Scope {
  std::shared_ptr<Scope> parent;
  std::unordered_map<std::string, Value> variables;

  const Value* find(const std::string& name) const;
};

class Evaluator {
 public:
  Evaluator(const SourceMap& map, const RenderLimits& limits, std::optional<std::chrono::sys_seconds> now);
  ~Evaluator();
  Evaluator(const Evaluator&) = delete;
  Evaluator& operator=(const Evaluator&) = delete;

  // Renders `body` with `root` as the outermost scope (globals + variables).
  std::string render(const Body& body, std::shared_ptr<Scope> root);

  // Used by filters, tests, macros and globals.
  Value eval(const Expr& expr, const std::shared_ptr<Scope>& scope);
  // Runs a macro or call-block body in `scope`, returning what it printed.
  std::string run_body(const Body& body, const std::shared_ptr<Scope>& scope);
  // Throws EvalError when a string or list of `size` bytes/items would
  // exceed the output limit.
  void check_size(std::size_t size) const;
  void count_steps(std::size_t n);
  // The broken-down time strftime_now() formats.
  std::tm now() const;
  // Records a namespace so its attributes are cleared after the render
  // (namespaces may reference each other in cycles).
  void track_namespace(const std::shared_ptr<Namespace>& ns) { namespaces_.push_back(ns); }
  // Calls a filter or test by name (filters.cpp, tests in filters.cpp).
  Value call_filter(const std::string& name, const Value& target, const CallArgs& args);
  bool call_test(const std::string& name, const Value& target, const CallArgs& args);
  // Calls a value: a Callable, or an error for anything else.
  Value call_value(const Value& callee, const CallArgs& args);

 private:
  enum class Flow { Normal, Break, Continue };
  struct DepthGuard;

  Flow exec(const Body& body, std::shared_ptr<Scope>& scope, std::string& out);
  Flow exec_statement(const Stmt& stmt, std::shared_ptr<Scope>& scope, std::string& out);
  Flow exec_for(const Stmt& stmt, std::shared_ptr<Scope>& scope, std::string& out);
  void assign(const Expr& target, const Value& value, Scope& scope);
  void define_macro(const Stmt& stmt, const std::shared_ptr<Scope>& scope);
  void append_output(std::string& out, std::string_view text);

  Value eval_unchecked(const Expr& expr, const std::shared_ptr<Scope>& scope);
  Value eval_binary(const Expr& expr, const std::shared_ptr<Scope>& scope);
  Value eval_compare(const Expr& expr, const std::shared_ptr<Scope>& scope);
  Value eval_call(const Expr& expr, const std::shared_ptr<Scope>& scope);
  CallArgs eval_args(const CallArguments& args, const std::shared_ptr<Scope>& scope);
  [[noreturn]] void fail(std::size_t offset, const std::string& message) const;

  const SourceMap& map_;
  RenderLimits limits_;
  std::optional<std::chrono::sys_seconds> now_;
  std::size_t steps_ = 0;
  int depth_ = 0;
  std::vector<std::shared_ptr<Namespace>> namespaces_;
};

// Python-level operations shared by the evaluator and the builtins.
Value binary_op(const std::string& op, const Value& a, const Value& b, const Evaluator& evaluator);
bool contains(const Value& container, const Value& item);
List iterate(const Value& v);  // for-loops, list(), join ...: EvalError when not iterable
Value get_attribute(const Value& object, const std::string& name);
Value get_item(const Value& object, const Value& key);
Value slice(const Value& object, const Value& start, const Value& stop, const Value& step);
// A value's method `name` bound to it (str, dict and list methods), or an
// Undefined when it has none.
Value bound_method(const Value& object, const std::string& name);
// The globals every render sees: range, namespace, dict, raise_exception,
// strftime_now, joiner, cycler.
void add_globals(Scope& scope);

}  // namespace bifurcate::chat
