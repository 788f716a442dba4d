// vocab_from_gguf: tokenizer.ggml.* metadata -> Vocab, with llama.cpp's
// defaults for keys a converter may leave out.
#include <optional>

#include "gguf/gguf_file.h"
#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/vocab.h"
#include "util/error.h"
#include "util/printable.h"

namespace bifurcate::tokenizer {

namespace {

// Reads an array key element by element, naming the file, key and index on error.
template <class T, class Convert>
std::vector<T> read_array(const gguf::GgufFile& file, std::string_view key, Convert convert) {
  std::vector<T> out;
  const std::vector<gguf::Value>& values = file.get_array(key);
  out.reserve(values.size());
  for (std::size_t i = 0; i < values.size(); ++i) {
    try {
      out.push_back(convert(values[i]));
    } catch (const Error& e) {
      throw Error(str(file.path(), ": metadata key '", key, "' element ", i, ": ", e.what()));
    }
  }
  return out;
}

// A special token id key, ignored (like llama.cpp) when it is out of range:
// some converters write 0xFFFFFFFF for "none".
void read_special_id(const gguf::GgufFile& file, std::string_view key, std::size_t n_tokens, int32_t& id) {
  if (id >= static_cast<int32_t>(n_tokens)) id = -1;
  if (file.find(key) == nullptr) return;
  const uint64_t value = file.get_uint(key);
  if (value < n_tokens) id = static_cast<int32_t>(value);
}

}  // namespace

Vocab vocab_from_gguf(const gguf::GgufFile& file) {
  Vocab v;
  const std::string& model = file.get_string("tokenizer.ggml.model");
  if (model == "llama") {
    v.kind = VocabKind::Spm;
    v.bos = 1, v.eos = 2, v.unk = 0;
    v.add_bos = true;
    v.add_space_prefix = true;
  } else if (model == "gpt2") {
    v.kind = VocabKind::Bpe;
    v.pre = file.get_string_or("tokenizer.ggml.pre", "default");
    try {
      v.add_bos = pre_tokenizer_from_name(v.pre) == PreTokenizer::Llama3;
    } catch (const Error& e) {
      throw Error(str(file.path(), ": metadata key 'tokenizer.ggml.pre': ", e.what()));
    }
  } else {
    throw Error(str(file.path(), ": metadata key 'tokenizer.ggml.model' is '", printable(model),
                    "'; supported: 'llama' (SentencePiece), 'gpt2' (byte-level BPE)"));
  }

  v.tokens = read_array<std::string>(file, "tokenizer.ggml.tokens",
                                     [](const gguf::Value& x) { return x.as_string(); });
  const std::size_t n = v.tokens.size();
  const auto check_size = [&](std::string_view key, std::size_t size) {
    require(size >= n, file.path(), ": metadata key '", key, "' has ", size, " entries for ", n, " tokens");
  };
  if (file.find("tokenizer.ggml.scores") != nullptr) {
    v.scores = read_array<float>(file, "tokenizer.ggml.scores",
                                 [](const gguf::Value& x) { return static_cast<float>(x.as_float()); });
    check_size("tokenizer.ggml.scores", v.scores.size());
    v.scores.resize(n);
  }
  if (file.find("tokenizer.ggml.token_type") != nullptr) {
    v.types = read_array<TokenType>(file, "tokenizer.ggml.token_type", [](const gguf::Value& x) {
      const int64_t t = x.as_int();
      return t >= 1 && t <= 6 ? static_cast<TokenType>(t) : TokenType::Undefined;
    });
    check_size("tokenizer.ggml.token_type", v.types.size());
    v.types.resize(n);
  }
  if (v.kind == VocabKind::Bpe) {
    v.merges = read_array<std::string>(file, "tokenizer.ggml.merges",
                                       [](const gguf::Value& x) { return x.as_string(); });
  }

  read_special_id(file, "tokenizer.ggml.bos_token_id", n, v.bos);
  read_special_id(file, "tokenizer.ggml.eos_token_id", n, v.eos);
  read_special_id(file, "tokenizer.ggml.unknown_token_id", n, v.unk);
  read_special_id(file, "tokenizer.ggml.padding_token_id", n, v.pad);
  v.add_bos = file.get_bool_or("tokenizer.ggml.add_bos_token", v.add_bos);
  v.add_eos = file.get_bool_or("tokenizer.ggml.add_eos_token", v.add_eos);
  v.add_space_prefix = file.get_bool_or("tokenizer.ggml.add_space_prefix", v.add_space_prefix);
  require(!v.add_bos || v.bos >= 0, file.path(), ": tokenizer.ggml.add_bos_token is true but there is no BOS token");
  v.model_name = file.get_string_or("general.name", "");
  return v;
}

}  // namespace bifurcate::tokenizer
