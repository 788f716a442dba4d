// The prefix cache (kv/prefix_cache.h) on a real KvCache: block-aligned
// matching, splits that keep every reader's path intact, LRU eviction of
// unreferenced leaves only, and a randomized run of thousands of
// submit / prefill / decode / finish / cancel / evict operations — as the
// scheduler performs them — checking the tree's invariants after every one
// and that the block pool returns exactly to idle.
//
// Every token's id is written into its K row (layer 0, KV head 0), so the
// test reads a path's tokens back from the KV memory itself: an independent
// check of what the cache's bookkeeping claims a match covers.
#include "kv/prefix_cache.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <iostream>
#include <random>

#include "util/error.h"

namespace bifurcate::kv {
namespace {

KvLayout layout() {
  KvLayout l;
  l.n_layers = 2;
  l.n_kv_heads = 1;
  l.head_size = 4;
  l.type = kernels::KvType::f32;
  l.block_tokens = 8;
  return l;
}

void append(KvCache& cache, SegmentId s, std::span<const int32_t> tokens) {
  std::vector<KvCache::Slot> slots;
  cache.append_tokens(s, int(tokens.size()), slots);
  for (size_t i = 0; i < tokens.size(); ++i)
    *static_cast<float*>(cache.k_row(slots[i], 0, 0)) = float(tokens[i]);
}

// The tokens on the path root..s, read from the K rows.
std::vector<int32_t> path_tokens(const KvCache& cache, SegmentId s) {
  std::vector<SegmentId> path;
  for (SegmentId p = s; p != kNoSegment; p = cache.parent(p)) path.push_back(p);
  std::vector<int32_t> out;
  for (auto it = path.rbegin(); it != path.rend(); ++it)
    for (int i = 0; i < cache.tokens(*it); ++i)
      out.push_back(int32_t(*static_cast<const float*>(cache.k_row(cache.slot(*it, i), 0, 0))));
  return out;
}

TEST(PrefixCache, MatchIsBlockAlignedAndSplitKeepsReadersPaths) {
  KvCache cache(layout(), 64 * layout().block_bytes());
  PrefixCache prefix(cache);
  std::vector<int32_t> prompt(21);
  for (int i = 0; i < 21; ++i) prompt[size_t(i)] = 100 + i;
  // Nothing cached yet.
  EXPECT_EQ(prefix.match(prompt, 20).tokens, 0);
  const SegmentId root = cache.create_root();
  append(cache, root, prompt);
  const SegmentId leaf = cache.fork(root);
  append(cache, leaf, std::vector<int32_t>{7, 7, 7});
  const PrefixNodeId node = prefix.insert(kPrefixRoot, root, prompt);
  ASSERT_GE(node, 0);
  prefix.acquire(node);
  prefix.check_invariants();
  // A prompt sharing 13 tokens: the match is cut to one 8-token block.
  std::vector<int32_t> other(prompt.begin(), prompt.begin() + 13);
  other.push_back(5);
  const PrefixCache::Match m = prefix.match(other, int(other.size()) - 1);
  EXPECT_EQ(m.tokens, 8);
  const PrefixNodeId head = prefix.acquire(m);
  prefix.check_invariants();
  EXPECT_EQ(path_tokens(cache, prefix.segment(head)), std::vector<int32_t>(prompt.begin(), prompt.begin() + 8));
  // The running leaf still reads the whole prompt, now through two segments.
  std::vector<int32_t> want = prompt;
  want.insert(want.end(), {7, 7, 7});
  EXPECT_EQ(path_tokens(cache, leaf), want);
  // The identical prompt matches two blocks (it keeps its last token to run).
  EXPECT_EQ(prefix.match(prompt, 20).tokens, 16);
  // Referenced nodes are not evicted; once released they go, leaves first.
  EXPECT_EQ(prefix.evict_one(), 0u);
  prefix.release(head);
  prefix.release(node);
  cache.release(leaf);
  prefix.check_invariants();
  EXPECT_EQ(prefix.evictable_blocks(), 3u);
  EXPECT_EQ(prefix.evict_one(), 2u);  // the 13-token tail (2 blocks)
  EXPECT_EQ(prefix.evict_one(), 1u);  // then its parent
  EXPECT_EQ(cache.blocks_in_use(), 0u);
  EXPECT_EQ(cache.n_live_segments(), 0);
}

// Two prompts prefilled side by side that share their first token but not
// their first block ("You are a pirate ..." / "You are a doctor ..."): both
// are cached and each is matched by its own later requests. (Children keyed
// by their first token refused the second one, and it was never cached.)
TEST(PrefixCache, SiblingsSharingOnlyTheirFirstTokensAreBothCached) {
  KvCache cache(layout(), 64 * layout().block_bytes());
  PrefixCache prefix(cache);
  std::vector<std::vector<int32_t>> prompts;
  for (int p = 0; p < 2; ++p) {
    std::vector<int32_t> prompt = {1, 2, 3};
    for (int i = 3; i < 19; ++i) prompt.push_back(100 * (p + 1) + i);
    const SegmentId root = cache.create_root();
    append(cache, root, prompt);
    ASSERT_GE(prefix.insert(kPrefixRoot, root, prompt), 0) << "prompt " << p;
    prefix.check_invariants();
    prompts.push_back(prompt);
  }
  for (const auto& prompt : prompts) {
    const PrefixCache::Match m = prefix.match(prompt, int(prompt.size()) - 1);
    EXPECT_EQ(m.tokens, 16);
    EXPECT_EQ(path_tokens(cache, prefix.segment(m.node)), prompt);
  }
  prefix.evict_all();
  EXPECT_EQ(cache.blocks_in_use(), 0u);
}

// The scheduler's use of the cache, with random operations.
class RandomOperations {
 public:
  explicit RandomOperations(uint32_t seed) : rng_(seed), cache_(layout(), 40 * layout().block_bytes()), prefix_(cache_) {
    for (int f = 0; f < 4; ++f) families_.push_back(tokens(5 + int(rng_() % 30)));
  }

