#include "kernels/attention.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>
#include <span>

#include "util/error.h"

namespace bifurcate::kernels {

int PlannedSegment::tokens() const {
  int n = 0;
  for (const KvChunk& c : chunks) n += c.tokens;
  return n;
}

namespace {

// The work's partition comes with the plan (PlannedSegment::key_splits,
// row_groups: kv/attention_cost.h decides it), never from the pool size, so
// every thread count computes the same partial states and merges them identically.
constexpr int kMergeRowsPerTask = 64;

int merge_batches(int n_out_rows) { return (n_out_rows + kMergeRowsPerTask - 1) / kMergeRowsPerTask; }

void validate_shape(const AttentionShape& s) {
  require(s.n_heads >= 1, "attention: n_heads must be >= 1, got ", s.n_heads);
  require(s.n_kv_heads >= 1, "attention: n_kv_heads must be >= 1, got ", s.n_kv_heads);
  require(s.n_heads % s.n_kv_heads == 0, "attention: n_heads ", s.n_heads,
          " is not a multiple of n_kv_heads ", s.n_kv_heads);
  require(s.head_size >= 1, "attention: head_size must be >= 1, got ", s.head_size);
  require(s.kv_type == KvType::f32 || s.kv_type == KvType::f16, "attention: unknown KvType ",
          int(s.kv_type));
  require(std::isfinite(s.scale), "attention: scale must be finite, got ", s.scale);
}

void validate_chunks(const AttentionShape& shape, const PlannedSegment& seg, std::size_t index) {
  const std::size_t row_bytes = std::size_t(shape.head_size) * kv_type_bytes(shape.kv_type);
  for (std::size_t c = 0; c < seg.chunks.size(); ++c) {
    const KvChunk& chunk = seg.chunks[c];
    require(chunk.tokens >= 0, "attention: segment ", index, " chunk ", c, " has ", chunk.tokens,
            " tokens");
    if (chunk.tokens == 0) continue;
    require(chunk.k != nullptr && chunk.v != nullptr, "attention: segment ", index, " chunk ", c,
            " has a null ", chunk.k == nullptr ? "K" : "V", " pointer");
    // With several KV heads, one head's rows must fit before the next head starts.
    require(shape.n_kv_heads == 1 || seg.head_stride >= std::size_t(chunk.tokens) * row_bytes,
            "attention: segment ", index, " chunk ", c, " head_stride ", seg.head_stride,
            " bytes is smaller than its ", chunk.tokens, " tokens x ", row_bytes, " bytes per row");
  }
}

// keys_seen: scratch, resized to n_sequences.
void validate_plan(const AttentionPlan& plan, const float* q, const float* out,
                   std::vector<long long>& keys_seen) {
  validate_shape(plan.shape);
  require(plan.n_sequences >= 0, "attention: n_sequences must be >= 0, got ", plan.n_sequences);
  if (plan.n_sequences == 0) return;
  require(q != nullptr && out != nullptr, "attention: null q or out for ", plan.n_sequences,
          " sequences");
  keys_seen.assign(std::size_t(plan.n_sequences), 0);
  for (std::size_t s = 0; s < plan.segments.size(); ++s) {
    const PlannedSegment& seg = plan.segments[s];
    validate_chunks(plan.shape, seg, s);
    require(seg.key_ends.empty() || seg.key_ends.size() == seg.sequences.size(), "attention: segment ", s,
            " has ", seg.key_ends.size(), " key limits for ", seg.sequences.size(), " sequences");
    int previous = -1;
    for (std::size_t i = 0; i < seg.sequences.size(); ++i) {
      const int sequence = seg.sequences[i];
      require(sequence >= 0 && sequence < plan.n_sequences, "attention: segment ", s,
              " lists sequence ", sequence, ", outside [0, ", plan.n_sequences, ")");
      require(sequence > previous, "attention: segment ", s, " lists sequence ", sequence,
              " after ", previous, " (must be ascending, no duplicates)");
      previous = sequence;
      const int keys = seg.keys_seen(i);
      require(keys >= 0 && keys <= seg.tokens(), "attention: segment ", s, " limits sequence ", sequence,
              " to ", keys, " keys of its ", seg.tokens());
      keys_seen[std::size_t(sequence)] += keys;
    }
  }
  for (int i = 0; i < plan.n_sequences; ++i)
    require(keys_seen[std::size_t(i)] > 0, "attention: sequence ", i, " attends to zero keys");
}

// Boundaries of `splits` near-equal key ranges of [0, tokens), on tile multiples.
int split_point(int tokens, int split, int splits) {
  if (split >= splits) return tokens;
  long long p = (long long)tokens * split / splits;
  p = p / kSegmentTileTokens * kSegmentTileTokens;
  return int(std::min<long long>(p, tokens));
}

// The plan's split count, but no range shorter than a tile.
int key_splits(int tokens, int planned) {
  return std::max(1, std::min(planned, tokens / kSegmentTileTokens));
}

}  // namespace

// Builds the task list and the merge order into the workspace, then runs both.
class AttentionRunner {
 public:
  AttentionRunner(const AttentionShape& shape, AttentionWorkspace& ws) : shape_(shape), ws_(ws) {
    ws_.tasks_.clear();
    ws_.row_q_.clear();
    ws_.row_key_end_.clear();
    ws_.row_target_.clear();
  }

