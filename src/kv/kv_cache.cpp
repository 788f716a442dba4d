#include "kv/kv_cache.h"

#include <algorithm>
#include <cstring>
#include <iomanip>
#include <sstream>

#include "util/error.h"

namespace bifurcate::kv {
namespace {

std::string gib(std::size_t bytes) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(3) << double(bytes) / double(std::size_t(1) << 30) << " GiB";
  return out.str();
}

}  // namespace

KvCache::KvCache(const KvLayout& layout, std::size_t budget_bytes)
    : layout_((layout.validate(), layout)), pool_(layout.block_bytes(), budget_bytes) {}

std::size_t KvCache::blocks_for_tokens(int64_t n_tokens) const {
  require(n_tokens >= 0, "KvCache: token count must be >= 0, got ", n_tokens);
  return std::size_t((n_tokens + layout_.block_tokens - 1) / layout_.block_tokens);
}

std::size_t KvCache::blocks_to_grow(SegmentId s, int n) const {
  const Segment& seg = live_segment(s, "blocks_to_grow");
  return blocks_for_tokens(int64_t(seg.tokens) + n) - seg.blocks.size();
}

std::size_t KvCache::bytes_for_tokens(int64_t n_tokens) const {
  return blocks_for_tokens(n_tokens) * pool_.block_stride();
}

void KvCache::throw_budget_exceeded(std::size_t blocks_needed, const std::string& what) const {
  std::size_t need = blocks_needed * pool_.block_stride();
  throw Error(str("KV cache budget exceeded: need ", need, " bytes (", gib(need), ") for ", what, ", budget ",
                  budget_bytes(), " bytes (", gib(budget_bytes()), "), in use ", bytes_in_use(), " bytes (",
                  gib(bytes_in_use()), "), ", pool_.block_stride(), " bytes per block of ",
                  layout_.block_tokens, " tokens"));
}

// Segment i receiving t_i of the T tokens needs at most ceil(t_i / B) fresh
// blocks, and sum_i ceil(t_i / B) <= floor((T + n (B - 1)) / B) whatever the
// split; no token needs more than one block, hence also <= T. Blocks already
// partly filled are ignored, so the bound is conservative by at most n blocks.
void KvCache::check_budget(int64_t extra_tokens_total, int n_growing_segments) const {
  require(extra_tokens_total >= 0, "KvCache::check_budget: extra_tokens_total must be >= 0, got ",
          extra_tokens_total);
  require(n_growing_segments >= 1 || extra_tokens_total == 0, "KvCache::check_budget: ", extra_tokens_total,
          " tokens need at least one growing segment, got ", n_growing_segments);
  if (extra_tokens_total == 0) return;
  int64_t b = layout_.block_tokens;
  int64_t spread = (extra_tokens_total + int64_t(n_growing_segments) * (b - 1)) / b;
  auto blocks_needed = std::size_t(std::min(extra_tokens_total, spread));
  if (blocks_needed > pool_.blocks_available()) {
    throw_budget_exceeded(
        blocks_needed, str(extra_tokens_total, " more tokens in ", n_growing_segments, " growing segments"));
  }
}

void KvCache::check_budget_per_segment(int64_t tokens_each, int n_segments) const {
  require(tokens_each >= 0 && n_segments >= 0, "KvCache::check_budget_per_segment: tokens_each ", tokens_each,
          " and n_segments ", n_segments, " must be >= 0");
  std::size_t blocks_needed = blocks_for_tokens(tokens_each) * std::size_t(n_segments);
  if (blocks_needed > pool_.blocks_available()) {
    throw_budget_exceeded(blocks_needed, str(n_segments, " segments of ", tokens_each, " more tokens each"));
  }
}

const KvCache::Segment& KvCache::live_segment(SegmentId s, const char* caller) const {
  require(is_live(s), "KvCache::", caller, ": segment ", s, " does not exist (released or never created)");
  return at(s);
}

KvCache::Segment& KvCache::live_segment(SegmentId s, const char* caller) {
  return const_cast<Segment&>(std::as_const(*this).live_segment(s, caller));
}

