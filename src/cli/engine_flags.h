// The engine flags shared by the commands that run a model through Engine
// (generate, logits, perplexity): declared once, parsed by each command's
// FlagParser. `bench` drives the model directly and declares its own list
// flags, but checks the shared ones with the parse_*_flag functions below.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "bifurcate/engine.h"
#include "cli/args.h"

namespace bifurcate::cli {

// The built-in default model: the real 260K-parameter TinyStories Llama from
// the shared test data, so commands work without -m on a fresh checkout.
std::string default_model_path();

// The checks of --threads, --kv-type and --kv-budget-gib, shared with `bench`
// (which declares those flags itself): the value to use, or UsageError naming
// the flag. Threads in [0, 1024]; "f16" or "f32"; GiB in (0, 1e6], as bytes.
int parse_threads_flag(int64_t threads);
KvPrecision parse_kv_type_flag(const std::string& kv_type);
std::size_t parse_kv_budget_flag(double kv_budget_gib);

struct EngineFlags {
  std::string model;
  std::string attention = "bifurcated";
  int64_t threads = 0;
  std::string kv_type = "f16";
  double kv_budget_gib = 8.0;

  template <class Visitor>
  void for_each(Visitor& v) {
    v(model, "model", 'm', "GGUF model file (default: the built-in stories260K model)");
    v(attention, "attention", 'a', "bifurcated (shared prompt KV read once per step) or replicated (copied per sample)");
    v(threads, "threads", 'j', "worker threads (0 = all hardware threads)");
    v(kv_type, "kv-type", '\0', "KV cache element type: f16 or f32");
    v(kv_budget_gib, "kv-budget-gib", '\0', "KV cache memory budget in GiB; larger requests are refused up front");
  }

  // Validates the flags (UsageError naming the flag) and builds engine options.
  EngineOptions options() const;
};

}  // namespace bifurcate::cli
