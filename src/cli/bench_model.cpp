#include "cli/bench_model.h"

#include <cstdlib>
#include <filesystem>

#include "cli/runtime_files.h"
#include "model/model.h"
#include "model/model_shapes.h"
#include "model/random_model.h"
#include "util/error.h"
#include "util/timer.h"

namespace bifurcate::cli {
namespace fs = std::filesystem;

std::string build_directory() {
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (ec) return "";
  const fs::path dir = exe.parent_path();
  return fs::exists(dir / "CMakeCache.txt", ec) ? dir.string() : "";
}

std::string default_model_cache_dir() {
  const std::string build = build_directory();
  if (!build.empty()) return (fs::path(build) / "models").string();
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg != nullptr && *xdg != '\0') {
    return (fs::path(xdg) / "bifurcate").string();
  }
  const char* home = std::getenv("HOME");
  require(home != nullptr && *home != '\0', "no cache directory for the bench model: run from a build tree, or set "
          "XDG_CACHE_HOME or HOME, or pass -m");
  return (fs::path(home) / ".cache" / "bifurcate").string();
}

bool is_valid_bench_model(const std::string& path, const std::string& shape_name) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return false;
  try {
    const auto m = model::Model::load(path);
    const model::ModelShape& shape = model::find_model_shape(shape_name);
    const model::ModelConfig& c = m->config();
    return c.dim == int(shape.dim) && c.n_layers == int(shape.n_layers) && c.n_heads == int(shape.n_heads) &&
           c.n_kv_heads == int(shape.n_kv_heads) && c.ffn_dim == int(shape.ffn_dim) &&
           c.context_length == int(shape.context_length);
  } catch (const Error&) {
    return false;  // truncated or foreign file: rewrite it
  }
}

std::string ensure_bench_model(const std::string& cache_dir, const std::function<void(double)>& progress) {
  const std::string path = (fs::path(cache_dir) / kBenchModelFile).string();
  if (is_valid_bench_model(path, kBenchModelShape)) return path;
  std::string vocab;
  try {
    vocab = find_runtime_file(kBenchVocabFile);
  } catch (const Error& e) {
    throw Error(str("the default bench model needs the llama-spm vocabulary: ", e.what(), "; pass a model with -m"));
  }
  std::error_code ec;
  fs::create_directories(cache_dir, ec);
  require(!ec, "cannot create the model cache directory '", cache_dir, "': ", ec.message());
  model::write_random_model(model::find_model_shape(kBenchModelShape), gguf::GgmlType::F16, vocab, 1, path,
                            progress);
  return path;
}

std::string model_or_default(const std::string& model, const std::string& model_cache, StatusLine& progress) {
  if (!model.empty()) return model;
  const std::string dir = model_cache.empty() ? default_model_cache_dir() : model_cache;
  int last_percent = -1;
  const double t0 = now_seconds();
  bool wrote = false;
  const std::string path = ensure_bench_model(dir, [&](double fraction) {
    wrote = true;
    const int percent = int(fraction * 100);
    if (percent == last_percent) return;
    last_percent = percent;
    if (percent % 10 == 0) {
      progress.lasting(str("creating the default model ", dir, "/", kBenchModelFile, ": ", percent, "%"));
    }
  });
  if (wrote) progress.lasting(str("model created in ", now_seconds() - t0, " s"));
  return path;
}

}  // namespace bifurcate::cli
