#include "model/random_model.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <thread>

#include "gguf/gguf_file.h"
#include "gguf/gguf_writer.h"
#include "tensor/dtype.h"
#include "util/aligned_buffer.h"
#include "util/error.h"
#include "util/thread_pool.h"

namespace bifurcate::model {
namespace {

using gguf::GgmlType;
using gguf::Value;

// Rows are generated in chunks of about this many elements. Each chunk has
// its own seed derived from (seed, tensor name, chunk index), so the bytes do
// not depend on how chunks are spread over threads.
constexpr uint64_t kChunkElements = uint64_t(1) << 16;

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t fnv1a(std::string_view text) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (char c : text) h = (h ^ uint8_t(c)) * 0x100000001b3ull;
  return h;
}

// xoshiro256+ (Blackman & Vigna): fast, and its top bits are good uniforms.
class Xoshiro256Plus {
 public:
  explicit Xoshiro256Plus(uint64_t seed) {
    for (auto& word : s_) word = splitmix64(seed);
  }
  uint64_t next() {
    uint64_t result = s_[0] + s_[3];
    uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = (s_[3] << 45) | (s_[3] >> 19);
    return result;
  }

 private:
  uint64_t s_[4];
};

// Approximately standard normal: the sum of four 16-bit uniforms (Irwin-Hall,
// n = 4), centred and scaled to unit variance. Bounded by +-3.46; that is fine
// for weights and costs one random word per value.
float approx_normal(uint64_t bits) {
  constexpr double kMean = 4 * 65535.0 / 2;
  const double kInvStd = 1.0 / std::sqrt(4 * (65536.0 * 65536.0 - 1) / 12);
  uint64_t sum = (bits & 0xffff) + ((bits >> 16) & 0xffff) + ((bits >> 32) & 0xffff) + (bits >> 48);
  return float((double(sum) - kMean) * kInvStd);
}

uint32_t file_type_of(const WeightTypes& types) {
  // llama.cpp's LLAMA_FTYPE values. It has none for "all Q4_K" or "all Q5_K":
  // those are recorded as the nearest, Q4_K_S (14) and Q5_K_S (16).
  if (types.mix == KQuantMix::q4_k_m) return 15;
  if (types.mix == KQuantMix::q5_k_m) return 17;
  switch (types.base) {
    case GgmlType::F32: return 0;
    case GgmlType::F16: return 1;
    case GgmlType::Q4_0: return 2;
    case GgmlType::Q4_1: return 3;
    case GgmlType::Q8_0: return 7;
    case GgmlType::Q5_0: return 8;
    case GgmlType::Q5_1: return 9;
    case GgmlType::Q4_K: return 14;
    case GgmlType::Q5_K: return 16;
    case GgmlType::Q6_K: return 18;
    case GgmlType::BF16: return 32;
    default: break;
  }
  throw Error(str("make-model cannot write weight type ", gguf::ggml_type_traits(types.base).name,
                  " (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K)"));
}

// llama.cpp's use_more_bits: the first and last eighth of the layers and
// every third one between get more bits in the K-quant mixes.
bool use_more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

bool is_quantized(GgmlType type) { return gguf::ggml_type_traits(type).block_size > 1; }

void add_model_metadata(gguf::GgufWriter& writer, const ModelShape& shape, const WeightTypes& weight_types,
                        uint64_t n_vocab, uint64_t seed) {
  const std::string arch(shape.architecture);
  auto key = [&](std::string_view suffix) { return str(arch, ".", suffix); };
  writer.set("general.architecture", Value::string(arch));
  writer.set("general.name", Value::string(str("bifurcate-random-", shape.name)));
  writer.set("general.file_type", Value::u32(file_type_of(weight_types)));
  if (is_quantized(weight_types.base)) writer.set("general.quantization_version", Value::u32(2));
  writer.set("bifurcate.random_seed", Value::u64(seed));
  writer.set(key("vocab_size"), Value::u32(uint32_t(n_vocab)));
  writer.set(key("context_length"), Value::u32(shape.context_length));
  writer.set(key("embedding_length"), Value::u32(shape.dim));
  writer.set(key("block_count"), Value::u32(shape.n_layers));
  writer.set(key("feed_forward_length"), Value::u32(shape.ffn_dim));
  writer.set(key("attention.head_count"), Value::u32(shape.n_heads));
  writer.set(key("attention.head_count_kv"), Value::u32(shape.n_kv_heads));
  if (shape.head_dim() != shape.dim / shape.n_heads) {
    writer.set(key("attention.key_length"), Value::u32(shape.head_dim()));
    writer.set(key("attention.value_length"), Value::u32(shape.head_dim()));
  }
  writer.set(key("attention.layer_norm_rms_epsilon"), Value::f32(shape.rms_eps));
  writer.set(key("rope.freq_base"), Value::f32(shape.rope_base));
  writer.set(key("rope.dimension_count"), Value::u32(shape.head_dim()));
}

// The tokenizer.* keys of a vocab GGUF file, in file order.
struct VocabKeys {
  uint64_t n_vocab;
  std::vector<std::pair<std::string, Value>> keys;
};

VocabKeys read_vocab_keys(const std::string& vocab_path) {
  gguf::GgufFile vocab = gguf::GgufFile::open(vocab_path);
  const Value* tokens = vocab.find("tokenizer.ggml.tokens");
  require(tokens != nullptr, vocab_path, ": no tokenizer.ggml.tokens array, so it is not a vocab file");
  VocabKeys result{tokens->as_array().size(), {}};
  require(result.n_vocab > 0, vocab_path, ": tokenizer.ggml.tokens is empty");
  for (const auto& [key, value] : vocab.metadata()) {
    if (key.starts_with("tokenizer.")) result.keys.emplace_back(key, value);
  }
  return result;
}

// Shared by all tensors of one file: the pool, per-thread scratch rows and
// the progress count.
struct Generator {
  uint64_t seed;
  ThreadPool pool;
  std::vector<AlignedBuffer<float>> scratch;  // one per thread
  uint64_t total_elements;
  std::atomic<uint64_t> done_elements{0};
  const std::function<void(double)>* progress;

