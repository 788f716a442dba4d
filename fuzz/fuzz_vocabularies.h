// The vocabularies the tokenizer fuzz target draws from, in one fixed order
// shared by the target (input byte 0 picks one) and the seed generator
// (which writes each seed with the index of the vocabulary it belongs to).
#pragma once

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

namespace bifurcate::fuzz {

// Every testdata/vocab/*.gguf, sorted by name, then the stories260K model's
// own 512-token vocabulary. Empty when the test data is missing.
inline std::vector<std::string> vocabulary_paths(const std::string& testdata_dir) {
  namespace fs = std::filesystem;
  std::vector<std::string> paths;
  const fs::path vocab_dir = fs::path(testdata_dir) / "vocab";
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(vocab_dir, ec)) {
    if (entry.path().extension() == ".gguf") paths.push_back(entry.path().string());
  }
  std::sort(paths.begin(), paths.end());
  const fs::path stories = fs::path(testdata_dir) / "stories260K" / "stories260K.gguf";
  if (fs::exists(stories, ec)) paths.push_back(stories.string());
  return paths;
}

}  // namespace bifurcate::fuzz
