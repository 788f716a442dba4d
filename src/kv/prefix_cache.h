// The prefix cache: a radix tree over token ids whose nodes own KV segments
// (DESIGN.md §7). A new prompt matches its longest cached prefix; only the
// rest is prefilled, into a new segment forked below the matched node, which
// is then inserted as a node of its own for later prompts.
//
// Matches are BLOCK-ALIGNED: a match is cut down to a multiple of the KV
// block (32 tokens), so a node is only ever split on a block boundary and no
// block is shared by two nodes or copied. A match ending inside a block
// re-prefills at most block_tokens - 1 tokens (rows of a prefill chunk that
// runs anyway: the weights are streamed once for the whole chunk), whereas
// copy-on-write of the partial block would copy a whole block's K/V for every
// layer (1 MiB per block for 7b-mha-2l F16) and let two nodes share
// one block, which every split, eviction and invariant would then have to
// know about. Every node therefore starts on a block boundary (node
// start = parent's start + parent's tokens, a multiple of the block size).
// A match also stops one token short of the whole prompt: the last prompt
// token must run through the model to give the first sample's logits.
//
// Nodes are reference-counted by the requests below them: acquire() counts a
// request on its node and every ancestor, release() undoes it. A node with no
// references stays cached (its segment held in the KvCache) until evicted,
// least recently used first, and only from the leaves of the tree, so a
// node's ancestors outlive it. Not thread-safe: the scheduler's thread owns it.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <vector>

#include "kv/kv_cache.h"

namespace bifurcate::kv {

using PrefixNodeId = int;
inline constexpr PrefixNodeId kPrefixRoot = 0;  // the empty prefix; owns no segment

class PrefixCache {
 public:
  explicit PrefixCache(KvCache& cache);
  PrefixCache(const PrefixCache&) = delete;
  PrefixCache& operator=(const PrefixCache&) = delete;

  // Where a prompt's longest cached, block-aligned prefix of at most
  // `max_tokens` tokens ends: `tokens` matched, inside `node` after `offset`
  // of its tokens (offset == its token count: the whole node). Changes nothing.
  struct Match {
    int tokens = 0;
    PrefixNodeId node = kPrefixRoot;
    int offset = 0;
  };
  Match match(std::span<const int32_t> prompt, int max_tokens) const;

  // Makes `m`'s end a node boundary (splitting its node if needed), counts one
  // reference on the node ending there and its ancestors, marks them used
  // now, and returns that node (kPrefixRoot for an empty match).
  PrefixNodeId acquire(const Match& m);
  // Counts one more / one fewer reference on `node` and its ancestors.
  void acquire(PrefixNodeId node);
  void release(PrefixNodeId node);

  // Adds `segment` — a frozen child of parent's segment (a root when parent is
  // kPrefixRoot) holding exactly `tokens` — as a cached node below `parent`,
  // holding it in the KvCache. Returns the new node, unreferenced, or -1 when
  // `parent` already has a child starting with the same block (two prompts
  // sharing their first block below `parent` prefilled at once): the segment then stays its owner's alone.
  PrefixNodeId insert(PrefixNodeId parent, SegmentId segment, std::span<const int32_t> tokens);

  // The segment behind `node` (kNoSegment for the root) and its depth in tokens.
  SegmentId segment(PrefixNodeId node) const { return nodes_[std::size_t(node)].segment; }
  int end_tokens(PrefixNodeId node) const;

  // KV blocks of nodes no request references: what eviction can free.
  std::size_t evictable_blocks() const;
  // Blocks of the unreferenced nodes on the path root..node (what acquiring it takes from evictable_blocks()).
  std::size_t unreferenced_blocks_on_path(PrefixNodeId node) const;
  std::size_t cached_blocks() const;  // blocks of every node
  // Evicts the least recently used unreferenced leaf node; returns the blocks
  // freed (0 when nothing is evictable).
  std::size_t evict_one();
  void evict_all();  // every unreferenced node
  int n_nodes() const { return n_live_ - 1; }

  // Throws Error naming the first broken invariant: tree shape matches the
  // KvCache (parents, depths, token counts, holds, block-aligned starts),
  // children keyed by their first token, references >= those of the children,
  // and an unreferenced node has nothing but its tree children below it.
  void check_invariants() const;

 private:
  struct Node {
    SegmentId segment = kNoSegment;
    PrefixNodeId parent = -1;
    int start = 0;                     // tokens above this node
    std::vector<int32_t> tokens;       // this node's own tokens
    std::map<std::vector<int32_t>, PrefixNodeId> children;  // by first block (key_of)
    int refs = 0;
    uint64_t last_used = 0;
    bool live = false;
  };

  // A child's key: its first block of tokens (all of them when shorter).
  // Siblings may share a first token — prompts diverging inside their first
  // block ("You are a ..." system prompts) — but never a first block, since
  // every match is cut to whole blocks.
  std::vector<int32_t> key_of(std::span<const int32_t> tokens) const;
  PrefixNodeId new_node();
  PrefixNodeId split(PrefixNodeId node, int offset);
  void touch(PrefixNodeId node);

  KvCache& cache_;
  std::vector<Node> nodes_;
  std::vector<PrefixNodeId> free_nodes_;
  int n_live_ = 0;
  uint64_t clock_ = 0;
};

}  // namespace bifurcate::kv
