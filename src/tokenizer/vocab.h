// The vocabulary a tokenizer is built from, as stored in GGUF metadata under
// tokenizer.ggml.* (llama.cpp's conventions), plus vocab_from_gguf to read it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace bifurcate::gguf {
class GgufFile;
}

namespace bifurcate::tokenizer {

// tokenizer.ggml.token_type values.
enum class TokenType : int32_t {
  Undefined = 0,
  Normal = 1,
  Unknown = 2,
  Control = 3,
  UserDefined = 4,
  Unused = 5,
  Byte = 6,
};

enum class VocabKind {
  Spm,  // tokenizer.ggml.model "llama": SentencePiece BPE by scores, byte fallback
  Bpe,  // tokenizer.ggml.model "gpt2": byte-level BPE by merge rank
};

struct Vocab {
  VocabKind kind = VocabKind::Spm;
  std::string pre = "default";      // tokenizer.ggml.pre (BPE pre-tokenizer name)
  std::vector<std::string> tokens;  // id -> text
  std::vector<float> scores;        // id -> score (SPM merge priority); may be empty
  std::vector<TokenType> types;     // id -> type; empty means all Normal
  std::vector<std::string> merges;  // "left right", rank = index (BPE)
  int32_t bos = -1, eos = -1, unk = -1, pad = -1;
  bool add_bos = false;
  bool add_eos = false;
  bool add_space_prefix = false;  // SPM: prepend ' ' to text that starts the input
  std::string model_name;         // general.name, for model-specific token flags
};

// Reads tokenizer.ggml.* from `file` with llama.cpp's defaults (SPM: bos 1,
// eos 2, unk 0, add_bos and add_space_prefix true; "llama-bpe": add_bos).
// Throws Error naming the file and key if the vocab is missing or unsupported.
Vocab vocab_from_gguf(const gguf::GgufFile& file);

}  // namespace bifurcate::tokenizer
