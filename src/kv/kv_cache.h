// The KV cache: a tree of segments whose tokens live in blocks of one BlockPool.
//
// A segment is an ordered list of blocks holding `tokens(s)` tokens; a sequence
// is the path root -> leaf, and its next token's position is path_tokens(leaf).
// fork() adds an empty child in O(1) and freezes the parent: only a segment
// without children ever grows, so shared prefixes never change under their
// readers. Segments are owned by the tree, not by handles: a segment lives while
// it is an unreleased leaf or has live children; release(leaf) frees the leaf and
// every ancestor left without children. A held segment (hold(): a cached
// prefix, kv/prefix_cache.h) also lives without children, until unhold().
//
// Not thread-safe: one thread mutates the cache; kernels only read views of it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/attention_types.h"
#include "kv/block_pool.h"
#include "kv/kv_layout.h"

namespace bifurcate::kv {

// Names one segment for its lifetime: the low 24 bits index the cache's
// segment table (reused after release), the next 7 bits count reuses of that
// entry, so a stale id of a released segment is an Error, not a silent alias.
using SegmentId = int32_t;
inline constexpr SegmentId kNoSegment = -1;

class KvCache {
 public:
  // Where one token's K/V rows go: block `block`, row `index_in_block`.
  struct Slot {
    uint8_t* block;
    int index_in_block;
  };

  // Memory is taken from the OS lazily, never beyond `budget_bytes`.
  KvCache(const KvLayout& layout, std::size_t budget_bytes);

  const KvLayout& layout() const { return layout_; }
  std::size_t budget_bytes() const { return pool_.budget_bytes(); }
  std::size_t bytes_in_use() const { return pool_.bytes_in_use(); }
  std::size_t bytes_reserved() const { return pool_.bytes_reserved(); }
  // Pool bytes that `n_tokens` tokens of one segment occupy (whole blocks).
  std::size_t bytes_for_tokens(int64_t n_tokens) const;
  // Whole blocks that `n_tokens` tokens of one segment occupy.
  std::size_t blocks_for_tokens(int64_t n_tokens) const;
  std::size_t block_bytes() const { return pool_.block_stride(); }
  std::size_t blocks_available() const { return pool_.blocks_available(); }
  std::size_t blocks_in_use() const { return pool_.bytes_in_use() / pool_.block_stride(); }
  std::size_t capacity_blocks() const { return pool_.budget_bytes() / pool_.block_stride(); }
  // Blocks append_tokens(s, n) would take from the pool.
  std::size_t blocks_to_grow(SegmentId s, int n) const;

  // Throws Error("KV cache budget exceeded: need ...") unless `extra_tokens_total`
  // new tokens, spread in any way over `n_growing_segments` segments that each
  // may start a fresh block, surely fit in what is left of the budget. Allocates
  // nothing; call it before starting work that must not fail halfway.
  void check_budget(int64_t extra_tokens_total, int n_growing_segments) const;
  // Exact variant for the common case: each of `n_segments` fresh segments will
  // grow by `tokens_each` tokens (e.g. n samples x max new tokens).
  void check_budget_per_segment(int64_t tokens_each, int n_segments) const;

  SegmentId create_root();
  // O(1): a new empty leaf child of `parent`; no block is allocated. Freezes `parent`.
  SegmentId fork(SegmentId parent);
  // Deep copy of every token on the path root..`s` into a NEW root segment (the
  // replicated baseline: a private copy of the context). Costs path_tokens(s)
  // tokens of budget, checked before anything is allocated.
  SegmentId copy_path(SegmentId s);
  // The same for the first `n_tokens` tokens of the path root..`s` of
  // `source` (this cache or another of the same layout), copied into a NEW
  // root of this cache: how bench gives each context a pool of its own.
  SegmentId copy_path_prefix(const KvCache& source, SegmentId s, int n_tokens);
  // Frees leaf `leaf` and every ancestor left without children and not held;
  // blocks return to the pool. `leaf` must not be held.
  void release(SegmentId leaf);
  // Keeps frozen-or-not segment `s` alive without children (once; unhold to undo).
  void hold(SegmentId s);
  // Undoes hold(s); frees s and its unheld childless ancestors if s has no children.
  void unhold(SegmentId s);
  bool is_held(SegmentId s) const;
  // Splits frozen segment `s` at token `at` (a multiple of block_tokens, 0 < at
  // < tokens(s)) without copying: a NEW segment, returned, takes s's first `at`
  // tokens (whole blocks) and s's place under its parent; s keeps its id, its
  // children and the rest of its tokens, now as the new segment's only child.
  // The new segment is frozen, and held iff s is.
  SegmentId split(SegmentId s, int at);

