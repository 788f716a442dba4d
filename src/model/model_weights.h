// The model's tensors, bound by their llama.cpp names. Matrices stay in the
// file's dtype inside the mapping; small 1-D tensors (norms, biases) are
// converted to f32 copies at load.
#pragma once

#include <vector>

#include "gguf/gguf_file.h"
#include "kernels/matmul.h"
#include "model/model_config.h"

namespace bifurcate::model {

struct LayerWeights {
  std::vector<float> attn_norm;        // (dim)
  kernels::WeightMatrix wq;            // (n_heads*head_size, dim)
  kernels::WeightMatrix wk;            // (n_kv_heads*head_size, dim)
  kernels::WeightMatrix wv;            // (n_kv_heads*head_size, dim)
  std::vector<float> bq, bk, bv;       // biases (qwen2), empty otherwise
  kernels::WeightMatrix wo;            // (dim, n_heads*head_size)
  std::vector<float> ffn_norm;         // (dim)
  kernels::WeightMatrix w_gate;        // (ffn_dim, dim)
  kernels::WeightMatrix w_up;          // (ffn_dim, dim)
  kernels::WeightMatrix w_down;        // (dim, ffn_dim)
};

struct ModelWeights {
  kernels::WeightMatrix token_embedding;  // (n_vocab, dim); row t is token t's embedding
  std::vector<float> output_norm;         // (dim)
  kernels::WeightMatrix output;           // (n_vocab, dim); the embedding when tied
  bool tied_output = false;
  std::vector<LayerWeights> layers;
  uint64_t matrix_bytes = 0;              // bytes of all matrices one forward token reads
};

// Binds every tensor; one Error lists all missing or mis-shaped tensors.
ModelWeights bind_model_weights(const gguf::GgufFile& file, const ModelConfig& config);

}  // namespace bifurcate::model
