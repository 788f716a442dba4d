#include "model/model_weights.h"

#include <string>
#include <vector>

#include "tensor/dtype.h"
#include "util/error.h"

namespace bifurcate::model {
namespace {

// Collects problems instead of throwing at the first, so one error names them all.
class Binder {
 public:
  explicit Binder(const gguf::GgufFile& file) : file_(file) {}

  kernels::WeightMatrix matrix(const std::string& name, int64_t rows, int64_t cols) {
    const gguf::TensorInfo* t = lookup(name, {uint64_t(cols), uint64_t(rows)});
    if (t == nullptr) return {};
    if (!tensor::is_supported_weight_type(t->type)) {
      problems_.push_back(str(name, ": weight type ", gguf::ggml_type_traits(t->type).name, " is not supported"));
      return {};
    }
    bytes_ += t->n_bytes;
    return kernels::WeightMatrix{t->data, t->type, rows, cols};
  }

  std::vector<float> vector(const std::string& name, int64_t n) {
    const gguf::TensorInfo* t = lookup(name, {uint64_t(n)});
    if (t == nullptr) return {};
    if (!tensor::is_supported_weight_type(t->type)) {
      problems_.push_back(str(name, ": type ", gguf::ggml_type_traits(t->type).name, " is not supported"));
      return {};
    }
    std::vector<float> out(static_cast<size_t>(n));
    tensor::dequantize_row(t->type, t->data, out.data(), n);
    return out;
  }

  bool has(const std::string& name) const { return file_.find_tensor(name) != nullptr; }
  uint64_t bytes() const { return bytes_; }

  // One Error listing the first kMaxListed problems and how many more there are.
  void throw_if_problems() const {
    if (problems_.empty()) return;
    std::string list;
    for (size_t i = 0; i < problems_.size() && i < kMaxListed; ++i) list += "\n  " + problems_[i];
    if (problems_.size() > kMaxListed) list += str("\n  ... and ", problems_.size() - kMaxListed, " more");
    throw Error(str(file_.path(), ": cannot bind model weights (", problems_.size(), " problem",
                    problems_.size() == 1 ? "" : "s", "):", list));
  }

 private:
  const gguf::TensorInfo* lookup(const std::string& name, std::vector<uint64_t> dims) {
    const gguf::TensorInfo* t = file_.find_tensor(name);
    if (t == nullptr) {
      problems_.push_back(str("missing tensor ", name));
      return nullptr;
    }
    if (t->dims != dims) {
      problems_.push_back(str(name, ": dims ", format_dims(t->dims), ", expected ", format_dims(dims)));
      return nullptr;
    }
    return t;
  }

  static std::string format_dims(const std::vector<uint64_t>& dims) {
    std::string s = "[";
    for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
    return s + "]";
  }

  const gguf::GgufFile& file_;
  static constexpr size_t kMaxListed = 10;
  std::vector<std::string> problems_;
  uint64_t bytes_ = 0;
};

}  // namespace

ModelWeights bind_model_weights(const gguf::GgufFile& file, const ModelConfig& c) {
  Binder bind(file);
  ModelWeights w;
  const int64_t q_dim = int64_t(c.n_heads) * c.head_size;
  const int64_t kv_dim = int64_t(c.n_kv_heads) * c.head_size;

  w.token_embedding = bind.matrix("token_embd.weight", c.n_vocab, c.dim);
  w.output_norm = bind.vector("output_norm.weight", c.dim);
  w.tied_output = !bind.has("output.weight");
  w.output = w.tied_output ? w.token_embedding : bind.matrix("output.weight", c.n_vocab, c.dim);

  for (int l = 0; l < c.n_layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    LayerWeights& L = w.layers.emplace_back();
    L.attn_norm = bind.vector(p + "attn_norm.weight", c.dim);
    L.wq = bind.matrix(p + "attn_q.weight", q_dim, c.dim);
    L.wk = bind.matrix(p + "attn_k.weight", kv_dim, c.dim);
    L.wv = bind.matrix(p + "attn_v.weight", kv_dim, c.dim);
    if (c.qkv_bias) {
      L.bq = bind.vector(p + "attn_q.bias", q_dim);
      L.bk = bind.vector(p + "attn_k.bias", kv_dim);
      L.bv = bind.vector(p + "attn_v.bias", kv_dim);
    }
    L.wo = bind.matrix(p + "attn_output.weight", c.dim, q_dim);
    L.ffn_norm = bind.vector(p + "ffn_norm.weight", c.dim);
    L.w_gate = bind.matrix(p + "ffn_gate.weight", c.ffn_dim, c.dim);
    L.w_up = bind.matrix(p + "ffn_up.weight", c.ffn_dim, c.dim);
    L.w_down = bind.matrix(p + "ffn_down.weight", c.dim, c.ffn_dim);
  }
  bind.throw_if_problems();
  // The embedding is read one row per token, not whole, unless it is also the output matrix.
  const gguf::TensorInfo& embd = file.tensor("token_embd.weight");
  w.matrix_bytes = bind.bytes() - (w.tied_output ? 0 : embd.n_bytes);
  return w;
}

}  // namespace bifurcate::model