  // Decode: every listed sequence × the group's heads, for each segment and KV head.
  void add_plan(const AttentionPlan& plan, const float* q) {
    const int g = shape_.n_kv_heads, r = shape_.n_heads / g;
    for (std::size_t s = 0; s < plan.segments.size(); ++s) {
      const PlannedSegment& seg = plan.segments[s];
      const int tokens = seg.tokens(), rows = int(seg.sequences.size()) * r;
      if (tokens == 0 || rows == 0) continue;
      if (!seg.key_ends.empty()) {
        add_limited_segment(int(s), seg, q);
        continue;
      }
      const double unit_cost = cost(tokens, rows);
      const int splits = key_splits(tokens, seg.key_splits);
      for (int j = 0; j < g; ++j) {
        for (int split = 0; split < splits; ++split) {
          add_task(int(s), j, split_point(tokens, split, splits), split_point(tokens, split + 1, splits),
                   unit_cost / splits);
          for (int sequence : seg.sequences)
            for (int head = j * r; head < (j + 1) * r; ++head) add_row(q, sequence * shape_.n_heads + head, -1);
        }
      }
    }
  }

  // A segment whose sequences see only its first key_ends[i] keys (a prefill chunk
  // written into it): its sequences in groups, as add_causal splits a chunk,
  // each group against keys [0, the largest limit in the group).
  void add_limited_segment(int s, const PlannedSegment& seg, const float* q) {
    const int g = shape_.n_kv_heads, r = shape_.n_heads / g;
    const int n = int(seg.sequences.size());
    const int groups = std::clamp(seg.row_groups, 1, n);
    for (int j = 0; j < g; ++j) {
      for (int group = 0; group < groups; ++group) {
        const int i0 = n * group / groups, i1 = n * (group + 1) / groups;
        int keys = 0;
        for (int i = i0; i < i1; ++i) keys = std::max(keys, seg.key_ends[std::size_t(i)]);
        if (keys == 0) continue;
        const double unit_cost = cost(keys, (i1 - i0) * r);
        const int splits = key_splits(keys, seg.key_splits);
        for (int split = 0; split < splits; ++split) {
          add_task(s, j, split_point(keys, split, splits), split_point(keys, split + 1, splits),
                   unit_cost / splits, /*causal=*/true);
          for (int i = i0; i < i1; ++i)
            for (int head = j * r; head < (j + 1) * r; ++head)
              add_row(q, seg.sequences[std::size_t(i)] * shape_.n_heads + head, seg.key_ends[std::size_t(i)]);
        }
      }
    }
  }

  // Prefill: query groups of one segment, each against keys [0, its last query's position].
  void add_causal(const PlannedSegment& seg, int first_position, int n_queries, const float* q) {
    const int g = shape_.n_kv_heads, r = shape_.n_heads / g;
    const int groups = std::clamp(seg.row_groups, 1, n_queries);
    for (int j = 0; j < g; ++j) {
      for (int group = 0; group < groups; ++group) {
        const int i0 = n_queries * group / groups, i1 = n_queries * (group + 1) / groups;
        const int keys = first_position + i1;  // the group's last query sees keys [0, keys)
        const double unit_cost = cost(keys, (i1 - i0) * r);
        const int splits = key_splits(keys, seg.key_splits);
        for (int split = 0; split < splits; ++split) {
          add_task(0, j, split_point(keys, split, splits), split_point(keys, split + 1, splits),
                   unit_cost / splits, /*causal=*/true);
          for (int i = i0; i < i1; ++i)
            for (int head = j * r; head < (j + 1) * r; ++head)
              add_row(q, i * shape_.n_heads + head, first_position + i + 1);
        }
      }
    }
  }

