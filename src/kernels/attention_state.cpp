#include "kernels/attention_state.h"

#include <algorithm>
#include <cassert>
#include <cmath>

#include "util/error.h"

namespace bifurcate::kernels {

void merge_attention_states(float* o_a, float* lse_a, const float* o_b, float lse_b, int head_size) {
  if (lse_b == kEmptyLse) return;  // B empty (or both): A is the answer
  if (*lse_a == kEmptyLse) {       // A empty: take B without touching A's o, which may be stale
    std::copy(o_b, o_b + head_size, o_a);
    *lse_a = lse_b;
    return;
  }
  float m = std::max(*lse_a, lse_b);
  float w_a = std::exp(*lse_a - m), w_b = std::exp(lse_b - m);
  float sum = w_a + w_b;
  float inv = 1.0f / sum;
  w_a *= inv;
  w_b *= inv;
  for (int d = 0; d < head_size; ++d) o_a[d] = w_a * o_a[d] + w_b * o_b[d];
  *lse_a = m + std::log(sum);
}

void merge_attention_states(std::span<const float* const> o_rows, std::span<const float> lses,
                            int head_size, float* o_out, float* lse_out) {
  assert(o_rows.size() == lses.size());
  std::fill(o_out, o_out + head_size, 0.0f);
  float m = kEmptyLse;
  for (float lse : lses) m = std::max(m, lse);
  if (m == kEmptyLse) {
    *lse_out = kEmptyLse;
    return;
  }
  float sum = 0.0f;
  for (float lse : lses) sum += std::exp(lse - m);
  float inv = 1.0f / sum;
  for (std::size_t i = 0; i < o_rows.size(); ++i) {
    if (lses[i] == kEmptyLse) continue;  // o of an empty state may be anything; skip it
    float w = std::exp(lses[i] - m) * inv;
    const float* o = o_rows[i];
    for (int d = 0; d < head_size; ++d) o_out[d] += w * o[d];
  }
  *lse_out = m + std::log(sum);
}

void AttentionState::merge(const AttentionState& other) {
  require(o.size() == other.o.size(), "merge of attention states with different head sizes: ",
          o.size(), " vs ", other.o.size());
  merge_attention_states(o.data(), &lse, other.o.data(), other.lse, int(o.size()));
}

}  // namespace bifurcate::kernels