SegmentId KvCache::new_segment(SegmentId parent, int path_offset) {
  std::size_t index;
  if (!free_entries_.empty()) {
    index = free_entries_.back();
    free_entries_.pop_back();
  } else {
    require(segments_.size() <= kIndexMask, "KvCache: more than ", kIndexMask + 1, " live segments");
    index = segments_.size();
    segments_.emplace_back();
  }
  Segment& seg = segments_[index];
  seg.parent = parent;
  seg.n_children = 0;
  seg.tokens = 0;
  seg.path_offset = path_offset;
  seg.live = true;
  seg.frozen = false;
  seg.held = false;
  seg.blocks.clear();
  ++n_live_;
  return SegmentId((uint32_t(seg.generation) << kIndexBits) | uint32_t(index));
}

void KvCache::free_segment(SegmentId s) {
  Segment& seg = at(s);
  for (uint8_t* block : seg.blocks) pool_.free(block);
  seg.blocks.clear();
  seg.live = false;
  seg.generation = uint8_t((seg.generation + 1) & kGenerationMask);
  free_entries_.push_back(uint32_t(s) & kIndexMask);
  --n_live_;
}

SegmentId KvCache::create_root() { return new_segment(kNoSegment, 0); }

SegmentId KvCache::fork(SegmentId parent) {
  int offset = path_tokens(parent);               // validates `parent`
  SegmentId child = new_segment(parent, offset);  // may move segments_: index again below
  Segment& p = at(parent);
  ++p.n_children;
  p.frozen = true;
  return child;
}

void KvCache::release(SegmentId leaf) {
  const Segment& seg = live_segment(leaf, "release");
  require(seg.n_children == 0, "KvCache::release: segment ", leaf, " has ", seg.n_children,
          " live children; release its leaves instead (it is freed with its last child)");
  require(!seg.held, "KvCache::release: segment ", leaf, " is held; unhold it instead");
  free_upwards(leaf);
}

// Frees `s` (childless, unheld) and every ancestor its freeing leaves childless and unheld.
void KvCache::free_upwards(SegmentId s) {
  while (true) {
    SegmentId p = at(s).parent;
    free_segment(s);
    if (p == kNoSegment || --at(p).n_children > 0 || at(p).held) break;
    s = p;
  }
}

void KvCache::hold(SegmentId s) {
  Segment& seg = live_segment(s, "hold");
  require(!seg.held, "KvCache::hold: segment ", s, " is already held");
  seg.held = true;
}

void KvCache::unhold(SegmentId s) {
  Segment& seg = live_segment(s, "unhold");
  require(seg.held, "KvCache::unhold: segment ", s, " is not held");
  seg.held = false;
  if (seg.n_children == 0) free_upwards(s);
}

bool KvCache::is_held(SegmentId s) const { return live_segment(s, "is_held").held; }

SegmentId KvCache::split(SegmentId s, int at_token) {
  const Segment& seg = live_segment(s, "split");
  require(seg.frozen, "KvCache::split: segment ", s, " still grows; only frozen segments split");
  require(at_token > 0 && at_token < seg.tokens && at_token % layout_.block_tokens == 0, "KvCache::split: token ",
          at_token, " is not a block boundary strictly inside segment ", s, " of ", seg.tokens, " tokens");
  const SegmentId head = new_segment(seg.parent, seg.path_offset);  // may move segments_: index again below
  Segment& h = at(head);
  Segment& tail = at(s);
  const auto n_head_blocks = std::ptrdiff_t(at_token / layout_.block_tokens);
  h.blocks.assign(tail.blocks.begin(), tail.blocks.begin() + n_head_blocks);
  tail.blocks.erase(tail.blocks.begin(), tail.blocks.begin() + n_head_blocks);
  h.tokens = at_token;
  h.frozen = true;
  h.held = tail.held;
  h.n_children = 1;
  tail.tokens -= at_token;
  tail.path_offset += at_token;
  tail.parent = head;  // the old parent's child count is unchanged: head replaces s
  return head;
}

bool KvCache::is_live(SegmentId s) const {
  if (s < 0 || (uint32_t(s) & kIndexMask) >= segments_.size()) return false;
  const Segment& seg = at(s);
  return seg.live && seg.generation == (uint32_t(s) >> kIndexBits);
}

