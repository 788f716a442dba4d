#include "gguf/gguf_value.h"

#include <algorithm>
#include <array>
#include <bit>
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

Value Value::string(std::string v) {
  Value out(ValueType::String, 0);
  out.string_ = std::move(v);
  return out;
}

Value Value::array(ValueType element_type, std::vector<Value> elements) {
  for (std::size_t i = 0; i < elements.size(); ++i) {
    require(elements[i].type() == element_type, "array of ", value_type_name(element_type), ": element ", i,
            " has type ", value_type_name(elements[i].type()));
  }
  Value out(ValueType::Array, 0);
  out.element_type_ = element_type;
  out.array_ = std::move(elements);
  return out;
}

void Value::throw_type_mismatch(std::string_view expected) const {
  throw Error(str("value has type ", value_type_name(type_), ", expected ", expected));
}

ValueType Value::array_type() const {
  if (type_ != ValueType::Array) throw_type_mismatch("array");
  return element_type_;
}

uint64_t Value::as_uint() const {
  if (is_unsigned_int(type_)) return scalar_;
  if (type_ == ValueType::Bool) return (scalar_ != 0) ? 1 : 0;
  if (is_signed_int(type_)) {
    int64_t v = int64_t(scalar_);
    if (v < 0) throw Error(str("value ", v, " of type ", value_type_name(type_), " is negative, expected unsigned integer"));
    return uint64_t(v);
  }
  throw_type_mismatch("unsigned integer");
}

int64_t Value::as_int() const {
  if (is_signed_int(type_)) return int64_t(scalar_);
  if (type_ == ValueType::Bool) return (scalar_ != 0) ? 1 : 0;
  if (is_unsigned_int(type_)) {
    uint64_t v = scalar_;
    if (v > uint64_t(std::numeric_limits<int64_t>::max())) {
      throw Error(str("value ", v, " of type ", value_type_name(type_), " does not fit in int64"));
    }
    return int64_t(v);
  }
  throw_type_mismatch("integer");
}

double Value::as_float() const {
  if (type_ == ValueType::F32 || type_ == ValueType::F64) return std::bit_cast<double>(scalar_);
  if (is_unsigned_int(type_)) return double(scalar_);
  if (is_signed_int(type_)) return double(int64_t(scalar_));
  throw_type_mismatch("number");
}

bool Value::as_bool() const {
  if (type_ != ValueType::Bool) throw_type_mismatch("bool");
  return (scalar_ != 0);
}

const std::string& Value::as_string() const {
  if (type_ != ValueType::String) throw_type_mismatch("string");
  return string_;
}

const std::vector<Value>& Value::as_array() const {
  if (type_ != ValueType::Array) throw_type_mismatch("array");
  return array_;
}

std::string Value::to_display_string(std::size_t max_array_items) const {
  switch (type_) {
    case ValueType::Bool: return (scalar_ != 0) ? "true" : "false";
    case ValueType::String: return quoted(string_);
    case ValueType::F32:
    case ValueType::F64: return format_float(std::bit_cast<double>(scalar_));
    case ValueType::Array: {
      std::string out = "[";
      std::size_t shown = std::min(max_array_items, array_.size());
      for (std::size_t i = 0; i < shown; ++i) {
        if (i > 0) out += ", ";
        out += array_[i].to_display_string(max_array_items);
      }
      if (shown < array_.size()) {
        out += str(shown > 0 ? ", " : "", "... (", array_.size(), " ", value_type_name(element_type_), " items)");
      }
      return out + "]";
    }
    default:
      if (is_unsigned_int(type_)) return std::to_string(scalar_);
      return std::to_string(int64_t(scalar_));
  }
}

}  // namespace bifurcate::gguf
