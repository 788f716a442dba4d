// Methods of str, dict and list values (what jinja2's sandbox lets a
// template call: the ones that do not mutate), and the template globals.
#include <ctime>
#include <functional>
#include <limits>
#include <map>

#include "chat/evaluator.h"
#include "chat/text.h"

namespace bifurcate::chat {
namespace {

const Value& arg(const CallArgs& args, std::size_t i, std::string_view name, const std::string& method) {
  if (i < args.positional.size()) return args.positional[i];
  if (const Value* v = args.find(name)) return *v;
  throw EvalError(method + "() missing required argument '" + std::string(name) + "' (pos " + std::to_string(i + 1) + ")");
}

const Value* optional_arg(const CallArgs& args, std::size_t i, std::string_view name) {
  if (i < args.positional.size()) return &args.positional[i];
  return args.find(name);
}

const std::string& string_arg(const Value& v, const std::string& method) {
  if (v.is_undefined()) throw EvalError(v.undefined_message());
  if (!v.is_string()) throw EvalError(method + "() argument must be str, not " + type_name(v));
  return v.as_string();
}

std::int64_t int_arg(const Value* v, std::int64_t fallback) {
  if (!v || v->is_none()) return fallback;
  if (v->kind() != Kind::Int && v->kind() != Kind::Bool)
    throw EvalError("'" + type_name(*v) + "' object cannot be interpreted as an integer");
  return v->as_int();
}

Value string_list(std::vector<std::string> parts) {
  List out;
  out.reserve(parts.size());
  for (std::string& p : parts) out.emplace_back(std::move(p));
  return Value::list(std::move(out));
}

template <class Predicate>
Value all_chars(const std::string& s, Predicate predicate) {
  std::u32string cps = text::decode(s);
  if (cps.empty()) return Value(false);
  for (char32_t c : cps)
    if (!predicate(c)) return Value(false);
  return Value(true);
}

Value pad(const std::string& s, const CallArgs& args, const std::string& method, int where) {
  std::int64_t width = int_arg(&arg(args, 0, "width", method), 0);
  std::string fill = " ";
  if (const Value* f = optional_arg(args, 1, "fillchar")) {
    fill = string_arg(*f, method);
    if (text::length(fill) != 1) throw EvalError("The fill character must be exactly one character long");
  }
  auto len = static_cast<std::int64_t>(text::length(s));
  if (width <= len) return Value(s);
  if (width > (1 << 24)) throw EvalError(method + "() width too large");
  std::int64_t total = width - len;
  std::int64_t left = where < 0 ? 0 : where > 0 ? total : total / 2 + (total & width & 1);
  std::string out;
  for (std::int64_t i = 0; i < left; ++i) out += fill;
  out += s;
  for (std::int64_t i = 0; i < total - left; ++i) out += fill;
  return Value(std::move(out));
}

// str.format with automatic or numbered or named fields, no format specs.
std::string format_fields(const std::string& format, const CallArgs& args) {
  std::string out;
  std::size_t auto_index = 0;
  for (std::size_t i = 0; i < format.size(); ++i) {
    char c = format[i];
    if (c == '{' && i + 1 < format.size() && format[i + 1] == '{') {
      out += '{';
      ++i;
    } else if (c == '}' && i + 1 < format.size() && format[i + 1] == '}') {
      out += '}';
      ++i;
    } else if (c == '{') {
      std::size_t close = format.find('}', i);
      if (close == std::string::npos) throw EvalError("Single '{' encountered in format string");
      std::string field = format.substr(i + 1, close - i - 1);
      if (field.find_first_of(":!") != std::string::npos) throw EvalError("format specs are not supported in str.format");
      const Value* v = nullptr;
      if (field.empty()) {
        if (auto_index >= args.positional.size()) throw EvalError("Replacement index " + std::to_string(auto_index) + " out of range for positional args tuple");
        v = &args.positional[auto_index++];
      } else if (std::isdigit(static_cast<unsigned char>(field[0]))) {
        std::size_t k = std::stoul(field);
        if (k >= args.positional.size()) throw EvalError("Replacement index " + field + " out of range for positional args tuple");
        v = &args.positional[k];
      } else {
        v = args.find(field);
        if (!v) throw EvalError("'" + field + "'");
      }
      out += to_str(*v);
      i = close;
    } else if (c == '}') {
      throw EvalError("Single '}' encountered in format string");
    } else {
      out += c;
    }
  }
  return out;
}

using Method = std::function<Value(const Value& self, const CallArgs& args, Evaluator& e)>;

Value call_string_method(const std::string& name, const Value& self, const CallArgs& args, Evaluator& e) {
  const std::string& s = self.as_string();
  auto affix = [&](bool prefix) {
    const Value& a = arg(args, 0, "prefix", name);
    auto test = [&](const std::string& p) {
      return prefix ? s.compare(0, p.size(), p) == 0 && s.size() >= p.size()
                    : s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
    };
    if (a.kind() == Kind::Tuple) {
      for (const Value& p : a.as_list())
        if (test(string_arg(p, name))) return Value(true);
      return Value(false);
    }
    if (!a.is_string())
      throw EvalError(name + " first arg must be str or a tuple of str, not " + type_name(a));
    return Value(test(a.as_string()));
  };
  auto chars = [&]() -> const std::string* {
    const Value* c = optional_arg(args, 0, "chars");
    if (!c || c->is_none()) return nullptr;
    return &string_arg(*c, name);
  };
  if (name == "startswith") return affix(true);
  if (name == "endswith") return affix(false);
  if (name == "strip") return Value(text::strip(s, true, true, chars()));
  if (name == "lstrip") return Value(text::strip(s, true, false, chars()));
  if (name == "rstrip") return Value(text::strip(s, false, true, chars()));
  if (name == "split" || name == "rsplit") {
    const Value* sep = optional_arg(args, 0, "sep");
    const std::string* sep_s = sep && !sep->is_none() ? &string_arg(*sep, name) : nullptr;
    if (sep_s && sep_s->empty()) throw EvalError("empty separator");
    std::int64_t max = int_arg(optional_arg(args, 1, "maxsplit"), -1);
    return string_list(name == "split" ? text::split(s, sep_s, max) : text::rsplit(s, sep_s, max));
  }
  if (name == "splitlines") {
    const Value* keep = optional_arg(args, 0, "keepends");
    return string_list(text::splitlines(s, keep && truthy(*keep)));
  }
  if (name == "replace") {
    std::string out = text::replace(s, string_arg(arg(args, 0, "old", name), name),
                                    string_arg(arg(args, 1, "new", name), name),
                                    int_arg(optional_arg(args, 2, "count"), -1));
    e.check_size(out.size());
    return Value(std::move(out));
  }
  if (name == "upper") return Value(text::upper(s));
  if (name == "lower" || name == "casefold") return Value(text::lower(s));
  if (name == "title") return Value(text::title_case(s));
  if (name == "capitalize") return Value(text::capitalize(s));
  if (name == "find" || name == "rfind" || name == "index" || name == "rindex" || name == "count") {
    const std::string& sub = string_arg(arg(args, 0, "sub", name), name);
    if (name == "count") {
      if (sub.empty()) return Value(static_cast<std::int64_t>(text::length(s) + 1));
      std::int64_t n = 0;
      for (std::size_t p = s.find(sub); p != std::string::npos; p = s.find(sub, p + sub.size())) ++n;
      return Value(n);
    }
    std::size_t p = name[0] == 'r' ? s.rfind(sub) : s.find(sub);
    if (p == std::string::npos) {
      if (name == "index" || name == "rindex") throw EvalError("substring not found");
      return Value(static_cast<std::int64_t>(-1));
    }
    return Value(static_cast<std::int64_t>(text::length(std::string_view(s).substr(0, p))));
  }
  if (name == "join") {
    std::string out;
    List items = iterate(arg(args, 0, "iterable", name));
    for (std::size_t i = 0; i < items.size(); ++i) {
      if (!items[i].is_string())
        throw EvalError("sequence item " + std::to_string(i) + ": expected str instance, " + type_name(items[i]) + " found");
      if (i) out += s;
      out += items[i].as_string();
      e.check_size(out.size());
    }
    return Value(std::move(out));
  }
  if (name == "isdigit" || name == "isnumeric" || name == "isdecimal")
    return all_chars(s, [](char32_t c) { return c >= '0' && c <= '9'; });
  if (name == "isalpha") return all_chars(s, [](char32_t c) { return c >= 0x80 || std::isalpha(static_cast<int>(c)); });
  if (name == "isalnum") return all_chars(s, [](char32_t c) { return c >= 0x80 || std::isalnum(static_cast<int>(c)); });
  if (name == "isspace") return all_chars(s, [](char32_t c) { return text::is_space(c); });
  if (name == "islower") return Value(text::lower(s) == s && text::upper(s) != s);
  if (name == "isupper") return Value(text::upper(s) == s && text::lower(s) != s);
  if (name == "center") return pad(s, args, name, 0);
  if (name == "ljust") return pad(s, args, name, -1);
  if (name == "rjust") return pad(s, args, name, 1);
  if (name == "zfill") {
    std::int64_t width = int_arg(&arg(args, 0, "width", name), 0);
    auto len = static_cast<std::int64_t>(text::length(s));
    if (width <= len) return Value(s);
    if (width > (1 << 24)) throw EvalError("zfill() width too large");
    std::size_t sign = !s.empty() && (s[0] == '-' || s[0] == '+') ? 1 : 0;
    return Value(s.substr(0, sign) + std::string(static_cast<std::size_t>(width - len), '0') + s.substr(sign));
  }
  if (name == "removeprefix" || name == "removesuffix") {
    const std::string& a = string_arg(arg(args, 0, name == "removeprefix" ? "prefix" : "suffix", name), name);
    if (name == "removeprefix") return Value(s.compare(0, a.size(), a) == 0 ? s.substr(a.size()) : s);
    bool ends = s.size() >= a.size() && s.compare(s.size() - a.size(), a.size(), a) == 0;
    return Value(ends ? s.substr(0, s.size() - a.size()) : s);
  }
  if (name == "partition" || name == "rpartition") {
    const std::string& sep = string_arg(arg(args, 0, "sep", name), name);
    if (sep.empty()) throw EvalError("empty separator");
    std::size_t p = name == "partition" ? s.find(sep) : s.rfind(sep);
    if (p == std::string::npos)
      return name == "partition" ? Value::tuple({Value(s), Value(""), Value("")}) : Value::tuple({Value(""), Value(""), Value(s)});
    return Value::tuple({Value(s.substr(0, p)), Value(sep), Value(s.substr(p + sep.size()))});
  }
  if (name == "format") {
    std::string out = format_fields(s, args);
    e.check_size(out.size());
    return Value(std::move(out));
  }
  throw EvalError("unknown str method " + name);
}

Value call_dict_method(const std::string& name, const Value& self, const CallArgs& args) {
  const Dict& d = self.as_dict();
  if (name == "items") {
    List out;
    for (const auto& [key, value] : d.entries()) out.push_back(Value::tuple({key, value}));
    return Value::list(std::move(out));
  }
  if (name == "keys") return Value::list(iterate(self));
  if (name == "values") {
    List out;
    for (const auto& [key, value] : d.entries()) out.push_back(value);
    return Value::list(std::move(out));
  }
  if (name == "get") {
    const Value& key = arg(args, 0, "key", name);
    if (const Value* v = d.find(key)) return *v;
    const Value* fallback = optional_arg(args, 1, "default");
    return fallback ? *fallback : Value::none();
  }
  if (name == "copy") return self;
  throw EvalError("unknown dict method " + name);
}

Value call_list_method(const std::string& name, const Value& self, const CallArgs& args) {
  const List& items = self.as_list();
  const Value& x = arg(args, 0, "value", name);
  if (name == "count") {
    std::int64_t n = 0;
    for (const Value& v : items) n += equals(v, x);
    return Value(n);
  }
  if (name == "index") {
    for (std::size_t i = 0; i < items.size(); ++i)
      if (equals(items[i], x)) return Value(static_cast<std::int64_t>(i));
    throw EvalError(repr(x) + " is not in list");
  }
  throw EvalError("unknown list method " + name);
}

class BoundMethod : public Callable {
 public:
  BoundMethod(Value self, std::string name) : self_(std::move(self)), name_(std::move(name)) {}
  Value call(Evaluator& e, const CallArgs& args) const override {
    switch (self_.kind()) {
      case Kind::String: return call_string_method(name_, self_, args, e);
      case Kind::Dict: return call_dict_method(name_, self_, args);
      default: return call_list_method(name_, self_, args);
    }
  }
  std::string repr() const override {
    return "<built-in method " + name_ + " of " + chat::type_name(self_) + " object>";
  }

