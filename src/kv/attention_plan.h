// Building a decode step's kernels::AttentionPlan from the segment tree.
//
// Sequence i of the batch is the path root..leaves[i]. Every non-empty segment
// on any of those paths appears once in the plan, listing (ascending) the batch
// indices whose path contains it, so a shared prefix is read once for all of
// them. Segments come in tree order (a parent before its children; siblings in
// order of their first sequence). Empty segments (e.g. a just-forked leaf) are
// left out: they hold no keys. Every plan carries its thread partition
// (kv/attention_cost.h: partition_attention).
#pragma once

#include <span>
#include <vector>

#include "kernels/attention_types.h"
#include "kv/attention_cost.h"
#include "kv/kv_cache.h"

namespace bifurcate::kv {

// The plan for one layer. Throws Error if `shape` disagrees with the cache's
// layout, `layer` is out of range, or a leaf is not a live segment.
kernels::AttentionPlan build_attention_plan(const KvCache& cache, std::span<const SegmentId> leaves,
                                            int layer, const kernels::AttentionShape& shape);

// A step's plan built once and moved between layers cheaply: every layer's
// chunks sit at the same offsets of the same blocks, shifted by the layout's
// layer stride, so switching layer only adds a constant to each chunk pointer.
// Reusing one StepAttentionPlan across steps allocates nothing once its vectors
// have grown to the batch's size.
class StepAttentionPlan {
 public:
  // Rebuilds the plan (at layer 0) for the current state of `cache`.
  void build(const KvCache& cache, std::span<const SegmentId> leaves, const kernels::AttentionShape& shape);
  // Same, where sequence i sees only the first leaf_key_ends[i] tokens of its
  // own leaf (all of its ancestors): the rows of a prefill chunk appended to
  // that leaf, causal within it. Several sequences may share a leaf.
  void build(const KvCache& cache, std::span<const SegmentId> leaves, std::span<const int> leaf_key_ends,
             const kernels::AttentionShape& shape);
  // The node rule of kv/attention_cost.h, after build(): every segment whose
  // readers are split exactly between its planned children is folded into
  // each of them (its chunks first; the children's key limits shift by its
  // tokens) when that is cheaper than reading it on its own — always for a
  // single-reader chain, for several children only when the node is short.
  // Top-down, so a folded node's tokens travel on into its children's own
  // decision. segment_ids()[j] then names the deepest segment of entry j.
  // Re-partitions the plan. Call at layer 0, before for_layer().
  void fold_nodes(const KvCache& cache, const AttentionCostModel& cost = {});
  // The plan with its chunks pointing at `layer`.
  const kernels::AttentionPlan& for_layer(int layer);
  // segment_ids()[j] is the cache segment behind plan().segments[j].
  const std::vector<SegmentId>& segment_ids() const { return segment_ids_; }
  const kernels::AttentionPlan& plan() const { return plan_; }
  int layer() const { return layer_; }

 private:
  kernels::AttentionPlan plan_{};
  std::vector<SegmentId> segment_ids_;
  std::vector<int> planned_index_;  // by KvCache::table_index: index into plan_.segments, or -1
  void limit_leaf_keys(const KvCache& cache, SegmentId leaf, int sequence, int key_end);

  std::vector<SegmentId> path_;     // scratch: one leaf's path, root first
  std::vector<int> planned_parent_; // scratch: per planned segment, its nearest planned ancestor or -1
  std::vector<int> n_children_;     // scratch: per planned segment, its planned children
  std::vector<int> child_readers_;  // scratch: per planned segment, the sequences of its planned children
  std::vector<bool> folded_;        // scratch: per planned segment, folded into its children
  int layer_ = 0;
  int n_layers_ = 0;
  std::ptrdiff_t layer_stride_ = 0;
};

}  // namespace bifurcate::kv
