// Writes the seed corpora of the fuzz targets into the build tree (run by
// the build; nothing here is committed):
//   OUT/gguf/       small, valid GGUF files: vocab-only files (SPM, BPE) and
//                   tiny models (llama, qwen2; F32/F16/BF16/Q8_0/Q4_0; tied
//                   and untied; with no vocabulary, a small hand-made one or
//                   stories260K's real one), all through the project's writer;
//   OUT/tokenizer/  per vocabulary of fuzz_vocabularies.h, each text of its
//                   llama.cpp test file (<vocab>.gguf.inp) and the ids it
//                   encodes to, in fuzz_tokenizer.cpp's input layout;
//   OUT/chat_template/  each real template of chat-templates/*.jinja with
//                   several conversations and options, in
//                   fuzz_chat_template.cpp's input layout;
//   OUT/server_request/  each test conversation (chat-templates/
//                   conversations.json) as a /v1/chat/completions body, for
//                   each chat template index, in fuzz_server_request.cpp's
//                   input layout (the hand-written bodies are in
//                   fuzz/corpus/server_request/).
// Usage: make_seed_corpora OUT_DIR TESTDATA_DIR
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "fuzz_vocabularies.h"
#include "gguf/gguf_file.h"
#include "gguf/gguf_writer.h"
#include "model/random_model.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"
#include "util/error.h"

namespace {

using namespace bifurcate;
namespace fs = std::filesystem;
using gguf::GgmlType;
using gguf::Value;
using gguf::ValueType;

void write_bytes(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), std::streamsize(bytes.size()));
  require(bool(out), "cannot write ", path.string());
}

Value string_array(const std::vector<std::string>& items) {
  std::vector<Value> values;
  for (const std::string& s : items) values.push_back(Value::string(s));
  return Value::array(ValueType::String, std::move(values));
}

Value int_array(const std::vector<int32_t>& items) {
  std::vector<Value> values;
  for (const int32_t v : items) values.push_back(Value::i32(v));
  return Value::array(ValueType::I32, std::move(values));
}

// A SentencePiece vocabulary: <unk>, <s>, </s>, 256 byte tokens, a few
// pieces and one user-defined token.
void write_spm_vocab(const fs::path& path) {
  std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
  std::vector<int32_t> types = {2, 3, 3};
  for (int b = 0; b < 256; ++b) {
    char text[8];
    std::snprintf(text, sizeof text, "<0x%02X>", b);
    tokens.push_back(text);
    types.push_back(6);
  }
  for (const char* piece : {"\xE2\x96\x81", "\xE2\x96\x81t", "he", "\xE2\x96\x81the", "h", "e", "t", "\xE2\x96\x81" "a"}) {
    tokens.push_back(piece);
    types.push_back(1);
  }
  tokens.push_back("<|user|>");
  types.push_back(4);
  std::vector<Value> scores;
  for (std::size_t i = 0; i < tokens.size(); ++i) scores.push_back(Value::f32(-float(i)));

  gguf::GgufWriter w;
  w.set("general.name", Value::string("fuzz-seed-spm"));
  w.set("tokenizer.ggml.model", Value::string("llama"));
  w.set("tokenizer.ggml.tokens", string_array(tokens));
  w.set("tokenizer.ggml.scores", Value::array(ValueType::F32, std::move(scores)));
  w.set("tokenizer.ggml.token_type", int_array(types));
  w.set("tokenizer.ggml.bos_token_id", Value::u32(1));
  w.set("tokenizer.ggml.eos_token_id", Value::u32(2));
  w.set("tokenizer.ggml.unknown_token_id", Value::u32(0));
  w.set("tokenizer.ggml.add_bos_token", Value::boolean(true));
  w.write(path.string());
}