 private:
  Value self_;
  std::string name_;
};

bool one_of(const std::string& name, std::initializer_list<std::string_view> names) {
  for (std::string_view n : names)
    if (name == n) return true;
  return false;
}

// A global function of the template.
class Builtin : public Callable {
 public:
  using Fn = Value (*)(Evaluator&, const CallArgs&);
  Builtin(std::string name, Fn fn) : name_(std::move(name)), fn_(fn) {}
  Value call(Evaluator& e, const CallArgs& args) const override { return fn_(e, args); }
  std::string type_name() const override { return "function"; }
  std::string repr() const override { return "<function " + name_ + ">"; }

 private:
  std::string name_;
  Fn fn_;
};

// Longest range() a template may build: a list, unlike Python's lazy range.
constexpr std::int64_t kMaxRangeLength = 1 << 20;

Value global_range(Evaluator& e, const CallArgs& args) {
  std::int64_t start = 0, stop, step = 1;
  const List& p = args.positional;
  if (p.empty() || p.size() > 3) throw EvalError("range expected 1 to 3 arguments, got " + std::to_string(p.size()));
  if (p.size() == 1) {
    stop = int_arg(&p[0], 0);
  } else {
    start = int_arg(&p[0], 0);
    stop = int_arg(&p[1], 0);
    if (p.size() == 3) step = int_arg(&p[2], 1);
  }
  if (step == 0) throw EvalError("range() arg 3 must not be zero");
  __int128 count = step > 0 ? (static_cast<__int128>(stop) - start + step - 1) / step
                            : (static_cast<__int128>(start) - stop - step - 1) / -step;
  if (count > kMaxRangeLength)
    throw EvalError("range too big, MAX_RANGE is " + std::to_string(kMaxRangeLength));
  List out;
  for (__int128 i = 0; i < count; ++i) out.push_back(Value(static_cast<std::int64_t>(start + i * step)));
  e.count_steps(out.size());
  return Value::list(std::move(out));
}

Value global_namespace(Evaluator& e, const CallArgs& args) {
  auto ns = std::make_shared<Namespace>();
  for (const Value& a : args.positional) {
    if (a.kind() != Kind::Dict) throw EvalError("namespace() positional argument must be a mapping");
    for (const auto& [key, value] : a.as_dict().entries()) ns->attributes.set(key, value);
  }
  for (const auto& [key, value] : args.keyword) ns->attributes.set(Value(key), value);
  e.track_namespace(ns);
  return Value::namespace_object(std::move(ns));
}

Value global_dict(Evaluator&, const CallArgs& args) {
  Dict d;
  for (const Value& a : args.positional) {
    if (a.kind() != Kind::Dict) throw EvalError("dict() positional argument must be a mapping");
    for (const auto& [key, value] : a.as_dict().entries()) d.set(key, value);
  }
  for (const auto& [key, value] : args.keyword) d.set(Value(key), value);
  return Value::dict(std::move(d));
}

Value global_raise_exception(Evaluator&, const CallArgs& args) {
  throw EvalError(args.positional.empty() ? std::string() : to_str(args.positional[0]));
}

Value global_strftime_now(Evaluator& e, const CallArgs& args) {
  const std::string& format = string_arg(arg(args, 0, "format", "strftime_now"), "strftime_now");
  if (format.empty()) return Value("");
  std::tm tm = e.now();
  std::vector<char> buf(format.size() * 16 + 64);
  std::size_t n = std::strftime(buf.data(), buf.size(), format.c_str(), &tm);
  return Value(std::string(buf.data(), n));
}

class Joiner : public Callable {
 public:
  explicit Joiner(std::string separator) : separator_(std::move(separator)) {}
  Value call(Evaluator&, const CallArgs&) const override {
    if (!used_) {
      used_ = true;
      return Value("");
    }
    return Value(separator_);
  }
  std::string repr() const override { return "<jinja2.utils.Joiner object>"; }

