// The tensor element types a GGUF file can declare, with their block sizes.
// Values are ggml's type ids as written in the file. A quantised type stores
// `block_size` elements in `type_size` bytes; plain types have block_size 1.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace bifurcate::gguf {

enum class GgmlType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  BF16 = 30,
};

struct GgmlTypeTraits {
  GgmlType type;
  std::string_view name;
  uint32_t block_size;  // elements per block
  uint32_t type_size;   // bytes per block
};

// Traits of `raw`, or nothing if the id is not a type this project knows.
std::optional<GgmlTypeTraits> ggml_type_traits(uint32_t raw);
const GgmlTypeTraits& ggml_type_traits(GgmlType type);

// Bytes of a row of `n` elements; n must be a multiple of the block size.
inline uint64_t ggml_row_bytes(const GgmlTypeTraits& t, uint64_t n) { return n / t.block_size * t.type_size; }

}  // namespace bifurcate::gguf
