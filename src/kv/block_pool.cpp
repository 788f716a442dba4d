#include "kv/block_pool.h"

#include <algorithm>
#include <cstdlib>

#include "util/aligned_alloc.h"
#include "util/error.h"
#include "util/huge_pages.h"

namespace bifurcate::kv {

void BlockPool::FreeSlab::operator()(uint8_t* p) const { std::free(p); }

BlockPool::BlockPool(std::size_t block_bytes, std::size_t budget_bytes)
    : block_stride_((block_bytes + kAlignment - 1) / kAlignment * kAlignment),
      budget_bytes_(budget_bytes),
      capacity_blocks_(block_stride_ == 0 ? 0 : budget_bytes / block_stride_) {
  require(block_bytes >= 1, "BlockPool: block_bytes must be >= 1");
}

uint8_t* BlockPool::allocate() {
  if (free_blocks_.empty()) carve_slab();
  uint8_t* block = free_blocks_.back();
  free_blocks_.pop_back();
  ++blocks_in_use_;
  return block;
}

void BlockPool::free(uint8_t* block) {
  require(block != nullptr && blocks_in_use_ > 0, "BlockPool::free: no block of this pool is in use");
  free_blocks_.push_back(block);
  --blocks_in_use_;
}

// Invariant: every block ever carved is either in use or on the free list, so
// the free list is empty here iff blocks_in_use_ == carved_blocks_.
void BlockPool::carve_slab() {
  std::size_t remaining = capacity_blocks_ - carved_blocks_;
  if (remaining == 0) {
    throw Error(str("KV cache budget exceeded: need ", block_stride_, " more bytes for one block, budget ",
                    budget_bytes_, " bytes, in use ", bytes_in_use(), " bytes (", blocks_in_use_,
                    " blocks)"));
  }
  std::size_t per_slab = std::max<std::size_t>(1, kSlabBytes / block_stride_);
  std::size_t n_blocks = std::min(per_slab, remaining);
  // Slabs of a huge page or more start on a huge-page boundary and are
  // advised onto transparent huge pages: attention streams the context's K/V
  // every step. Smaller slabs: a multiple of kAlignment, as aligned_alloc requires.
  const std::size_t bytes = n_blocks * block_stride_;
  auto* slab = static_cast<uint8_t*>(bytes >= kHugePageBytes ? allocate_on_huge_pages(bytes)
                                                             : allocate_aligned(kAlignment, bytes));
  if (slab == nullptr) {
    throw Error(str("KV cache: the OS refused a slab of ", bytes, " bytes (", bytes_reserved(),
                    " bytes already reserved, budget ", budget_bytes_, ")"));
  }
  slabs_.emplace_back(slab);
  // Push in reverse so blocks are handed out in address order.
  for (std::size_t i = n_blocks; i-- > 0;) free_blocks_.push_back(slab + i * block_stride_);
  carved_blocks_ += n_blocks;
}

}  // namespace bifurcate::kv
