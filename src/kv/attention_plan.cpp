#include "kv/attention_plan.h"

#include <algorithm>
#include <cstdint>

#include "util/error.h"

namespace bifurcate::kv {
namespace {

const char* type_name(kernels::KvType t) { return t == kernels::KvType::f32 ? "f32" : "f16"; }

void check_shape_matches(const KvLayout& layout, const kernels::AttentionShape& shape) {
  require(shape.n_kv_heads == layout.n_kv_heads && shape.head_size == layout.head_size &&
              shape.kv_type == layout.type,
          "attention plan: shape (n_kv_heads ", shape.n_kv_heads, ", head_size ", shape.head_size,
          ", kv_type ", type_name(shape.kv_type), ") does not match the KV cache layout (n_kv_heads ",
          layout.n_kv_heads, ", head_size ", layout.head_size, ", kv_type ", type_name(layout.type), ")");
  require(shape.n_heads >= 1 && shape.n_heads % shape.n_kv_heads == 0, "attention plan: n_heads ",
          shape.n_heads, " is not a positive multiple of n_kv_heads ", shape.n_kv_heads);
}

}  // namespace

kernels::AttentionPlan build_attention_plan(const KvCache& cache, std::span<const SegmentId> leaves,
                                            int layer, const kernels::AttentionShape& shape) {
  StepAttentionPlan step;
  step.build(cache, leaves, shape);
  return step.for_layer(layer);
}

void StepAttentionPlan::build(const KvCache& cache, std::span<const SegmentId> leaves,
                              const kernels::AttentionShape& shape) {
  build(cache, leaves, {}, shape);
}

void StepAttentionPlan::build(const KvCache& cache, std::span<const SegmentId> leaves,
                              std::span<const int> leaf_key_ends, const kernels::AttentionShape& shape) {
  require(leaf_key_ends.empty() || leaf_key_ends.size() == leaves.size(), "attention plan: ",
          leaf_key_ends.size(), " key limits for ", leaves.size(), " sequences");
  const KvLayout& layout = cache.layout();
  check_shape_matches(layout, shape);
  plan_.shape = shape;
  plan_.n_sequences = int(leaves.size());
  layer_ = 0;
  n_layers_ = layout.n_layers;
  layer_stride_ = std::ptrdiff_t(layout.layer_stride());
  planned_index_.assign(cache.table_size(), -1);
  segment_ids_.clear();

  std::size_t n_planned = 0;
  for (std::size_t i = 0; i < leaves.size(); ++i) {
    require(cache.is_live(leaves[i]), "attention plan: sequence ", i, " has leaf segment ", leaves[i],
            ", which does not exist");
    path_.clear();
    for (SegmentId s = leaves[i]; s != kNoSegment; s = cache.parent(s)) path_.push_back(s);
    for (auto it = path_.rbegin(); it != path_.rend(); ++it) {  // root first: parents precede children
      SegmentId s = *it;
      if (cache.tokens(s) == 0) continue;
      int& index = planned_index_[cache.table_index(s)];
      if (index < 0) {
        index = int(n_planned++);
        if (plan_.segments.size() < n_planned) plan_.segments.emplace_back();
        cache.view(s, 0, plan_.segments[std::size_t(index)]);  // also clears its sequences
        segment_ids_.push_back(s);
      }
      // i only grows, so each list stays ascending; a repeated leaf would add i once.
      auto& sequences = plan_.segments[std::size_t(index)].sequences;
      if (sequences.empty() || sequences.back() != int(i)) sequences.push_back(int(i));
    }
  }
  plan_.segments.resize(n_planned);
  for (std::size_t i = 0; i < leaf_key_ends.size(); ++i) limit_leaf_keys(cache, leaves[i], int(i), leaf_key_ends[i]);
  partition_attention(plan_);
}

void StepAttentionPlan::limit_leaf_keys(const KvCache& cache, SegmentId leaf, int sequence, int key_end) {
  const int tokens = cache.tokens(leaf);
  require(key_end >= 1 && key_end <= tokens, "attention plan: sequence ", sequence, " limited to ", key_end,
          " keys of its leaf's ", tokens);
  if (key_end == tokens) return;
  kernels::PlannedSegment& seg = plan_.segments[std::size_t(planned_index_[cache.table_index(leaf)])];
  if (seg.key_ends.empty()) seg.key_ends.assign(seg.sequences.size(), tokens);
  const auto at = std::lower_bound(seg.sequences.begin(), seg.sequences.end(), sequence);
  seg.key_ends[std::size_t(at - seg.sequences.begin())] = key_end;
}

void StepAttentionPlan::fold_nodes(const KvCache& cache, const AttentionCostModel& cost) {
  require(layer_ == 0, "attention plan: fold before moving to another layer");
  const size_t n = plan_.segments.size();
  planned_parent_.assign(n, -1);
  n_children_.assign(n, 0);
  child_readers_.assign(n, 0);
  folded_.assign(n, false);
  for (size_t j = 0; j < n; ++j) {
    for (SegmentId p = cache.parent(segment_ids_[j]); p != kNoSegment; p = cache.parent(p)) {
      const int index = planned_index_[cache.table_index(p)];
      if (index >= 0) {
        planned_parent_[j] = index;
        n_children_[size_t(index)]++;
        child_readers_[size_t(index)] += int(plan_.segments[j].sequences.size());
        break;
      }
    }
  }
  // Children follow their parents, so one pass decides every node after
  // whatever was folded into it, and folds whole chains downwards. A node
  // is folded when its children's readers are all of its own readers (none
  // of them ends at the node) and the cost rule says so.
  for (size_t j = 0; j < n; ++j) {
    const int p = planned_parent_[j];
    if (p < 0) continue;
    const kernels::PlannedSegment& parent = plan_.segments[size_t(p)];
    if (!parent.key_ends.empty() || child_readers_[size_t(p)] != int(parent.sequences.size()) ||
        !fold_is_cheaper(cost, plan_.shape, parent.tokens(), int(parent.sequences.size()), n_children_[size_t(p)]))
      continue;
    kernels::PlannedSegment& child = plan_.segments[j];
    const int parent_tokens = parent.tokens();
    for (int& end : child.key_ends) end += parent_tokens;
    child.chunks.insert(child.chunks.begin(), parent.chunks.begin(), parent.chunks.end());
    folded_[size_t(p)] = true;
  }
  size_t kept = 0;
  for (size_t j = 0; j < n; ++j) {
    if (folded_[j]) continue;
    if (kept != j) {
      std::swap(plan_.segments[kept], plan_.segments[j]);
      segment_ids_[kept] = segment_ids_[j];
    }
    ++kept;
  }
  plan_.segments.resize(kept);
  segment_ids_.resize(kept);
  partition_attention(plan_);
}

const kernels::AttentionPlan& StepAttentionPlan::for_layer(int layer) {
  require(layer >= 0 && layer < n_layers_, "attention plan: layer ", layer, " out of range for ", n_layers_,
          " layers");
  std::ptrdiff_t shift = std::ptrdiff_t(layer - layer_) * layer_stride_;
  if (shift != 0) {
    for (auto& segment : plan_.segments) {
      for (auto& chunk : segment.chunks) {
        chunk.k = static_cast<const uint8_t*>(chunk.k) + shift;
        chunk.v = static_cast<const uint8_t*>(chunk.v) + shift;
      }
    }
  }
  layer_ = layer;
  return plan_;
}

}  // namespace bifurcate::kv
