#include "cli/engine_flags.h"

#include <cstdio>
#include <random>
#include <thread>

#include "cli/runtime_files.h"

namespace bifurcate::cli {

std::string default_model_path() { return find_runtime_file(kBuiltInModelFile); }

int parse_threads_flag(int64_t threads) {
  if (threads < kThreadsRange.min || threads > kThreadsRange.max) {
    throw UsageError(str("flag --threads: ", threads, " is out of range [", kThreadsRange.min, ", ",
                         kThreadsRange.max, "]"));
  }
  const unsigned hardware = std::thread::hardware_concurrency();
  if (hardware > 0 && threads > int64_t(hardware)) {
    std::fprintf(stderr,
                 "warning: --threads %lld is more than this machine's %u hardware threads: every step waits "
                 "for workers that are not running (slower, not faster); 0 uses all of them\n",
                 static_cast<long long>(threads), hardware);
  }
  return int(threads);
}

KvPrecision parse_kv_type_flag(const std::string& kv_type) {
  if (kv_type == "f16") return KvPrecision::f16;
  if (kv_type == "f32") return KvPrecision::f32;
  throw UsageError(str("flag --kv-type: unknown type '", kv_type, "' (expected f16 or f32)"));
}

AttentionMode parse_attention_flag(const std::string& attention) {
  for (AttentionMode mode : {AttentionMode::bifurcated, AttentionMode::replicated})
    if (attention == attention_mode_name(mode)) return mode;
  throw UsageError(str("flag --attention: unknown mode '", attention, "' (expected bifurcated or replicated)"));
}

std::size_t parse_kv_budget_flag(double kv_budget_gib) {
  if (!(kv_budget_gib > 0) || kv_budget_gib > 1e6) {
    throw UsageError(str("flag --kv-budget-gib: ", kv_budget_gib, " must be a positive number of GiB"));
  }
  return std::size_t(kv_budget_gib * double(std::size_t(1) << 30));
}

uint64_t resolve_seed_flag(int64_t seed) {
  if (seed >= 0) return uint64_t(seed);
  if (seed != -1)
    throw UsageError(str("flag --seed: ", seed, " is out of range (>= 0, or -1 for a random seed)"));
  std::random_device device;
  // Kept below 2^63 so the printed seed can be passed back to --seed.
  const uint64_t chosen = ((uint64_t(device()) << 32) | device()) >> 1;
  std::fprintf(stderr, "seed: %llu (random; pass --seed %llu to repeat this run)\n",
               static_cast<unsigned long long>(chosen), static_cast<unsigned long long>(chosen));
  return chosen;
}

void note_gpu_layers_flag(const std::string& gpu_layers) {
  if (gpu_layers.empty()) return;
  std::fprintf(stderr, "note: --n-gpu-layers %s ignored: this engine runs on the CPU\n", gpu_layers.c_str());
}

EngineOptions EngineFlags::options() const {
  EngineOptions o;
  if (model.empty()) {
    try {
      o.model_path = default_model_path();
    } catch (const Error& e) {
      throw UsageError(str("no -m given, and ", e.what(), "; pass a GGUF file with -m"));
    }
  } else {
    o.model_path = model;
  }
  o.attention = parse_attention_flag(attention);
  o.kv_precision = parse_kv_type_flag(kv_type);
  o.threads = parse_threads_flag(threads);
  o.kv_budget_bytes = parse_kv_budget_flag(kv_budget_gib);
  note_gpu_layers_flag(gpu_layers);
  return o;
}

}  // namespace bifurcate::cli
