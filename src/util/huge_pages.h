// Memory on transparent huge pages (2 MiB on x86-64) for buffers that are
// streamed every decode step (weights, KV slabs, the bandwidth probe's
// buffer): through 4 KiB pages every 4 KiB of a stream is a TLB miss
// (docs/perf-notes.md M11). The kernel's THP mode here is `madvise`, so the
// memory has to be advised; the advice is only a hint, and without THP the
// memory works the same on small pages.
#pragma once

#include <cstddef>

namespace bifurcate {

inline constexpr std::size_t kHugePageBytes = std::size_t(2) << 20;

// `bytes` rounded up to whole huge pages.
constexpr std::size_t round_up_to_huge_pages(std::size_t bytes) {
  return (bytes + kHugePageBytes - 1) / kHugePageBytes * kHugePageBytes;
}

// round_up_to_huge_pages(bytes) bytes starting on a huge-page boundary,
// advised onto huge pages; nullptr when the allocation is refused. Release
// with std::free.
void* allocate_on_huge_pages(std::size_t bytes);

// Advises [p, p + bytes) onto huge pages (p huge-page aligned).
void advise_huge_pages(void* p, std::size_t bytes);

}  // namespace bifurcate