  Generator(uint64_t seed, int n_threads, uint64_t total, const std::function<void(double)>* progress)
      : seed(seed), pool(n_threads), scratch(n_threads), total_elements(total), progress(progress) {}

  // Fills `dst` with the tensor's rows in its stored type.
  void fill(const RandomTensorPlan& plan, uint8_t* dst) {
    const uint64_t row_length = plan.dims[0];
    uint64_t n_rows = 1;
    for (std::size_t i = 1; i < plan.dims.size(); ++i) n_rows *= plan.dims[i];
    const uint64_t rows_per_chunk = std::max<uint64_t>(1, kChunkElements / row_length);
    const uint64_t n_chunks = (n_rows + rows_per_chunk - 1) / rows_per_chunk;
    const uint64_t row_bytes = gguf::ggml_row_bytes(gguf::ggml_type_traits(plan.type), row_length);
    const uint64_t tensor_seed = seed ^ fnv1a(plan.name);

    pool.run(n_chunks, [&](std::size_t chunk, int thread) {
      uint64_t first_row = chunk * rows_per_chunk;
      uint64_t rows = std::min(rows_per_chunk, n_rows - first_row);
      uint64_t chunk_state = tensor_seed + chunk * 0xd1b54a32d192ed03ull;
      Xoshiro256Plus rng(splitmix64(chunk_state));
      AlignedBuffer<float>& values = scratch[thread];
      values.resize(row_length);
      for (uint64_t r = 0; r < rows; ++r) {
        for (uint64_t i = 0; i < row_length; ++i) values[i] = plan.mean + plan.stddev * approx_normal(rng.next());
        tensor::quantize_row(plan.type, values.data(), dst + (first_row + r) * row_bytes, int64_t(row_length));
      }
      uint64_t done = done_elements.fetch_add(rows * row_length, std::memory_order_relaxed) + rows * row_length;
      if (thread == 0 && *progress) (*progress)(double(done) / double(total_elements));
    });
  }
};

}  // namespace

GgmlType stored_weight_type(GgmlType weight_type, uint64_t row_length) {
  uint32_t block = gguf::ggml_type_traits(weight_type).block_size;
  if (row_length % block == 0) return weight_type;
  if (row_length % 32 == 0) {
    if (weight_type == GgmlType::Q4_K) return GgmlType::Q5_0;
    if (weight_type == GgmlType::Q5_K) return GgmlType::Q5_1;
    if (weight_type == GgmlType::Q6_K) return GgmlType::Q8_0;
  }
  return GgmlType::F16;
}

GgmlType mixed_weight_type(const WeightTypes& types, std::string_view name, int layer, int n_layers,
                           bool tied_embeddings) {
  if (types.mix == KQuantMix::none) return types.base;
  if (name == "output.weight" || (tied_embeddings && name == "token_embd.weight")) return GgmlType::Q6_K;
  const bool more_bits_tensor = name.ends_with("attn_v.weight") || name.ends_with("ffn_down.weight");
  if (more_bits_tensor && layer >= 0 && use_more_bits(layer, n_layers)) return GgmlType::Q6_K;
  return types.base;
}

