#include "chat/value.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <limits>

#include "chat/text.h"

namespace bifurcate::chat {

Value Value::undefined(std::string message) {
  Value v(Kind::Undefined);
  v.ptr_ = std::make_shared<std::string>(std::move(message));
  return v;
}

Value::Value(std::string s) : kind_(Kind::String), ptr_(std::make_shared<std::string>(std::move(s))) {}

namespace {

// Namespaces may hold each other (even themselves), so walks over values
// count their depth; lists and dicts alone stay within kMaxNesting.
thread_local int walk_depth = 0;
struct WalkGuard {
  WalkGuard() {
    if (++walk_depth > static_cast<int>(kMaxNesting) + 64) {
      --walk_depth;
      throw EvalError("maximum recursion depth exceeded");
    }
  }
  ~WalkGuard() { --walk_depth; }
  WalkGuard(const WalkGuard&) = delete;
  WalkGuard& operator=(const WalkGuard&) = delete;
};

std::uint32_t nesting_of(std::uint32_t deepest_child) {
  if (deepest_child + 1 > kMaxNesting)
    throw EvalError("lists and dicts nested deeper than " + std::to_string(kMaxNesting) + " levels");
  return deepest_child + 1;
}

}  // namespace

Value Value::list(List items) {
  Value v(Kind::List);
  std::uint32_t deepest = 0;
  for (const Value& item : items) deepest = std::max(deepest, item.nesting_);
  v.nesting_ = nesting_of(deepest);
  v.ptr_ = std::make_shared<List>(std::move(items));
  return v;
}

Value Value::tuple(List items) {
  Value v = list(std::move(items));
  v.kind_ = Kind::Tuple;
  return v;
}

Value Value::dict(Dict d) { return dict(std::make_shared<const Dict>(std::move(d))); }

Value Value::dict(std::shared_ptr<const Dict> d) {
  Value v(Kind::Dict);
  std::uint32_t deepest = 0;
  for (const auto& [key, value] : d->entries()) deepest = std::max({deepest, key.nesting_, value.nesting_});
  v.nesting_ = nesting_of(deepest);
  v.ptr_ = std::const_pointer_cast<Dict>(std::move(d));
  return v;
}

Value Value::callable(std::shared_ptr<const Callable> f) {
  Value v(Kind::Callable);
  v.ptr_ = std::const_pointer_cast<Callable>(std::move(f));
  return v;
}

Value Value::namespace_object(std::shared_ptr<Namespace> ns) {
  Value v(Kind::Namespace);
  v.ptr_ = std::move(ns);
  return v;
}

std::string Value::undefined_message() const {
  if (!ptr_) return "undefined value";
  return *static_cast<const std::string*>(ptr_.get());
}

template <class Json>
Value Value::from_json(const Json& j) {
  switch (j.type()) {
    case nlohmann::json::value_t::null:
      return none();
    case nlohmann::json::value_t::boolean:
      return Value(j.template get<bool>());
    case nlohmann::json::value_t::number_integer:
      return Value(j.template get<std::int64_t>());
    case nlohmann::json::value_t::number_unsigned: {
      auto u = j.template get<std::uint64_t>();
      // Beyond int64 a Python int stays exact; here it becomes a float.
      if (u <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
        return Value(static_cast<std::int64_t>(u));
      return Value(static_cast<double>(u));
    }
    case nlohmann::json::value_t::number_float:
      return Value(j.template get<double>());
    case nlohmann::json::value_t::string:
      return Value(j.template get<std::string>());
    case nlohmann::json::value_t::array: {
      List items;
      items.reserve(j.size());
      for (const auto& item : j) items.push_back(from_json(item));
      return list(std::move(items));
    }
    case nlohmann::json::value_t::object: {
      Dict d;
      for (auto it = j.begin(); it != j.end(); ++it) d.set(Value(it.key()), from_json(it.value()));
      return dict(std::move(d));
    }
    default:
      return none();
  }
}
template Value Value::from_json(const nlohmann::json&);
template Value Value::from_json(const nlohmann::ordered_json&);

void Dict::set(const Value& key, Value value) {
  std::string h = hash_key(key);
  auto [it, inserted] = index_.try_emplace(std::move(h), entries_.size());
  if (inserted) {
    entries_.emplace_back(key, std::move(value));
  } else {
    entries_[it->second].second = std::move(value);
  }
}

const Value* Dict::find(const Value& key) const {
  auto it = index_.find(hash_key(key));
  return it == index_.end() ? nullptr : &entries_[it->second].second;
}

const Value* CallArgs::find(std::string_view name) const {
  for (const auto& [key, value] : keyword)
    if (key == name) return &value;
  return nullptr;
}

std::string type_name(const Value& v) {
  switch (v.kind()) {
    case Kind::Undefined: return "Undefined";
    case Kind::None: return "NoneType";
    case Kind::Bool: return "bool";
    case Kind::Int: return "int";
    case Kind::Float: return "float";
    case Kind::String: return "str";
    case Kind::List: return "list";
    case Kind::Tuple: return "tuple";
    case Kind::Dict: return "dict";
    case Kind::Namespace: return "Namespace";
    case Kind::Callable: return v.as_callable().type_name();
  }
  return "object";
}

std::string object_type_repr(const Value& v) {
  if (v.is_none()) return "None";
  if (v.kind() == Kind::Namespace) return "jinja2.utils.Namespace object";
  if (v.kind() == Kind::Undefined) return "jinja2.runtime.Undefined object";
  return type_name(v) + " object";
}

bool truthy(const Value& v) {
  switch (v.kind()) {
    case Kind::Undefined:
    case Kind::None: return false;
    case Kind::Bool: return v.as_bool();
    case Kind::Int: return v.as_int() != 0;
    case Kind::Float: return v.as_float() != 0.0;
    case Kind::String: return !v.as_string().empty();
    case Kind::List:
    case Kind::Tuple: return !v.as_list().empty();
    case Kind::Dict: return !v.as_dict().empty();
    case Kind::Namespace:
    case Kind::Callable: return true;
  }
  return false;
}

std::string float_repr(double f) {
  if (std::isnan(f)) return "nan";
  if (std::isinf(f)) return f < 0 ? "-inf" : "inf";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, f, std::chars_format::scientific);
  std::string sci(buf, res.ptr);  // "-d.ddde+XX", shortest round-trip digits
  bool negative = sci[0] == '-';
  if (negative) sci.erase(0, 1);
  std::size_t e = sci.find('e');
  int exponent = std::stoi(sci.substr(e + 1));
  std::string digits;
  for (std::size_t i = 0; i < e; ++i)
    if (sci[i] != '.') digits += sci[i];
  int decpt = exponent + 1;  // digits d1 d2 ... with the point after decpt of them
  std::string out = negative ? "-" : "";
  if (decpt > -4 && decpt <= 16) {
    if (decpt <= 0) {
      out += "0." + std::string(static_cast<std::size_t>(-decpt), '0') + digits;
    } else if (static_cast<std::size_t>(decpt) >= digits.size()) {
      out += digits + std::string(static_cast<std::size_t>(decpt) - digits.size(), '0') + ".0";
    } else {
      out += digits.substr(0, static_cast<std::size_t>(decpt)) + "." + digits.substr(static_cast<std::size_t>(decpt));
    }
  } else {
    out += digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    char exp_buf[16];
    std::snprintf(exp_buf, sizeof exp_buf, "e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
    out += exp_buf;
  }
  return out;
}

namespace {

void append_sequence_repr(std::string& out, const Value& v) {
  bool tuple = v.kind() == Kind::Tuple;
  out += tuple ? '(' : '[';
  const List& items = v.as_list();
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i) out += ", ";
    out += repr(items[i]);
  }
  if (tuple && items.size() == 1) out += ',';
  out += tuple ? ')' : ']';
}

void append_dict_repr(std::string& out, const Dict& d) {
  out += '{';
  bool first = true;
  for (const auto& [key, value] : d.entries()) {
    if (!first) out += ", ";
    first = false;
    out += repr(key) + ": " + repr(value);
  }
  out += '}';
}

}  // namespace

