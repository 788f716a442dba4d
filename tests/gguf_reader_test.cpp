// GgufFile on the real files in testdata: counts, values and tensor bytes are
// checked against facts established independently of this reader (llama2.c's
// own checkpoint, PROVENANCE.md, a separate Python dump of the headers).
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "gguf/gguf_file.h"
#include "util/error.h"

namespace bifurcate::gguf {
namespace {

std::string testdata(const std::string& relative) { return std::string(BIFURCATE_TESTDATA_DIR) + "/" + relative; }

#define SKIP_IF_MISSING(path) \
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "test data missing: " << (path)

std::vector<uint8_t> read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

struct VocabFact {
  const char* file;
  uint64_t n_tokens;
  const char* first_token;
  const char* last_token;
  const char* model;
};

// Counts and end tokens from PROVENANCE.md and an independent Python dump.
const VocabFact kVocabs[] = {
    {"vocab/ggml-vocab-llama-spm.gguf", 32000, "<unk>", "给", "llama"},
    {"vocab/ggml-vocab-phi-3.gguf", 32064, "<unk>", "[PAD32063]", "llama"},
    {"vocab/ggml-vocab-gpt-2.gguf", 50257, "!", "<|endoftext|>", "gpt2"},
    {"vocab/ggml-vocab-starcoder.gguf", 49152, "<|endoftext|>", "sdb", "gpt2"},
    {"vocab/ggml-vocab-deepseek-coder.gguf", 32256, "!", "[PAD32255]", "gpt2"},
    {"vocab/ggml-vocab-llama-bpe.gguf", 128256, "!", "<|reserved_special_token_245|>", "gpt2"},
    {"vocab/ggml-vocab-qwen2.gguf", 151646, "!", "<|im_end|>", "gpt2"},
};

TEST(GgufReader, VocabFilesHaveTheExpectedTokenArrays) {
  for (const VocabFact& fact : kVocabs) {
    std::string path = testdata(fact.file);
    SKIP_IF_MISSING(path);
    SCOPED_TRACE(path);
    GgufFile f = GgufFile::open(path);
    EXPECT_EQ(f.version(), 3u);
    EXPECT_EQ(f.alignment(), 32u);
    EXPECT_TRUE(f.tensors().empty());
    EXPECT_EQ(f.get_string("tokenizer.ggml.model"), fact.model);
    const Value* tokens = f.find("tokenizer.ggml.tokens");
    ASSERT_NE(tokens, nullptr);
    ASSERT_EQ(tokens->type(), ValueType::Array);
    EXPECT_EQ(tokens->array_type(), ValueType::String);
    const std::vector<Value>& items = tokens->as_array();
    ASSERT_EQ(items.size(), fact.n_tokens);
    EXPECT_EQ(items.front().as_string(), fact.first_token);
    EXPECT_EQ(items.back().as_string(), fact.last_token);
    // token_type is parallel to tokens, i32.
    const std::vector<Value>& types = f.get_array("tokenizer.ggml.token_type");
    EXPECT_EQ(types.size(), fact.n_tokens);
    EXPECT_EQ(f.find("tokenizer.ggml.token_type")->array_type(), ValueType::I32);
  }
}

TEST(GgufReader, LlamaSpmScalarsAndScores) {
  std::string path = testdata("vocab/ggml-vocab-llama-spm.gguf");
  SKIP_IF_MISSING(path);
  GgufFile f = GgufFile::open(path);
  EXPECT_EQ(f.metadata().size(), 22u);
  EXPECT_EQ(f.metadata().front().first, "general.architecture");
  EXPECT_EQ(f.get_uint("llama.vocab_size"), 32000u);
  EXPECT_EQ(f.get_uint("tokenizer.ggml.bos_token_id"), 1u);
  EXPECT_EQ(f.get_int("tokenizer.ggml.eos_token_id"), 2);
  EXPECT_TRUE(f.get_bool("tokenizer.ggml.add_bos_token"));
  EXPECT_FALSE(f.get_bool_or("tokenizer.ggml.add_eos_token", true));
  EXPECT_DOUBLE_EQ(f.get_float("llama.attention.layer_norm_rms_epsilon"), double(1e-5f));
  const std::vector<Value>& scores = f.get_array("tokenizer.ggml.scores");
  ASSERT_EQ(scores.size(), 32000u);
  EXPECT_EQ(scores.front().type(), ValueType::F32);
  EXPECT_EQ(scores.back().as_float(), -31740.0);
  EXPECT_EQ(f.file_size(), 723869u);  // PROVENANCE.md
}

TEST(GgufReader, Qwen2VocabParsesQuickly) {
  std::string path = testdata("vocab/ggml-vocab-qwen2.gguf");
  SKIP_IF_MISSING(path);
  auto start = std::chrono::steady_clock::now();
  GgufFile f = GgufFile::open(path);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(f.get_array("tokenizer.ggml.merges").size(), 151387u);
  EXPECT_EQ(f.get_uint("tokenizer.ggml.eos_token_id"), 151643u);
  std::printf("qwen2 vocab (%zu bytes) parsed in %.3f s\n", f.file_size(), seconds);
#if !defined(__SANITIZE_ADDRESS__) && defined(NDEBUG)
  EXPECT_LT(seconds, 0.5);
#endif
}

TEST(GgufReader, Stories260KTensorTableAndMetadata) {
  std::string path = testdata("stories260K/stories260K.gguf");
  SKIP_IF_MISSING(path);
  GgufFile f = GgufFile::open(path);
  EXPECT_EQ(f.file_size(), 1054400u);
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_EQ(f.get_uint("llama.embedding_length"), 64u);
  EXPECT_EQ(f.get_uint("llama.context_length"), 512u);
  EXPECT_EQ(f.get_uint("llama.block_count"), 5u);
  EXPECT_EQ(f.get_uint("llama.feed_forward_length"), 172u);
  EXPECT_EQ(f.get_uint("llama.attention.head_count"), 8u);
  EXPECT_EQ(f.get_uint("llama.attention.head_count_kv"), 4u);
  EXPECT_DOUBLE_EQ(f.get_float("llama.rope.freq_base"), 10000.0);
  EXPECT_EQ(f.get_array("tokenizer.ggml.tokens").size(), 512u);

  // Tied embedding: 1 + 5 blocks × 9 + output_norm = 47 tensors.
  ASSERT_EQ(f.tensors().size(), 47u);
  EXPECT_EQ(f.find_tensor("output.weight"), nullptr);
  const TensorInfo& embd = f.tensor("token_embd.weight");
  EXPECT_EQ(embd.dims, (std::vector<uint64_t>{64, 512}));
  EXPECT_EQ(embd.type, GgmlType::F32);
  EXPECT_EQ(embd.n_elements(), 64u * 512u);
  EXPECT_EQ(embd.n_rows(), 512u);
  EXPECT_EQ(embd.n_bytes, 64u * 512u * 4u);
  const TensorInfo& down = f.tensor("blk.4.ffn_down.weight");
  EXPECT_EQ(down.dims, (std::vector<uint64_t>{172, 64}));
  EXPECT_EQ(down.n_rows(), 64u);

  // Every F32 tensor has 4 bytes per element, is aligned, and lies inside the file.
  for (const TensorInfo& t : f.tensors()) {
    SCOPED_TRACE(t.name);
    EXPECT_EQ(t.type, GgmlType::F32);
    uint64_t elements = 1;
    for (uint64_t d : t.dims) elements *= d;
    EXPECT_EQ(t.n_bytes, elements * 4);
    EXPECT_EQ(t.offset % 32, 0u);
    EXPECT_EQ(t.data, reinterpret_cast<const uint8_t*>(f.tensors()[0].data) + t.offset);
    EXPECT_LE(f.data_offset() + t.offset + t.n_bytes, f.file_size());
  }
}

// The GGUF's weights must be exactly llama2.c's checkpoint, every tensor of
// it. run.c's layout: a header of 7 int32 (dim, hidden_dim, n_layers,
// n_heads, n_kv_heads, vocab_size (> 0: the classifier is the embedding),
// seq_len), then f32 arrays: token embedding [vocab][dim], rms_att [L][dim],
// wq [L][dim][dim], wk [L][kv_dim][dim], wv [L][kv_dim][dim], wo [L][dim][dim],
// rms_ffn [L][dim], w1 (gate) [L][hidden][dim], w2 (down) [L][dim][hidden],
// w3 (up) [L][hidden][dim], rms_final [dim], then RoPE tables
// freq_cis_real/imag [seq_len][head_size/2] that a GGUF does not store.
TEST(GgufReader, Stories260KBytesMatchTheLlama2cCheckpoint) {
  std::string path = testdata("stories260K/stories260K.gguf");
  std::string bin_path = testdata("stories260K/stories260K.bin");
  SKIP_IF_MISSING(path);
  SKIP_IF_MISSING(bin_path);
  GgufFile f = GgufFile::open(path);
  std::vector<uint8_t> bin = read_all(bin_path);
  int32_t header[7];
  ASSERT_GE(bin.size(), sizeof header);
  std::memcpy(header, bin.data(), sizeof header);
  const std::size_t dim = std::size_t(header[0]), hidden = std::size_t(header[1]),
                    layers = std::size_t(header[2]), heads = std::size_t(header[3]),
                    kv_heads = std::size_t(header[4]), vocab = std::size_t(header[5]),
                    seq_len = std::size_t(header[6]);
  ASSERT_EQ(dim, 64u);
  ASSERT_EQ(header[5], 512) << "a negative vocab_size would mean a separate classifier";
  const std::size_t kv_dim = dim / heads * kv_heads;

  // The checkpoint's arrays in file order: GGUF name pattern ({} = layer), floats per layer.
  struct Array {
    std::string name;
    std::size_t floats;
    bool per_layer;
  };
  const std::vector<Array> arrays = {
      {"token_embd.weight", vocab * dim, false},
      {"blk.{}.attn_norm.weight", dim, true},
      {"blk.{}.attn_q.weight", dim * dim, true},
      {"blk.{}.attn_k.weight", kv_dim * dim, true},
      {"blk.{}.attn_v.weight", kv_dim * dim, true},
      {"blk.{}.attn_output.weight", dim * dim, true},
      {"blk.{}.ffn_norm.weight", dim, true},
      {"blk.{}.ffn_gate.weight", hidden * dim, true},
      {"blk.{}.ffn_down.weight", dim * hidden, true},
      {"blk.{}.ffn_up.weight", hidden * dim, true},
      {"output_norm.weight", dim, false},
  };
  std::size_t offset = sizeof header, compared = 0;
  for (const Array& a : arrays) {
    for (std::size_t l = 0; l < (a.per_layer ? layers : 1); ++l) {
      std::string name = a.name;
      if (a.per_layer) name.replace(name.find("{}"), 2, std::to_string(l));
      const TensorInfo& t = f.tensor(name);
      ASSERT_EQ(t.type, GgmlType::F32) << name;
      ASSERT_EQ(t.n_bytes, a.floats * 4) << name;
      ASSERT_LE(offset + t.n_bytes, bin.size()) << name;
      EXPECT_EQ(std::memcmp(t.data, bin.data() + offset, t.n_bytes), 0)
          << name << " differs from the checkpoint";
      offset += t.n_bytes;
      ++compared;
    }
  }
  // Every tensor of the GGUF was compared, and the checkpoint holds nothing
  // else but the two RoPE tables.
  EXPECT_EQ(compared, f.tensors().size());
  EXPECT_EQ(f.find_tensor("output.weight"), nullptr);
  EXPECT_EQ(offset + 2 * seq_len * (dim / heads / 2) * 4, bin.size());
}

TEST(GgufReader, GgmlOrgStories260K) {
  std::string path = testdata("stories260K/stories260K-ggml-org.gguf");
  SKIP_IF_MISSING(path);
  GgufFile f = GgufFile::open(path);
  // PROVENANCE.md: v3, 48 tensors, 19 KV, alignment 32, data at 14176.
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.tensors().size(), 48u);
  EXPECT_EQ(f.metadata().size(), 19u);
  EXPECT_EQ(f.alignment(), 32u);
  EXPECT_EQ(f.data_offset(), 14176u);
  EXPECT_EQ(f.get_uint("llama.context_length"), 2048u);
  EXPECT_EQ(f.get_uint("llama.embedding_length"), 64u);
  EXPECT_EQ(f.get_uint("tokenizer.ggml.seperator_token_id"), 4294967295u);
  EXPECT_EQ(f.find("llama.rope.freq_base"), nullptr);
  EXPECT_EQ(f.get_float_or("llama.rope.freq_base", 10000.0), 10000.0);
  std::vector<std::string> first_three;
  for (std::size_t i = 0; i < 3; ++i) first_three.push_back(f.tensors()[i].name);
  EXPECT_EQ(first_three, (std::vector<std::string>{"token_embd.weight", "output_norm.weight", "output.weight"}));
  const TensorInfo& embd = f.tensor("token_embd.weight");
  const TensorInfo& out = f.tensor("output.weight");
  EXPECT_EQ(embd.dims, (std::vector<uint64_t>{64, 512}));
  ASSERT_EQ(out.n_bytes, embd.n_bytes);
  EXPECT_EQ(std::memcmp(out.data, embd.data, embd.n_bytes), 0);  // identical values, says PROVENANCE.md
  const TensorInfo& last = f.tensors().back();
  EXPECT_EQ(last.name, "blk.4.ffn_norm.weight");
  EXPECT_EQ(f.data_offset() + last.offset + last.n_bytes, f.file_size());
}

TEST(GgufReader, GettersNameFileKeyAndTypes) {
  std::string path = testdata("stories260K/stories260K.gguf");
  SKIP_IF_MISSING(path);
  GgufFile f = GgufFile::open(path);
  auto message_of = [](auto&& fn) -> std::string {
    try {
      fn();
    } catch (const Error& e) {
      return e.what();
    }
    return "(no error)";
  };
  std::string m = message_of([&] { f.get_uint("general.architecture"); });
  EXPECT_NE(m.find(path), std::string::npos) << m;
  EXPECT_NE(m.find("'general.architecture'"), std::string::npos) << m;
  EXPECT_NE(m.find("has type string, expected unsigned integer"), std::string::npos) << m;
  m = message_of([&] { f.get_string("no.such.key"); });
  EXPECT_NE(m.find(path + ": metadata key 'no.such.key' is missing"), std::string::npos) << m;
  m = message_of([&] { f.get_string_or("llama.block_count", "x"); });
  EXPECT_NE(m.find("has type u32, expected string"), std::string::npos) << m;
  m = message_of([&] { f.tensor("blk.9.attn_q.weight"); });
  EXPECT_NE(m.find(path), std::string::npos) << m;
  EXPECT_NE(m.find("tensor 'blk.9.attn_q.weight' not found"), std::string::npos) << m;
  EXPECT_EQ(f.get_uint_or("no.such.key", 7), 7u);
  EXPECT_EQ(f.get_string_or("no.such.key", "dflt"), "dflt");
  EXPECT_EQ(f.get_string_or("general.architecture", "dflt"), "llama");
  EXPECT_TRUE(f.get_bool_or("no.such.key", true));
}

TEST(GgufReader, MissingFileAndDirectoryAreErrors) {
  std::string missing = testdata("no-such-file.gguf");
  try {
    GgufFile::open(missing);
    FAIL() << "expected Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(missing + ": cannot open"), std::string::npos) << e.what();
  }
  try {
    GgufFile::open(testdata("vocab"));
    FAIL() << "expected Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not a regular file"), std::string::npos) << e.what();
  }
}