std::size_t KvCache::table_index(SegmentId s) const {
  live_segment(s, "table_index");
  return uint32_t(s) & kIndexMask;
}
SegmentId KvCache::parent(SegmentId s) const { return live_segment(s, "parent").parent; }
int KvCache::n_children(SegmentId s) const { return live_segment(s, "n_children").n_children; }
bool KvCache::is_frozen(SegmentId s) const { return live_segment(s, "is_frozen").frozen; }
int KvCache::tokens(SegmentId s) const { return live_segment(s, "tokens").tokens; }
int KvCache::n_blocks(SegmentId s) const { return int(live_segment(s, "n_blocks").blocks.size()); }

int KvCache::path_tokens(SegmentId s) const {
  const Segment& seg = live_segment(s, "path_tokens");
  return seg.path_offset + seg.tokens;
}

std::vector<SegmentId> KvCache::path_of(SegmentId s) const {
  std::vector<SegmentId> path;
  for (SegmentId p = s; p != kNoSegment; p = at(p).parent) path.push_back(p);
  std::reverse(path.begin(), path.end());
  return path;
}

KvCache::Slot KvCache::append_token(SegmentId s) {
  Segment& seg = live_segment(s, "append_token");
  require(!seg.frozen, "KvCache::append_token: segment ", s, " has been forked (", seg.n_children,
          " live children) and is frozen; only leaves grow");
  int index = seg.tokens % layout_.block_tokens;
  if (index == 0) {
    if (pool_.blocks_available() == 0) throw_budget_exceeded(1, str("token ", seg.tokens, " of segment ", s));
    seg.blocks.push_back(nullptr);  // grow the vector first so a throw cannot lose the block
    seg.blocks.back() = pool_.allocate();
  }
  ++seg.tokens;
  return Slot{seg.blocks.back(), index};
}

void KvCache::append_tokens(SegmentId s, int n, std::vector<Slot>& slots) {
  const Segment& seg = live_segment(s, "append_tokens");
  require(n >= 0, "KvCache::append_tokens: n must be >= 0, got ", n);
  require(!seg.frozen, "KvCache::append_tokens: segment ", s, " has been forked (", seg.n_children,
          " live children) and is frozen; only leaves grow");
  std::size_t new_blocks = blocks_for_tokens(int64_t(seg.tokens) + n) - seg.blocks.size();
  if (new_blocks > pool_.blocks_available()) {
    throw_budget_exceeded(new_blocks, str(n, " more tokens of segment ", s, " (", seg.tokens, " so far)"));
  }
  slots.clear();
  slots.reserve(std::size_t(n));
  for (int i = 0; i < n; ++i) slots.push_back(append_token(s));
}

KvCache::Slot KvCache::slot(SegmentId s, int index) const {
  const Segment& seg = live_segment(s, "slot");
  require(index >= 0 && index < seg.tokens, "KvCache::slot: token ", index, " out of range for segment ", s,
          " of ", seg.tokens, " tokens");
  return Slot{seg.blocks[std::size_t(index / layout_.block_tokens)], index % layout_.block_tokens};
}

void* KvCache::k_row(const Slot& slot, int layer, int kv_head) const {
  require(layer >= 0 && layer < layout_.n_layers && kv_head >= 0 && kv_head < layout_.n_kv_heads,
          "KvCache::k_row: (layer ", layer, ", kv_head ", kv_head, ") out of range for ", layout_.n_layers,
          " layers x ", layout_.n_kv_heads, " KV heads");
  require(slot.block != nullptr && slot.index_in_block >= 0 && slot.index_in_block < layout_.block_tokens,
          "KvCache::k_row: invalid slot (index ", slot.index_in_block, ")");
  return slot.block + std::size_t(layer) * layout_.layer_stride() +
         std::size_t(kv_head) * layout_.head_stride() +
         std::size_t(slot.index_in_block) * layout_.row_bytes();
}

void* KvCache::v_row(const Slot& slot, int layer, int kv_head) const {
  return static_cast<uint8_t*>(k_row(slot, layer, kv_head)) + layout_.run_bytes();
}

