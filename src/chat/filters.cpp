// jinja2's filters and tests, as its filters.py / tests.py define them,
// with tojson as transformers overrides it (json.dumps, ensure_ascii off).
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string_view>
#include <unordered_map>

#include "chat/evaluator.h"
#include "chat/text.h"

namespace bifurcate::chat {
namespace {

using FilterFn = Value (*)(Evaluator&, const Value&, const CallArgs&);

// Argument i (positional) or by keyword, else null.
const Value* param(const CallArgs& args, std::size_t i, std::string_view name) {
  if (i < args.positional.size()) return &args.positional[i];
  return args.find(name);
}

std::int64_t int_param(const CallArgs& args, std::size_t i, std::string_view name, std::int64_t fallback) {
  const Value* v = param(args, i, name);
  if (!v) return fallback;
  if (v->kind() == Kind::Float) return static_cast<std::int64_t>(v->as_float());
  if (v->kind() != Kind::Int && v->kind() != Kind::Bool)
    throw EvalError("'" + type_name(*v) + "' object cannot be interpreted as an integer");
  return v->as_int();
}

bool bool_param(const CallArgs& args, std::size_t i, std::string_view name, bool fallback) {
  const Value* v = param(args, i, name);
  return v ? truthy(*v) : fallback;
}

std::string str_param(const CallArgs& args, std::size_t i, std::string_view name, std::string fallback) {
  const Value* v = param(args, i, name);
  return v ? to_str(*v) : fallback;
}

// jinja2's environment.getitem for `attribute=` arguments: "a.b" and "0".
Value item_attribute(const Value& item, const std::string& attribute) {
  Value v = item;
  std::size_t start = 0;
  while (true) {
    std::size_t dot = attribute.find('.', start);
    std::string part = attribute.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    bool digits = !part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
    if (v.is_undefined()) return v;
    v = digits ? get_item(v, Value(static_cast<std::int64_t>(std::strtoll(part.c_str(), nullptr, 10))))
               : get_item(v, Value(part));
    if (dot == std::string::npos) return v;
    start = dot + 1;
  }
}

std::size_t length_of(const Value& v) {
  switch (v.kind()) {
    case Kind::String: return text::length(v.as_string());
    case Kind::List:
    case Kind::Tuple: return v.as_list().size();
    case Kind::Dict: return v.as_dict().size();
    case Kind::Undefined: return 0;
    default: throw EvalError("object of type '" + type_name(v) + "' has no len()");
  }
}

// Sort key with jinja2's default case-insensitive string comparison.
Value sort_key(const Value& v, bool case_sensitive) {
  if (!case_sensitive && v.is_string()) return Value(text::lower(v.as_string()));
  return v;
}

Value f_length(Evaluator&, const Value& v, const CallArgs&) { return Value(static_cast<std::int64_t>(length_of(v))); }

Value f_default(Evaluator&, const Value& v, const CallArgs& args) {
  const Value* fallback = param(args, 0, "default_value");
  if (v.is_undefined() || (bool_param(args, 1, "boolean", false) && !truthy(v))) return fallback ? *fallback : Value("");
  return v;
}

Value f_tojson(Evaluator& e, const Value& v, const CallArgs& args) {
  // transformers' tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)
  bool ensure_ascii = bool_param(args, 0, "ensure_ascii", false);
  const Value* indent_v = param(args, 1, "indent");
  int indent = -1;
  if (indent_v && !indent_v->is_none()) {
    if (indent_v->kind() != Kind::Int) throw EvalError("tojson: indent must be an integer");
    indent = static_cast<int>(std::clamp<std::int64_t>(indent_v->as_int(), 0, 64));
  }
  const Value* separators = param(args, 2, "separators");
  bool sort_keys = bool_param(args, 3, "sort_keys", false);
  std::string out = to_json(v, indent, sort_keys);
  if (separators && !separators->is_none()) {
    // Re-render with custom separators: rare, so done by a second encoder pass.
    if (!separators->is_sequence() || separators->as_list().size() != 2 || !separators->as_list()[0].is_string() ||
        !separators->as_list()[1].is_string())
      throw EvalError("tojson: separators must be a (item, key) pair of strings");
    throw EvalError("tojson: custom separators are not supported");
  }
  if (ensure_ascii) {
    std::string escaped;
    for (char32_t c : text::decode(out)) {
      if (c < 0x80) {
        escaped += static_cast<char>(c);
        continue;
      }
      auto unit = [&](unsigned u) {
        char buf[16];
        std::snprintf(buf, sizeof buf, "\\u%04x", u);
        escaped += buf;
      };
      if (c >= 0x10000) {
        unit(0xD800 + ((c - 0x10000) >> 10));
        unit(0xDC00 + ((c - 0x10000) & 0x3ff));
      } else {
        unit(static_cast<unsigned>(c));
      }
    }
    out = std::move(escaped);
  }
  e.check_size(out.size());
  return Value(std::move(out));
}

Value f_trim(Evaluator&, const Value& v, const CallArgs& args) {
  const Value* chars = param(args, 0, "chars");
  std::string set = chars && !chars->is_none() ? to_str(*chars) : std::string();
  return Value(text::strip(to_str(v), true, true, chars && !chars->is_none() ? &set : nullptr));
}

Value f_upper(Evaluator&, const Value& v, const CallArgs&) { return Value(text::upper(to_str(v))); }
Value f_lower(Evaluator&, const Value& v, const CallArgs&) { return Value(text::lower(to_str(v))); }
Value f_capitalize(Evaluator&, const Value& v, const CallArgs&) { return Value(text::capitalize(to_str(v))); }

// jinja2's title: upper-case the first character of each word, where words
// start after runs of -, whitespace, (, {, [ or <; lower-case the rest.
Value f_title(Evaluator&, const Value& v, const CallArgs&) {
  std::u32string cps = text::decode(to_str(v));
  auto separator = [](char32_t c) { return c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || text::is_space(c); };
  std::string out;
  bool word_start = true;
  for (char32_t c : cps) {
    std::string one = text::encode(std::u32string(1, c));
    if (separator(c)) {
      out += one;
      word_start = true;
    } else {
      out += word_start ? text::upper(one) : text::lower(one);
      word_start = false;
    }
  }
  return Value(std::move(out));
}

Value f_string(Evaluator&, const Value& v, const CallArgs&) { return Value(to_str(v)); }
Value f_safe(Evaluator&, const Value& v, const CallArgs&) { return Value(to_str(v)); }

Value f_escape(Evaluator&, const Value& v, const CallArgs&) {
  std::string out;
  for (char c : to_str(v)) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return Value(std::move(out));
}

Value f_join(Evaluator& e, const Value& v, const CallArgs& args) {
  std::string separator = str_param(args, 0, "d", "");
  const Value* attribute = param(args, 1, "attribute");
  std::string out;
  List items = iterate(v);
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i) out += separator;
    out += to_str(attribute ? item_attribute(items[i], to_str(*attribute)) : items[i]);
    e.check_size(out.size());
  }
  return Value(std::move(out));
}

