// Rotary position embedding for one token's heads.
#pragma once

namespace bifurcate::kernels {

enum class RopeStyle {
  interleaved,  // llama: rotates pairs (2i, 2i+1)
  neox,         // qwen2 / gpt-neox: rotates pairs (i, i + head_size/2)
};

// x: [n_heads, head_size] for one token at `position`. Pair i turns by
// position * theta_base^(-2i/head_size); all head_size dims are rotated.
// Angles are computed in double so large positions stay exact to ~1e-7.
void rope(float* x, int n_heads, int head_size, int position, float theta_base, RopeStyle style);

}  // namespace bifurcate::kernels
