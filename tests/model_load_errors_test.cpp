// Model files that are valid GGUF but not a model this engine can run, built
// with the library's writer from a good random model: each is refused by the
// public Engine constructor with an Error naming the file and the problem,
// in the words model/model.h documents.
#include <gtest/gtest.h>

#include <functional>
#include <optional>
#include <string>

#include "bifurcate/engine.h"
#include "gguf/ggml_types.h"
#include "model/model.h"
#include "model/model_shapes.h"
#include "model/random_model.h"
#include "model_file_support.h"
#include "tensor/dtype.h"
#include "util/error.h"

namespace bifurcate {
namespace {

using gguf::GgmlType;
using gguf::Value;
using test_models::GgufCopy;

class ModelLoadErrors : public ::testing::Test {
 protected:
  ModelLoadErrors() : dir_("model_load_errors") {
    // tiny: llama, dim 64, 4 heads of 16, 2 KV heads, 2 layers, all F32.
    model::write_random_model(model::find_model_shape("tiny"), GgmlType::F32, "", 1, good(), {}, 1);
  }
  std::string good() const { return dir_.path("good.gguf"); }

  // The Error message of loading the good file changed by `edit`.
  std::string load_error(const std::function<void(GgufCopy&)>& edit) {
    GgufCopy copy = GgufCopy::read(good());
    edit(copy);
    const std::string path = dir_.path("bad.gguf");
    copy.write(path);
    try {
      Engine engine({.model_path = path});
    } catch (const Error& e) {
      const std::string message = e.what();
      EXPECT_NE(message.find(path), std::string::npos) << "the message does not name the file: " << message;
      return message;
    }
    return "(loaded without an error)";
  }

  test_models::ScratchDir dir_;
};

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// The control: unedited, the model loads (the file has no tokenizer, so the
// Engine would stop there; every error below comes before the tokenizer).
TEST_F(ModelLoadErrors, TheUneditedFileLoads) {
  const GgufCopy copy = GgufCopy::read(good());
  copy.write(dir_.path("copy.gguf"));
  EXPECT_EQ(model::Model::load(dir_.path("copy.gguf"))->config().n_layers, 2);
}

TEST_F(ModelLoadErrors, UnsupportedArchitecture) {
  const std::string m = load_error([](GgufCopy& c) { c.set("general.architecture", Value::string("gpt2")); });
  EXPECT_TRUE(contains(m, "unsupported architecture 'gpt2' (supported: llama, qwen2)")) << m;
}

TEST_F(ModelLoadErrors, MissingTensor) {
  const std::string m = load_error([](GgufCopy& c) { c.remove_tensor("blk.1.ffn_up.weight"); });
  EXPECT_TRUE(contains(m, "missing tensor blk.1.ffn_up.weight")) << m;
}

TEST_F(ModelLoadErrors, WrongTensorShape) {
  // attn_k maps 64 inputs to 2 KV heads x 16 = 32 outputs; give it 16 rows.
  const std::string m = load_error([](GgufCopy& c) {
    GgufCopy::Tensor& t = c.tensor("blk.0.attn_k.weight");
    t.dims = {64, 16};
    t.bytes.resize(64 * 16 * sizeof(float));
  });
  EXPECT_TRUE(contains(m, "blk.0.attn_k.weight: dims [64, 16], expected [64, 32]")) << m;
}

TEST_F(ModelLoadErrors, UnsupportedWeightType) {
  // The first ggml type the library cannot multiply whose blocks fit a row of
  // 64 (so the file itself is valid): found, not named, so it stays
  // unsupported as new types gain kernels.
  std::optional<gguf::GgmlTypeTraits> unsupported;
  for (uint32_t raw = 0; raw < 64 && !unsupported; ++raw) {
    const auto traits = gguf::ggml_type_traits(raw);
    if (traits && !tensor::is_supported_weight_type(traits->type) && 64 % traits->block_size == 0)
      unsupported = traits;
  }
  ASSERT_TRUE(unsupported.has_value());
  const std::string m = load_error([&](GgufCopy& c) {
    GgufCopy::Tensor& t = c.tensor("blk.0.attn_q.weight");
    t.type = unsupported->type;
    t.bytes.assign(64 * 64 / unsupported->block_size * unsupported->type_size, 0);
  });
  EXPECT_TRUE(
      contains(m, "blk.0.attn_q.weight: weight type " + std::string(unsupported->name) + " is not supported"))
      << m;
}

TEST_F(ModelLoadErrors, KeyLengthDiffersFromValueLength) {
  const std::string m = load_error([](GgufCopy& c) {
    c.set("llama.attention.key_length", Value::u32(16));
    c.set("llama.attention.value_length", Value::u32(32));
  });
  EXPECT_TRUE(contains(m, "attention.value_length differs from key_length (unsupported)")) << m;
}

TEST_F(ModelLoadErrors, EveryTensorProblemIsNamedAtOnce) {
  const std::string m = load_error([](GgufCopy& c) {
    c.remove_tensor("output_norm.weight");
    c.tensor("blk.1.attn_output.weight").dims = {32, 128};  // same element count, wrong shape
  });
  EXPECT_TRUE(contains(m, "missing tensor output_norm.weight")) << m;
  EXPECT_TRUE(contains(m, "blk.1.attn_output.weight: dims [32, 128], expected [64, 64]")) << m;
}

}  // namespace
}  // namespace bifurcate
