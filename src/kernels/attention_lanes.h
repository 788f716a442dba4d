// The stacked-rows (GEMM) regime of the segment attention kernel, with query
// rows in vector LANES (attention_segment.cpp is the only user).
//
// W stacked rows form one lane group; per group the scratch holds
//   qt[k][W]   scaled queries, transposed once per call (pad lanes 0)
//   st[n][W]   one tile's scores, then probabilities
//   ot[k][W]   unnormalised output, transposed
//   m[W], l[W] running max and sum
// so every step is lane-wise: scores st[t] += K[t][d] (broadcast) * qt[d],
// softmax over t needs no horizontal reduction, and ot[d] += V[t][d]
// (broadcast) * st[t]. K and V are f32 tile rows of stride ld (any head size:
// only d < k is read). L::kBlock keys (scores) or columns (P.V) per register
// block: 12 (256-bit, 16 registers) or 16 (512-bit) independent FMA chains,
// one vector load per block step plus one broadcast per FMA; 512-bit groups
// go two at a time where there are two (2 x 12 chains, each broadcast feeding
// both groups' FMAs).
#pragma once

#include "kernels/isa_target.h"  // first: the instruction-set switch and namespace

#include <immintrin.h>

#include <cstddef>
#include <utility>

#include "kernels/attention_simd.h"