std::string to_str(const Value& v) {
  switch (v.kind()) {
    case Kind::Undefined: return "";
    case Kind::String: return v.as_string();
    default: return repr(v);
  }
}

std::string repr(const Value& v) {
  WalkGuard guard;
  std::string out;
  switch (v.kind()) {
    case Kind::Undefined: return "Undefined";
    case Kind::None: return "None";
    case Kind::Bool: return v.as_bool() ? "True" : "False";
    case Kind::Int: return std::to_string(v.as_int());
    case Kind::Float: return float_repr(v.as_float());
    case Kind::String: return text::python_repr(v.as_string());
    case Kind::List:
    case Kind::Tuple: append_sequence_repr(out, v); return out;
    case Kind::Dict: append_dict_repr(out, v.as_dict()); return out;
    case Kind::Namespace:
      out = "<Namespace ";
      append_dict_repr(out, v.as_namespace().attributes);
      return out + ">";
    case Kind::Callable: return v.as_callable().repr();
  }
  return out;
}

bool equals(const Value& a, const Value& b) {
  WalkGuard guard;
  if (a.is_number() && b.is_number()) {
    if (a.kind() == Kind::Float || b.kind() == Kind::Float) return a.as_float() == b.as_float();
    return a.as_int() == b.as_int();
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Kind::Undefined:
    case Kind::None: return true;
    case Kind::String: return a.as_string() == b.as_string();
    case Kind::List:
    case Kind::Tuple: {
      const List& x = a.as_list();
      const List& y = b.as_list();
      if (x.size() != y.size()) return false;
      for (std::size_t i = 0; i < x.size(); ++i)
        if (!equals(x[i], y[i])) return false;
      return true;
    }
    case Kind::Dict: {
      const Dict& x = a.as_dict();
      const Dict& y = b.as_dict();
      if (x.size() != y.size()) return false;
      for (const auto& [key, value] : x.entries()) {
        const Value* other = y.find(key);
        if (!other || !equals(value, *other)) return false;
      }
      return true;
    }
    case Kind::Namespace: return &a.as_namespace() == &b.as_namespace();
    case Kind::Callable: return &a.as_callable() == &b.as_callable();
    default: return false;
  }
}

