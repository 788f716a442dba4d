// Attention for a decode step (attend) and for a causal prefill chunk
// (attend_causal), run from a plan over the KV tree's segments.
//
// attend: each segment is attended ONCE per KV head by the stacked queries of
// every sequence that lists it (attention_segment.h), its keys split and its
// rows grouped as the plan says (PlannedSegment::key_splits, row_groups; the
// plan's builder decides, kv/attention_cost.h), so both threads work even at
// b = 1. Each
// (sequence, head) then merges its partial states (attention_state.h) in a
// fixed order — segment index, then key split — so the result is bitwise the
// same for any thread count. Replicated attention is the same call with one
// private full segment per sequence.
#pragma once

#include <cstddef>
#include <vector>

#include "kernels/attention_segment.h"
#include "kernels/attention_state.h"
#include "kernels/attention_types.h"
#include "util/aligned_buffer.h"
#include "util/thread_pool.h"

namespace bifurcate::kernels {

class AttentionRunner;  // attention.cpp: builds and runs the work of one call

// Scratch reused across calls: after the first call of a given size, later
// calls of the same or smaller size allocate nothing.
class AttentionWorkspace {
 public:
  AttentionWorkspace() = default;

 private:
  friend class AttentionRunner;
  friend void attend(const AttentionPlan&, const float*, float*, AttentionWorkspace&, ThreadPool&);

  // One unit of parallel work: a key range of one KV head of one segment
  // against a run of stacked rows [first_row, first_row + n_rows).
  struct Task {
    int segment;
    int kv_head;
    int key_begin;
    int key_end;
    int first_row;
    int n_rows;
    double cost;
    bool causal;  // rows carry key limits (row_key_end_)
  };

  std::vector<long long> keys_seen_;      // (sequences) validation: keys each sequence attends
  std::vector<Task> tasks_;
  std::vector<int> task_order_;           // tasks_ indices, most expensive first
  std::vector<const float*> row_q_;       // (stacked rows) query row per partial row
  std::vector<int> row_key_end_;          // (stacked rows) causal limits, -1 outside causal tasks
  std::vector<int> row_target_;           // (stacked rows) output row it belongs to
  AlignedBuffer<float> partial_o_;        // (stacked rows, head_size)
  AlignedBuffer<float> partial_lse_;      // (stacked rows)
  std::vector<int> merge_begin_;          // (output rows + 1) CSR offsets into merge_rows_
  std::vector<int> merge_rows_;           // partial rows of each output row, in merge order
  std::vector<int> merge_cursor_;         // (output rows) fill position while building merge_rows_
  std::vector<SegmentScratch> scratch_;   // one per pool thread
  std::vector<std::vector<const float*>> merge_o_;  // one per pool thread
  std::vector<std::vector<float>> merge_lse_;       // one per pool thread
};

// q and out: [n_sequences, n_heads, head_size] f32, row-major. Validates the plan first and
// throws bifurcate::Error naming the problem (h % g != 0, head_size < 1, sequence index out of
// range or repeated, a sequence attending to zero keys, null chunk pointers, ...).
void attend(const AttentionPlan& plan, const float* q, float* out, AttentionWorkspace& ws,
            ThreadPool& pool);

// Causal prefill over ONE segment: queries for token positions first_position ..
// first_position + n_queries - 1 (q/out [n_queries, n_heads, head_size]); query i attends keys
// [0, first_position + i] of `segment`, whose chunks already hold those keys. segment.sequences
// is ignored; its key_splits and row_groups partition the work (kv::partition_causal).
void attend_causal(const AttentionShape& shape, const PlannedSegment& segment, int first_position,
                   int n_queries, const float* q, float* out, AttentionWorkspace& ws,
                   ThreadPool& pool);

}  // namespace bifurcate::kernels