  void run(int operations) {
    for (int op = 0; op < operations; ++op) {
      const uint32_t kind = rng_() % 100;
      if (kind < 25) {
        submit();
      } else if (kind < 55 && !requests_.empty()) {
        advance(pick());
      } else if (kind < 70 && !requests_.empty()) {
        finish(pick());
      } else if (kind < 78) {
        evicted_ += prefix_.evict_one();
      } else if (!requests_.empty()) {
        advance(pick());
      }
      prefix_.check_invariants();
      check_accounting();
    }
    while (!requests_.empty()) finish(0);
    prefix_.check_invariants();
    EXPECT_EQ(cache_.blocks_in_use(), prefix_.cached_blocks());
    prefix_.evict_all();
    EXPECT_EQ(prefix_.n_nodes(), 0);
    EXPECT_EQ(cache_.blocks_in_use(), 0u);
    EXPECT_EQ(cache_.n_live_segments(), 0);
    EXPECT_GT(submitted_, 100);
    EXPECT_GT(matched_, 10);
    EXPECT_GT(evicted_, 0u);
  }

 private:
  struct Request {
    std::vector<int32_t> prompt;
    int matched = 0;
    PrefixNodeId node = kPrefixRoot;
    SegmentId prompt_segment = kNoSegment;  // while prefilling
    int prefilled = 0;
    std::vector<SegmentId> leaves;          // once decoding
    int n = 0, max_new = 0;
  };

  std::vector<int32_t> tokens(int n) {
    std::vector<int32_t> t(static_cast<size_t>(n));
    for (auto& x : t) x = int32_t(rng_() % 50);
    return t;
  }
  size_t pick() { return size_t(rng_() % requests_.size()); }
  size_t blocks(int tokens) const { return cache_.blocks_for_tokens(tokens); }

  size_t promised(const Request& r) const {
    if (r.prompt_segment != kNoSegment)
      return blocks(int(r.prompt.size()) - r.matched) + size_t(r.n) * blocks(r.max_new) - size_t(cache_.n_blocks(r.prompt_segment));
    size_t p = 0;
    for (SegmentId leaf : r.leaves) p += blocks(r.max_new) - size_t(cache_.n_blocks(leaf));
    return p;
  }