int compare(const Value& a, const Value& b, std::string_view op) {
  WalkGuard guard;
  if (a.is_number() && b.is_number()) {
    if (a.kind() == Kind::Float || b.kind() == Kind::Float) {
      double x = a.as_float(), y = b.as_float();
      return x < y ? -1 : x > y ? 1 : 0;
    }
    return a.as_int() < b.as_int() ? -1 : a.as_int() > b.as_int() ? 1 : 0;
  }
  if (a.is_string() && b.is_string()) return a.as_string().compare(b.as_string());
  if (a.kind() == b.kind() && a.is_sequence()) {
    const List& x = a.as_list();
    const List& y = b.as_list();
    for (std::size_t i = 0; i < x.size() && i < y.size(); ++i)
      if (!equals(x[i], y[i])) return compare(x[i], y[i], op);
    return x.size() < y.size() ? -1 : x.size() > y.size() ? 1 : 0;
  }
  if (a.is_undefined()) throw EvalError(a.undefined_message());
  if (b.is_undefined()) throw EvalError(b.undefined_message());
  throw EvalError("'" + std::string(op) + "' not supported between instances of '" + type_name(a) + "' and '" +
                  type_name(b) + "'");
}

std::string hash_key(const Value& v) {
  WalkGuard guard;
  switch (v.kind()) {
    case Kind::Undefined: return "U";
    case Kind::None: return "N";
    case Kind::Bool:
    case Kind::Int: return "i" + std::to_string(v.as_int());
    case Kind::Float: {
      double f = v.as_float();
      if (std::floor(f) == f && std::fabs(f) < 9.2e18) return "i" + std::to_string(static_cast<std::int64_t>(f));
      return "f" + float_repr(f);
    }
    case Kind::String: return "s" + v.as_string();
    case Kind::Tuple: {
      std::string key = "t";
      for (const Value& item : v.as_list()) {
        std::string part = hash_key(item);
        key += std::to_string(part.size()) + ":" + part;
      }
      return key;
    }
    case Kind::Callable: {
      char buf[32];
      std::snprintf(buf, sizeof buf, "c%p", static_cast<const void*>(&v.as_callable()));
      return buf;
    }
    default: throw EvalError("unhashable type: '" + type_name(v) + "'");
  }
}