std::vector<RandomTensorPlan> plan_random_model(const ModelShape& shape, const WeightTypes& weight_types,
                                                uint64_t n_vocab) {
  file_type_of(weight_types);  // rejects unsupported types
  require(shape.n_heads > 0 && shape.n_kv_heads > 0 && shape.n_heads % shape.n_kv_heads == 0, "model shape '",
          shape.name, "': n_heads ", shape.n_heads, " is not a multiple of n_kv_heads ", shape.n_kv_heads);
  const uint64_t dim = shape.dim, q_dim = shape.q_dim(), kv_dim = shape.kv_dim(), ffn = shape.ffn_dim;
  const float logit_std = 2.0f / std::sqrt(float(dim));  // logits ~ N(0, 2^2): peaked but not one-hot
  // Output projections write into the residual stream; scaling them by
  // 1/sqrt(2 * n_layers) keeps its variance O(1) however deep the model.
  const float residual_scale = 1.0f / std::sqrt(2.0f * float(shape.n_layers));

  std::vector<RandomTensorPlan> plans;
  int layer = -1;  // the layer the next matrices belong to (-1: outside the layers)
  auto matrix = [&](std::string name, uint64_t cols, uint64_t rows, float stddev) {
    const GgmlType type =
        mixed_weight_type(weight_types, name, layer, int(shape.n_layers), shape.tied_embeddings);
    plans.push_back({std::move(name), {cols, rows}, stored_weight_type(type, cols), 0.0f, stddev});
  };
  auto vector = [&](std::string name, uint64_t n, float mean, float stddev) {
    plans.push_back({std::move(name), {n}, GgmlType::F32, mean, stddev});
  };
  auto fan_in = [](uint64_t n) { return 1.0f / std::sqrt(float(n)); };

  // Tied: the embedding doubles as the output matrix, so it gets the logit scale.
  matrix("token_embd.weight", dim, n_vocab, shape.tied_embeddings ? logit_std : 1.0f);
  for (uint32_t l = 0; l < shape.n_layers; ++l) {
    layer = int(l);
    std::string blk = str("blk.", l, ".");
    vector(blk + "attn_norm.weight", dim, 1.0f, 0.05f);
    matrix(blk + "attn_q.weight", dim, q_dim, fan_in(dim));
    matrix(blk + "attn_k.weight", dim, kv_dim, fan_in(dim));
    matrix(blk + "attn_v.weight", dim, kv_dim, fan_in(dim));
    if (shape.architecture == "qwen2") {
      vector(blk + "attn_q.bias", q_dim, 0.0f, 0.1f);
      vector(blk + "attn_k.bias", kv_dim, 0.0f, 0.1f);
      vector(blk + "attn_v.bias", kv_dim, 0.0f, 0.1f);
    }
    matrix(blk + "attn_output.weight", q_dim, dim, fan_in(q_dim) * residual_scale);
    vector(blk + "ffn_norm.weight", dim, 1.0f, 0.05f);
    matrix(blk + "ffn_gate.weight", dim, ffn, fan_in(dim));
    matrix(blk + "ffn_up.weight", dim, ffn, fan_in(dim));
    // silu(g) * u for unit-variance g, u has variance ~0.36; x1.7 restores ~1.
    matrix(blk + "ffn_down.weight", ffn, dim, 1.7f * fan_in(ffn) * residual_scale);
  }
  layer = -1;
  vector("output_norm.weight", dim, 1.0f, 0.05f);
  if (!shape.tied_embeddings) matrix("output.weight", dim, n_vocab, logit_std);
  return plans;
}

void write_random_model(const ModelShape& shape, const WeightTypes& weight_types, const std::string& vocab_gguf_path,
                        uint64_t seed, const std::string& out_path, std::function<void(double fraction)> progress,
                        int n_threads) {
  VocabKeys vocab{shape.n_vocab, {{"tokenizer.ggml.model", Value::string("none")}}};
  if (!vocab_gguf_path.empty()) vocab = read_vocab_keys(vocab_gguf_path);
  const uint64_t n_vocab = vocab.n_vocab;
  std::vector<RandomTensorPlan> plans = plan_random_model(shape, weight_types, n_vocab);

  // Architecture keys first (llama.cpp's order), then the tokenizer's.
  gguf::GgufWriter writer;
  add_model_metadata(writer, shape, weight_types, n_vocab, seed);
  for (auto& [key, value] : vocab.keys) writer.set(std::move(key), std::move(value));

  uint64_t total = 0;
  for (const auto& plan : plans) {
    uint64_t n = 1;
    for (uint64_t d : plan.dims) n *= d;
    total += n;
  }
  require(n_threads >= 0, "write_random_model: n_threads ", n_threads, " is negative");
  if (n_threads == 0) n_threads = int(std::max(1u, std::thread::hardware_concurrency()));
  Generator generator(seed, n_threads, total, &progress);
  for (const auto& plan : plans) {
    writer.add_tensor(plan.name, plan.dims, plan.type,
                      [&generator, &plan](uint8_t* dst) { generator.fill(plan, dst); });
  }
  writer.write(out_path);
  if (progress) progress(1.0);
}

}  // namespace bifurcate::model