Value f_first(Evaluator&, const Value& v, const CallArgs&) {
  List items = iterate(v);
  return items.empty() ? Value::undefined("No first item, sequence was empty.") : items.front();
}

Value f_last(Evaluator&, const Value& v, const CallArgs&) {
  List items = iterate(v);
  return items.empty() ? Value::undefined("No last item, sequence was empty.") : items.back();
}

Value f_list(Evaluator&, const Value& v, const CallArgs&) { return Value::list(iterate(v)); }

Value f_items(Evaluator&, const Value& v, const CallArgs&) {
  if (v.is_undefined()) return Value::list({});
  if (v.kind() != Kind::Dict) throw EvalError("Can only get item pairs from a mapping.");
  List out;
  for (const auto& [key, value] : v.as_dict().entries()) out.push_back(Value::tuple({key, value}));
  return Value::list(std::move(out));
}

Value f_replace(Evaluator& e, const Value& v, const CallArgs& args) {
  std::string out = text::replace(to_str(v), str_param(args, 0, "old", ""), str_param(args, 1, "new", ""),
                                  param(args, 2, "count") && !param(args, 2, "count")->is_none()
                                      ? int_param(args, 2, "count", -1)
                                      : -1);
  e.check_size(out.size());
  return Value(std::move(out));
}

