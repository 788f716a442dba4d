// The running softmax state of one query row over some set of keys, and its
// exact merge (FlashInfer's {o, m, l}, folded into {o, lse}).
//
//   lse = log(sum_j exp(s_j))            natural log; s_j = scale * q.k_j
//   o   = sum_j exp(s_j - lse) * v_j     already normalised
//
// Two disjoint key sets A and B merge exactly:
//   lse = log(exp(lse_A) + exp(lse_B)),  o = exp(lse_A - lse) o_A + exp(lse_B - lse) o_B
// computed relative to max(lse_A, lse_B) so huge scores never overflow.
// The empty state (no keys) is lse = -inf, o = 0; it is the identity of merge,
// and merging only empty states gives the empty state (never NaN).
#pragma once

#include <cstddef>
#include <limits>
#include <span>
#include <vector>

namespace bifurcate::kernels {

inline constexpr float kEmptyLse = -std::numeric_limits<float>::infinity();

// Merges state B into state A in place: (o_a, *lse_a) <- merge(A, B). o rows have head_size floats.
void merge_attention_states(float* o_a, float* lse_a, const float* o_b, float lse_b, int head_size);

// Merges N states into (o_out, *lse_out). o_rows[i] has head_size floats; o_out may not alias
// them. The result depends only on the order of the inputs, which callers keep fixed.
void merge_attention_states(std::span<const float* const> o_rows, std::span<const float> lses,
                            int head_size, float* o_out, float* lse_out);

// A value-type state for callers that hold one row at a time (tests, tools).
struct AttentionState {
  std::vector<float> o;  // (head_size), normalised output
  float lse = kEmptyLse;

  static AttentionState empty(int head_size) {
    return AttentionState{std::vector<float>(std::size_t(head_size), 0.0f), kEmptyLse};
  }
  bool is_empty() const { return lse == kEmptyLse; }
  // Folds `other` (same head_size) into this state.
  void merge(const AttentionState& other);
};

}  // namespace bifurcate::kernels
