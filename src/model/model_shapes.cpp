#include "model/model_shapes.h"

#include <array>
#include <string>

#include "util/error.h"

namespace bifurcate::model {
namespace {

// clang-format off
constexpr std::array kShapes = {
  //         name          arch     vocab  dim    L   heads kv  hs  ffn    ctx     rope_base   eps    tied
  ModelShape{"tiny",       "llama", 512,   64,    2,  4,    2,  0,  176,   512,    10000.0f,   1e-5f, false},
  ModelShape{"tiny-mha",   "llama", 512,   64,    2,  4,    4,  0,  176,   512,    10000.0f,   1e-5f, false},
  ModelShape{"tiny-mqa",   "llama", 512,   64,    2,  4,    1,  0,  176,   512,    10000.0f,   1e-5f, false},
  ModelShape{"tiny-qwen2", "qwen2", 512,   64,    2,  4,    2,  0,  176,   512,    1000000.0f, 1e-6f, true},
  // head size 32 with dim 64: q_dim 128 != dim, so key_length/value_length are written.
  ModelShape{"tiny-wide-head", "llama", 512, 64,  2,  4,    2,  32, 176,   512,    10000.0f,   1e-5f, false},
  // Llama-2-7B's layer width with 2 layers; context 16384 so 8k-context benchmarks fit.
  ModelShape{"7b-mha-2l",  "llama", 32000, 4096, 2,  32,   32, 0,  11008, 16384,  10000.0f,   1e-5f, false},
  ModelShape{"7b-gqa-2l",  "llama", 32000, 4096, 2,  32,   8,  0,  11008, 16384,  10000.0f,   1e-5f, false},
  // TinyLlama-1.1B.
  ModelShape{"1b",         "llama", 32000, 2048, 22, 32,   4,  0,  5632,  2048,   10000.0f,   1e-5f, false},
};
// clang-format on

}  // namespace

std::span<const ModelShape> model_shapes() { return kShapes; }

const ModelShape& find_model_shape(std::string_view name) {
  for (const auto& shape : kShapes) {
    if (shape.name == name) return shape;
  }
  std::string known;
  for (const auto& shape : kShapes) known += str(known.empty() ? "" : ", ", shape.name);
  throw Error(str("unknown model shape '", name, "' (known shapes: ", known, ")"));
}

}  // namespace bifurcate::model
