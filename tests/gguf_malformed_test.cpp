// Hostile and broken GGUF files: every one must be rejected with a
// bifurcate::Error naming the file and the specific problem — never a crash,
// a huge allocation, or a read outside the mapping (this also runs under ASan).
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "gguf/gguf_file.h"
#include "gguf/gguf_writer.h"
#include "gguf_test_support.h"
#include "util/error.h"

namespace bifurcate::gguf {
namespace {

using test_support::Bytes;
using test_support::read_all;
using test_support::temp_path;

// Removes first: truncating an existing file in place makes ext4 flush it on
// close (auto_da_alloc), which made the 2000-file fuzz loop take seconds.
void write_file(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::filesystem::remove(path);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

// Opens `bytes` as a file; returns the Error message, or "(parsed)".
std::string open_error(const std::vector<uint8_t>& bytes, const std::string& path) {
  write_file(path, bytes);
  try {
    GgufFile::open(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "(parsed)";
}

// Expects a rejection whose message names the file and contains `phrase`.
void expect_rejected(const std::vector<uint8_t>& bytes, const std::string& phrase) {
  std::string path = temp_path("malformed.gguf");
  std::string m = open_error(bytes, path);
  EXPECT_EQ(m.rfind(path + ": ", 0), 0u) << "message does not start with the path: " << m;
  EXPECT_NE(m.find(phrase), std::string::npos) << "expected '" << phrase << "' in: " << m;
}

constexpr uint64_t kHuge = uint64_t(1) << 60;
constexpr uint32_t kF32 = 0;
constexpr uint32_t kQ8_0 = 8;

// A small valid file with strings, nested arrays and three tensors, whose
// last tensor ends the file.
std::vector<uint8_t> small_valid_file() {
  GgufWriter w;
  w.set("general.architecture", Value::string("llama"));
  w.set("general.alignment", Value::u32(16));
  w.set("llama.block_count", Value::u32(2));
  w.set("eps", Value::f32(1e-5f));
  w.set("tokens", Value::array(ValueType::String, {Value::string("a"), Value::string(""), Value::string("xyz")}));
  w.set("nested", Value::array(ValueType::Array, {Value::array(ValueType::I8, {Value::i8(-1)}),
                                                  Value::array(ValueType::I8, {})}));
  w.add_tensor("a", {4, 2}, GgmlType::F32, std::vector<uint8_t>(32, 1));
  w.add_tensor("q", {32}, GgmlType::Q8_0, std::vector<uint8_t>(34, 2));
  w.add_tensor("b", {3}, GgmlType::F16, std::vector<uint8_t>(6, 3));
  std::string path = temp_path("small_valid.gguf");
  w.write(path);
  std::vector<uint8_t> bytes = read_all(path);
  GgufFile::open(path);  // sanity: the base file is valid
  return bytes;
}

// Bytes a file must have for its tensors to fit: end of the last tensor.
uint64_t required_size(const std::string& path) {
  GgufFile f = GgufFile::open(path);
  uint64_t end = 0;
  for (const TensorInfo& t : f.tensors()) end = std::max(end, f.data_offset() + t.offset + t.n_bytes);
  return end;
}

TEST(GgufMalformed, EveryTruncationIsRejected) {
  std::vector<uint8_t> full = small_valid_file();
  std::string full_path = temp_path("full.gguf");
  write_file(full_path, full);
  uint64_t required = required_size(full_path);
  ASSERT_GT(required, 100u);
  ASSERT_LE(required, full.size());
  std::string path = temp_path("prefix.gguf");
  const char* phrases[] = {"file is empty", "file truncated", "cannot fit", "exceeds", "array count",
                           "extends past end of file"};
  int rejected = 0;
  for (std::size_t n = 0; n < full.size(); ++n) {
    std::string m = open_error(std::vector<uint8_t>(full.begin(), full.begin() + n), path);
    if (n >= required) {
      EXPECT_EQ(m, "(parsed)") << "prefix of " << n << " bytes only drops padding";
      continue;
    }
    ++rejected;
    EXPECT_EQ(m.rfind(path + ": ", 0), 0u) << n << ": " << m;
    bool known = false;
    for (const char* p : phrases) known = known || m.find(p) != std::string::npos;
    EXPECT_TRUE(known) << "prefix of " << n << " bytes: " << m;
  }
  EXPECT_EQ(uint64_t(rejected), required);
}

TEST(GgufMalformed, TruncatedInsideAStringSaysSo) {
  Bytes b;
  b.header(0, 1).str("general.name").u32(8).u64(10);
  b.v.insert(b.v.end(), {'a', 'b', 'c'});
  expect_rejected(b.v, "string length 10 at offset");
  Bytes c;
  c.header(0, 1).str("k").u32(4).u32(7);  // complete
  c.v.pop_back();                         // cut inside the u32 value
  c.v.pop_back();
  expect_rejected(c.v, "file truncated: u32 value needs 4 bytes at offset");
}

TEST(GgufMalformed, EmptyFileAndWrongMagic) {
  expect_rejected({}, "file is empty");
  expect_rejected({'G', 'G'}, "file truncated: magic");
  Bytes b;
  b.header(0, 0);
  std::memcpy(b.v.data(), "GGML", 4);
  expect_rejected(b.v, "bad magic 'GGML' (expected 'GGUF')");
}

TEST(GgufMalformed, UnsupportedVersions) {
  expect_rejected(Bytes().header(0, 0, 1).v, "GGUF version 1 is not supported");
  expect_rejected(Bytes().header(0, 0, 99).v, "unsupported GGUF version 99");
  expect_rejected(Bytes().header(0, 0, 0x03000000).v, "big-endian");
  EXPECT_EQ(open_error(Bytes().header(0, 0, 2).v, temp_path("v2.gguf")), "(parsed)");
}

TEST(GgufMalformed, HugeCounts) {
  expect_rejected(Bytes().header(kHuge, 0).v, "tensor count 1152921504606846976 cannot fit");
  expect_rejected(Bytes().header(0, kHuge).v, "metadata count 1152921504606846976 cannot fit");
  expect_rejected(Bytes().header(~uint64_t(0), ~uint64_t(0)).v, "cannot fit");
}

TEST(GgufMalformed, HugeStringLengths) {
  expect_rejected(Bytes().header(0, 1).u64(kHuge).zeros(16).v, "key string length 1152921504606846976");
  expect_rejected(Bytes().header(0, 1).str("k").u32(8).u64(kHuge).zeros(16).v,
                  "metadata key 'k': value string length 1152921504606846976");
  expect_rejected(Bytes().header(1, 0).u64(~uint64_t(0)).zeros(40).v, "name string length 18446744073709551615");
}

TEST(GgufMalformed, HugeArrayCounts) {
  // Array of u32 claiming 2^60 elements.
  expect_rejected(Bytes().header(0, 1).str("a").u32(9).u32(4).u64(kHuge).zeros(64).v,
                  "metadata key 'a': array count 1152921504606846976 of u32");
  // Array of strings: even 8-byte-minimum elements cannot fit.
  expect_rejected(Bytes().header(0, 1).str("tokens").u32(9).u32(8).u64(kHuge).zeros(64).v,
                  "array count 1152921504606846976 of string");
  // Nested: the outer count is fine, an inner one is huge.
  Bytes nested;
  nested.header(0, 1).str("n").u32(9).u32(9).u64(2);
  nested.u32(0).u64(1).le(7, 1);     // [u8 7]
  nested.u32(0).u64(kHuge).zeros(8); // [u8 × 2^60]
  expect_rejected(nested.v, "array count 1152921504606846976 of u8");
  // Strings inside an array, one with a huge length.
  expect_rejected(Bytes().header(0, 1).str("s").u32(9).u32(8).u64(2).str("ok").u64(kHuge).zeros(8).v,
                  "value string length 1152921504606846976");
}

TEST(GgufMalformed, ArraysNestedTooDeeply) {
  Bytes b;
  b.header(0, 1).str("deep").u32(9);
  for (int i = 0; i < 100; ++i) b.u32(9).u64(1);
  b.u32(0).u64(0);
  expect_rejected(b.v, "arrays nested deeper than 16 levels");
}

TEST(GgufMalformed, UnknownTypeIds) {
  expect_rejected(Bytes().header(0, 1).str("k").u32(13).zeros(8).v, "metadata key 'k': unknown value type id 13");
  expect_rejected(Bytes().header(0, 1).str("k").u32(9).u32(77).u64(0).v, "unknown array element type id 77");
  expect_rejected(Bytes().header(1, 0).tensor_info("t", {4}, 77, 0).pad(32).zeros(32).v,
                  "tensor 't': unknown ggml type id 77");
}

TEST(GgufMalformed, BadDimensions) {
  expect_rejected(Bytes().header(1, 0).str("t").u32(1000).zeros(64).v, "tensor 't': n_dims 1000 is outside 1..4");
  expect_rejected(Bytes().header(1, 0).str("t").u32(0).zeros(64).v, "n_dims 0 is outside 1..4");
  expect_rejected(Bytes().header(1, 0).tensor_info("t", {uint64_t(1) << 32, uint64_t(1) << 32}, kF32, 0).v,
                  "tensor 't': dims [4294967296, 4294967296] overflow");
  expect_rejected(Bytes().header(1, 0).tensor_info("t", {~uint64_t(0)}, kF32, 0).v, "overflow");
  // 2^62 elements fit in int64, but 2^64 bytes do not fit in u64.
  expect_rejected(Bytes().header(1, 0).tensor_info("t", {uint64_t(1) << 31, uint64_t(1) << 31}, kF32, 0).v,
                  "size of F32 dims [2147483648, 2147483648] overflows 64 bits");
  expect_rejected(Bytes().header(1, 0).tensor_info("t", {33}, kQ8_0, 0).pad(32).zeros(64).v,
                  "row length 33 is not a multiple of the Q8_0 block size 32");
}

TEST(GgufMalformed, OffsetsAndSizes) {
  expect_rejected(Bytes().header(1, 0).tensor_info("t", {4}, kF32, 4).pad(32).zeros(64).v,
                  "tensor 't': offset 4 is not a multiple of the alignment 32");
  // Data section starts at 64 here; 2 tensors of 16 bytes, the second past the end.
  Bytes past;
  past.header(2, 0).tensor_info("a", {4}, kF32, 0).tensor_info("blk.0.attn_q.weight", {4}, kF32, 1024).pad(32);
  uint64_t data_start = past.v.size();
  past.zeros(16);
  expect_rejected(past.v, "tensor 'blk.0.attn_q.weight': data [offset 1024, +16 bytes] extends past end of file (" +
                              std::to_string(data_start + 16) + " bytes");
  // Size past the end: [64, 64] F32 needs 16 KiB.
  expect_rejected(Bytes().header(1, 0).tensor_info("big", {64, 64}, kF32, 0).pad(32).zeros(100).v,
                  "tensor 'big': data [offset 0, +16384 bytes] extends past end of file");
  // An aligned offset near 2^64 must not wrap around.
  expect_rejected(Bytes().header(1, 0).tensor_info("wrap", {4}, kF32, ~uint64_t(31)).pad(32).zeros(32).v,
                  "extends past end of file");
  // Exactly fitting is fine.
  EXPECT_EQ(open_error(Bytes().header(1, 0).tensor_info("fit", {4}, kF32, 0).pad(32).zeros(16).v,
                       temp_path("fit.gguf")),
            "(parsed)");
}

TEST(GgufMalformed, BadAlignment) {
  expect_rejected(Bytes().header(0, 1).kv_u32("general.alignment", 0).v,
                  "metadata key 'general.alignment': alignment 0 is not a power of two");
  expect_rejected(Bytes().header(0, 1).kv_u32("general.alignment", 3).v, "alignment 3 is not a power of two");
  expect_rejected(Bytes().header(0, 1).str("general.alignment").u32(5).u32(64).v,
                  "general.alignment': has type i32, expected u32");
  // A valid non-default alignment changes where the data section starts.
  Bytes ok;
  ok.header(1, 1).kv_u32("general.alignment", 256).tensor_info("t", {4}, kF32, 0).pad(256).zeros(16);
  std::string path = temp_path("align256.gguf");
  ASSERT_EQ(open_error(ok.v, path), "(parsed)");
  GgufFile f = GgufFile::open(path);
  EXPECT_EQ(f.alignment(), 256u);
  EXPECT_EQ(f.data_offset(), 256u);
}

TEST(GgufMalformed, Duplicates) {
  expect_rejected(Bytes().header(0, 2).kv_u32("x", 1).kv_u32("x", 2).v,
                  "metadata key 'x': duplicate metadata key (entries 0 and 1)");
  expect_rejected(
      Bytes().header(2, 0).tensor_info("w", {4}, kF32, 0).tensor_info("w", {4}, kF32, 32).pad(32).zeros(64).v,
      "tensor 'w': duplicate tensor name (tensors 0 and 1)");
}

// Random byte flips of a valid file: each result parses or throws Error;
// when it parses, every tensor byte and metadata value is touched so ASan
// would see any pointer outside the mapping.
TEST(GgufMalformed, RandomByteFlipsParseOrThrowError) {
  const std::vector<uint8_t> base = small_valid_file();
  std::mt19937_64 rng(20240611);
  std::string path = temp_path("fuzz.gguf");
  int parsed = 0;
  int rejected = 0;
  for (int iteration = 0; iteration < 2000; ++iteration) {
    std::vector<uint8_t> bytes = base;
    int flips = 1 + int(rng() % 4);
    for (int i = 0; i < flips; ++i) {
      std::size_t at = rng() % bytes.size();
      // Mostly small changes (so lengths stay near plausible), sometimes a random byte.
      bytes[at] = rng() % 2 ? uint8_t(bytes[at] ^ (1u << (rng() % 8))) : uint8_t(rng());
    }
    write_file(path, bytes);
    try {
      GgufFile f = GgufFile::open(path);
      uint64_t checksum = 0;
      for (const TensorInfo& t : f.tensors()) {
        for (uint64_t i = 0; i < t.n_bytes; ++i) checksum += t.data[i];
        EXPECT_LE(f.data_offset() + t.offset + t.n_bytes, f.file_size());
      }
      for (const auto& [key, value] : f.metadata()) checksum += value.to_display_string().size() + key.size();
      volatile uint64_t sink = checksum;  // keeps the reads
      (void)sink;
      ++parsed;
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()).rfind(path + ": ", 0), 0u) << e.what();
      ++rejected;
    }
  }
  std::printf("byte flips: %d parsed, %d rejected\n", parsed, rejected);
  EXPECT_EQ(parsed + rejected, 2000);
  EXPECT_GT(rejected, 100);  // the flips do reach the header
}

}  // namespace
}  // namespace bifurcate::gguf