  // Runs every task, then merges each output row's partial states into out.
  void run(std::span<const PlannedSegment> segments, int n_out_rows, float* out,
           ThreadPool& pool) {
    build_merge_order(n_out_rows);
    prepare_workspace(pool.size());
    segments_ = segments;
    out_ = out;
    n_out_rows_ = n_out_rows;
    // Below ~20 us of work, waking the other threads costs more than it saves
    // (on an oversubscribed machine a wake-up can cost a whole time slice).
    // Results do not depend on this: the tasks are the same either way.
    double work = 0;
    for (const auto& task : ws_.tasks_) work += task.cost;
    const bool parallel = work * shape_.head_size >= kMinParallelWork;
    // The lambdas capture only `this`, so std::function stores them without allocating.
    run_tasks(pool, parallel, ws_.tasks_.size(), [this](std::size_t i, int thread) {
      run_task(ws_.tasks_[std::size_t(ws_.task_order_[i])], thread);
    });
    run_tasks(pool, parallel, std::size_t(merge_batches(n_out_rows)), [this](std::size_t batch, int thread) {
      const int begin = int(batch) * kMergeRowsPerTask, end = std::min(n_out_rows_, begin + kMergeRowsPerTask);
      for (int row = begin; row < end; ++row)
        merge_row(row, out_ + std::size_t(row) * std::size_t(shape_.head_size), thread);
    });
  }

 private:
  static constexpr double kMinParallelWork = double(1 << 18);

  static void run_tasks(ThreadPool& pool, bool parallel, std::size_t n,
                        const std::function<void(std::size_t, int)>& task) {
    if (parallel) {
      pool.run(n, task);
    } else {
      for (std::size_t i = 0; i < n; ++i) task(i, 0);
    }
  }

  // Sizes every buffer the tasks and merges will touch, so they never allocate.
  void prepare_workspace(int n_threads) {
    const std::size_t k = std::size_t(shape_.head_size), n_rows = ws_.row_q_.size();
    ws_.partial_o_.resize(n_rows * k);
    ws_.partial_lse_.resize(n_rows);
    ws_.scratch_.resize(std::size_t(n_threads));
    ws_.merge_o_.resize(std::size_t(n_threads));
    ws_.merge_lse_.resize(std::size_t(n_threads));
    std::size_t most_partials = 0;  // reserved up front: a thread may merge first in any call
    for (std::size_t row = 0; row + 1 < ws_.merge_begin_.size(); ++row)
      most_partials = std::max(most_partials, std::size_t(ws_.merge_begin_[row + 1] - ws_.merge_begin_[row]));
    for (auto& v : ws_.merge_o_) v.reserve(most_partials);
    for (auto& v : ws_.merge_lse_) v.reserve(most_partials);
    ws_.task_order_.resize(ws_.tasks_.size());
    std::iota(ws_.task_order_.begin(), ws_.task_order_.end(), 0);
    // Most expensive first, ties by index (std::sort: stable_sort would allocate).
    std::sort(ws_.task_order_.begin(), ws_.task_order_.end(), [this](int a, int b) {
      const double ca = ws_.tasks_[std::size_t(a)].cost, cb = ws_.tasks_[std::size_t(b)].cost;
      return ca != cb ? ca > cb : a < b;
    });
  }

  // Keys are read once per task whatever the row count; arithmetic grows with rows.
  static double cost(int tokens, int rows) { return double(tokens) * (rows + 8); }

  void add_task(int segment, int kv_head, int key_begin, int key_end, double cost, bool causal = false) {
    ws_.tasks_.push_back({segment, kv_head, key_begin, key_end, int(ws_.row_q_.size()), 0, cost, causal});
  }

  // key_end: the row's exclusive key limit in a causal task; -1 in the others
  // (kept so row_key_end_ stays indexed like row_q_; such tasks pass no limits).
  void add_row(const float* q, int out_row, int key_end) {
    ws_.row_q_.push_back(q + std::size_t(out_row) * shape_.head_size);
    ws_.row_key_end_.push_back(key_end);
    ws_.row_target_.push_back(out_row);
    ws_.tasks_.back().n_rows++;
  }

