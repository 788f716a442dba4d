#include "gguf/gguf_value.h"

#include <array>
#include <cstdio>
#include <limits>

#include "util/error.h"

namespace bifurcate::gguf {
namespace {

constexpr std::array<std::string_view, kValueTypeCount> kValueTypeNames = {
    "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64"};

bool is_unsigned_int(ValueType t) {
  return t == ValueType::U8 || t == ValueType::U16 || t == ValueType::U32 || t == ValueType::U64;
}
bool is_signed_int(ValueType t) {
  return t == ValueType::I8 || t == ValueType::I16 || t == ValueType::I32 || t == ValueType::I64;
}

// Quotes a string, escaping what would garble a terminal line.
std::string quoted(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += char(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += char(c);
    }
  }
  return out + "\"";
}

std::string format_float(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

}  // namespace

std::string_view value_type_name(ValueType type) {
  uint32_t raw = uint32_t(type);
  return raw < kValueTypeCount ? kValueTypeNames[raw] : std::string_view("invalid");
}

bool is_valid_value_type(uint32_t raw) { return raw < kValueTypeCount; }

Value Value::array(ValueType element_type, std::vector<Value> elements) {
  for (std::size_t i = 0; i < elements.size(); ++i) {
    require(elements[i].type() == element_type, "array of ", value_type_name(element_type), ": element ", i,
            " has type ", value_type_name(elements[i].type()));
  }
  return Value(ValueType::Array, Array{element_type, std::move(elements)});
}

void Value::throw_type_mismatch(std::string_view expected) const {
  throw Error(str("value has type ", value_type_name(type_), ", expected ", expected));
}

ValueType Value::array_type() const {
  if (type_ != ValueType::Array) throw_type_mismatch("array");
  return std::get<Array>(storage_).element_type;
}

uint64_t Value::as_uint() const {
  if (is_unsigned_int(type_)) return std::get<uint64_t>(storage_);
  if (type_ == ValueType::Bool) return std::get<bool>(storage_) ? 1 : 0;
  if (is_signed_int(type_)) {
    int64_t v = std::get<int64_t>(storage_);
    if (v < 0) throw Error(str("value ", v, " of type ", value_type_name(type_), " is negative, expected unsigned integer"));
    return uint64_t(v);
  }
  throw_type_mismatch("unsigned integer");
}

int64_t Value::as_int() const {
  if (is_signed_int(type_)) return std::get<int64_t>(storage_);
  if (type_ == ValueType::Bool) return std::get<bool>(storage_) ? 1 : 0;
  if (is_unsigned_int(type_)) {
    uint64_t v = std::get<uint64_t>(storage_);
    if (v > uint64_t(std::numeric_limits<int64_t>::max())) {
      throw Error(str("value ", v, " of type ", value_type_name(type_), " does not fit in int64"));
    }
    return int64_t(v);
  }
  throw_type_mismatch("integer");
}

double Value::as_float() const {
  if (type_ == ValueType::F32 || type_ == ValueType::F64) return std::get<double>(storage_);
  if (is_unsigned_int(type_)) return double(std::get<uint64_t>(storage_));
  if (is_signed_int(type_)) return double(std::get<int64_t>(storage_));
  throw_type_mismatch("number");
}

bool Value::as_bool() const {
  if (type_ != ValueType::Bool) throw_type_mismatch("bool");
  return std::get<bool>(storage_);
}

const std::string& Value::as_string() const {
  if (type_ != ValueType::String) throw_type_mismatch("string");
  return std::get<std::string>(storage_);
}

const std::vector<Value>& Value::as_array() const {
  if (type_ != ValueType::Array) throw_type_mismatch("array");
  return std::get<Array>(storage_).elements;
}

std::string Value::to_display_string(std::size_t max_array_items) const {
  switch (type_) {
    case ValueType::Bool: return std::get<bool>(storage_) ? "true" : "false";
    case ValueType::String: return quoted(std::get<std::string>(storage_));
    case ValueType::F32:
    case ValueType::F64: return format_float(std::get<double>(storage_));
    case ValueType::Array: {
      const Array& a = std::get<Array>(storage_);
      std::string out = "[";
      std::size_t shown = std::min(max_array_items, a.elements.size());
      for (std::size_t i = 0; i < shown; ++i) {
        if (i > 0) out += ", ";
        out += a.elements[i].to_display_string(max_array_items);
      }
      if (shown < a.elements.size()) {
        out += str(shown > 0 ? ", " : "", "... (", a.elements.size(), " ", value_type_name(a.element_type), " items)");
      }
      return out + "]";
    }
    default:
      if (is_unsigned_int(type_)) return std::to_string(std::get<uint64_t>(storage_));
      return std::to_string(std::get<int64_t>(storage_));
  }
}

bool operator==(const Value& a, const Value& b) { return a.type_ == b.type_ && a.storage_ == b.storage_; }

}  // namespace bifurcate::gguf
