#include "util/huge_pages.h"

#include <sys/mman.h>

#include <cstdlib>

#include "util/aligned_alloc.h"

namespace bifurcate {

void* allocate_on_huge_pages(std::size_t bytes) {
  const std::size_t rounded = round_up_to_huge_pages(bytes);
  void* p = allocate_aligned(kHugePageBytes, rounded);
  if (p != nullptr) advise_huge_pages(p, rounded);
  return p;
}

void advise_huge_pages(void* p, std::size_t bytes) {
  ::madvise(p, bytes, MADV_HUGEPAGE);  // a hint: failure leaves ordinary pages
}

}  // namespace bifurcate
