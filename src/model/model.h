// A loaded model file: the mapping, its configuration and its bound weights.
// Immutable after load; any number of Transformers may run over it.
#pragma once

#include <memory>
#include <string>

#include "gguf/gguf_file.h"
#include "model/model_config.h"
#include "model/model_weights.h"

namespace bifurcate::model {

class Model {
 public:
  // Error names the file and what is wrong: a missing file, bad GGUF, or
  //   "<path>: unsupported architecture 'gpt2' (supported: llama, qwen2)"
  //   "<path>: attention.value_length differs from key_length (unsupported)"
  //   "<path>: cannot bind model weights:" and a line per tensor problem:
  //     "missing tensor <name>", "<name>: dims [a, b], expected [c, d]",
  //     "<name>: weight type <TYPE> is not supported"
  // (tests/model_load_errors_test.cpp checks each).
  static std::unique_ptr<Model> load(const std::string& path);

  const gguf::GgufFile& file() const { return file_; }
  const ModelConfig& config() const { return config_; }
  const ModelWeights& weights() const { return weights_; }

 private:
  explicit Model(gguf::GgufFile file);
  gguf::GgufFile file_;
  ModelConfig config_;
  ModelWeights weights_;
};

}  // namespace bifurcate::model
