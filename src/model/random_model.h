// Random-weight model files: a GGUF v3 file with llama.cpp's tensor names
// and metadata keys for a named ModelShape, filled with seeded random
// weights. Such files stand in for real checkpoints in tests and
// benchmarks (speed does not depend on the weights' values; correctness
// tests compare two paths through the same weights).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "gguf/ggml_types.h"
#include "model/model_shapes.h"

namespace bifurcate::model {

// One tensor of a random model and the distribution its elements are drawn
// from: mean + stddev * (approximately standard normal).
struct RandomTensorPlan {
  std::string name;
  std::vector<uint64_t> dims;  // ggml order: dims[0] is the row length
  gguf::GgmlType type;
  float mean;
  float stddev;
};

// llama.cpp's K-quant mixes (llama_tensor_get_type for LLAMA_FTYPE_MOSTLY_
// Q4_K_M / Q5_K_M): the base type (Q4_K / Q5_K) everywhere except
//  - output.weight (or token_embd.weight when the embedding is tied): Q6_K;
//  - attn_v.weight and ffn_down.weight of layer i of n where use_more_bits(i,
//    n): i < n/8, or i >= 7n/8, or (i - n/8) % 3 == 2 (integer division): Q6_K.
enum class KQuantMix { none, q4_k_m, q5_k_m };

// What make-model writes: one type for every matrix, or a mix.
struct WeightTypes {
  gguf::GgmlType base;
  KQuantMix mix = KQuantMix::none;
  WeightTypes(gguf::GgmlType type) : base(type) {}  // NOLINT: a plain type is a recipe
  WeightTypes(gguf::GgmlType type, KQuantMix m) : base(type), mix(m) {}
};

// The type of matrix `name` (llama.cpp's tensor name; layer `layer` of
// `n_layers`, or -1 outside the layers) under `types`, before the row-length
// fallback of stored_weight_type.
gguf::GgmlType mixed_weight_type(const WeightTypes& types, std::string_view name, int layer, int n_layers,
                                 bool tied_embeddings);

// The type a weight matrix with rows of `row_length` elements is stored in:
// `weight_type`, or, when the row length is not a multiple of its block size,
// llama.cpp's fallback: Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0 where rows
// are a multiple of 32, else F16.
gguf::GgmlType stored_weight_type(gguf::GgmlType weight_type, uint64_t row_length);

// Every tensor write_random_model writes for `shape` with `n_vocab` tokens,
// in file order. Norm weights and biases are F32; matrices `weight_type`
// (see stored_weight_type). Throws Error for weight types it cannot write.
std::vector<RandomTensorPlan> plan_random_model(const ModelShape& shape, const WeightTypes& weight_types,
                                                uint64_t n_vocab);

// Writes the model to `out_path` (via a temporary file). The bytes depend only
// on the arguments, not on the thread count. With a non-empty
// `vocab_gguf_path`, every tokenizer.* key is copied from that file and its
// token count becomes the vocabulary size; otherwise shape.n_vocab is used and
// tokenizer.ggml.model is "none". `progress` is called from the calling thread
// with the fraction of elements generated so far, ending with 1.0.
// Weight types: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K,
// Q6_K and the mixes. `n_threads` 0 means one per core.
void write_random_model(const ModelShape& shape, const WeightTypes& weight_types, const std::string& vocab_gguf_path,
                        uint64_t seed, const std::string& out_path,
                        std::function<void(double fraction)> progress = {}, int n_threads = 0);

}  // namespace bifurcate::model
