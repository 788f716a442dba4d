// Named model shapes for random-weight model files (`bifurcate make-model`):
// small ones for tests, 7B-wide ones for benchmarks, TinyLlama-1.1B's shape.
// A shape is hyper-parameters only; weights come from random_model.h.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

namespace bifurcate::model {

struct ModelShape {
  std::string_view name;
  std::string_view architecture;  // "llama" or "qwen2" (qwen2: QKV bias, NeoX rope)
  uint32_t n_vocab;               // used when no vocab file is given
  uint32_t dim;                   // embedding width
  uint32_t n_layers;
  uint32_t n_heads;
  uint32_t n_kv_heads;
  uint32_t head_size;             // 0 means dim / n_heads; see head_dim()
  uint32_t ffn_dim;
  uint32_t context_length;
  float rope_base;
  float rms_eps;
  bool tied_embeddings;           // true: no output.weight, logits use token_embd.weight

  uint32_t head_dim() const { return head_size != 0 ? head_size : dim / n_heads; }
  uint32_t q_dim() const { return n_heads * head_dim(); }
  uint32_t kv_dim() const { return n_kv_heads * head_dim(); }
};

// Every known shape, in a fixed order.
std::span<const ModelShape> model_shapes();

// The shape called `name`; throws Error listing the known names otherwise.
const ModelShape& find_model_shape(std::string_view name);

}  // namespace bifurcate::model
