// Replaces the global operator new with one that counts, so a test can check
// that a kernel allocates nothing in steady state: g_allocations here,
// aligned scratch through the library's one counted function
// (util/aligned_alloc.h). Include from exactly one source of a test binary.
#pragma once

#include <atomic>
#include <cstdlib>
#include <new>

// The replacement pair is malloc/free on both sides; GCC cannot see that through inlining.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
static std::atomic<long> g_allocations{0};
void* operator new(std::size_t n) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
