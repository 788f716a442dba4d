// The parsed template: a tree of statements over expressions, mirroring
// jinja2's nodes. Every node keeps the byte offset of its first token so
// runtime errors can name a line and column.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "chat/value.h"

namespace bifurcate::chat {

struct Expr;
struct Stmt;
using ExprPtr = std::unique_ptr<Expr>;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

enum class ExprKind {
  Literal,   // literal
  Name,      // name
  List,      // items
  Tuple,     // items
  Dict,      // items: key, value, key, value, ...
  GetAttr,   // a.name
  GetItem,   // a[b]
  Slice,     // [a:b:c] inside GetItem; null parts are omitted bounds
  Call,      // a(args)
  Filter,    // a|name(args); a null for {% filter %} blocks
  Test,      // a is name(args)
  Not,       // not a
  Negate,    // -a
  Plus,      // +a
  Binary,    // a name b: + - * / // % ** ~
  And,       // a and b
  Or,        // a or b
  Compare,   // a (op operand)...: comparisons
  Condition  // a if b else c (c may be null)
};

struct CallArguments {
  std::vector<ExprPtr> positional;
  std::vector<std::pair<std::string, ExprPtr>> keyword;
  ExprPtr star;       // *args
  ExprPtr star_star;  // **kwargs
};

struct Expr {
  ExprKind kind;
  std::size_t offset;
  std::string name;  // Name, GetAttr, Filter/Test name, Binary operator
  Value literal;
  ExprPtr a, b, c;
  std::vector<ExprPtr> items;
  std::vector<std::pair<std::string, ExprPtr>> comparisons;  // Compare: "==", "in", "not in", ...
  CallArguments args;
};

enum class StmtKind {
  Text,         // text
  Print,        // {{ expr }}
  If,           // branches (condition, body)...; else_body
  For,          // for target in expr [if condition]; body; else_body
  Set,          // set target = expr
  SetBlock,     // set target [| filter]; body; endset (expr: the Filter or null)
  Macro,        // macro name(params = defaults); body
  CallBlock,    // call [(params)] expr; body; endcall (body is the macro `caller`)
  FilterBlock,  // filter expr; body
  With,         // with targets = values; body
  Break,
  Continue
};

struct Stmt {
  StmtKind kind;
  std::size_t offset;
  std::string text;
  ExprPtr expr;
  ExprPtr target;
  ExprPtr condition;
  std::vector<std::pair<ExprPtr, Body>> branches;
  Body body, else_body;
  std::string name;
  std::vector<std::string> params;
  std::vector<ExprPtr> defaults;  // Macro/CallBlock: one per param, null = none
  std::vector<ExprPtr> targets, values;  // With
};

}  // namespace bifurcate::chat
