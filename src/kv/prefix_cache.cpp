#include "kv/prefix_cache.h"

#include <algorithm>
#include <limits>

#include "util/error.h"

namespace bifurcate::kv {

PrefixCache::PrefixCache(KvCache& cache) : cache_(cache) {
  const PrefixNodeId root = new_node();  // kPrefixRoot
  nodes_[std::size_t(root)].segment = kNoSegment;
}

PrefixNodeId PrefixCache::new_node() {
  PrefixNodeId id;
  if (!free_nodes_.empty()) {
    id = free_nodes_.back();
    free_nodes_.pop_back();
  } else {
    id = PrefixNodeId(nodes_.size());
    nodes_.emplace_back();
  }
  nodes_[std::size_t(id)] = Node{};
  nodes_[std::size_t(id)].live = true;
  ++n_live_;
  return id;
}

int PrefixCache::end_tokens(PrefixNodeId node) const {
  const Node& n = nodes_[std::size_t(node)];
  return n.start + int(n.tokens.size());
}

std::vector<int32_t> PrefixCache::key_of(std::span<const int32_t> tokens) const {
  const std::size_t n = std::min(tokens.size(), std::size_t(cache_.layout().block_tokens));
  return {tokens.begin(), tokens.begin() + std::ptrdiff_t(n)};
}

PrefixCache::Match PrefixCache::match(std::span<const int32_t> prompt, int max_tokens) const {
  const int block = cache_.layout().block_tokens;
  const int limit = std::min<int>(max_tokens, int(prompt.size())) / block * block;
  Match m;
  PrefixNodeId node = kPrefixRoot;
  int pos = 0;
  while (pos < limit) {
    const auto child = nodes_[std::size_t(node)].children.find(key_of(prompt.subspan(std::size_t(pos))));
    if (child == nodes_[std::size_t(node)].children.end()) break;
    const Node& c = nodes_[std::size_t(child->second)];
    int common = 0;
    const int most = std::min<int>(int(c.tokens.size()), limit - pos);
    while (common < most && c.tokens[std::size_t(common)] == prompt[std::size_t(pos + common)]) ++common;
    // The match so far, cut down to a block boundary inside this node.
    const int aligned = (pos + common) / block * block;
    if (aligned > pos) m = Match{aligned, child->second, aligned - pos};
    if (common < int(c.tokens.size())) break;
    pos += common;
    node = child->second;
  }
  return m;
}

PrefixNodeId PrefixCache::split(PrefixNodeId id, int offset) {
  const SegmentId head_segment = cache_.split(nodes_[std::size_t(id)].segment, offset);
  const PrefixNodeId head = new_node();  // may move nodes_: index again below
  Node& h = nodes_[std::size_t(head)];
  Node& tail = nodes_[std::size_t(id)];
  h.segment = head_segment;
  h.parent = tail.parent;
  h.start = tail.start;
  h.tokens.assign(tail.tokens.begin(), tail.tokens.begin() + offset);
  h.refs = tail.refs;
  h.last_used = tail.last_used;
  tail.tokens.erase(tail.tokens.begin(), tail.tokens.begin() + offset);
  tail.start += offset;
  tail.parent = head;
  h.children[key_of(tail.tokens)] = id;
  nodes_[std::size_t(h.parent)].children[key_of(h.tokens)] = head;
  return head;
}

void PrefixCache::touch(PrefixNodeId node) {
  ++clock_;
  for (PrefixNodeId n = node; n != kPrefixRoot; n = nodes_[std::size_t(n)].parent)
    nodes_[std::size_t(n)].last_used = clock_;
}

PrefixNodeId PrefixCache::acquire(const Match& m) {
  PrefixNodeId node = m.node;
  if (node != kPrefixRoot && m.offset < int(nodes_[std::size_t(node)].tokens.size())) node = split(node, m.offset);
  acquire(node);
  return node;
}

void PrefixCache::acquire(PrefixNodeId node) {
  for (PrefixNodeId n = node; n != kPrefixRoot; n = nodes_[std::size_t(n)].parent) ++nodes_[std::size_t(n)].refs;
  touch(node);
}

void PrefixCache::release(PrefixNodeId node) {
  for (PrefixNodeId n = node; n != kPrefixRoot; n = nodes_[std::size_t(n)].parent) {
    Node& x = nodes_[std::size_t(n)];
    require(x.refs > 0, "PrefixCache::release: node ", n, " has no references");
    --x.refs;
  }
}

PrefixNodeId PrefixCache::insert(PrefixNodeId parent, SegmentId segment, std::span<const int32_t> tokens) {
  require(!tokens.empty(), "PrefixCache::insert: no tokens");
  require(cache_.parent(segment) == nodes_[std::size_t(parent)].segment && cache_.tokens(segment) == int(tokens.size()),
          "PrefixCache::insert: segment ", segment, " is not a child of node ", parent, " holding ",
          tokens.size(), " tokens");
  if (nodes_[std::size_t(parent)].children.count(key_of(tokens)) != 0) return -1;
  const PrefixNodeId id = new_node();
  Node& n = nodes_[std::size_t(id)];
  n.segment = segment;
  n.parent = parent;
  n.start = end_tokens(parent);
  n.tokens.assign(tokens.begin(), tokens.end());
  nodes_[std::size_t(parent)].children[key_of(tokens)] = id;
  cache_.hold(segment);
  touch(id);
  return id;
}

std::size_t PrefixCache::evictable_blocks() const {
  std::size_t blocks = 0;
  for (std::size_t i = 1; i < nodes_.size(); ++i)
    if (nodes_[i].live && nodes_[i].refs == 0) blocks += std::size_t(cache_.n_blocks(nodes_[i].segment));
  return blocks;
}

std::size_t PrefixCache::unreferenced_blocks_on_path(PrefixNodeId node) const {
  std::size_t blocks = 0;
  for (PrefixNodeId n = node; n != kPrefixRoot; n = nodes_[std::size_t(n)].parent)
    if (nodes_[std::size_t(n)].refs == 0) blocks += std::size_t(cache_.n_blocks(nodes_[std::size_t(n)].segment));
  return blocks;
}

std::size_t PrefixCache::cached_blocks() const {
  std::size_t blocks = 0;
  for (std::size_t i = 1; i < nodes_.size(); ++i)
    if (nodes_[i].live) blocks += std::size_t(cache_.n_blocks(nodes_[i].segment));
  return blocks;
}

std::size_t PrefixCache::evict_one() {
  PrefixNodeId victim = -1;
  uint64_t oldest = std::numeric_limits<uint64_t>::max();
  for (std::size_t i = 1; i < nodes_.size(); ++i) {
    const Node& n = nodes_[i];
    if (n.live && n.refs == 0 && n.children.empty() && n.last_used < oldest) {
      oldest = n.last_used;
      victim = PrefixNodeId(i);
    }
  }
  if (victim < 0) return 0;
  Node& v = nodes_[std::size_t(victim)];
  const std::size_t blocks = std::size_t(cache_.n_blocks(v.segment));
  nodes_[std::size_t(v.parent)].children.erase(key_of(v.tokens));
  cache_.unhold(v.segment);  // nothing hangs below an unreferenced leaf node: its blocks return now
  v = Node{};
  free_nodes_.push_back(victim);
  --n_live_;
  return blocks;
}

void PrefixCache::evict_all() {
  while (evict_one() > 0) {
  }
}

void PrefixCache::check_invariants() const {
  const int block = cache_.layout().block_tokens;
  for (std::size_t i = 1; i < nodes_.size(); ++i) {
    const Node& n = nodes_[i];
    if (!n.live) continue;
    const Node& p = nodes_[std::size_t(n.parent)];
    require(p.live, "prefix node ", i, " has a dead parent ", n.parent);
    require(!n.tokens.empty(), "prefix node ", i, " holds no tokens");
    const auto in_parent = p.children.find(key_of(n.tokens));
    require(in_parent != p.children.end() && in_parent->second == PrefixNodeId(i), "prefix node ", i,
            " is not its parent's child for its first block");
    require(cache_.is_live(n.segment) && cache_.is_held(n.segment), "prefix node ", i, "'s segment ", n.segment,
            " is not live and held");
    require(cache_.parent(n.segment) == p.segment, "prefix node ", i, "'s segment hangs below ",
            cache_.parent(n.segment), ", its parent node's is ", p.segment);
    require(n.start == p.start + int(p.tokens.size()) && n.start % block == 0, "prefix node ", i, " starts at ",
            n.start, ": not its parent's end or not block-aligned");
    require(cache_.tokens(n.segment) == int(n.tokens.size()) && cache_.path_tokens(n.segment) == n.start + int(n.tokens.size()),
            "prefix node ", i, " holds ", n.tokens.size(), " tokens, its segment ", cache_.tokens(n.segment));
    int child_refs = 0;
    for (const auto& [first, c] : n.children) {
      require(nodes_[std::size_t(c)].live && nodes_[std::size_t(c)].parent == PrefixNodeId(i) &&
                  key_of(nodes_[std::size_t(c)].tokens) == first,
              "prefix node ", i, " lists child ", c, " under the wrong token or parent");
      child_refs += nodes_[std::size_t(c)].refs;
    }
    require(n.refs >= child_refs, "prefix node ", i, " has ", n.refs, " references, its children ", child_refs);
    if (n.refs == 0)
      require(cache_.n_children(n.segment) == int(n.children.size()), "unreferenced prefix node ", i, " has ",
              cache_.n_children(n.segment), " segments below it but ", n.children.size(), " child nodes");
  }
  for (const auto& [first, c] : nodes_[0].children)
    require(nodes_[std::size_t(c)].live && nodes_[std::size_t(c)].parent == kPrefixRoot, "root lists a bad child ", c);
}

}  // namespace bifurcate::kv
