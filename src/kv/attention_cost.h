// How a decode step's attention is cut into work, decided on the plan side
// from the plan alone (never from the thread count, so results are bitwise
// the same on any pool): which tree nodes are read on their own, and how
// each planned segment's read is split for the threads. The kernels
// (kernels/attention.h) run what this decides.
//
// Node rule (fold or read on its own). A node of t tokens (after anything
// already folded into it) read by R stacked rows (readers × h/g query heads)
// whose readers are split exactly between its r planned children can be
//   read on its own: one more task per KV head and layer (dispatch, stacking
//     the rows' queries, normalising their outputs) and one more partial
//     state per row ((k + 1) floats written, then read and merged: ~4k FLOPs);
//   or folded into each child's read: its K/V bytes are read, and converted
//     to f32, r - 1 more times; no task, no partial state.
// In the bench's roofline terms, per KV head and layer (k head size, e KV
// element bytes, BW DRAM read bandwidth, F FMA ceiling, T task overhead):
//   own    = T + 2·R·(k + 1)·4 / BW + 4·R·k / F
//   folded = (r - 1)·(2·t·k·e / BW + 2·t·k / F)
// and the node is folded iff folded < own. With r = 1 folding costs nothing
// extra, so a single-reader chain always folds; with r >= 2 only short nodes
// fold (for the defaults below, k = 128, f16, h/g = 1, one reader per child:
// t <= 49 tokens when r = 2, t <= 18 when r = 4). The constants are figures of this
// machine (docs/perf-notes.md): BW and F are `bench`'s quiet-machine probes;
// T is bench_attention's short_node_own vs short_node_folded (a node read
// on its own vs folded, t = 1..64): ~0.4-0.8 us of CPU per extra task.
//
// Thread partition. Each (segment, KV head) is one task, its keys split in
// `key_splits` near-equal ranges (on tile multiples, never below
// kMinSplitTokens each) when the segment's share of the step's work is
// above 1/kTargetTasks of it, so a long context read by few rows still
// keeps both threads busy; a segment whose rows see only part of it (a
// prefill chunk, causal) is also cut into `row_groups` groups of rows.
#pragma once

#include "kernels/attention_types.h"

namespace bifurcate::kv {

struct AttentionCostModel {
  double read_bytes_per_second = 50e9;  // BW: bench's DRAM read probe, quiet machine (49-76 GB/s)
  double flops_per_second = 400e9;      // F: bench's FP32 FMA ceiling, quiet (~430 GFLOP/s)
  double task_seconds = 0.5e-6;         // T: one more (segment, KV head) task
};

// The node rule above: true when reading the node folded into its children is cheaper.
bool fold_is_cheaper(const AttentionCostModel& model, const kernels::AttentionShape& shape, int node_tokens,
                     int node_readers, int n_children);

// Work splitting: tasks a step's attention aims for, and the shortest key range a split may leave.
inline constexpr int kTargetTasks = 16;
inline constexpr int kMinSplitTokens = 256;

// Sets every segment's key_splits and row_groups (the thread partition above).
void partition_attention(kernels::AttentionPlan& plan);
// The same for kernels::attend_causal's one segment and its n_queries rows.
void partition_causal(const kernels::AttentionShape& shape, int first_position, int n_queries,
                      kernels::PlannedSegment& segment);

}  // namespace bifurcate::kv
