// One GGUF metadata value: a scalar, a string, or an array of values of one
// element type (arrays may nest). Values read from a file and values handed
// to GgufWriter are the same type, so a file round-trips exactly.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace bifurcate::gguf {

// Ids as written in the file.
enum class ValueType : uint32_t { U8 = 0, I8, U16, I16, U32, I32, F32, Bool, String, Array, U64, I64, F64 };

inline constexpr uint32_t kValueTypeCount = 13;

// "u8", "i32", "string", "array", ...; "invalid(<id>)" is never returned:
// callers only hold valid ValueTypes (the reader checks raw ids first).
std::string_view value_type_name(ValueType type);
bool is_valid_value_type(uint32_t raw);

class Value {
 public:
  static Value u8(uint8_t v) { return Value(ValueType::U8, uint64_t(v)); }
  static Value i8(int8_t v) { return Value(ValueType::I8, uint64_t(int64_t(v))); }
  static Value u16(uint16_t v) { return Value(ValueType::U16, uint64_t(v)); }
  static Value i16(int16_t v) { return Value(ValueType::I16, uint64_t(int64_t(v))); }
  static Value u32(uint32_t v) { return Value(ValueType::U32, uint64_t(v)); }
  static Value i32(int32_t v) { return Value(ValueType::I32, uint64_t(int64_t(v))); }
  static Value u64(uint64_t v) { return Value(ValueType::U64, v); }
  static Value i64(int64_t v) { return Value(ValueType::I64, uint64_t(v)); }
  static Value f32(float v) { return Value(ValueType::F32, std::bit_cast<uint64_t>(double(v))); }
  static Value f64(double v) { return Value(ValueType::F64, std::bit_cast<uint64_t>(v)); }
  static Value boolean(bool v) { return Value(ValueType::Bool, v ? 1 : 0); }
  static Value string(std::string v);
  // Throws Error if an element's type is not `element_type`.
  static Value array(ValueType element_type, std::vector<Value> elements);

  ValueType type() const { return type_; }
  ValueType array_type() const;  // element type; throws unless type() == Array

  // Checked accessors: throw Error("value has type X, expected Y").
  uint64_t as_uint() const;  // unsigned ints, bool, and signed ints that are >= 0
  int64_t as_int() const;    // any integer type (and bool) whose value fits in int64
  double as_float() const;   // f32, f64 or any integer type
  bool as_bool() const;
  const std::string& as_string() const;
  const std::vector<Value>& as_array() const;

  // Short human-readable form: 7, -1.5, true, "text", [1, 2, ... (1000 items)].
  std::string to_display_string(std::size_t max_array_items = 8) const;

  // Same type and same bits (so NaN == NaN, -0.0 != 0.0): "round-trips exactly".
  friend bool operator==(const Value& a, const Value& b) = default;

 private:
  Value(ValueType type, uint64_t scalar) : type_(type), scalar_(scalar) {}
  [[noreturn]] void throw_type_mismatch(std::string_view expected) const;

  // A plain struct rather than std::variant: g++ 12 reports false
  // maybe-uninitialized warnings for variant<string, ...> temporaries at -O2.
  ValueType type_;
  ValueType element_type_ = ValueType::U8;  // arrays only
  // Scalars by bit pattern: unsigned as is, signed as two's complement
  // (sign-extended to 64 bits), f32/f64 as the bits of the exact double, bool 0/1.
  uint64_t scalar_ = 0;
  std::string string_;
  std::vector<Value> array_;
};

}  // namespace bifurcate::gguf