 private:
  std::string separator_;
  mutable bool used_ = false;  // a joiner's state changes as it is called
};

Value global_joiner(Evaluator&, const CallArgs& args) {
  const Value* sep = optional_arg(args, 0, "sep");
  return Value::callable(std::make_shared<Joiner>(sep ? to_str(*sep) : ", "));
}

}  // namespace

Value bound_method(const Value& object, const std::string& name) {
  bool safe = false, unsafe = false;
  switch (object.kind()) {
    case Kind::String:
      safe = one_of(name, {"startswith", "endswith", "strip", "lstrip", "rstrip", "split", "rsplit", "splitlines",
                           "replace", "upper", "lower", "casefold", "title", "capitalize", "find", "rfind", "index",
                           "rindex", "count", "join", "isdigit", "isnumeric", "isdecimal", "isalpha", "isalnum",
                           "isspace", "islower", "isupper", "center", "ljust", "rjust", "zfill", "removeprefix",
                           "removesuffix", "partition", "rpartition", "format"});
      break;
    case Kind::Dict:
      safe = one_of(name, {"items", "keys", "values", "get", "copy"});
      unsafe = one_of(name, {"pop", "popitem", "setdefault", "update", "clear"});
      break;
    case Kind::List:
    case Kind::Tuple:
      safe = one_of(name, {"count", "index"});
      unsafe = object.kind() == Kind::List &&
               one_of(name, {"append", "extend", "insert", "pop", "remove", "reverse", "sort", "clear"});
      break;
    default: break;
  }
  if (safe) return Value::callable(std::make_shared<BoundMethod>(object, name));
  if (unsafe)
    return Value::undefined("access to attribute '" + name + "' of '" + type_name(object) + "' object is unsafe.");
  return Value();
}

void add_globals(Scope& scope) {
  scope.variables["range"] = Value::callable(std::make_shared<Builtin>("range", global_range));
  scope.variables["namespace"] = Value::callable(std::make_shared<Builtin>("namespace", global_namespace));
  scope.variables["dict"] = Value::callable(std::make_shared<Builtin>("dict", global_dict));
  scope.variables["raise_exception"] =
      Value::callable(std::make_shared<Builtin>("raise_exception", global_raise_exception));
  scope.variables["strftime_now"] = Value::callable(std::make_shared<Builtin>("strftime_now", global_strftime_now));
  scope.variables["joiner"] = Value::callable(std::make_shared<Builtin>("joiner", global_joiner));
}

}  // namespace bifurcate::chat