// A byte-level BPE vocabulary: GPT-2's 256-symbol byte alphabet, four merges
// and a control token.
void write_bpe_vocab(const fs::path& path, const std::string& pre) {
  const tokenizer::ByteAlphabet alphabet;
  std::vector<std::string> tokens;
  std::vector<int32_t> types;
  for (int b = 0; b < 256; ++b) {
    tokens.push_back(alphabet.encode(uint8_t(b)));
    types.push_back(1);
  }
  const std::string space = alphabet.encode(' ');
  const std::vector<std::string> merges = {space + " t", "h e", space + "t he", "i n"};
  for (const std::string& merged : {space + "t", std::string("he"), space + "the", std::string("in")}) {
    tokens.push_back(merged);
    types.push_back(1);
  }
  tokens.push_back("<|endoftext|>");
  types.push_back(3);

  gguf::GgufWriter w;
  w.set("general.name", Value::string("fuzz-seed-bpe-" + pre));
  w.set("tokenizer.ggml.model", Value::string("gpt2"));
  w.set("tokenizer.ggml.pre", Value::string(pre));
  w.set("tokenizer.ggml.tokens", string_array(tokens));
  w.set("tokenizer.ggml.token_type", int_array(types));
  w.set("tokenizer.ggml.merges", string_array(merges));
  w.set("tokenizer.ggml.bos_token_id", Value::u32(uint32_t(tokens.size() - 1)));
  w.set("tokenizer.ggml.eos_token_id", Value::u32(uint32_t(tokens.size() - 1)));
  w.write(path.string());
}

void write_gguf_seeds(const fs::path& dir, const std::string& testdata) {
  const fs::path spm = dir / "vocab-spm.gguf";
  const fs::path bpe = dir / "vocab-bpe-qwen2.gguf";
  write_spm_vocab(spm);
  write_bpe_vocab(bpe, "qwen2");
  write_bpe_vocab(dir / "vocab-bpe-llama3.gguf", "llama-bpe");

  using model::ModelShape;
  struct Seed {
    ModelShape shape;
    GgmlType type;
    std::string vocab;
  };
  const std::string stories = testdata + "/stories260K/stories260K.gguf";
  // clang-format off
  const std::vector<Seed> seeds = {
    //                  name      arch     vocab dim L heads kv hs ffn ctx  rope     eps    tied
    {ModelShape{"llama-f32",  "llama", 16,   8,  1, 2,    1, 0, 16, 64,  10000.0f, 1e-5f, false}, GgmlType::F32,  spm.string()},
    {ModelShape{"qwen2-f16",  "qwen2", 16,   8,  1, 2,    2, 0, 16, 64,  1e6f,     1e-6f, true},  GgmlType::F16,  bpe.string()},
    {ModelShape{"llama-bf16", "llama", 16,   8,  2, 2,    2, 0, 16, 64,  10000.0f, 1e-5f, true},  GgmlType::BF16, ""},
    {ModelShape{"llama-q8_0", "llama", 16,   32, 1, 4,    2, 8, 32, 64,  10000.0f, 1e-5f, false}, GgmlType::Q8_0, ""},
    {ModelShape{"llama-q4_0", "llama", 16,   32, 1, 2,    1, 0, 32, 64,  10000.0f, 1e-5f, false}, GgmlType::Q4_0, stories},
  };
  // clang-format on
  for (const Seed& s : seeds) {
    if (!s.vocab.empty() && !fs::exists(s.vocab)) continue;  // stories260K missing: skip that seed
    model::write_random_model(s.shape, s.type, s.vocab, /*seed=*/1, (dir / (std::string(s.shape.name) + ".gguf")).string(),
                              {}, /*n_threads=*/1);
  }
}

// The texts of a llama.cpp tokenizer test file: separated by this line.
std::vector<std::string> read_test_texts(const fs::path& inp) {
  std::ifstream in(inp, std::ios::binary);
  if (!in) return {};
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string all = buffer.str();
  const std::string separator = "\n__ggml_vocab_test__\n";
  std::vector<std::string> texts;
  std::size_t start = 0;
  for (std::size_t hit; (hit = all.find(separator, start)) != std::string::npos; start = hit + separator.size()) {
    texts.push_back(all.substr(start, hit - start));
  }
  if (start < all.size()) texts.push_back(all.substr(start));
  return texts;
}