  bool is_live(SegmentId s) const;
  SegmentId parent(SegmentId s) const;  // kNoSegment for a root
  int n_children(SegmentId s) const;
  bool is_frozen(SegmentId s) const;  // forked at least once: never grows again
  int n_live_segments() const { return n_live_; }
  // A dense index < table_size() of live segment `s`, for side tables keyed by segment.
  std::size_t table_index(SegmentId s) const;
  std::size_t table_size() const { return segments_.size(); }
  int tokens(SegmentId s) const;       // tokens of this segment only
  int path_tokens(SegmentId s) const;  // tokens root..s = position of s's next token
  int n_blocks(SegmentId s) const;

  // Appends one token slot to growing segment `s` (allocating a block when the
  // last one is full) and returns where its K/V rows go. The token counts as
  // present at once: write its rows for every layer before attention reads it.
  Slot append_token(SegmentId s);
  // Appends `n` token slots at once (a prefill chunk), all or nothing: throws
  // before changing anything when the budget cannot hold them. slots[i] is token
  // tokens(s) - n + i afterwards; `slots` is overwritten.
  void append_tokens(SegmentId s, int n, std::vector<Slot>& slots);
  // The slot of existing token `index` (0-based within segment `s`).
  Slot slot(SegmentId s, int index) const;
  // head_size elements of layout().type for (layer, kv_head) at `slot`.
  void* k_row(const Slot& slot, int layer, int kv_head) const;
  void* v_row(const Slot& slot, int layer, int kv_head) const;

  // Segment `s`'s own tokens for `layer`, one chunk per block; `sequences` left empty.
  kernels::PlannedSegment view(SegmentId s, int layer) const;
  // Same, reusing `out`'s vectors (no allocation once they are large enough).
  void view(SegmentId s, int layer, kernels::PlannedSegment& out) const;

 private:
  struct Segment {
    SegmentId parent = kNoSegment;
    int n_children = 0;
    int tokens = 0;
    int path_offset = 0;  // tokens of all ancestors; fixed because ancestors are frozen
    bool live = false;
    bool frozen = false;
    bool held = false;
    uint8_t generation = 0;        // bits 24..30 of the SegmentId currently naming this entry
    std::vector<uint8_t*> blocks;  // ceil(tokens / block_tokens) blocks, in token order
  };

  static constexpr int kIndexBits = 24;
  static constexpr uint32_t kIndexMask = (uint32_t(1) << kIndexBits) - 1;
  static constexpr uint32_t kGenerationMask = 0x7f;
  // The table entry of an id already known to be live (no checks).
  Segment& at(SegmentId s) { return segments_[uint32_t(s) & kIndexMask]; }
  const Segment& at(SegmentId s) const { return segments_[uint32_t(s) & kIndexMask]; }
  const Segment& live_segment(SegmentId s, const char* caller) const;
  Segment& live_segment(SegmentId s, const char* caller);
  SegmentId new_segment(SegmentId parent, int path_offset);
  void free_segment(SegmentId s);
  void free_upwards(SegmentId s);
  std::vector<SegmentId> path_of(SegmentId s) const;  // root first
  [[noreturn]] void throw_budget_exceeded(std::size_t blocks_needed, const std::string& what) const;
  void copy_tokens(const Segment& src, int src_begin, Segment& dst, int dst_begin, int n) const;

  KvLayout layout_;
  BlockPool pool_;
  std::vector<Segment> segments_;
  std::vector<std::size_t> free_entries_;  // table entries of released segments, reused by new ones
  int n_live_ = 0;
};

}  // namespace bifurcate::kv
