// Random-weight model files: names, shapes, types and metadata as llama.cpp
// expects them; determinism; vocab copying; weight statistics; Q8_0 vs F32.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "gguf/gguf_file.h"
#include "model/model_shapes.h"
#include "model/random_model.h"
#include "tensor/dtype.h"
#include "util/error.h"

namespace bifurcate::model {
namespace {

namespace fs = std::filesystem;
using gguf::GgmlType;

class RandomModelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           str("bifurcate_random_model_", getpid(), "_",
               ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(std::string_view name) const { return (dir_ / name).string(); }

  fs::path dir_;
};

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::vector<float> dequantize(const gguf::TensorInfo& t) {
  std::vector<float> values(t.n_elements());
  tensor::dequantize_row(t.type, t.data, values.data(), int64_t(values.size()));
  return values;
}

struct Stats {
  double mean, stddev;
};

Stats stats_of(const std::vector<float>& v) {
  double sum = 0, sum_sq = 0;
  for (float x : v) sum += x, sum_sq += double(x) * x;
  double mean = sum / double(v.size());
  return {mean, std::sqrt(sum_sq / double(v.size()) - mean * mean)};
}

// The tensors llama.cpp's loader looks up for a llama/qwen2 model, written
// out from llama.cpp's naming scheme (not from plan_random_model).
std::map<std::string, std::vector<uint64_t>> expected_tensors(const ModelShape& s, uint64_t n_vocab) {
  uint64_t hs = s.head_size != 0 ? s.head_size : s.dim / s.n_heads;
  std::map<std::string, std::vector<uint64_t>> t;
  t["token_embd.weight"] = {s.dim, n_vocab};
  t["output_norm.weight"] = {s.dim};
  if (!s.tied_embeddings) t["output.weight"] = {s.dim, n_vocab};
  for (uint32_t l = 0; l < s.n_layers; ++l) {
    std::string b = str("blk.", l, ".");
    t[b + "attn_norm.weight"] = {s.dim};
    t[b + "attn_q.weight"] = {s.dim, s.n_heads * hs};
    t[b + "attn_k.weight"] = {s.dim, s.n_kv_heads * hs};
    t[b + "attn_v.weight"] = {s.dim, s.n_kv_heads * hs};
    t[b + "attn_output.weight"] = {s.n_heads * hs, s.dim};
    t[b + "ffn_norm.weight"] = {s.dim};
    t[b + "ffn_gate.weight"] = {s.dim, s.ffn_dim};
    t[b + "ffn_up.weight"] = {s.dim, s.ffn_dim};
    t[b + "ffn_down.weight"] = {s.ffn_dim, s.dim};
    if (s.architecture == "qwen2") {
      t[b + "attn_q.bias"] = {s.n_heads * hs};
      t[b + "attn_k.bias"] = {s.n_kv_heads * hs};
      t[b + "attn_v.bias"] = {s.n_kv_heads * hs};
    }
  }
  return t;
}

void expect_metadata(const gguf::GgufFile& f, const ModelShape& s, uint64_t n_vocab, uint32_t file_type) {
  std::string a(s.architecture);
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.get_string("general.architecture"), a);
  EXPECT_EQ(f.get_uint("general.file_type"), file_type);
  EXPECT_NE(f.get_string("general.name").find(s.name), std::string::npos);
  EXPECT_EQ(f.get_uint(a + ".vocab_size"), n_vocab);
  EXPECT_EQ(f.get_uint(a + ".context_length"), s.context_length);
  EXPECT_EQ(f.get_uint(a + ".embedding_length"), s.dim);
  EXPECT_EQ(f.get_uint(a + ".block_count"), s.n_layers);
  EXPECT_EQ(f.get_uint(a + ".feed_forward_length"), s.ffn_dim);
  EXPECT_EQ(f.get_uint(a + ".attention.head_count"), s.n_heads);
  EXPECT_EQ(f.get_uint(a + ".attention.head_count_kv"), s.n_kv_heads);
  EXPECT_EQ(f.get_float(a + ".attention.layer_norm_rms_epsilon"), double(s.rms_eps));
  EXPECT_EQ(f.get_float(a + ".rope.freq_base"), double(s.rope_base));
  if (s.head_size != 0 && s.head_size != s.dim / s.n_heads) {
    EXPECT_EQ(f.get_uint(a + ".attention.key_length"), s.head_size);
    EXPECT_EQ(f.get_uint(a + ".attention.value_length"), s.head_size);
  } else {
    EXPECT_EQ(f.find(a + ".attention.key_length"), nullptr);
  }
}

TEST(ModelShapes, TableHasTheDeclaredShapes) {
  const ModelShape& tiny = find_model_shape("tiny");
  EXPECT_EQ(tiny.architecture, "llama");
  EXPECT_EQ(tiny.dim, 64u);
  EXPECT_EQ(tiny.n_layers, 2u);
  EXPECT_EQ(tiny.n_heads, 4u);
  EXPECT_EQ(tiny.n_kv_heads, 2u);
  EXPECT_EQ(tiny.ffn_dim, 176u);
  EXPECT_EQ(tiny.context_length, 512u);
  EXPECT_EQ(tiny.head_dim(), 16u);
  EXPECT_EQ(find_model_shape("tiny-mha").n_kv_heads, 4u);
  EXPECT_EQ(find_model_shape("tiny-mqa").n_kv_heads, 1u);
  EXPECT_EQ(find_model_shape("tiny-qwen2").architecture, "qwen2");
  EXPECT_EQ(find_model_shape("7b-mha-2l").n_kv_heads, 32u);
  EXPECT_EQ(find_model_shape("7b-gqa-2l").n_kv_heads, 8u);
  EXPECT_EQ(find_model_shape("7b-gqa-2l").ffn_dim, 11008u);
  EXPECT_EQ(find_model_shape("7b-gqa-2l").context_length, 16384u);
  const ModelShape& b1 = find_model_shape("1b");
  EXPECT_EQ(b1.dim, 2048u);
  EXPECT_EQ(b1.n_layers, 22u);
  EXPECT_EQ(b1.n_kv_heads, 4u);
  EXPECT_EQ(b1.ffn_dim, 5632u);
  EXPECT_EQ(b1.n_vocab, 32000u);
}

TEST(ModelShapes, UnknownNameListsKnownNames) {
  try {
    find_model_shape("huge");
    FAIL() << "no error for an unknown shape";
  } catch (const Error& e) {
    std::string message = e.what();
    EXPECT_NE(message.find("'huge'"), std::string::npos) << message;
    EXPECT_NE(message.find("tiny-mqa"), std::string::npos) << message;
    EXPECT_NE(message.find("7b-gqa-2l"), std::string::npos) << message;
  }
}

TEST_F(RandomModelTest, EverySmallShapeAndTypeReadsBackAsDeclared) {
  struct TypeCase {
    GgmlType type;
    uint32_t file_type;  // llama.cpp's LLAMA_FTYPE
    uint32_t block;
  };
  const TypeCase types[] = {{GgmlType::F32, 0, 1},
                            {GgmlType::F16, 1, 1},
                            {GgmlType::BF16, 32, 1},
                            {GgmlType::Q8_0, 7, 32},
                            {GgmlType::Q4_0, 2, 32}};
  for (const char* name : {"tiny", "tiny-mha", "tiny-mqa", "tiny-qwen2", "tiny-wide-head"}) {
    const ModelShape& shape = find_model_shape(name);
    for (const TypeCase& tc : types) {
      SCOPED_TRACE(str(name, " ", gguf::ggml_type_traits(tc.type).name));
      std::string file = path(str(name, ".gguf"));
      write_random_model(shape, tc.type, "", 7, file);
      gguf::GgufFile f = gguf::GgufFile::open(file);
      expect_metadata(f, shape, shape.n_vocab, tc.file_type);
      EXPECT_EQ(f.get_string("tokenizer.ggml.model"), "none");

      auto expected = expected_tensors(shape, shape.n_vocab);
      ASSERT_EQ(f.tensors().size(), expected.size());
      for (const auto& t : f.tensors()) {
        auto it = expected.find(t.name);
        ASSERT_NE(it, expected.end()) << "unexpected tensor " << t.name;
        EXPECT_EQ(t.dims, it->second) << t.name;
        // 1-D tensors (norms, biases) stay F32; matrices use the weight type
        // unless their rows do not fill whole blocks (ffn_down: 176 = 5.5 x 32).
        GgmlType want = t.dims.size() == 1           ? GgmlType::F32
                        : t.dims[0] % tc.block != 0 ? GgmlType::F16
                                                     : tc.type;
        EXPECT_EQ(t.type, want) << t.name;
      }
    }
  }
}

TEST_F(RandomModelTest, SameSeedSameBytesOtherSeedOtherWeights) {
  const ModelShape& shape = find_model_shape("tiny");
  write_random_model(shape, GgmlType::F16, "", 1, path("a.gguf"));
  write_random_model(shape, GgmlType::F16, "", 1, path("b.gguf"));
  write_random_model(shape, GgmlType::F16, "", 2, path("c.gguf"));
  std::string a = read_bytes(path("a.gguf"));
  EXPECT_GT(a.size(), 100000u);
  EXPECT_EQ(a, read_bytes(path("b.gguf")));

  gguf::GgufFile fa = gguf::GgufFile::open(path("a.gguf"));
  gguf::GgufFile fc = gguf::GgufFile::open(path("c.gguf"));
  ASSERT_EQ(fa.tensors().size(), fc.tensors().size());
  for (std::size_t i = 0; i < fa.tensors().size(); ++i) {
    const auto& ta = fa.tensors()[i];
    const auto& tc = fc.tensors()[i];
    ASSERT_EQ(ta.n_bytes, tc.n_bytes);
    EXPECT_NE(std::memcmp(ta.data, tc.data, ta.n_bytes), 0) << ta.name << " did not change with the seed";
  }
  // Two tensors of the same shape in one file must not repeat each other.
  const auto& q0 = fa.tensor("blk.0.attn_q.weight");
  const auto& q1 = fa.tensor("blk.1.attn_q.weight");
  EXPECT_NE(std::memcmp(q0.data, q1.data, q0.n_bytes), 0);
}

TEST_F(RandomModelTest, BytesDoNotDependOnThreadCount) {
  const ModelShape& shape = find_model_shape("7b-gqa-2l");
  ModelShape narrow = shape;  // 7B's vocab, narrow layers: many chunks, little data
  narrow.dim = 64, narrow.n_heads = 4, narrow.n_kv_heads = 1, narrow.ffn_dim = 128, narrow.n_layers = 1;
  write_random_model(narrow, GgmlType::Q8_0, "", 4, path("one.gguf"), {}, 1);
  write_random_model(narrow, GgmlType::Q8_0, "", 4, path("three.gguf"), {}, 3);
  std::string one = read_bytes(path("one.gguf"));
  EXPECT_GT(one.size(), 2u * 32000 * 68);
  EXPECT_EQ(one, read_bytes(path("three.gguf")));
}

TEST_F(RandomModelTest, WeightStatisticsFollowTheDocumentedScales) {
  const ModelShape& shape = find_model_shape("tiny");
  write_random_model(shape, GgmlType::F32, "", 3, path("m.gguf"));
  gguf::GgufFile f = gguf::GgufFile::open(path("m.gguf"));
  const double dim = shape.dim, ffn = shape.ffn_dim, layers = shape.n_layers;
  struct Expect {
    std::string name;
    double mean, stddev;
  };
  const Expect expects[] = {
      {"token_embd.weight", 0, 1},
      {"blk.0.attn_norm.weight", 1, 0.05},
      {"blk.0.attn_q.weight", 0, 1 / std::sqrt(dim)},
      {"blk.1.ffn_gate.weight", 0, 1 / std::sqrt(dim)},
      {"blk.1.attn_output.weight", 0, 1 / std::sqrt(dim) / std::sqrt(2 * layers)},
      {"blk.0.ffn_down.weight", 0, 1.7 / std::sqrt(ffn) / std::sqrt(2 * layers)},
      {"output.weight", 0, 2 / std::sqrt(dim)},
  };
  for (const Expect& e : expects) {
    std::vector<float> v = dequantize(f.tensor(e.name));
    Stats s = stats_of(v);
    // Sample sizes are >= 64; 5 standard errors of the mean and 25% of sigma.
    double n = double(v.size());
    EXPECT_NEAR(s.mean, e.mean, 5 * e.stddev / std::sqrt(n)) << e.name;
    EXPECT_NEAR(s.stddev, e.stddev, 0.25 * e.stddev) << e.name;
    // Roughly normal: about 67% of values (Irwin-Hall 4; a true normal has 68%) within one sigma of the mean.
    if (n >= 10000) {
      double inside = 0;
      for (float x : v) inside += std::abs(x - e.mean) < e.stddev;
      EXPECT_NEAR(inside / n, 0.67, 0.02) << e.name;
    }
  }
}

TEST_F(RandomModelTest, Q8_0WeightsAreTheF32WeightsQuantized) {
  const ModelShape& shape = find_model_shape("tiny-mqa");
  write_random_model(shape, GgmlType::F32, "", 11, path("f32.gguf"));
  write_random_model(shape, GgmlType::Q8_0, "", 11, path("q8.gguf"));
  gguf::GgufFile f32 = gguf::GgufFile::open(path("f32.gguf"));
  gguf::GgufFile q8 = gguf::GgufFile::open(path("q8.gguf"));
  int n_q8 = 0;
  for (const auto& t : q8.tensors()) {
    std::vector<float> exact = dequantize(f32.tensor(t.name));
    std::vector<float> approx = dequantize(t);
    ASSERT_EQ(exact.size(), approx.size());
    if (t.type != GgmlType::Q8_0) continue;
    ++n_q8;
    // Per 32-block: Q8_0 rounds to multiples of d = amax/127 (d stored as f16),
    // so each element is off by at most d/2 plus the f16 rounding of d.
    for (std::size_t b = 0; b < exact.size(); b += 32) {
      double amax = 0;
      for (std::size_t i = b; i < b + 32; ++i) amax = std::max(amax, double(std::abs(exact[i])));
      double bound = amax / 127 / 2 + amax * 1e-3;
      for (std::size_t i = b; i < b + 32; ++i) {
        ASSERT_LE(std::abs(double(exact[i]) - approx[i]), bound) << t.name << " element " << i;
      }
    }
  }
  EXPECT_GT(n_q8, 10);
}

TEST_F(RandomModelTest, VocabFileSetsTokenizerAndVocabSize) {
  std::string vocab = std::string(BIFURCATE_TESTDATA_DIR) + "/vocab/ggml-vocab-llama-spm.gguf";
  if (!fs::exists(vocab)) GTEST_SKIP() << "missing test data " << vocab;
  const ModelShape& shape = find_model_shape("tiny");
  write_random_model(shape, GgmlType::Q8_0, vocab, 5, path("v.gguf"));
  gguf::GgufFile f = gguf::GgufFile::open(path("v.gguf"));
  gguf::GgufFile source = gguf::GgufFile::open(vocab);
  expect_metadata(f, shape, 32000, 7);
  EXPECT_EQ(f.get_array("tokenizer.ggml.tokens").size(), 32000u);
  // Every tokenizer.* key is copied verbatim; nothing else from the vocab file.
  int copied = 0;
  for (const auto& [key, value] : source.metadata()) {
    if (!key.starts_with("tokenizer.")) continue;
    const gguf::Value* got = f.find(key);
    ASSERT_NE(got, nullptr) << key;
    EXPECT_TRUE(*got == value) << key;
    ++copied;
  }
  EXPECT_GE(copied, 3);
  EXPECT_EQ(f.tensor("token_embd.weight").dims, (std::vector<uint64_t>{64, 32000}));
  EXPECT_EQ(f.tensor("output.weight").dims, (std::vector<uint64_t>{64, 32000}));
  // A large tensor is generated in many parallel pieces; none may repeat another.
  const auto& embd = f.tensor("token_embd.weight");
  const std::size_t row_bytes = embd.n_bytes / embd.n_rows();
  std::set<std::string_view> rows;
  for (uint64_t r = 0; r < embd.n_rows(); ++r) {
    rows.emplace(reinterpret_cast<const char*>(embd.data) + r * row_bytes, row_bytes);
  }
  EXPECT_EQ(rows.size(), embd.n_rows());
}

TEST_F(RandomModelTest, ProgressRisesToOne) {
  std::vector<double> seen;
  write_random_model(find_model_shape("tiny"), GgmlType::F16, "", 1, path("p.gguf"),
                     [&](double fraction) { seen.push_back(fraction); });
  ASSERT_FALSE(seen.empty());
  for (std::size_t i = 1; i < seen.size(); ++i) EXPECT_GE(seen[i], seen[i - 1]);
  EXPECT_EQ(seen.back(), 1.0);
}

TEST_F(RandomModelTest, BadInputsAreNamed) {
  const ModelShape& shape = find_model_shape("tiny");
  try {
    write_random_model(shape, GgmlType::Q3_K, "", 1, path("x.gguf"));
    FAIL() << "Q3_K accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("Q3_K"), std::string::npos) << e.what();
  }
  // A model file without tokenizer keys is not a vocab file.
  write_random_model(shape, GgmlType::F32, "", 1, path("novocab.gguf"));
  try {
    write_random_model(shape, GgmlType::F32, path("novocab.gguf"), 1, path("y.gguf"));
    FAIL() << "vocab without tokens accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("novocab.gguf"), std::string::npos) << e.what();
  }
  EXPECT_THROW(write_random_model(shape, GgmlType::F32, path("missing.gguf"), 1, path("z.gguf")), Error);
  EXPECT_FALSE(fs::exists(path("x.gguf")));
}

}  // namespace
}  // namespace bifurcate::model
