// The engine's forward pass against the naive float64 reference of
// reference_model.h (its own loops and metadata reading; only the file
// reading and row dequantisation are shared),
// on tiny random models of every attention style, for the prefill and several
// decode steps; and the bifurcated path against the replicated one.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <random>
#include <vector>

#include "gguf/gguf_file.h"
#include "kv/kv_cache.h"
#include "model/model.h"
#include "model/random_model.h"
#include "model/transformer.h"
#include "numeric_test_support.h"
#include "reference_model.h"
#include "tensor/dtype.h"
#include "util/thread_pool.h"

namespace bifurcate::model {
namespace {

using Vec = std::vector<double>;

using test_reference::ReferenceModel;

// Writes a tiny random model to a file private to this process (ctest runs
// tests in parallel processes), loads it, and unlinks the file (the mapping
// stays valid).
std::unique_ptr<Model> tiny_model(const std::string& shape, gguf::GgmlType type) {
  const std::string path =
      (std::filesystem::temp_directory_path() /
       ("bifurcate_forward_" + shape + "_" + std::to_string(int(type)) + "_" + std::to_string(getpid()) + ".gguf"))
          .string();
  write_random_model(find_model_shape(shape), type, "", 7, path);
  auto model = Model::load(path);
  std::filesystem::remove(path);
  return model;
}

std::vector<int32_t> random_tokens(int n, int n_vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (auto& x : t) x = int32_t(rng() % uint32_t(n_vocab));
  return t;
}

class ForwardVsReference : public ::testing::TestWithParam<std::tuple<std::string, gguf::GgmlType>> {};

// Prefill of a prompt, then decode steps one token at a time, against the
// reference recomputed over the whole sequence.
TEST_P(ForwardVsReference, PrefillAndDecodeMatchFloat64) {
  const auto& [shape, type] = GetParam();
  auto model = tiny_model(shape, type);
  ReferenceModel reference(model->file());
  Transformer forward(model->config(), model->weights());
  kv::KvCache cache(forward.kv_layout(kernels::KvType::f32), size_t(64) << 20);
  ThreadPool pool(2);
  const int n_vocab = model->config().n_vocab;

  const std::vector<int32_t> tokens = random_tokens(45, n_vocab, 11);
  const std::vector<Vec> expected = reference.logits(tokens);
  const int n_prompt = 37;  // prefill in chunks of 16: ragged last chunk
  std::vector<float> logits(size_t(n_prompt) * n_vocab);
  const kv::SegmentId root = cache.create_root();
  forward.prefill(cache, root, std::span(tokens).first(n_prompt), logits, /*all_logits=*/true, pool, 16);
  for (int i = 0; i < n_prompt; ++i) {
    EXPECT_LT(relative_error(logits.data() + size_t(i) * n_vocab, expected[i]), 1e-4) << "prefill token " << i;
  }
  const kv::SegmentId leaf = cache.fork(root);
  for (int i = n_prompt; i < int(tokens.size()); ++i) {
    std::fill(logits.begin(), logits.end(), NAN);
    forward.decode(cache, std::span(&leaf, 1), std::span(&tokens[i], 1), logits.data(), pool);
    EXPECT_LT(relative_error(logits.data(), expected[i]), 1e-4) << "decode token " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(TinyModels, ForwardVsReference,
                         ::testing::Values(std::tuple{"tiny", gguf::GgmlType::F32},
                                           std::tuple{"tiny-mha", gguf::GgmlType::F32},
                                           std::tuple{"tiny-mqa", gguf::GgmlType::F32},
                                           std::tuple{"tiny-qwen2", gguf::GgmlType::F32},
                                           std::tuple{"tiny-wide-head", gguf::GgmlType::F32},
                                           std::tuple{"tiny", gguf::GgmlType::F16},
                                           std::tuple{"tiny", gguf::GgmlType::Q8_0}),
                         [](const auto& info) {
                           std::string name = std::get<0>(info.param) + "_" +
                                              std::string(gguf::ggml_type_traits(std::get<1>(info.param)).name);
                           for (char& ch : name) ch = std::isalnum(static_cast<unsigned char>(ch)) ? ch : '_';
                           return name;
                         });

// b samples forked from one prompt: bifurcated (shared prompt KV) and
// replicated (a private copy each) give the same logits at every step, and
// equal the single-sequence logits for the same tokens.
class BifurcatedVsReplicated : public ::testing::TestWithParam<std::tuple<std::string, int>> {};

TEST_P(BifurcatedVsReplicated, LogitsAgreeAtEveryStep) {
  const auto& [shape, b] = GetParam();
  auto model = tiny_model(shape, gguf::GgmlType::F32);
  const int n_vocab = model->config().n_vocab;
  ThreadPool pool(2);
  const std::vector<int32_t> prompt = random_tokens(29, n_vocab, 5);
  const int steps = 6;
  std::vector<std::vector<int32_t>> step_tokens;
  for (int s = 0; s < steps; ++s) step_tokens.push_back(random_tokens(b, n_vocab, 100 + uint32_t(s)));

  // logits[mode][step] : [b, n_vocab]
  std::vector<std::vector<std::vector<float>>> logits(2);
  for (int mode = 0; mode < 2; ++mode) {
    Transformer forward(model->config(), model->weights());
    kv::KvCache cache(forward.kv_layout(kernels::KvType::f32), size_t(256) << 20);
    std::vector<float> last(static_cast<size_t>(n_vocab));
    const kv::SegmentId root = cache.create_root();
    forward.prefill(cache, root, prompt, last, false, pool);
    std::vector<kv::SegmentId> leaves;
    for (int i = 0; i < b; ++i) leaves.push_back(mode == 0 ? cache.fork(root) : cache.copy_path(root));
    if (mode == 1) cache.release(root);  // forked roots are freed with their last leaf
    for (int s = 0; s < steps; ++s) {
      std::vector<float> out(size_t(b) * n_vocab, NAN);
      forward.decode(cache, leaves, step_tokens[s], out.data(), pool);
      logits[mode].push_back(std::move(out));
    }
  }
  for (int s = 0; s < steps; ++s) {
    for (int i = 0; i < b; ++i) {
      const float* bif = logits[0][s].data() + size_t(i) * n_vocab;
      const float* rep = logits[1][s].data() + size_t(i) * n_vocab;
      const Vec ref(rep, rep + n_vocab);
      EXPECT_LT(relative_error(bif, ref), 1e-5) << "step " << s << " sample " << i;
    }
  }
  // Sample 0 against a single sequence fed the same tokens.
  ReferenceModel reference(model->file());
  std::vector<int32_t> seq = prompt;
  for (int s = 0; s < steps; ++s) seq.push_back(step_tokens[s][0]);
  const std::vector<Vec> expected = reference.logits(seq);
  for (int s = 0; s < steps; ++s) {
    EXPECT_LT(relative_error(logits[0][s].data(), expected[prompt.size() + size_t(s)]), 1e-4) << "step " << s;
  }
}

INSTANTIATE_TEST_SUITE_P(Batches, BifurcatedVsReplicated,
                         ::testing::Combine(::testing::Values("tiny", "tiny-mqa", "tiny-qwen2"),
                                            ::testing::Values(1, 4, 17)),
                         [](const auto& info) {
                           std::string name = std::get<0>(info.param) + "_b" + std::to_string(std::get<1>(info.param));
                           for (char& ch : name) ch = std::isalnum(static_cast<unsigned char>(ch)) ? ch : '_';
                           return name;
                         });

}  // namespace
}  // namespace bifurcate::model
