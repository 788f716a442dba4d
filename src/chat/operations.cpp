// Python's operators, iteration, attribute and item access as jinja2's
// sandbox applies them to template values.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <optional>
#include <limits>

#include "chat/evaluator.h"
#include "chat/text.h"

namespace bifurcate::chat {
namespace {

[[noreturn]] void unsupported(const std::string& op, const Value& a, const Value& b) {
  throw EvalError("unsupported operand type(s) for " + op + ": '" + type_name(a) + "' and '" + type_name(b) + "'");
}

Value checked_int(__int128 v) {
  if (v > std::numeric_limits<std::int64_t>::max() || v < std::numeric_limits<std::int64_t>::min())
    throw EvalError("integer result out of the 64-bit range");
  return Value(static_cast<std::int64_t>(v));
}

Value repeat(const Value& seq, std::int64_t times, const Evaluator& evaluator) {
  if (times < 0) times = 0;
  if (seq.is_string()) {
    const std::string& s = seq.as_string();
    if (!s.empty()) evaluator.check_size(s.size() * static_cast<std::size_t>(std::min<std::int64_t>(times, 1LL << 40)));
    std::string out;
    for (std::int64_t i = 0; i < times && !s.empty(); ++i) out += s;
    return Value(std::move(out));
  }
  const List& items = seq.as_list();
  if (!items.empty()) evaluator.check_size(items.size() * static_cast<std::size_t>(std::min<std::int64_t>(times, 1LL << 40)));
  List out;
  for (std::int64_t i = 0; i < times && !items.empty(); ++i) out.insert(out.end(), items.begin(), items.end());
  return seq.kind() == Kind::Tuple ? Value::tuple(std::move(out)) : Value::list(std::move(out));
}

double python_fmod(double a, double b) {
  double m = std::fmod(a, b);
  if (m != 0 && ((m < 0) != (b < 0))) m += b;
  return m;
}

// Python's printf-style `str % args` for the conversions templates use.
std::string percent_format(const std::string& format, const Value& args) {
  List values = args.kind() == Kind::Tuple ? args.as_list() : List{args};
  std::size_t next = 0;
  std::string out;
  for (std::size_t i = 0; i < format.size(); ++i) {
    if (format[i] != '%') {
      out += format[i];
      continue;
    }
    if (++i >= format.size()) throw EvalError("incomplete format");
    char conv = format[i];
    if (conv == '%') {
      out += '%';
      continue;
    }
    if (next >= values.size()) throw EvalError("not enough arguments for format string");
    const Value& v = values[next++];
    switch (conv) {
      case 's': out += to_str(v); break;
      case 'r': out += repr(v); break;
      case 'd':
      case 'i':
        if (!v.is_number()) throw EvalError("%" + std::string(1, conv) + " format: a real number is required, not " + type_name(v));
        out += std::to_string(v.kind() == Kind::Float ? static_cast<std::int64_t>(v.as_float()) : v.as_int());
        break;
      case 'f': {
        if (!v.is_number()) throw EvalError("must be real number, not " + type_name(v));
        char buf[64];
        std::snprintf(buf, sizeof buf, "%f", v.as_float());
        out += buf;
        break;
      }
      default: throw EvalError(std::string("unsupported format character '") + conv + "'");
    }
  }
  if (next < values.size() && args.kind() == Kind::Tuple)
    throw EvalError("not all arguments converted during string formatting");
  return out;
}

// A Python index into a sequence of `size`, or -1 when out of range.
std::int64_t normalize_index(std::int64_t i, std::size_t size) {
  auto n = static_cast<std::int64_t>(size);
  if (i < 0) i += n;
  return i < 0 || i >= n ? -1 : i;
}

Value missing(const Value& object, const Value& key) {
  // Built with append: GCC 12's -Wrestrict misfires on the chained operator+.
  std::string message;
  if (key.is_string()) {
    message.append("'").append(object_type_repr(object)).append("' has no attribute ").append(repr(key));
  } else {
    message.append(object_type_repr(object)).append(" has no element ").append(repr(key));
  }
  return Value::undefined(std::move(message));
}

}  // namespace

Value binary_op(const std::string& op, const Value& a, const Value& b, const Evaluator& evaluator) {
  if (op == "~") {
    std::string s = to_str(a);
    std::string t = to_str(b);
    evaluator.check_size(s.size() + t.size());
    return Value(s + t);
  }
  if (a.is_undefined()) throw EvalError(a.undefined_message());
  if (b.is_undefined()) throw EvalError(b.undefined_message());
  bool numbers = a.is_number() && b.is_number();
  bool floats = numbers && (a.kind() == Kind::Float || b.kind() == Kind::Float);
  if (op == "+") {
    if (numbers) return floats ? Value(a.as_float() + b.as_float()) : checked_int(static_cast<__int128>(a.as_int()) + b.as_int());
    if (a.is_string() || a.kind() == Kind::List || a.kind() == Kind::Tuple) {
      if (a.kind() != b.kind())
        throw EvalError("can only concatenate " + type_name(a) + " (not \"" + type_name(b) + "\") to " + type_name(a));
      if (a.is_string()) {
        evaluator.check_size(a.as_string().size() + b.as_string().size());
        return Value(a.as_string() + b.as_string());
      }
      evaluator.check_size(a.as_list().size() + b.as_list().size());
      List items = a.as_list();
      items.insert(items.end(), b.as_list().begin(), b.as_list().end());
      return a.kind() == Kind::List ? Value::list(std::move(items)) : Value::tuple(std::move(items));
    }
    unsupported(op, a, b);
  }
  if (op == "-") {
    if (!numbers) unsupported(op, a, b);
    return floats ? Value(a.as_float() - b.as_float()) : checked_int(static_cast<__int128>(a.as_int()) - b.as_int());
  }
  if (op == "*") {
    if (numbers) return floats ? Value(a.as_float() * b.as_float()) : checked_int(static_cast<__int128>(a.as_int()) * b.as_int());
    bool a_seq = a.is_string() || a.is_sequence();
    bool b_seq = b.is_string() || b.is_sequence();
    if (a_seq && (b.kind() == Kind::Int || b.kind() == Kind::Bool)) return repeat(a, b.as_int(), evaluator);
    if (b_seq && (a.kind() == Kind::Int || a.kind() == Kind::Bool)) return repeat(b, a.as_int(), evaluator);
    if (a_seq && b.is_number()) throw EvalError("can't multiply sequence by non-int of type '" + type_name(b) + "'");
    unsupported(op, a, b);
  }
  if (op == "/") {
    if (!numbers) unsupported(op, a, b);
    if (b.as_float() == 0) throw EvalError("division by zero");
    return Value(a.as_float() / b.as_float());
  }
  if (op == "//") {
    if (!numbers) unsupported(op, a, b);
    if (floats) {
      if (b.as_float() == 0) throw EvalError("float floor division by zero");
      return Value(std::floor(a.as_float() / b.as_float()));
    }
    if (b.as_int() == 0) throw EvalError("integer division or modulo by zero");
    __int128 q = static_cast<__int128>(a.as_int()) / b.as_int();
    if ((a.as_int() % b.as_int() != 0) && ((a.as_int() < 0) != (b.as_int() < 0))) --q;
    return checked_int(q);
  }
  if (op == "%") {
    if (a.is_string()) {
      std::string s = percent_format(a.as_string(), b);
      evaluator.check_size(s.size());
      return Value(std::move(s));
    }
    if (!numbers) unsupported(op, a, b);
    if (floats) {
      if (b.as_float() == 0) throw EvalError("float modulo");
      return Value(python_fmod(a.as_float(), b.as_float()));
    }
    if (b.as_int() == 0) throw EvalError("integer division or modulo by zero");
    if (b.as_int() == -1) return Value(static_cast<std::int64_t>(0));
    std::int64_t m = a.as_int() % b.as_int();
    if (m != 0 && ((m < 0) != (b.as_int() < 0))) m += b.as_int();
    return Value(m);
  }
  if (op == "**") {
    if (!numbers) unsupported("** or pow()", a, b);
    if (!floats && b.as_int() >= 0) {
      __int128 result = 1;
      __int128 base = a.as_int();
      for (std::int64_t e = b.as_int(); e > 0; --e) {
        result *= base;
        if (result > std::numeric_limits<std::int64_t>::max() || result < std::numeric_limits<std::int64_t>::min())
          throw EvalError("integer result out of the 64-bit range");
        if (result == 0 || result == 1) break;
        if (result == -1) {
          result = (e % 2 == 1) ? -1 : 1;
          break;
        }
      }
      return checked_int(result);
    }
    if (a.as_float() == 0 && b.as_float() < 0) throw EvalError("0.0 cannot be raised to a negative power");
    return Value(std::pow(a.as_float(), b.as_float()));
  }
  throw EvalError("unknown operator " + op);
}

bool contains(const Value& container, const Value& item) {
  switch (container.kind()) {
    case Kind::String:
      if (!item.is_string())
        throw EvalError("'in <string>' requires string as left operand, not " + type_name(item));
      return container.as_string().find(item.as_string()) != std::string::npos;
    case Kind::List:
    case Kind::Tuple:
      for (const Value& v : container.as_list())
        if (equals(v, item)) return true;
      return false;
    case Kind::Dict: return container.as_dict().find(item) != nullptr;
    case Kind::Undefined: return false;
    default: throw EvalError("argument of type '" + type_name(container) + "' is not iterable");
  }
}

List iterate(const Value& v) {
  switch (v.kind()) {
    case Kind::List:
    case Kind::Tuple: return v.as_list();
    case Kind::Dict: {
      List keys;
      for (const auto& [key, value] : v.as_dict().entries()) keys.push_back(key);
      return keys;
    }
    case Kind::String: {
      List chars;
      for (char32_t c : text::decode(v.as_string())) {
        std::string s;
        text::append_utf8(s, c);
        chars.emplace_back(std::move(s));
      }
      return chars;
    }
    case Kind::Undefined: return {};
    default: throw EvalError("'" + type_name(v) + "' object is not iterable");
  }
}

Value get_attribute(const Value& object, const std::string& name) {
  switch (object.kind()) {
    case Kind::Undefined: throw EvalError(object.undefined_message());
    case Kind::Dict: {
      // jinja2 tries the attribute first: d.items is the method, d.pop unsafe.
      Value method = bound_method(object, name);
      if (!method.is_undefined() || method.has_message()) return method;
      if (const Value* v = object.as_dict().find(Value(name))) return *v;
      return missing(object, Value(name));
    }
    case Kind::Namespace: {
      if (const Value* v = object.as_namespace().attributes.find(Value(name))) return *v;
      return missing(object, Value(name));
    }
    default: {
      // A method, or the Undefined that reports an unsafe (mutating) one.
      Value method = bound_method(object, name);
      if (!method.is_undefined() || method.has_message()) return method;
      return missing(object, Value(name));
    }
  }
}

Value get_item(const Value& object, const Value& key) {
  switch (object.kind()) {
    case Kind::Undefined: throw EvalError(object.undefined_message());
    case Kind::Dict: {
      // An unhashable key is a TypeError, which jinja2 turns into Undefined.
      if (key.kind() == Kind::List || key.kind() == Kind::Dict || key.kind() == Kind::Namespace) break;
      if (const Value* v = object.as_dict().find(key)) return *v;
      break;
    }
    case Kind::List:
    case Kind::Tuple:
    case Kind::String:
      if (key.kind() == Kind::Int || key.kind() == Kind::Bool) {
        if (object.is_string()) {
          std::u32string cps = text::decode(object.as_string());
          std::int64_t i = normalize_index(key.as_int(), cps.size());
          if (i >= 0) return Value(text::encode(cps.substr(static_cast<std::size_t>(i), 1)));
        } else {
          std::int64_t i = normalize_index(key.as_int(), object.as_list().size());
          if (i >= 0) return object.as_list()[static_cast<std::size_t>(i)];
        }
        return missing(object, key);
      }
      break;
    case Kind::Namespace:
      if (key.is_string()) return get_attribute(object, key.as_string());
      break;
    default: break;
  }
  // jinja2 falls back to the attribute for string keys (x['items'] is the method).
  if (key.is_string()) {
    Value method = bound_method(object, key.as_string());
    if (!method.is_undefined()) return method;
  }
  return missing(object, key);
}

Value slice(const Value& object, const Value& start, const Value& stop, const Value& step) {
  if (object.is_undefined()) throw EvalError(object.undefined_message());
  auto bound = [](const Value& v, const char* what) -> std::optional<std::int64_t> {
    if (v.is_none()) return std::nullopt;
    if (v.kind() != Kind::Int && v.kind() != Kind::Bool)
      throw EvalError(std::string("slice ") + what + " must be an integer or None, not " + type_name(v));
    return v.as_int();
  };
  std::optional<std::int64_t> a = bound(start, "indices"), b = bound(stop, "indices"), c = bound(step, "indices");
  std::int64_t s = c.value_or(1);
  if (s == 0) throw EvalError("slice step cannot be zero");
  auto slice_positions = [&](std::size_t size) {
    auto n = static_cast<std::int64_t>(size);
    auto clamp = [&](std::optional<std::int64_t> v, std::int64_t dflt) {
      if (!v) return dflt;
      std::int64_t x = *v;
      if (x < 0) x += n;
      if (s > 0) return std::clamp<std::int64_t>(x, 0, n);
      return std::clamp<std::int64_t>(x, -1, n - 1);
    };
    std::int64_t from = clamp(a, s > 0 ? 0 : n - 1);
    std::int64_t to = clamp(b, s > 0 ? n : -1);
    std::vector<std::size_t> positions;
    for (std::int64_t i = from; s > 0 ? i < to : i > to; i += s) positions.push_back(static_cast<std::size_t>(i));
    return positions;
  };
  if (object.is_string()) {
    std::u32string cps = text::decode(object.as_string());
    std::u32string out;
    for (std::size_t i : slice_positions(cps.size())) out += cps[i];
    return Value(text::encode(out));
  }
  if (object.is_sequence()) {
    List out;
    for (std::size_t i : slice_positions(object.as_list().size())) out.push_back(object.as_list()[i]);
    return object.kind() == Kind::Tuple ? Value::tuple(std::move(out)) : Value::list(std::move(out));
  }
  // jinja2 turns the TypeError of slicing anything else into Undefined.
  return Value::undefined(object_type_repr(object) + " has no element slice(" + repr(start) + ", " + repr(stop) +
                          ", " + repr(step) + ")");
}

}  // namespace bifurcate::chat
