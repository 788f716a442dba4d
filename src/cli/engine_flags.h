// The engine flags shared by every command that runs a model (generate,
// bench, logits, ...): declared once, parsed by each command's FlagParser.
#pragma once

#include <string>

#include "bifurcate/engine.h"
#include "cli/args.h"

namespace bifurcate::cli {

// The built-in default model: the real 260K-parameter TinyStories Llama from
// the shared test data, so commands work without -m on a fresh checkout.
std::string default_model_path();

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
