// The hyper-parameters of a Llama-family model, read from GGUF metadata.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "gguf/gguf_file.h"
#include "kernels/rope.h"

namespace bifurcate::model {

struct ModelConfig {
  std::string architecture;  // "llama" or "qwen2"
  std::string name;
  int n_vocab = 0;
  int dim = 0;             // embedding width
  int n_layers = 0;
  int n_heads = 0;         // query heads
  int n_kv_heads = 0;      // KV heads (groups)
  int head_size = 0;
  int ffn_dim = 0;
  int context_length = 0;
  float rope_base = 10000.0f;
  float rms_eps = 1e-5f;
  kernels::RopeStyle rope_style = kernels::RopeStyle::interleaved;
  bool qkv_bias = false;   // qwen2
};

// Tensors every layer has: attn_norm, attn_q/k/v, attn_output, ffn_norm,
// ffn_gate/up/down (qwen2 adds three biases).
inline constexpr uint64_t kTensorsPerLayer = 9;

// Reads and validates the configuration; Error names the file and the key.
ModelConfig read_model_config(const gguf::GgufFile& file);

// Error naming the first id outside [0, n_vocab) (and, in a sequence of more
// than one, its position). The one vocabulary check of the model, engine and cli.
void require_in_vocabulary(std::span<const int32_t> tokens, int n_vocab);

}  // namespace bifurcate::model
