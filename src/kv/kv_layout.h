// Geometry of one KV-cache block and where a (layer, KV head, token) lives in it.
//
// A block holds `block_tokens` consecutive tokens of one segment for every
// layer and KV head:
//
//   block = [layer][kv_head][ K rows (block_tokens, head_size) | V rows (block_tokens, head_size) ]
//
// so for one layer, KV head j's K run starts j*head_stride() bytes after KV
// head 0's, which is exactly a kernels::KvChunk with a uniform head_stride.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/attention_types.h"

namespace bifurcate::kv {

struct KvLayout {
  int n_layers = 0;
  int n_kv_heads = 0;
  int head_size = 0;
  kernels::KvType type = kernels::KvType::f16;
  int block_tokens = 32;

  std::size_t elem_bytes() const { return kernels::kv_type_bytes(type); }
  // Bytes of one K (or V) run: block_tokens rows of head_size elements.
  std::size_t run_bytes() const { return std::size_t(block_tokens) * std::size_t(head_size) * elem_bytes(); }
  // Bytes from KV head j to KV head j+1 within one layer (its K run then its V run).
  std::size_t head_stride() const { return 2 * run_bytes(); }
  // Bytes from layer l to layer l+1 within one block.
  std::size_t layer_stride() const { return std::size_t(n_kv_heads) * head_stride(); }
  std::size_t block_bytes() const { return std::size_t(n_layers) * layer_stride(); }
  std::size_t row_bytes() const { return std::size_t(head_size) * elem_bytes(); }

  // Throws bifurcate::Error naming the field unless every dimension is >= 1.
  void validate() const;
};

}  // namespace bifurcate::kv