// Python's int(str): optional sign, digits and underscores, surrounding space.
bool parse_python_int(const std::string& s, int base, std::int64_t& out) {
  std::string t = text::strip(s, true, true, nullptr);
  std::string digits;
  std::size_t i = 0;
  bool negative = false;
  if (i < t.size() && (t[i] == '+' || t[i] == '-')) negative = t[i++] == '-';
  if (base == 16 && t.compare(i, 2, "0x") == 0) i += 2;
  for (; i < t.size(); ++i) {
    if (t[i] == '_') continue;
    digits += t[i];
  }
  if (digits.empty()) return false;
  char* end = nullptr;
  errno = 0;
  long long v = std::strtoll(digits.c_str(), &end, base);
  if (*end != '\0' || errno == ERANGE) return false;
  out = negative ? -v : v;
  return true;
}

bool parse_python_float(const std::string& s, double& out) {
  std::string t = text::strip(s, true, true, nullptr);
  if (t.empty()) return false;
  char* end = nullptr;
  out = std::strtod(t.c_str(), &end);
  return *end == '\0';
}

Value f_int(Evaluator&, const Value& v, const CallArgs& args) {
  Value fallback = param(args, 0, "default") ? *param(args, 0, "default") : Value(static_cast<std::int64_t>(0));
  int base = static_cast<int>(int_param(args, 1, "base", 10));
  switch (v.kind()) {
    case Kind::Int:
    case Kind::Bool: return Value(v.as_int());
    case Kind::Float:
      if (!std::isfinite(v.as_float()) || std::fabs(v.as_float()) > 9.2e18) return fallback;
      return Value(static_cast<std::int64_t>(v.as_float()));
    case Kind::String: {
      std::int64_t i;
      if (base >= 2 && base <= 36 && parse_python_int(v.as_string(), base, i)) return Value(i);
      double f;
      if (parse_python_float(v.as_string(), f) && std::isfinite(f) && std::fabs(f) < 9.2e18)
        return Value(static_cast<std::int64_t>(f));
      return fallback;
    }
    default: return fallback;
  }
}

Value f_float(Evaluator&, const Value& v, const CallArgs& args) {
  Value fallback = param(args, 0, "default") ? *param(args, 0, "default") : Value(0.0);
  if (v.is_number()) return Value(v.as_float());
  double f;
  if (v.is_string() && parse_python_float(v.as_string(), f)) return Value(f);
  return fallback;
}

Value f_abs(Evaluator&, const Value& v, const CallArgs&) {
  if (v.kind() == Kind::Float) return Value(std::fabs(v.as_float()));
  if (v.kind() == Kind::Int || v.kind() == Kind::Bool) return Value(static_cast<std::int64_t>(std::llabs(v.as_int())));
  throw EvalError("bad operand type for abs(): '" + type_name(v) + "'");
}

Value f_round(Evaluator&, const Value& v, const CallArgs& args) {
  if (!v.is_number()) throw EvalError("type " + type_name(v) + " doesn't define __round__ method");
  std::int64_t precision = int_param(args, 0, "precision", 0);
  std::string method = str_param(args, 1, "method", "common");
  double scale = std::pow(10.0, static_cast<double>(precision));
  double x = v.as_float() * scale;
  double r = method == "ceil" ? std::ceil(x) : method == "floor" ? std::floor(x) : std::nearbyint(x);
  if (method != "common" && method != "ceil" && method != "floor") throw EvalError("method must be common, ceil or floor");
  return Value(r / scale);
}

Value f_reverse(Evaluator&, const Value& v, const CallArgs&) {
  if (v.is_string()) {
    std::u32string cps = text::decode(v.as_string());
    std::reverse(cps.begin(), cps.end());
    return Value(text::encode(cps));
  }
  List items = iterate(v);
  std::reverse(items.begin(), items.end());
  return Value::list(std::move(items));
}

