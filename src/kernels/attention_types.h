// The vocabulary of the attention kernels: how a segment's K/V memory is
// described (KvChunk, PlannedSegment), the head geometry (AttentionShape),
// and a decode step's attention plan (AttentionPlan). Plans are built by
// kv/ and engine/; kernels only read them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace bifurcate::kernels {

enum class KvType : uint8_t { f32, f16 };
inline std::size_t kv_type_bytes(KvType t) { return t == KvType::f32 ? 4 : 2; }

// A contiguous run of `tokens` keys and values of KV head 0 of one segment:
// K rows at k, V rows at v, each row head_size elements of the segment's KvType.
// The same run for KV head j starts `head_stride` BYTES further (k + j*head_stride, v + j*head_stride).
struct KvChunk {
  const void* k;
  const void* v;
  int tokens;
};

// A segment of the KV tree as one step sees it: its keys/values and the
// query sequences (indices into the step's batch, ascending, no duplicates) that attend to it.
// key_ends is empty (every listed sequence sees all keys) or parallel to `sequences`:
// sequence sequences[i] sees keys [0, key_ends[i]) only — the rows of a prefill chunk
// written into this segment, causal within it.
struct PlannedSegment {
  std::vector<KvChunk> chunks;   // in token order
  std::size_t head_stride = 0;   // bytes between KV head j and j+1 inside every chunk
  std::vector<int> sequences;
  std::vector<int> key_ends;
  // The thread partition, chosen by the plan's builder (kv/attention_cost.h):
  // each KV head's read is split into key_splits key ranges (fewer when the
  // keys are fewer tiles), and, with key_ends, its rows into row_groups groups.
  int key_splits = 1;
  int row_groups = 1;
  int tokens() const;            // sum of chunk tokens
  int keys_seen(std::size_t i) const { return key_ends.empty() ? tokens() : key_ends[i]; }
};

struct AttentionShape {
  int n_heads;      // query heads h
  int n_kv_heads;   // KV groups g (h % g == 0); MHA g=h, GQA, MQA g=1
  int head_size;    // k, any value >= 1; multiples of 8 (64/80/96/128) run fully in SIMD
  KvType kv_type;
  float scale;      // usually 1/sqrt(head_size)
};

// A decode step's attention: every sequence attends to the union of the segments that list it
// (bifurcated = one shared context segment listing all sequences + one leaf segment per
// sequence; replicated = one segment per sequence holding its private full copy; deeper trees too).
struct AttentionPlan {
  AttentionShape shape;
  int n_sequences = 0;
  std::vector<PlannedSegment> segments;
};

}  // namespace bifurcate::kernels