namespace bifurcate::kernels::inline BIFURCATE_ISA_NAMESPACE::lanes {

// 8 rows per group in 256-bit vectors.
struct Lanes8 {
  using V = __m256;
  static constexpr int kWidth = 8;
  static constexpr int kKeyStep = 1;  // floats per head dimension in a tile row
  static constexpr int kBlock = 12;   // keys / columns per register block (16 registers)
  static constexpr int kPairGroups = 1;  // 16 registers hold no paired block: groups go one at a time
  static constexpr int kPairBlock = kBlock;
  static V zero() { return _mm256_setzero_ps(); }
  static V set1(float x) { return _mm256_set1_ps(x); }
  static V load(const float* p) { return _mm256_load_ps(p); }
  static void store(float* p, V v) { _mm256_store_ps(p, v); }
  static V broadcast(const float* p) { return _mm256_broadcast_ss(p); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static V sub(V a, V b) { return _mm256_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V max(V a, V b) { return _mm256_max_ps(a, b); }
  static V exp(V x) { return simd::exp(x); }
  // x, with lanes where a >= limit replaced by b.
  static V replace_where_ge(V a, V limit, V b, V x) { return _mm256_blendv_ps(x, b, _mm256_cmp_ps(a, limit, _CMP_GE_OQ)); }
  static V zero_where_equal(V a, V value) { return _mm256_andnot_ps(_mm256_cmp_ps(a, value, _CMP_EQ_OQ), a); }
  static bool all_equal(V a, V b) { return _mm256_movemask_ps(_mm256_cmp_ps(a, b, _CMP_EQ_OQ)) == 0xff; }
};

#ifdef __AVX512F__
// 16 rows per group in 512-bit vectors (full-rate FMAs on this machine's cores).
struct Lanes16 {
  using V = __m512;
  static constexpr int kWidth = 16;
  static constexpr int kKeyStep = 1;
  static constexpr int kBlock = 16;  // 32 registers; divides the usual 32-key tiles and head sizes
  static constexpr int kPairGroups = 2;  // groups per block when there are two (> 16 rows)
  static constexpr int kPairBlock = 12;  // 2 x 12 sums + 2 loaded vectors + 1 broadcast: 27 registers
  static V zero() { return _mm512_setzero_ps(); }
  static V set1(float x) { return _mm512_set1_ps(x); }
  static V load(const float* p) { return _mm512_load_ps(p); }
  static void store(float* p, V v) { _mm512_store_ps(p, v); }
  static V broadcast(const float* p) { return _mm512_set1_ps(*p); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static V sub(V a, V b) { return _mm512_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V max(V a, V b) { return simd::max(a, b); }
  static V exp(V x) { return simd::exp(x); }
  static V replace_where_ge(V a, V limit, V b, V x) {
    return _mm512_mask_mov_ps(x, _mm512_cmp_ps_mask(a, limit, _CMP_GE_OQ), b);
  }
  static V zero_where_equal(V a, V value) { return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(a, value, _CMP_NEQ_UQ), a); }
  static bool all_equal(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_EQ_OQ) == 0xffff; }
};

// Up to 8 rows as 16 lanes: lane 2i is row i over the first half of a tile's
// keys, lane 2i + 1 the same row over the second half, so 8-row blocks (MHA
// at b = 8) still run 512-bit FMAs. Tile rows hold key PAIRS interleaved,
// {K[p][d], K[p + half][d]} for every d, and broadcast() loads one pair into
// every lane pair. The two half-states of a row merge at the end.
struct Pairs16 : Lanes16 {
  static constexpr int kKeyStep = 2;
  static V broadcast(const float* p) {
    double pair;
    __builtin_memcpy(&pair, p, sizeof pair);
    return _mm512_castpd_ps(_mm512_set1_pd(pair));
  }
};
#endif

// The tail blocks' stand-in for the caller's prefetch pacing.
struct NoPacing {
  void operator()() const {}
};

// G lane groups side by side (G queries / probability vectors per head
// dimension / key): a register block of G x T FMAs then issues G + T loads
// instead of G (1 + T). On this machine loads, not FMAs, bound the 1 x 16
// block (one broadcast per FMA: perf-notes A10), so 16-lane types pair their
// groups (kPairBlock keys or columns per paired block, 2 x 12 = 24 sums).
template <class L, int G>
constexpr int kBlockOf = G == 1 ? L::kBlock : L::kPairBlock;

// Where group g's vectors start: group 0 at base, the next ones `stride` floats apart.
template <int G>
struct Groups {
  std::size_t stride;
};

// st_g[t0 + c] = sum_d K[t0 + c][d] qt_g[d] for T keys and G groups; between() after every 32 head dimensions.
template <class L, int G, int T, class Between = NoPacing>
void score_keys(const float* qt, Groups<G> q_groups, const float* keys, int ld, int k, float* st, Groups<G> s_groups,
                Between&& between = {}) {
  using V = typename L::V;
  V acc[G][T];
  _Pragma("GCC unroll 16")
  for (int c = 0; c < T; ++c)
    for (int g = 0; g < G; ++g) acc[g][c] = L::zero();
  for (int d = 0; d < k; ++d) {
    if (d % 32 == 31) between();
    V q[G];
    for (int g = 0; g < G; ++g) q[g] = L::load(qt + g * q_groups.stride + std::size_t(d) * L::kWidth);
    _Pragma("GCC unroll 16")
    for (int c = 0; c < T; ++c) {
      const V key = L::broadcast(keys + std::size_t(c) * ld + std::size_t(d) * L::kKeyStep);
      for (int g = 0; g < G; ++g) acc[g][c] = L::fma(key, q[g], acc[g][c]);
    }
  }
  _Pragma("GCC unroll 16")
  for (int c = 0; c < T; ++c)
    for (int g = 0; g < G; ++g) L::store(st + g * s_groups.stride + std::size_t(c) * L::kWidth, acc[g][c]);
}

// Calls of between_blocks() per tile (after every 32 head dimensions of a full
// score block, every 8 keys of a full P.V block): the caller spreads its
// prefetches evenly over them.
template <class L, int G>
int blocks_per_tile(int n, int k) {
  return (n / kBlockOf<L, G>) * (k / 32) + (k / kBlockOf<L, G>) * (n / 8) + 1;
}

// Keys in blocks of kBlockOf, then 8, 4, 1 (fewer than 8 chains leave the FMA units idle).
template <class L, int G, class Between>
void score_tile(const float* qt, Groups<G> q_groups, const float* keys, int ld, int n, int k, float* st,
                Groups<G> s_groups, Between&& between_blocks) {
  constexpr int kB = kBlockOf<L, G>;
  int t = 0;
  auto at = [&](int t0) { return std::pair(keys + std::size_t(t0) * ld, st + std::size_t(t0) * L::kWidth); };
  for (; t + kB <= n; t += kB) {
    auto [kt, s] = at(t);
    score_keys<L, G, kB>(qt, q_groups, kt, ld, k, s, s_groups, between_blocks);
  }
  if (t + 8 <= n) {
    auto [kt, s] = at(t);
    score_keys<L, G, 8>(qt, q_groups, kt, ld, k, s, s_groups);
    t += 8;
  }
  if (t + 4 <= n) {
    auto [kt, s] = at(t);
    score_keys<L, G, 4>(qt, q_groups, kt, ld, k, s, s_groups);
    t += 4;
  }
  for (; t < n; ++t) {
    auto [kt, s] = at(t);
    score_keys<L, G, 1>(qt, q_groups, kt, ld, k, s, s_groups);
  }
}

// Causal limits: lanes whose key_end <= position see -inf. key_end holds the group's limits as floats.
template <class L>
void mask_tile(const float* key_end, int first, int n, float* st) {
  using V = typename L::V;
  const V limit = L::load(key_end), neg_inf = L::set1(-__builtin_inff());
  for (int t = 0; t < n; ++t) {
    float* s = st + std::size_t(t) * L::kWidth;
    L::store(s, L::replace_where_ge(L::set1(float(first + t)), limit, neg_inf, L::load(s)));
  }
}

// Online softmax of one tile for W rows at once: scores become probabilities
// relative to the new running max; ot (k vectors) and l are rescaled when it grows.
// Lanes that have seen only -inf keep m = -inf, l = 0 (exp of -inf is 0, never NaN).
template <class L>
void softmax_tile(float* st, int n, int k, float* m, float* l, float* ot) {
  using V = typename L::V;
  const V neg_inf = L::set1(-__builtin_inff());
  const V m_old = L::load(m);
  V m_new = m_old;
  for (int t = 0; t < n; ++t) m_new = L::max(m_new, L::load(st + std::size_t(t) * L::kWidth));
  const V m_safe = L::zero_where_equal(m_new, neg_inf);  // exp(x - m_safe) stays finite
  V sum = L::zero();
  for (int t = 0; t < n; ++t) {
    float* s = st + std::size_t(t) * L::kWidth;
    const V p = L::exp(L::sub(L::load(s), m_safe));
    L::store(s, p);
    sum = L::add(sum, p);
  }
  V l_new = sum;
  if (!L::all_equal(m_new, m_old)) {
    const V alpha = L::exp(L::sub(m_old, m_safe));  // 0 for lanes that had no keys yet
    for (int d = 0; d < k; ++d) {
      float* o = ot + std::size_t(d) * L::kWidth;
      L::store(o, L::mul(alpha, L::load(o)));
    }
    l_new = L::fma(alpha, L::load(l), sum);
  } else {
    l_new = L::add(L::load(l), sum);
  }
  L::store(l, l_new);
  L::store(m, m_new);
}

// ot_g[d0 + j] += sum_t V[t][d0 + j] st_g[t] for D columns and G groups; between() after every 8 keys.
template <class L, int G, int D, class Between = NoPacing>
void accumulate_columns(const float* st, Groups<G> s_groups, const float* values, int ld, int n, float* ot,
                        Groups<G> o_groups, Between&& between = {}) {
  using V = typename L::V;
  V acc[G][D];
  _Pragma("GCC unroll 16")
  for (int j = 0; j < D; ++j)
    for (int g = 0; g < G; ++g) acc[g][j] = L::load(ot + g * o_groups.stride + std::size_t(j) * L::kWidth);
  for (int t = 0; t < n; ++t) {
    if (t % 8 == 7) between();
    V p[G];
    for (int g = 0; g < G; ++g) p[g] = L::load(st + g * s_groups.stride + std::size_t(t) * L::kWidth);
    const float* v = values + std::size_t(t) * ld;
    _Pragma("GCC unroll 16")
    for (int j = 0; j < D; ++j) {
      const V value = L::broadcast(v + j * L::kKeyStep);
      for (int g = 0; g < G; ++g) acc[g][j] = L::fma(value, p[g], acc[g][j]);
    }
  }
  _Pragma("GCC unroll 16")
  for (int j = 0; j < D; ++j)
    for (int g = 0; g < G; ++g) L::store(ot + g * o_groups.stride + std::size_t(j) * L::kWidth, acc[g][j]);
}

// Columns in blocks of kBlockOf, then 8, 4, 1.
template <class L, int G, class Between>
void accumulate_tile(const float* st, Groups<G> s_groups, const float* values, int ld, int n, int k, float* ot,
                     Groups<G> o_groups, Between&& between_blocks) {
  constexpr int kB = kBlockOf<L, G>;
  int d = 0;
  auto at = [&](int d0) { return std::pair(values + d0 * L::kKeyStep, ot + std::size_t(d0) * L::kWidth); };
  for (; d + kB <= k; d += kB) {
    auto [v, o] = at(d);
    accumulate_columns<L, G, kB>(st, s_groups, v, ld, n, o, o_groups, between_blocks);
  }
  if (d + 8 <= k) {
    auto [v, o] = at(d);
    accumulate_columns<L, G, 8>(st, s_groups, v, ld, n, o, o_groups);
    d += 8;
  }
  if (d + 4 <= k) {
    auto [v, o] = at(d);
    accumulate_columns<L, G, 4>(st, s_groups, v, ld, n, o, o_groups);
    d += 4;
  }
  for (; d < k; ++d) {
    auto [v, o] = at(d);
    accumulate_columns<L, G, 1>(st, s_groups, v, ld, n, o, o_groups);
  }
}

}  // namespace bifurcate::kernels::BIFURCATE_ISA_NAMESPACE::lanes