Value f_sort(Evaluator&, const Value& v, const CallArgs& args) {
  bool reverse = bool_param(args, 0, "reverse", false);
  bool case_sensitive = bool_param(args, 1, "case_sensitive", false);
  const Value* attribute = param(args, 2, "attribute");
  List items = iterate(v);
  auto key = [&](const Value& item) {
    return sort_key(attribute ? item_attribute(item, to_str(*attribute)) : item, case_sensitive);
  };
  std::stable_sort(items.begin(), items.end(), [&](const Value& a, const Value& b) {
    return reverse ? compare(key(b), key(a), "<") < 0 : compare(key(a), key(b), "<") < 0;
  });
  return Value::list(std::move(items));
}

Value f_dictsort(Evaluator&, const Value& v, const CallArgs& args) {
  if (v.kind() != Kind::Dict) throw EvalError("You can only sort by either \"key\" or \"value\"");
  bool case_sensitive = bool_param(args, 0, "case_sensitive", false);
  std::string by = str_param(args, 1, "by", "key");
  bool reverse = bool_param(args, 2, "reverse", false);
  if (by != "key" && by != "value") throw EvalError("You can only sort by either \"key\" or \"value\"");
  List items;
  for (const auto& [key, value] : v.as_dict().entries()) items.push_back(Value::tuple({key, value}));
  std::size_t pos = by == "key" ? 0 : 1;
  std::stable_sort(items.begin(), items.end(), [&](const Value& a, const Value& b) {
    Value x = sort_key(a.as_list()[pos], case_sensitive), y = sort_key(b.as_list()[pos], case_sensitive);
    return reverse ? compare(y, x, "<") < 0 : compare(x, y, "<") < 0;
  });
  return Value::list(std::move(items));
}

Value f_unique(Evaluator&, const Value& v, const CallArgs& args) {
  bool case_sensitive = bool_param(args, 0, "case_sensitive", false);
  const Value* attribute = param(args, 1, "attribute");
  List out;
  Dict seen;
  for (const Value& item : iterate(v)) {
    Value key = sort_key(attribute ? item_attribute(item, to_str(*attribute)) : item, case_sensitive);
    if (seen.find(key)) continue;
    seen.set(key, Value(true));
    out.push_back(item);
  }
  return Value::list(std::move(out));
}

Value min_max(const Value& v, const CallArgs& args, bool want_max) {
  bool case_sensitive = bool_param(args, 0, "case_sensitive", false);
  const Value* attribute = param(args, 1, "attribute");
  List items = iterate(v);
  if (items.empty()) return Value::undefined(std::string("No aggregated item, sequence was empty."));
  std::size_t best = 0;
  auto key = [&](const Value& item) {
    return sort_key(attribute ? item_attribute(item, to_str(*attribute)) : item, case_sensitive);
  };
  for (std::size_t i = 1; i < items.size(); ++i) {
    int c = compare(key(items[i]), key(items[best]), want_max ? ">" : "<");
    if (want_max ? c > 0 : c < 0) best = i;
  }
  return items[best];
}
Value f_min(Evaluator&, const Value& v, const CallArgs& args) { return min_max(v, args, false); }
Value f_max(Evaluator&, const Value& v, const CallArgs& args) { return min_max(v, args, true); }

Value f_sum(Evaluator& e, const Value& v, const CallArgs& args) {
  const Value* attribute = param(args, 0, "attribute");
  Value total = param(args, 1, "start") ? *param(args, 1, "start") : Value(static_cast<std::int64_t>(0));
  for (const Value& item : iterate(v))
    total = binary_op("+", total, attribute ? item_attribute(item, to_str(*attribute)) : item, e);
  return total;
}

Value f_indent(Evaluator& e, const Value& v, const CallArgs& args) {
  const Value* width = param(args, 0, "width");
  std::string indention = width && width->is_string() ? width->as_string()
                                                       : std::string(static_cast<std::size_t>(std::clamp<std::int64_t>(int_param(args, 0, "width", 4), 0, 1 << 16)), ' ');
  bool first = bool_param(args, 1, "first", false);
  bool blank = bool_param(args, 2, "blank", false);
  if (v.is_undefined()) throw EvalError(v.undefined_message());
  if (!v.is_string()) throw EvalError("unsupported operand type(s) for +=: '" + type_name(v) + "' and 'str'");
  std::vector<std::string> lines = text::splitlines(v.as_string() + "\n", false);
  std::string out;
  if (blank) {
    for (std::size_t i = 0; i < lines.size(); ++i) out += (i ? "\n" + indention : "") + lines[i];
  } else {
    out = lines.empty() ? "" : lines[0];
    for (std::size_t i = 1; i < lines.size(); ++i) {
      out += "\n";
      if (!lines[i].empty()) out += indention;
      out += lines[i];
      e.check_size(out.size());
    }
  }
  if (first) out = indention + out;
  e.check_size(out.size());
  return Value(std::move(out));
}

