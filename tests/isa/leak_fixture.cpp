// A program with the defect check_confinement.sh exists to find: an
// AVX-512 function outside the kernels' AVX-512 namespaces. The ctest
// isa_confinement_detects_a_leak expects the check to FAIL on it.
#include <immintrin.h>

#include <cstdio>

__attribute__((target("avx512f"), noinline)) void leaked_sum(float* p) {
  _mm512_storeu_ps(p, _mm512_add_ps(_mm512_loadu_ps(p), _mm512_loadu_ps(p + 16)));
}

int main(int argc, char**) {
  float v[32] = {};
  if (argc > 5) leaked_sum(v);  // never runs: only the code matters
  std::printf("%f\n", double(v[0]));
  return 0;
}