namespace {

std::string json_key(const Value& key) {
  switch (key.kind()) {
    case Kind::String: return key.as_string();
    case Kind::None: return "null";
    case Kind::Bool: return key.as_bool() ? "true" : "false";
    case Kind::Int: return std::to_string(key.as_int());
    case Kind::Float: return float_repr(key.as_float());
    default: throw EvalError("keys must be str, int, float, bool or None, not " + type_name(key));
  }
}

void append_json(std::string& out, const Value& v, int indent, bool sort_keys, int level) {
  auto newline = [&](int depth) {
    out += '\n';
    out.append(static_cast<std::size_t>(indent) * static_cast<std::size_t>(depth), ' ');
  };
  const char* item_separator = indent >= 0 ? "," : ", ";
  if (level > 500) throw EvalError("maximum recursion depth exceeded while encoding a JSON object");
  switch (v.kind()) {
    case Kind::None: out += "null"; return;
    case Kind::Bool: out += v.as_bool() ? "true" : "false"; return;
    case Kind::Int: out += std::to_string(v.as_int()); return;
    case Kind::Float: {
      double f = v.as_float();
      if (std::isnan(f)) out += "NaN";
      else if (std::isinf(f)) out += f < 0 ? "-Infinity" : "Infinity";
      else out += float_repr(f);
      return;
    }
    case Kind::String: out += text::json_quote(v.as_string()); return;
    case Kind::List:
    case Kind::Tuple: {
      const List& items = v.as_list();
      if (items.empty()) {
        out += "[]";
        return;
      }
      out += '[';
      for (std::size_t i = 0; i < items.size(); ++i) {
        if (i) out += item_separator;
        if (indent >= 0) newline(level + 1);
        append_json(out, items[i], indent, sort_keys, level + 1);
      }
      if (indent >= 0) newline(level);
      out += ']';
      return;
    }
    case Kind::Dict: {
      const Dict& d = v.as_dict();
      if (d.empty()) {
        out += "{}";
        return;
      }
      std::vector<std::pair<std::string, const Value*>> entries;
      for (const auto& [key, value] : d.entries()) entries.emplace_back(json_key(key), &value);
      if (sort_keys)
        std::stable_sort(entries.begin(), entries.end(),
                         [](const auto& x, const auto& y) { return x.first < y.first; });
      out += '{';
      for (std::size_t i = 0; i < entries.size(); ++i) {
        if (i) out += item_separator;
        if (indent >= 0) newline(level + 1);
        out += text::json_quote(entries[i].first) + ": ";
        append_json(out, *entries[i].second, indent, sort_keys, level + 1);
      }
      if (indent >= 0) newline(level);
      out += '}';
      return;
    }
    default: throw EvalError("Object of type " + type_name(v) + " is not JSON serializable");
  }
}

}  // namespace

std::string to_json(const Value& v, int indent, bool sort_keys) {
  std::string out;
  append_json(out, v, indent, sort_keys, 0);
  return out;
}

}  // namespace bifurcate::chat