Value f_center(Evaluator&, const Value& v, const CallArgs& args) {
  std::string s = to_str(v);
  std::int64_t width = std::min<std::int64_t>(int_param(args, 0, "width", 80), 1 << 24);
  auto len = static_cast<std::int64_t>(text::length(s));
  if (width <= len) return Value(s);
  std::int64_t total = width - len;
  std::int64_t left = total / 2 + (total & width & 1);
  return Value(std::string(static_cast<std::size_t>(left), ' ') + s + std::string(static_cast<std::size_t>(total - left), ' '));
}

Value f_wordcount(Evaluator&, const Value& v, const CallArgs&) {
  std::int64_t n = 0;
  bool in_word = false;
  for (char32_t c : text::decode(to_str(v))) {
    bool word = c == '_' || (c < 0x80 ? std::isalnum(static_cast<int>(c)) != 0 : !text::is_space(c));
    if (word && !in_word) ++n;
    in_word = word;
  }
  return Value(n);
}

Value f_format(Evaluator& e, const Value& v, const CallArgs& args) {
  if (!args.keyword.empty() && !args.positional.empty())
    throw EvalError("can't handle positional and keyword arguments at the same time");
  return binary_op("%", Value(to_str(v)), Value::tuple(args.positional), e);
}

Value f_attr(Evaluator&, const Value& v, const CallArgs& args) { return get_attribute(v, str_param(args, 0, "name", "")); }

Value f_batch(Evaluator&, const Value& v, const CallArgs& args) {
  std::int64_t count = int_param(args, 0, "linecount", 1);
  if (count <= 0) throw EvalError("batch size must be positive");
  const Value* fill = param(args, 1, "fill_with");
  List out, current;
  for (const Value& item : iterate(v)) {
    current.push_back(item);
    if (static_cast<std::int64_t>(current.size()) == count) {
      out.push_back(Value::list(std::move(current)));
      current.clear();
    }
  }
  if (!current.empty()) {
    if (fill && !fill->is_none())
      while (static_cast<std::int64_t>(current.size()) < count) current.push_back(*fill);
    out.push_back(Value::list(std::move(current)));
  }
  return Value::list(std::move(out));
}

Value f_truncate(Evaluator&, const Value& v, const CallArgs& args) {
  std::u32string s = text::decode(to_str(v));
  auto length = static_cast<std::size_t>(std::max<std::int64_t>(int_param(args, 0, "length", 255), 0));
  bool killwords = bool_param(args, 1, "killwords", false);
  std::u32string end = text::decode(str_param(args, 2, "end", "..."));
  std::int64_t leeway = int_param(args, 3, "leeway", 5);
  if (length < end.size()) throw EvalError("expected length >= " + std::to_string(end.size()) + ", got " + std::to_string(length));
  if (s.size() <= length + static_cast<std::size_t>(std::max<std::int64_t>(leeway, 0))) return Value(text::encode(s));
  if (killwords) return Value(text::encode(s.substr(0, length - end.size()) + end));
  std::u32string head = s.substr(0, length - end.size());
  std::size_t space = head.rfind(U' ');
  if (space != std::u32string::npos) head = head.substr(0, space);
  return Value(text::encode(head + end));
}

Value f_striptags(Evaluator&, const Value& v, const CallArgs&) {
  std::string s = to_str(v), out;
  bool in_tag = false;
  for (char c : s) {
    if (c == '<') in_tag = true;
    else if (c == '>' && in_tag) in_tag = false;
    else if (!in_tag) out += c;
  }
  std::vector<std::string> words = text::split(out, nullptr, -1);
  std::string joined;
  for (std::size_t i = 0; i < words.size(); ++i) joined += (i ? " " : "") + words[i];
  return Value(joined);
}

