// Where `bifurcate bench` keeps what it makes: the default model (the
// `7b-mha-2l` shape, F16, llama-spm vocabulary, random weights), created once
// and reused, and the default output directory for plots.
#pragma once

#include <functional>
#include <string>

#include "cli/status_line.h"

namespace bifurcate::cli {

inline constexpr const char* kBenchModelShape = "7b-mha-2l";
inline constexpr const char* kBenchModelFile = "7b-mha-2l-f16-llama-spm.gguf";

// The directory of the running program when it is a CMake build tree (holds
// CMakeCache.txt), else "" (not a build tree).
std::string build_directory();

// <build>/models, else $XDG_CACHE_HOME/bifurcate, else $HOME/.cache/bifurcate.
std::string default_model_cache_dir();

// True when `path` loads as a model of `shape_name`'s dimensions.
bool is_valid_bench_model(const std::string& path, const std::string& shape_name);

// Returns `cache_dir`/kBenchModelFile, writing it first (creating the
// directory) unless a valid one is already there. `progress` gets the
// fraction written. Error names the vocabulary file if it is missing.
std::string ensure_bench_model(const std::string& cache_dir, const std::function<void(double)>& progress);

// `model` when given, else the default model in `model_cache` (or
// default_model_cache_dir() when that is empty), created first if needed with
// its progress every 10 % as lasting lines on `progress`.
std::string model_or_default(const std::string& model, const std::string& model_cache, StatusLine& progress);

}  // namespace bifurcate::cli
