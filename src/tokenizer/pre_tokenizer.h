// Byte-level BPE pre-tokenization: splits text into words before merging,
// following the regex chain llama.cpp applies for each tokenizer.ggml.pre.
// Every regex is a hand-written matcher over code points (see the .cpp for
// the regex each one implements); each stage of a chain splits the pieces
// of the previous stage, keeping unmatched gaps as pieces of their own.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace bifurcate::tokenizer {

enum class PreTokenizer {
  Default,        // "default"
  Gpt2,           // "gpt-2", "phi-2", "mpt", "olmo", ...
  Llama3,         // "llama-bpe", "llama3", "llama-v3", ...
  Qwen2,          // "qwen2", "stablelm2", "deepseek-r1-qwen"
  Starcoder,      // "starcoder", "refact", "command-r", "smollm", ...
  DeepseekCoder,  // "deepseek-coder"
};

// Throws Error naming `name` if it is not one of the supported pre-tokenizers.
PreTokenizer pre_tokenizer_from_name(std::string_view name);

// Splits valid UTF-8 text into words (UTF-8 substrings, in order, covering
// the whole text).
std::vector<std::string> pre_tokenize(PreTokenizer kind, std::string_view text);

}  // namespace bifurcate::tokenizer