  void submit() {
    Request r;
    r.prompt = families_[rng_() % families_.size()];
    const std::vector<int32_t> own = tokens(1 + int(rng_() % 20));
    if (rng_() % 4 != 0) r.prompt.insert(r.prompt.end(), own.begin(), own.end());
    if (r.prompt.size() < 2) r.prompt.push_back(1);
    r.n = 1 + int(rng_() % 3);
    r.max_new = 1 + int(rng_() % 20);
    const int max_match = int(r.prompt.size()) - 1;
    PrefixCache::Match m = prefix_.match(r.prompt, max_match);
    EXPECT_EQ(m.tokens % layout().block_tokens, 0);
    EXPECT_LE(m.tokens, max_match);
    size_t promised_all = 0;
    for (const Request& other : requests_) promised_all += promised(other);
    const size_t pinned = cache_.blocks_in_use() - prefix_.evictable_blocks() + prefix_.unreferenced_blocks_on_path(m.node);
    const size_t need = blocks(int(r.prompt.size()) - m.tokens) + size_t(r.n) * blocks(r.max_new);
    if (pinned + promised_all + need > cache_.capacity_blocks()) return;  // would wait for admission
    r.node = prefix_.acquire(m);
    r.matched = m.tokens;
    if (m.tokens > 0) {
      ++matched_;
      // What the match covers, read back from the KV memory.
      EXPECT_EQ(path_tokens(cache_, prefix_.segment(r.node)),
                std::vector<int32_t>(r.prompt.begin(), r.prompt.begin() + m.tokens));
    }
    while (cache_.blocks_available() < promised_all + need && prefix_.evict_one() > 0) {
    }
    ASSERT_GE(cache_.blocks_available(), promised_all + need);
    r.prompt_segment = r.node == kPrefixRoot ? cache_.create_root() : cache_.fork(prefix_.segment(r.node));
    requests_.push_back(r);
    ++submitted_;
  }

  void advance(size_t i) {
    Request& r = requests_[i];
    if (r.prompt_segment != kNoSegment) {
      const int remaining = int(r.prompt.size()) - r.matched - r.prefilled;
      const int chunk = std::min(remaining, 1 + int(rng_() % 12));
      append(cache_, r.prompt_segment,
             std::span(r.prompt).subspan(size_t(r.matched + r.prefilled), size_t(chunk)));
      r.prefilled += chunk;
      if (r.prefilled < int(r.prompt.size()) - r.matched) return;
      for (int s = 0; s < r.n; ++s) r.leaves.push_back(cache_.fork(r.prompt_segment));
      const PrefixNodeId node = prefix_.insert(r.node, r.prompt_segment, std::span(r.prompt).subspan(size_t(r.matched)));
      if (node >= 0) {
        prefix_.acquire(node);
        prefix_.release(r.node);
        r.node = node;
      }
      EXPECT_EQ(path_tokens(cache_, r.leaves[0]), r.prompt);
      r.prompt_segment = kNoSegment;
      return;
    }
    for (SegmentId leaf : r.leaves)
      if (cache_.tokens(leaf) < r.max_new) append(cache_, leaf, tokens(1));
  }

  void finish(size_t i) {
    Request& r = requests_[i];
    if (r.prompt_segment != kNoSegment) cache_.release(r.prompt_segment);  // cancelled while prefilling
    for (SegmentId leaf : r.leaves) cache_.release(leaf);
    prefix_.release(r.node);
    requests_.erase(requests_.begin() + long(i));
  }

  // The pool holds exactly the cached nodes' blocks plus each request's own.
  void check_accounting() const {
    size_t own = 0;
    for (const Request& r : requests_) {
      if (r.prompt_segment != kNoSegment) own += size_t(cache_.n_blocks(r.prompt_segment));
      for (SegmentId leaf : r.leaves) own += size_t(cache_.n_blocks(leaf));
      // A prompt segment that did not join the cache (an identical prompt was inserted first) is its own too.
      if (r.prompt_segment == kNoSegment && !r.leaves.empty()) {
        const SegmentId parent = cache_.parent(r.leaves[0]);
        if (!cache_.is_held(parent)) own += size_t(cache_.n_blocks(parent));
      }
    }
    ASSERT_EQ(cache_.blocks_in_use(), prefix_.cached_blocks() + own);
  }

  std::mt19937 rng_;
  KvCache cache_;
  PrefixCache prefix_;
  std::vector<std::vector<int32_t>> families_;
  std::vector<Request> requests_;
  int submitted_ = 0, matched_ = 0;
  size_t evicted_ = 0;
};

TEST(PrefixCache, RandomOperationsKeepInvariantsAndReturnThePool) {
  const char* fixed = std::getenv("BIFURCATE_TEST_SEED");
  const uint32_t seed = fixed != nullptr ? uint32_t(std::strtoul(fixed, nullptr, 10)) : std::random_device{}();
  std::cout << "seed " << seed << " (rerun with BIFURCATE_TEST_SEED=" << seed << ")\n";
  RecordProperty("seed", std::to_string(seed));
  RandomOperations(seed).run(5000);
}

}  // namespace
}  // namespace bifurcate::kv
