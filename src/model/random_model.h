// Random-weight model files: a GGUF v3 file with llama.cpp's tensor names
// and metadata keys for a named ModelShape, filled with seeded random
// weights. Such files stand in for real checkpoints in tests and
// benchmarks (speed does not depend on the weights' values; correctness
// tests compare two paths through the same weights).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
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

// The type a weight matrix with rows of `row_length` elements is stored in:
// `weight_type`, or F16 when the row length is not a multiple of its block
// size (llama.cpp falls back the same way for such tensors).
gguf::GgmlType stored_weight_type(gguf::GgmlType weight_type, uint64_t row_length);

// Every tensor write_random_model writes for `shape` with `n_vocab` tokens,
// in file order. Norm weights and biases are F32; matrices `weight_type`
// (see stored_weight_type). Throws Error for weight types it cannot write.
std::vector<RandomTensorPlan> plan_random_model(const ModelShape& shape, gguf::GgmlType weight_type,
                                                uint64_t n_vocab);

// Writes the model to `out_path` (via a temporary file). The bytes depend only
// on the arguments, not on the thread count. With a non-empty
// `vocab_gguf_path`, every tokenizer.* key is copied from that file and its
// token count becomes the vocabulary size; otherwise shape.n_vocab is used and
// tokenizer.ggml.model is "none". `progress` is called from the calling thread
// with the fraction of elements generated so far, ending with 1.0.
// Weight types: F32, F16, BF16, Q8_0, Q4_0. `n_threads` 0 means one per core.
void write_random_model(const ModelShape& shape, gguf::GgmlType weight_type, const std::string& vocab_gguf_path,
                        uint64_t seed, const std::string& out_path,
                        std::function<void(double fraction)> progress = {}, int n_threads = 0);

}  // namespace bifurcate::model
