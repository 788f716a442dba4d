#include "kv/attention_cost.h"

#include <algorithm>
#include <cmath>

namespace bifurcate::kv {
namespace {

// Keys are read once per task whatever the row count; arithmetic grows with rows.
double read_cost(int tokens, int rows) { return double(tokens) * (rows + 8); }

int key_splits(int tokens, double share_of_target) {
  const int wanted = std::max(1, int(std::ceil(share_of_target - 1e-9)));
  return std::max(1, std::min(wanted, tokens / kMinSplitTokens));
}

// A prefill chunk's rows: in groups (kTargetTasks tasks over the KV heads),
// every group's keys split as the longest, `keys`, allows.
void partition_rows(int n_kv_heads, int n_rows, int keys, kernels::PlannedSegment& seg) {
  seg.row_groups = std::min(n_rows, (kTargetTasks + n_kv_heads - 1) / n_kv_heads);
  seg.key_splits = key_splits(keys, double(kTargetTasks) / (n_kv_heads * seg.row_groups));
}

}  // namespace

bool fold_is_cheaper(const AttentionCostModel& m, const kernels::AttentionShape& shape, int node_tokens,
                     int node_readers, int n_children) {
  const double k = shape.head_size, e = double(kernels::kv_type_bytes(shape.kv_type));
  const double rows = double(node_readers) * (shape.n_heads / shape.n_kv_heads);
  const double own = m.task_seconds + 2 * rows * (k + 1) * 4 / m.read_bytes_per_second +
                     4 * rows * k / m.flops_per_second;
  const double t = node_tokens;
  const double folded =
      (n_children - 1) * (2 * t * k * e / m.read_bytes_per_second + 2 * t * k / m.flops_per_second);
  return folded < own;
}

void partition_attention(kernels::AttentionPlan& plan) {
  const int g = plan.shape.n_kv_heads, r = plan.shape.n_heads / g;
  double total = 0;
  for (const kernels::PlannedSegment& seg : plan.segments)
    total += g * read_cost(seg.tokens(), int(seg.sequences.size()) * r);
  for (kernels::PlannedSegment& seg : plan.segments) {
    const int tokens = seg.tokens(), n = int(seg.sequences.size());
    seg.key_splits = 1;
    seg.row_groups = 1;
    if (tokens == 0 || n == 0) continue;
    if (seg.key_ends.empty()) {
      seg.key_splits = key_splits(tokens, kTargetTasks * read_cost(tokens, n * r) / total);
    } else {
      partition_rows(g, n, *std::max_element(seg.key_ends.begin(), seg.key_ends.end()), seg);
    }
  }
}

void partition_causal(const kernels::AttentionShape& shape, int first_position, int n_queries,
                      kernels::PlannedSegment& segment) {
  partition_rows(shape.n_kv_heads, std::max(1, n_queries), first_position + n_queries, segment);
}

}  // namespace bifurcate::kv
