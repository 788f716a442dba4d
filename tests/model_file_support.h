// Shared by the tests that build model files: a scratch directory private to
// the test process, and an editable in-memory copy of a (small) GGUF file
// that the library's writer writes back out — to make a model with another
// weight type through the library's quantizers, or a deliberately broken one.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "gguf/gguf_file.h"
#include "gguf/gguf_writer.h"
#include "model/random_model.h"
#include "tensor/dtype.h"
#include "util/error.h"

namespace bifurcate::test_models {

// A directory under the system temp dir for this process (ctest runs tests
// in parallel processes); removed by the destructor.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& tag)
      : dir_(std::filesystem::temp_directory_path() /
             ("bifurcate_" + tag + "_" + std::to_string(::getpid()))) {
    std::filesystem::create_directories(dir_);
  }
  ~ScratchDir() {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

 private:
  std::filesystem::path dir_;
};

// Every key and tensor of a GGUF file, in file order, as plain values.
struct GgufCopy {
  struct Tensor {
    std::string name;
    std::vector<uint64_t> dims;
    gguf::GgmlType type;
    std::vector<uint8_t> bytes;
  };
  std::vector<std::pair<std::string, gguf::Value>> metadata;
  std::vector<Tensor> tensors;

  static GgufCopy read(const std::string& path) {
    const gguf::GgufFile file = gguf::GgufFile::open(path);
    GgufCopy copy{file.metadata(), {}};
    for (const gguf::TensorInfo& t : file.tensors()) {
      copy.tensors.push_back({t.name, t.dims, t.type, std::vector<uint8_t>(t.data, t.data + t.n_bytes)});
    }
    return copy;
  }

  void set(const std::string& key, gguf::Value value) {
    for (auto& [k, v] : metadata) {
      if (k == key) {
        v = std::move(value);
        return;
      }
    }
    metadata.emplace_back(key, std::move(value));
  }
  Tensor& tensor(const std::string& name) {
    for (Tensor& t : tensors) {
      if (t.name == name) return t;
    }
    throw Error(str("GgufCopy: no tensor ", name));
  }
  void remove_tensor(const std::string& name) {
    std::erase_if(tensors, [&](const Tensor& t) { return t.name == name; });
  }

  void write(const std::string& path) const {
    gguf::GgufWriter writer;
    for (const auto& [k, v] : metadata) writer.set(k, v);
    for (const Tensor& t : tensors) writer.add_tensor(t.name, t.dims, t.type, t.bytes);
    writer.write(path);
  }
};

// Re-encodes every F32 weight matrix (2-D tensor) whose rows fill whole
// blocks of `type` with the library's quantize_row; norms, biases and the
// other matrices stay as they are.
inline void requantize_matrices(GgufCopy& copy, gguf::GgmlType type) {
  const uint32_t block = gguf::ggml_type_traits(type).block_size;
  for (GgufCopy::Tensor& t : copy.tensors) {
    if (t.dims.size() != 2 || t.type != gguf::GgmlType::F32 || t.dims[0] % block != 0) continue;
    const int64_t cols = int64_t(t.dims[0]), rows = int64_t(t.dims[1]);
    const int64_t row_bytes = tensor::row_bytes(type, cols);
    std::vector<uint8_t> out(size_t(rows * row_bytes));
    for (int64_t r = 0; r < rows; ++r) {
      tensor::quantize_row(type, reinterpret_cast<const float*>(t.bytes.data()) + r * cols,
                           out.data() + r * row_bytes, cols);
    }
    t.type = type;
    t.bytes = std::move(out);
  }
}

// A random model of `shape` with its weight matrices in `type`: written in
// F32 by write_random_model, then requantized (so any type quantize_row
// knows works, not only those make-model writes).
inline void write_model_in_type(const model::ModelShape& shape, gguf::GgmlType type, uint64_t seed,
                                const std::string& path) {
  model::write_random_model(shape, gguf::GgmlType::F32, "", seed, path, {}, 1);
  if (type == gguf::GgmlType::F32) return;
  GgufCopy copy = GgufCopy::read(path);
  requantize_matrices(copy, type);
  copy.write(path);
}

}  // namespace bifurcate::test_models