void write_tokenizer_seeds(const fs::path& dir, const std::string& testdata) {
  const std::vector<std::string> paths = fuzz::vocabulary_paths(testdata);
  for (std::size_t v = 0; v < paths.size(); ++v) {
    const tokenizer::Tokenizer tok = tokenizer::Tokenizer::from_gguf(gguf::GgufFile::open(paths[v]));
    const std::vector<std::string> texts = read_test_texts(paths[v] + ".inp");
    for (std::size_t i = 0; i < texts.size(); ++i) {
      // Options cycle through add_bos x parse_special; ids are folded (bit 2 clear).
      const char options = char(i % 4);
      const std::string header = {char(v), options};
      write_bytes(dir / ("v" + std::to_string(v) + "-text-" + std::to_string(i)), header + texts[i]);
      if (tokenizer::find_invalid_utf8(texts[i]) != std::string::npos) continue;
      std::string ids;
      for (const int32_t id : tok.encode(texts[i], (options & 1) != 0, (options & 2) != 0)) {
        const uint32_t folded = uint32_t(id) + 1;  // fuzz_tokenizer maps bits b to b % (n_vocab + 2) - 1
        char le[4];
        std::memcpy(le, &folded, 4);
        ids.append(le, 4);
      }
      write_bytes(dir / ("v" + std::to_string(v) + "-ids-" + std::to_string(i)), header + ids);
    }
  }
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

void write_chat_template_seeds(const fs::path& dir, const std::string& testdata) {
  const fs::path templates = fs::path(testdata) / "chat-templates";
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(templates, ec)) {
    if (entry.path().extension() != ".jinja") continue;
    const std::string source = read_file(entry.path());
    const std::string stem = entry.path().stem().string();
    // Control byte: conversation in bits 0-3, add_generation_prompt (bit 4)
    // on odd ones, tools (bit 5) always (conversations without tools pass null).
    for (int conversation = 0; conversation < 8; ++conversation) {
      const char control = char(conversation | (conversation % 2 ? 0x10 : 0) | 0x20);
      write_bytes(dir / (stem + "-c" + std::to_string(conversation)), std::string(1, control) + source);
    }
    // Messages from the input (bit 6): the template, NUL, then the JSON.
    const std::string own = R"([{"role":"system","content":"s"},{"role":"user","content":[1,{"a":null}]},)"
                            R"({"role":"assistant","content":"x","tool_calls":[{"function":{"name":"f","arguments":{"k":1.5}}}]}])";
    write_bytes(dir / (stem + "-own"), std::string(1, char(0x50)) + source + std::string(1, '\0') + own);
  }
}

// Control byte: bit 0 set (the chat route), the template index in bits 1-3.
void write_server_request_seeds(const fs::path& dir, const std::string& testdata) {
  const fs::path path = fs::path(testdata) / "chat-templates" / "conversations.json";
  if (!fs::exists(path)) return;
  const nlohmann::ordered_json conversations = nlohmann::ordered_json::parse(read_file(path));
  for (size_t c = 0; c < conversations.size(); ++c) {
    nlohmann::ordered_json body = {{"model", "stories260K"}, {"messages", conversations[c].at("messages")},
                                   {"max_tokens", 8}};
    if (conversations[c].contains("tools")) body["tools"] = conversations[c].at("tools");
    for (int tmpl = 0; tmpl < 8; ++tmpl) {
      const char control = char(1 | (tmpl << 1));
      write_bytes(dir / str("conversation", c, "-template", tmpl), std::string(1, control) + body.dump());
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: make_seed_corpora OUT_DIR TESTDATA_DIR\n");
    return 2;
  }
  try {
    const fs::path out = argv[1];
    for (const char* name : {"gguf", "tokenizer", "chat_template", "server_request"}) {
      fs::remove_all(out / name);
      fs::create_directories(out / name);
    }
    if (!fs::exists(fs::path(argv[2]) / "vocab")) {
      std::fprintf(stderr, "make_seed_corpora: no test data in %s: seeds from test data skipped\n", argv[2]);
    }
    write_gguf_seeds(out / "gguf", argv[2]);
    write_tokenizer_seeds(out / "tokenizer", argv[2]);
    write_chat_template_seeds(out / "chat_template", argv[2]);
    write_server_request_seeds(out / "server_request", argv[2]);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "make_seed_corpora: %s\n", e.what());
    return 1;
  }
}
