// The per-step token budget (EngineOptions::step_tokens) by measurement: the
// latency of one forward pass carrying D running decode rows and a prefill
// chunk of C prompt tokens, on a real model (default: bench's 7b-mha-2l F16).
// Every decode row is one sample below a shared 256-token context (the
// scheduler's tree); the chunk is a new prompt's next C tokens below a
// 256-token prefix of its own. A step's latency is what every running
// request's inter-token gap becomes while a prompt is being prefilled.
//
//   bench_step_budget MODEL.gguf [threads] [D,...] [C,...] [repeats]
// prints, per (D, C): the median step ms over `repeats` steps, ms per row,
// and the prefill throughput C / step.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "model/model.h"
#include "model/transformer.h"
#include "util/timer.h"

namespace bf = bifurcate;

namespace {

std::vector<int> parse_list(const char* text) {
  std::vector<int> out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) out.push_back(std::atoi(item.c_str()));
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: bench_step_budget MODEL.gguf [threads] [D,...] [C,...] [repeats]\n");
    return 2;
  }
  const int threads = argc > 2 ? std::atoi(argv[2]) : 2;
  const std::vector<int> decode_rows = parse_list(argc > 3 ? argv[3] : "32");
  const std::vector<int> chunks = parse_list(argc > 4 ? argv[4] : "0,32,64,128,256,512");
  const int repeats = argc > 5 ? std::atoi(argv[5]) : 3;
  const auto model = bf::model::Model::load(argv[1]);
  const bf::model::ModelConfig& config = model->config();
  bf::model::Transformer transformer(config, model->weights());
  bf::ThreadPool pool(threads);
  std::mt19937 rng(1);
  std::uniform_int_distribution<int32_t> token(0, config.n_vocab - 1);
  auto tokens = [&](int n) {
    std::vector<int32_t> t(static_cast<std::size_t>(n));
    for (int32_t& x : t) x = token(rng);
    return t;
  };
  constexpr int kContext = 256;
  std::printf("| D decode rows | C prefill rows | step ms (median of %d) | ms per row | prefill t/s |\n", repeats);
  std::printf("|---|---|---|---|---|\n");
  for (int d : decode_rows) {
    bf::kv::KvCache cache(transformer.kv_layout(bf::kernels::KvType::f16), std::size_t(4) << 30);
    std::vector<float> logits(std::size_t(config.n_vocab) * std::size_t(d + 1));
    const bf::kv::SegmentId shared = cache.create_root(), prompt = cache.create_root();
    transformer.prefill(cache, shared, tokens(kContext), logits, false, pool);
    transformer.prefill(cache, prompt, tokens(kContext), logits, false, pool);
    std::vector<bf::kv::SegmentId> leaves;
    for (int i = 0; i < d; ++i) leaves.push_back(cache.fork(shared));
    const bf::kv::SegmentId keeper = cache.fork(prompt);  // keeps the prefix alive between chunks
    for (int c : chunks) {
      std::vector<double> steps;
      for (int r = 0; r <= repeats; ++r) {  // r = 0: warm-up
        const bf::kv::SegmentId chunk = cache.fork(prompt);  // a fresh prompt suffix below the prefix
        bf::model::Batch batch;
        for (bf::kv::SegmentId leaf : leaves) batch.add(leaf, tokens(1), bf::model::Batch::Logits::last);
        if (c > 0) batch.add(chunk, tokens(c), bf::model::Batch::Logits::none);
        const double t0 = bf::now_seconds();
        transformer.forward(cache, batch, logits.data(), pool);
        if (r > 0) steps.push_back(bf::now_seconds() - t0);
        cache.release(chunk);
      }
      std::sort(steps.begin(), steps.end());
      const double median = steps[steps.size() / 2];
      std::printf("| %d | %d | %.0f | %.1f | %.1f |\n", d, c, median * 1e3, median * 1e3 / (d + c),
                  c > 0 ? c / median : 0.0);
      std::fflush(stdout);
    }
    cache.release(keeper);
  }
  return 0;
}
