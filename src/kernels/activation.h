// Elementwise activations and vector helpers used by the model's forward.
#pragma once

#include <cstdint>

namespace bifurcate::kernels {

// out[i] = silu(gate[i]) * up[i], silu(g) = g / (1 + e^-g). out may alias either input.
void swiglu(const float* gate, const float* up, int64_t n, float* out);

// Numerically stable softmax of x[0..n) in place (subtracts the max first).
void softmax(float* x, int64_t n);

// x[i] += y[i].
void add(float* x, const float* y, int64_t n);

}  // namespace bifurcate::kernels
