// The one place the library takes aligned memory from the heap (kernel
// scratch buffers, KV slabs, huge-page regions), so a test can count those
// allocations the way it counts operator new: a steady-state decode step
// must make none.
#pragma once

#include <cstddef>

namespace bifurcate {

// std::aligned_alloc(alignment, bytes), counted: nullptr on failure; free with std::free.
// `bytes` must be a multiple of `alignment` (a power of two).
void* allocate_aligned(std::size_t alignment, std::size_t bytes);

// How many times allocate_aligned has been called in this process (a
// diagnostic for tests, not a resource count: frees are not subtracted).
long aligned_allocation_count();

}  // namespace bifurcate
