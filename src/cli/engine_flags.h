// The engine flags shared by the commands that run a model through Engine
// (generate, logits, perplexity): declared once, parsed by each command's
// FlagParser. `bench` drives the model directly and declares its own list
// flags, but checks the shared ones with the parse_*_flag functions below.
// Spellings follow llama.cpp where it has the flag: -m/--model,
// -t/--threads, -s/--seed (-1 = random), -ngl/--n-gpu-layers (accepted and
// ignored: this engine runs on the CPU).
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>

#include "bifurcate/engine.h"
#include "cli/args.h"

namespace bifurcate::cli {

// The built-in default model: the real 260K-parameter TinyStories Llama,
// installed beside the program (see runtime_files.h), so commands work
// without -m.
std::string default_model_path();

// Threads in [0, 1024] (0 = all hardware threads).
inline constexpr IntRange kThreadsRange{0, 1024};
// -1 asks for a random seed (llama.cpp's LLAMA_DEFAULT_SEED convention).
inline constexpr IntRange kSeedRange{-1, std::numeric_limits<int64_t>::max()};

// The checks of --threads, --kv-type and --kv-budget-gib, shared with `bench`
// (which declares those flags itself): the value to use, or UsageError naming
// the flag. Threads in kThreadsRange (a count above the hardware threads is
// accepted with a warning on stderr: it makes every step wait on workers
// that are not running); "f16" or "f32"; GiB in (0, 1e6], as bytes.
int parse_threads_flag(int64_t threads);
KvPrecision parse_kv_type_flag(const std::string& kv_type);
// --attention's values: an AttentionMode by its attention_mode_name; UsageError otherwise.
AttentionMode parse_attention_flag(const std::string& attention);
std::size_t parse_kv_budget_flag(double kv_budget_gib);

// The seed to use for a --seed value: itself, or for -1 a random one, which
// is printed on stderr ("seed: N") so the run can be repeated.
uint64_t resolve_seed_flag(int64_t seed);

// -ngl/--n-gpu-layers: accepted so llama.cpp command lines run; prints a
// one-line note on stderr when given.
void note_gpu_layers_flag(const std::string& gpu_layers);

struct EngineFlags {
  std::string model;
  std::string attention = "bifurcated";
  int64_t threads = 0;
  std::string kv_type = "f16";
  double kv_budget_gib = 8.0;
  std::string gpu_layers;

  template <class Visitor>
  void for_each(Visitor& v) {
    v(model, "model", 'm', "GGUF model file (default: the built-in stories260K model)");
    v(attention, "attention", 'a',
      "bifurcated (shared prompt KV read once per step) or replicated (copied per sample)");
    v(threads, "threads", 't', "worker threads (0 = all hardware threads)", kThreadsRange);
    v(kv_type, "kv-type", '\0', "KV cache element type: f16 or f32");
    v(kv_budget_gib, "kv-budget-gib", '\0',
      "KV cache memory budget in GiB; larger requests are refused up front", RealRange{0, 1e6, true});
    v(gpu_layers, "n-gpu-layers|gpu-layers", "ngl",
      "accepted for llama.cpp command lines and ignored: this engine runs on the CPU");
    v.moved("-j", "worker threads are -t/--threads (as in llama.cpp, where -j is --json-schema)");
  }

  // Validates the flags (UsageError naming the flag) and builds engine options.
  EngineOptions options() const;
};

}  // namespace bifurcate::cli
