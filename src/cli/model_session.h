// Input handling shared by the commands that read a model file (generate,
// tokenize, detokenize, logits, perplexity): the text to run (from a flag or a file,
// exact bytes), token id lists, the log-softmax normaliser of a logits row,
// and the one-line model banner on stderr.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "bifurcate/engine.h"

namespace bifurcate::cli {

// The file's exact bytes (no newline added or stripped). Error names the path.
std::string read_text_file(const std::string& path);

// The text a command runs on: `file`'s bytes if given, else `prompt`.
// UsageError when both are given; Error when the text is empty.
std::string input_text(const std::string& prompt, const std::string& file);

// Token ids separated by commas and/or whitespace ("1,2, 3"), each a decimal
// integer; UsageError naming the item that is not one, or for an empty list.
std::vector<int32_t> parse_token_ids(std::string_view text, std::string_view flag);

// log(sum(exp(row))) in double, shifted by the max so it cannot overflow:
// the log-softmax normaliser of one row of logits.
double log_sum_exp(std::span<const float> row);

// "model: PATH (llama, 5 layers, dim 64, ...)" on stderr.
void print_model_banner(const ModelInfo& info);

}  // namespace bifurcate::cli