TEST(GgufReader, MovedFileKeepsTensorPointersAndLookups) {
  std::string path = testdata("stories260K/stories260K.gguf");
  SKIP_IF_MISSING(path);
  GgufFile a = GgufFile::open(path);
  const uint8_t* data = a.tensor("token_embd.weight").data;
  std::vector<uint8_t> first(data, data + 64);
  GgufFile b = std::move(a);
  EXPECT_EQ(b.tensor("token_embd.weight").data, data);
  EXPECT_EQ(std::vector<uint8_t>(data, data + 64), first);
  EXPECT_EQ(b.get_uint("llama.embedding_length"), 64u);
}

// ---------------------------------------------------------------- Value

TEST(GgufValue, CheckedAccessorsConvertOnlyWhatFits) {
  EXPECT_EQ(Value::i32(5).as_uint(), 5u);
  EXPECT_THROW(Value::i32(-5).as_uint(), Error);
  EXPECT_EQ(Value::i8(-5).as_int(), -5);
  EXPECT_EQ(Value::u64(~0ull).as_uint(), ~0ull);
  EXPECT_THROW(Value::u64(~0ull).as_int(), Error);
  EXPECT_EQ(Value::u64(1ull << 62).as_int(), int64_t(1) << 62);
  EXPECT_EQ(Value::boolean(true).as_uint(), 1u);
  EXPECT_EQ(Value::u16(65535).as_float(), 65535.0);
  EXPECT_EQ(Value::i64(-3).as_float(), -3.0);
  EXPECT_EQ(Value::f32(0.1f).as_float(), double(0.1f));
  EXPECT_THROW(Value::f32(1.0f).as_uint(), Error);
  EXPECT_THROW(Value::u8(1).as_bool(), Error);
  EXPECT_THROW(Value::string("1").as_float(), Error);
  EXPECT_THROW(Value::u32(1).as_string(), Error);
  EXPECT_THROW(Value::u32(1).as_array(), Error);
  EXPECT_THROW(Value::u32(1).array_type(), Error);
  EXPECT_THROW(Value::array(ValueType::U32, {Value::u32(1), Value::i32(2)}), Error);
  try {
    Value::string("x").as_uint();
    FAIL();
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "value has type string, expected unsigned integer");
  }
}

TEST(GgufValue, DisplayStrings) {
  EXPECT_EQ(Value::i32(-7).to_display_string(), "-7");
  EXPECT_EQ(Value::u64(18446744073709551615ull).to_display_string(), "18446744073709551615");
  EXPECT_EQ(Value::f32(1.5f).to_display_string(), "1.5");
  EXPECT_EQ(Value::boolean(false).to_display_string(), "false");
  EXPECT_EQ(Value::string("a\"b\n").to_display_string(), "\"a\\\"b\\n\"");
  std::vector<Value> items;
  for (int i = 0; i < 5; ++i) items.push_back(Value::u8(uint8_t(i)));
  Value a = Value::array(ValueType::U8, items);
  EXPECT_EQ(a.to_display_string(3), "[0, 1, 2, ... (5 u8 items)]");
  EXPECT_EQ(a.to_display_string(8), "[0, 1, 2, 3, 4]");
  EXPECT_EQ(Value::array(ValueType::String, {}).to_display_string(), "[]");
  Value nested = Value::array(ValueType::Array, {a, Value::array(ValueType::U8, {})});
  EXPECT_EQ(nested.to_display_string(2), "[[0, 1, ... (5 u8 items)], []]");
}

}  // namespace
}  // namespace bifurcate::gguf