  // CSR lists of partial rows per output row, in creation order (segment, then split).
  void build_merge_order(int n_out_rows) {
    ws_.merge_begin_.assign(std::size_t(n_out_rows) + 1, 0);
    for (int target : ws_.row_target_) ws_.merge_begin_[std::size_t(target) + 1]++;
    std::partial_sum(ws_.merge_begin_.begin(), ws_.merge_begin_.end(), ws_.merge_begin_.begin());
    ws_.merge_rows_.resize(ws_.row_target_.size());
    std::vector<int>& fill = ws_.merge_cursor_;
    fill.assign(ws_.merge_begin_.begin(), ws_.merge_begin_.end() - 1);
    for (std::size_t row = 0; row < ws_.row_target_.size(); ++row)
      ws_.merge_rows_[std::size_t(fill[std::size_t(ws_.row_target_[row])]++)] = int(row);
  }

  void run_task(const AttentionWorkspace::Task& task, int thread) {
    const PlannedSegment& seg = segments_[std::size_t(task.segment)];
    SegmentKeys keys{seg.chunks, seg.head_stride, task.kv_head, task.key_begin, task.key_end};
    const std::size_t first = std::size_t(task.first_row);
    StackedQueries queries{ws_.row_q_.data() + first, task.causal ? ws_.row_key_end_.data() + first : nullptr,
                           task.n_rows};
    attend_segment(shape_, keys, queries, ws_.partial_o_.data() + first * std::size_t(shape_.head_size),
                   ws_.partial_lse_.data() + first, ws_.scratch_[std::size_t(thread)]);
  }

  void merge_row(int row, float* out, int thread) {
    const int begin = ws_.merge_begin_[std::size_t(row)], end = ws_.merge_begin_[std::size_t(row) + 1];
    const std::size_t k = std::size_t(shape_.head_size);
    if (end - begin == 1) {  // a single state is already the answer
      const float* o = ws_.partial_o_.data() + std::size_t(ws_.merge_rows_[std::size_t(begin)]) * k;
      std::copy(o, o + k, out);
      return;
    }
    auto& os = ws_.merge_o_[std::size_t(thread)];
    auto& lses = ws_.merge_lse_[std::size_t(thread)];
    os.clear();
    lses.clear();
    for (int i = begin; i < end; ++i) {
      const std::size_t partial = std::size_t(ws_.merge_rows_[std::size_t(i)]);
      os.push_back(ws_.partial_o_.data() + partial * k);
      lses.push_back(ws_.partial_lse_[partial]);
    }
    float lse;
    merge_attention_states(os, lses, shape_.head_size, out, &lse);
  }

  const AttentionShape& shape_;
  AttentionWorkspace& ws_;
  std::span<const PlannedSegment> segments_;  // of the call being run
  float* out_ = nullptr;
  int n_out_rows_ = 0;
};

void attend(const AttentionPlan& plan, const float* q, float* out, AttentionWorkspace& ws,
            ThreadPool& pool) {
  validate_plan(plan, q, out, ws.keys_seen_);
  if (plan.n_sequences == 0) return;
  AttentionRunner runner(plan.shape, ws);
  runner.add_plan(plan, q);
  runner.run(plan.segments, plan.n_sequences * plan.shape.n_heads, out, pool);
}

void attend_causal(const AttentionShape& shape, const PlannedSegment& segment, int first_position,
                   int n_queries, const float* q, float* out, AttentionWorkspace& ws,
                   ThreadPool& pool) {
  validate_shape(shape);
  validate_chunks(shape, segment, 0);
  require(first_position >= 0 && n_queries >= 0, "attend_causal: first_position ", first_position,
          " and n_queries ", n_queries, " must be >= 0");
  require(segment.tokens() >= first_position + n_queries, "attend_causal: segment holds ",
          segment.tokens(), " tokens, queries need ", first_position + n_queries);
  if (n_queries == 0) return;
  require(q != nullptr && out != nullptr, "attend_causal: null q or out");
  AttentionRunner runner(shape, ws);
  runner.add_causal(segment, first_position, n_queries, q);
  runner.run(std::span(&segment, 1), n_queries * shape.n_heads, out, pool);
}

}  // namespace bifurcate::kernels
