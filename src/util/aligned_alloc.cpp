#include "util/aligned_alloc.h"

#include <atomic>
#include <cstdlib>

namespace bifurcate {
namespace {

std::atomic<long> g_aligned_allocations{0};  // process-wide on purpose: what the tests count

}  // namespace

void* allocate_aligned(std::size_t alignment, std::size_t bytes) {
  g_aligned_allocations.fetch_add(1, std::memory_order_relaxed);
  return std::aligned_alloc(alignment, bytes);
}

long aligned_allocation_count() { return g_aligned_allocations.load(std::memory_order_relaxed); }

}  // namespace bifurcate