kernels::PlannedSegment KvCache::view(SegmentId s, int layer) const {
  kernels::PlannedSegment out;
  view(s, layer, out);
  return out;
}

void KvCache::view(SegmentId s, int layer, kernels::PlannedSegment& out) const {
  const Segment& seg = live_segment(s, "view");
  require(layer >= 0 && layer < layout_.n_layers, "KvCache::view: layer ", layer, " out of range for ",
          layout_.n_layers, " layers");
  std::size_t layer_offset = std::size_t(layer) * layout_.layer_stride();
  out.chunks.clear();
  out.sequences.clear();
  out.key_ends.clear();
  out.head_stride = layout_.head_stride();
  int remaining = seg.tokens;
  for (uint8_t* block : seg.blocks) {
    const uint8_t* k = block + layer_offset;
    int n = std::min(remaining, layout_.block_tokens);
    out.chunks.push_back(kernels::KvChunk{k, k + layout_.run_bytes(), n});
    remaining -= n;
  }
}

// Copies tokens [src_begin, src_begin+n) of `src` to [dst_begin, ...) of `dst`
// (whose blocks already exist), in runs that stay inside one source and one
// destination block, for every layer and KV head.
void KvCache::copy_tokens(const Segment& src, int src_begin, Segment& dst, int dst_begin, int n) const {
  const int bt = layout_.block_tokens;
  const std::size_t row = layout_.row_bytes();
  while (n > 0) {
    int s_off = src_begin % bt, d_off = dst_begin % bt;
    int run = std::min({n, bt - s_off, bt - d_off});
    const uint8_t* s_block = src.blocks[std::size_t(src_begin / bt)];
    uint8_t* d_block = dst.blocks[std::size_t(dst_begin / bt)];
    for (int l = 0; l < layout_.n_layers; ++l) {
      for (int j = 0; j < layout_.n_kv_heads; ++j) {
        std::size_t head = std::size_t(l) * layout_.layer_stride() + std::size_t(j) * layout_.head_stride();
        for (std::size_t kv_part : {std::size_t(0), layout_.run_bytes()}) {  // K run, then V run
          std::memcpy(d_block + head + kv_part + std::size_t(d_off) * row,
                      s_block + head + kv_part + std::size_t(s_off) * row, std::size_t(run) * row);
        }
      }
    }
    src_begin += run;
    dst_begin += run;
    n -= run;
  }
}

SegmentId KvCache::copy_path(SegmentId s) { return copy_path_prefix(*this, s, path_tokens(s)); }

SegmentId KvCache::copy_path_prefix(const KvCache& source, SegmentId s, int n_tokens) {
  const KvLayout& from = source.layout();
  require(from.n_layers == layout_.n_layers && from.n_kv_heads == layout_.n_kv_heads &&
              from.head_size == layout_.head_size && from.type == layout_.type &&
              from.block_tokens == layout_.block_tokens,
          "KV cache copy: the source cache's layout differs from this cache's");
  const int path = source.path_tokens(s);  // validates `s`
  require(n_tokens >= 0 && n_tokens <= path, "KV cache copy: ", n_tokens, " tokens asked of the ", path,
          "-token path of segment ", s);
  std::size_t n_blocks = blocks_for_tokens(n_tokens);
  if (n_blocks > pool_.blocks_available()) {
    throw_budget_exceeded(n_blocks, str("a private copy of ", n_tokens, " tokens of the path of segment ", s));
  }
  const std::vector<SegmentId> segments = source.path_of(s);
  SegmentId copy = new_segment(kNoSegment, 0);  // may move segments_: take references after
  Segment& dst = at(copy);
  dst.blocks.reserve(n_blocks);
  for (std::size_t i = 0; i < n_blocks; ++i) dst.blocks.push_back(pool_.allocate());
  dst.tokens = n_tokens;
  int position = 0;
  for (SegmentId p : segments) {
    if (position == n_tokens) break;
    const Segment& src = source.at(p);
    const int n = std::min(src.tokens, n_tokens - position);
    copy_tokens(src, 0, dst, position, n);
    position += n;
  }
  return copy;
}

}  // namespace bifurcate::kv
