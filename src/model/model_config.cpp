#include "model/model_config.h"

#include "util/error.h"

namespace bifurcate::model {
namespace {

int positive_int(const gguf::GgufFile& file, const std::string& key, uint64_t value) {
  require(value >= 1 && value <= (1u << 30), file.path(), ": metadata key '", key, "' = ", value,
          " is out of range");
  return int(value);
}

}  // namespace

ModelConfig read_model_config(const gguf::GgufFile& file) {
  ModelConfig c;
  c.architecture = file.get_string("general.architecture");
  require(c.architecture == "llama" || c.architecture == "qwen2", file.path(), ": unsupported architecture '",
          c.architecture, "' (supported: llama, qwen2)");
  const std::string a = c.architecture + ".";
  auto get = [&](const std::string& key) { return positive_int(file, key, file.get_uint(key)); };

  c.name = file.get_string_or("general.name", "");
  c.dim = get(a + "embedding_length");
  c.n_layers = get(a + "block_count");
  // Checked against the tensor table before anything is sized by it: a
  // corrupt block_count (2^30) must not allocate gigabytes of layer
  // bindings or list a million missing tensors.
  require(uint64_t(c.n_layers) * kTensorsPerLayer <= file.tensors().size(), file.path(), ": metadata key '", a,
          "block_count' = ", c.n_layers, " needs at least ", uint64_t(c.n_layers) * kTensorsPerLayer,
          " tensors (", kTensorsPerLayer, " per layer), but the file holds ", file.tensors().size());
  c.n_heads = get(a + "attention.head_count");
  c.n_kv_heads = file.find(a + "attention.head_count_kv") ? get(a + "attention.head_count_kv") : c.n_heads;
  c.ffn_dim = get(a + "feed_forward_length");
  c.context_length = get(a + "context_length");
  c.head_size = file.find(a + "attention.key_length") ? get(a + "attention.key_length") : c.dim / c.n_heads;
  c.rope_base = float(file.get_float_or(a + "rope.freq_base", 10000.0));
  c.rms_eps = float(file.get_float_or(a + "attention.layer_norm_rms_epsilon", 1e-5));
  c.rope_style = c.architecture == "qwen2" ? kernels::RopeStyle::neox : kernels::RopeStyle::interleaved;
  c.qkv_bias = c.architecture == "qwen2";

  require(c.n_heads % c.n_kv_heads == 0, file.path(), ": attention.head_count ", c.n_heads,
          " is not a multiple of attention.head_count_kv ", c.n_kv_heads);
  require(file.find(a + "attention.key_length") || c.dim % c.n_heads == 0, file.path(), ": embedding_length ",
          c.dim, " is not a multiple of head_count ", c.n_heads);
  if (const auto* value_length = file.find(a + "attention.value_length")) {
    require(value_length->as_uint() == uint64_t(c.head_size), file.path(),
            ": attention.value_length differs from key_length (unsupported)");
  }
  const gguf::TensorInfo& embd = file.tensor("token_embd.weight");
  require(embd.dims.size() == 2, file.path(), ": token_embd.weight must be 2-D");
  c.n_vocab = positive_int(file, "token_embd.weight dims[1]", embd.dims[1]);
  return c;
}

void require_in_vocabulary(std::span<const int32_t> tokens, int n_vocab) {
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] >= 0 && tokens[i] < n_vocab) continue;
    if (tokens.size() == 1) throw Error(str("token id ", tokens[i], " is outside the vocabulary [0, ", n_vocab, ")"));
    throw Error(str("token id ", tokens[i], " (at position ", i, ") is outside the vocabulary [0, ", n_vocab, ")"));
  }
}

}  // namespace bifurcate::model
