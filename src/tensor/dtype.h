// Row conversion between f32 and the weight element types a model file may
// use: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K
// (layouts in quant_blocks.h).
// A "row" here is any run of n elements; n must be a multiple of the type's
// block size (gguf::ggml_type_traits). Errors name the type and n.
#pragma once

#include <cstdint>

#include "gguf/ggml_types.h"

namespace bifurcate::tensor {

// True for the types dequantize_row / quantize_row / matmul accept.
bool is_supported_weight_type(gguf::GgmlType type);

// dst[0..n) = the values encoded at src.
void dequantize_row(gguf::GgmlType type, const void* src, float* dst, int64_t n);

// Encodes src[0..n) at dst (row_bytes(type, n) bytes). F32/F16/BF16 round to
// nearest even; Q8_0, Q4_0, Q4_1, Q5_0 and Q5_1 follow ggml's reference
// quantisers (amax or min/max rules); Q4_K, Q5_K and Q6_K choose their
// sub-block scales (and mins) by the least-squares search of ggml's
// make_qkx2_quants / make_qx_quants (own code of the same algorithm).
void quantize_row(gguf::GgmlType type, const float* src, void* dst, int64_t n);

// Bytes of n elements of `type`; throws unless n is a multiple of the block size.
int64_t row_bytes(gguf::GgmlType type, int64_t n);

}  // namespace bifurcate::tensor
