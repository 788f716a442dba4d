#include "cli/engine_flags.h"

#include <filesystem>

namespace bifurcate::cli {

std::string default_model_path() { return std::string(BIFURCATE_TESTDATA_DIR) + "/stories260K/stories260K.gguf"; }

int parse_threads_flag(int64_t threads) {
  if (threads < 0 || threads > 1024) throw UsageError(str("flag --threads: ", threads, " is out of range [0, 1024]"));
  return int(threads);
}

KvPrecision parse_kv_type_flag(const std::string& kv_type) {
  if (kv_type == "f16") return KvPrecision::f16;
  if (kv_type == "f32") return KvPrecision::f32;
  throw UsageError(str("flag --kv-type: unknown type '", kv_type, "' (expected f16 or f32)"));
}

std::size_t parse_kv_budget_flag(double kv_budget_gib) {
  if (!(kv_budget_gib > 0) || kv_budget_gib > 1e6) {
    throw UsageError(str("flag --kv-budget-gib: ", kv_budget_gib, " must be a positive number of GiB"));
  }
  return std::size_t(kv_budget_gib * double(std::size_t(1) << 30));
}

EngineOptions EngineFlags::options() const {
  EngineOptions o;
  o.model_path = model.empty() ? default_model_path() : model;
  if (model.empty() && !std::filesystem::exists(o.model_path)) {
    throw UsageError(str("no -m given and the built-in default model is missing (", o.model_path,
                         "); pass a GGUF file with -m"));
  }
  if (attention == "bifurcated") {
    o.attention = AttentionMode::bifurcated;
  } else if (attention == "replicated") {
    o.attention = AttentionMode::replicated;
  } else {
    throw UsageError(str("flag --attention: unknown mode '", attention, "' (expected bifurcated or replicated)"));
  }
  o.kv_precision = parse_kv_type_flag(kv_type);
  o.threads = parse_threads_flag(threads);
  o.kv_budget_bytes = parse_kv_budget_flag(kv_budget_gib);
  return o;
}

}  // namespace bifurcate::cli
