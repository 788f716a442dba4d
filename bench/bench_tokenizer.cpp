// Tokenizer load and encode throughput on the vocab-only GGUFs of the test data.
#include <benchmark/benchmark.h>

#include <filesystem>

#include "gguf/gguf_file.h"
#include "tokenizer/tokenizer.h"

namespace {

using bifurcate::tokenizer::Tokenizer;

const std::string kVocabs[] = {"stories260K/stories260K.gguf", "vocab/ggml-vocab-llama-spm.gguf",
                               "vocab/ggml-vocab-gpt-2.gguf", "vocab/ggml-vocab-llama-bpe.gguf",
                               "vocab/ggml-vocab-qwen2.gguf"};

// Benchmarks get no BIFURCATE_TESTDATA_DIR; the test data sits beside the repository.
std::string path_of(int index) {
  const std::filesystem::path testdata = std::filesystem::path(__FILE__).parent_path() / "../../shared/testdata";
  return (testdata / kVocabs[index]).string();
}

// English prose with some digits, punctuation and non-ASCII text.
std::string sample_text() {
  std::string text;
  for (int i = 0; i < 64; ++i) {
    text += "Once upon a time, in 1984, a little llama named Lily walked 12 km to the café. "
            "She said: \"I've never seen such a big tree!\" Ünïcödé ½ 日本語 🦙\n";
  }
  return text;
}

void BM_Load(benchmark::State& state) {
  const std::string path = path_of(static_cast<int>(state.range(0)));
  if (!std::filesystem::exists(path)) return state.SkipWithError("test data missing");
  state.SetLabel(kVocabs[state.range(0)]);
  for (auto _ : state) {
    const auto file = bifurcate::gguf::GgufFile::open(path);
    benchmark::DoNotOptimize(Tokenizer::from_gguf(file).n_vocab());
  }
}
BENCHMARK(BM_Load)->DenseRange(0, 4)->Unit(benchmark::kMillisecond);

void BM_Encode(benchmark::State& state) {
  const std::string path = path_of(static_cast<int>(state.range(0)));
  if (!std::filesystem::exists(path)) return state.SkipWithError("test data missing");
  const Tokenizer tok = Tokenizer::from_gguf(bifurcate::gguf::GgufFile::open(path));
  const std::string text = sample_text();
  state.SetLabel(kVocabs[state.range(0)]);
  for (auto _ : state) benchmark::DoNotOptimize(tok.encode(text, true).size());
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
}
BENCHMARK(BM_Encode)->DenseRange(0, 4)->Unit(benchmark::kMillisecond);

}  // namespace
BENCHMARK_MAIN();
