// A pool of fixed-size KV blocks under a hard byte budget.
//
// Memory is taken from the OS lazily, one slab (up to kSlabBytes, whole blocks)
// at a time, and only while the total stays within the budget; freed blocks go
// to a free list and are reused before any new slab is carved. The pool never
// returns slabs to the OS before it is destroyed, so bytes_reserved() only grows,
// but it never exceeds budget_bytes().
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace bifurcate::kv {

class BlockPool {
 public:
  static constexpr std::size_t kSlabBytes = std::size_t(64) << 20;
  static constexpr std::size_t kAlignment = 64;

  // `block_bytes` is rounded up to kAlignment so every block starts aligned.
  BlockPool(std::size_t block_bytes, std::size_t budget_bytes);
  BlockPool(const BlockPool&) = delete;
  BlockPool& operator=(const BlockPool&) = delete;
  BlockPool(BlockPool&&) = default;  // blocks stay where they are: only the owner changes
  BlockPool& operator=(BlockPool&&) = default;

  // Bytes one block occupies in the pool (block_bytes rounded up to kAlignment).
  std::size_t block_stride() const { return block_stride_; }
  std::size_t budget_bytes() const { return budget_bytes_; }
  std::size_t blocks_available() const { return capacity_blocks_ - blocks_in_use_; }
  std::size_t bytes_in_use() const { return blocks_in_use_ * block_stride_; }
  // Bytes taken from the OS so far (whole slabs).
  std::size_t bytes_reserved() const { return carved_blocks_ * block_stride_; }

  // Returns an uninitialised block; throws bifurcate::Error when the budget is exhausted.
  uint8_t* allocate();
  // Returns `block` (from allocate(), not yet freed) to the free list.
  void free(uint8_t* block);

 private:
  struct FreeSlab {
    void operator()(uint8_t* p) const;
  };
  void carve_slab();

  std::size_t block_stride_;
  std::size_t budget_bytes_;
  std::size_t capacity_blocks_;  // most blocks the budget admits
  std::size_t blocks_in_use_ = 0;
  std::size_t carved_blocks_ = 0;
  std::vector<std::unique_ptr<uint8_t, FreeSlab>> slabs_;
  std::vector<uint8_t*> free_blocks_;  // LIFO: the most recently freed block is the warmest
};

}  // namespace bifurcate::kv