// select / reject / selectattr / rejectattr
Value select_items(Evaluator& e, const Value& v, const CallArgs& args, bool by_attribute, bool keep_when) {
  List out;
  std::size_t first_test_arg = by_attribute ? 1 : 0;
  std::string attribute = by_attribute ? str_param(args, 0, "attr", "") : "";
  const Value* test = first_test_arg < args.positional.size() ? &args.positional[first_test_arg] : nullptr;
  CallArgs test_args;
  for (std::size_t i = first_test_arg + 1; i < args.positional.size(); ++i) test_args.positional.push_back(args.positional[i]);
  test_args.keyword = args.keyword;
  for (const Value& item : iterate(v)) {
    e.count_steps(1);
    Value subject = by_attribute ? item_attribute(item, attribute) : item;
    bool passed = test ? e.call_test(to_str(*test), subject, test_args) : truthy(subject);
    if (passed == keep_when) out.push_back(item);
  }
  return Value::list(std::move(out));
}
Value f_select(Evaluator& e, const Value& v, const CallArgs& a) { return select_items(e, v, a, false, true); }
Value f_reject(Evaluator& e, const Value& v, const CallArgs& a) { return select_items(e, v, a, false, false); }
Value f_selectattr(Evaluator& e, const Value& v, const CallArgs& a) { return select_items(e, v, a, true, true); }
Value f_rejectattr(Evaluator& e, const Value& v, const CallArgs& a) { return select_items(e, v, a, true, false); }

Value f_map(Evaluator& e, const Value& v, const CallArgs& args) {
  List out;
  if (const Value* attribute = args.find("attribute")) {
    const Value* fallback = args.find("default");
    for (const Value& item : iterate(v)) {
      Value x = item_attribute(item, to_str(*attribute));
      out.push_back(x.is_undefined() && fallback ? *fallback : x);
    }
    return Value::list(std::move(out));
  }
  if (args.positional.empty()) throw EvalError("map requires a filter argument");
  std::string filter = to_str(args.positional[0]);
  CallArgs rest;
  rest.positional.assign(args.positional.begin() + 1, args.positional.end());
  rest.keyword = args.keyword;
  for (const Value& item : iterate(v)) {
    e.count_steps(1);
    out.push_back(e.call_filter(filter, item, rest));
  }
  return Value::list(std::move(out));
}

const std::unordered_map<std::string_view, FilterFn>& filters() {
  static const std::unordered_map<std::string_view, FilterFn> table = {
      {"abs", f_abs},         {"attr", f_attr},           {"batch", f_batch},       {"capitalize", f_capitalize},
      {"center", f_center},   {"count", f_length},        {"d", f_default},         {"default", f_default},
      {"dictsort", f_dictsort}, {"e", f_escape},          {"escape", f_escape},     {"first", f_first},
      {"float", f_float},     {"forceescape", f_escape},  {"format", f_format},     {"indent", f_indent},
      {"int", f_int},         {"items", f_items},         {"join", f_join},         {"last", f_last},
      {"length", f_length},   {"list", f_list},           {"lower", f_lower},       {"map", f_map},
      {"max", f_max},         {"min", f_min},             {"reject", f_reject},     {"rejectattr", f_rejectattr},
      {"replace", f_replace}, {"reverse", f_reverse},     {"round", f_round},       {"safe", f_safe},
      {"select", f_select},   {"selectattr", f_selectattr}, {"sort", f_sort},       {"string", f_string},
      {"striptags", f_striptags}, {"sum", f_sum},         {"title", f_title},       {"tojson", f_tojson},
      {"trim", f_trim},       {"truncate", f_truncate},   {"unique", f_unique},     {"upper", f_upper},
      {"wordcount", f_wordcount},
  };
  return table;
}

// ---- tests ----

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
  if (name == "filter") return v.is_string() && filters().count(v.as_string()) != 0;
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

Value Evaluator::call_filter(const std::string& name, const Value& target, const CallArgs& args) {
  auto it = filters().find(name);
  if (it == filters().end()) throw EvalError("No filter named '" + name + "'.");
  return it->second(*this, target, args);
}

bool Evaluator::call_test(const std::string& name, const Value& target, const CallArgs& args) {
  return run_test(*this, name, target, args);
}

}  // namespace bifurcate::chat
