// `bifurcate make-model`: writes a random-weight GGUF model of a named shape.
#include <cstdio>
#include <filesystem>
#include <iomanip>
#include <iostream>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/engine_flags.h"
#include "cli/status_line.h"
#include "gguf/gguf_writer.h"
#include "model/model_shapes.h"
#include "model/random_model.h"
#include "util/timer.h"

namespace bifurcate::cli {
namespace {

struct MakeModelArgs {
  std::string shape;
  std::string dtype = "f16";
  std::string vocab;
  int64_t seed = 1;
  std::string output;

  template <class Visitor>
  void for_each(Visitor& v) {
    std::string shapes;
    for (const auto& s : model::model_shapes()) shapes += str(shapes.empty() ? "" : ", ", s.name);
    v(shape, "shape", '\0', str("model shape: ", shapes), Need::kRequired);
    v(dtype, "dtype", '\0', "weight type: f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_k, q5_k, q6_k, or llama.cpp's mixes "
      "q4_k_m, q5_k_m (Q6_K for output and some attn_v/ffn_down)");
    v(vocab, "vocab", 'v',
      "copy the tokenizer from this GGUF file (its size sets the vocabulary); without it the model has token ids only");
    v(seed, "seed", 's', "random seed (-1 = random, printed); the same seed gives the same file", kSeedRange);
    v(output, "output", 'o', "output .gguf path (a new file or a regular file to replace)", Need::kRequired);
    v.moved("-t", "the weight type is --dtype (-t is --threads in llama.cpp)");
  }
};

model::WeightTypes parse_dtype(std::string_view text) {
  using gguf::GgmlType;
  using model::KQuantMix;
  struct Name {
    std::string_view name;
    GgmlType type;
    KQuantMix mix;
  };
  constexpr Name kNames[] = {
      {"f32", GgmlType::F32, KQuantMix::none},    {"f16", GgmlType::F16, KQuantMix::none},
      {"bf16", GgmlType::BF16, KQuantMix::none},  {"q8_0", GgmlType::Q8_0, KQuantMix::none},
      {"q4_0", GgmlType::Q4_0, KQuantMix::none},  {"q4_1", GgmlType::Q4_1, KQuantMix::none},
      {"q5_0", GgmlType::Q5_0, KQuantMix::none},  {"q5_1", GgmlType::Q5_1, KQuantMix::none},
      {"q4_k", GgmlType::Q4_K, KQuantMix::none},  {"q5_k", GgmlType::Q5_K, KQuantMix::none},
      {"q6_k", GgmlType::Q6_K, KQuantMix::none},  {"q4_k_m", GgmlType::Q4_K, KQuantMix::q4_k_m},
      {"q5_k_m", GgmlType::Q5_K, KQuantMix::q5_k_m}};
  std::string expected;
  for (const Name& n : kNames) {
    if (n.name == text) return model::WeightTypes(n.type, n.mix);
    expected += str(expected.empty() ? "" : ", ", n.name);
  }
  throw UsageError(str("flag --dtype: unknown weight type '", text, "' (expected one of ", expected, ")"));
}

std::string human_bytes(uintmax_t bytes) {
  constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double value = double(bytes);
  int unit = 0;
  while (value >= 1024 && unit < 4) value /= 1024, ++unit;
  char text[32];
  std::snprintf(text, sizeof text, unit == 0 ? "%.0f %s" : "%.1f %s", value, kUnits[unit]);
  return text;
}

}  // namespace

int run_make_model(int argc, char** argv) {
  MakeModelArgs args;
  FlagParser parser = make_flag_parser(args, "make-model", "Write a GGUF model file with random weights.");
  if (parser.parse(argc, argv) == ParseResult::kShowHelp) {
    std::cout << parser.help();
    return 0;
  }
  // Check the cheap things first, so a typo costs no work.
  const model::WeightTypes type = parse_dtype(args.dtype);
  const model::ModelShape* found = nullptr;
  try {
    found = &model::find_model_shape(args.shape);
  } catch (const Error& e) {
    throw UsageError(str("flag --shape: ", e.what()));
  }
  const model::ModelShape& shape = *found;
  gguf::require_replaceable_output(args.output);  // before the work, not after it
  const uint64_t seed = resolve_seed_flag(args.seed);

  StatusLine status;
  int last_percent = -1;
  auto progress = [&](double fraction) {
    int percent = int(fraction * 100);
    if (percent == last_percent) return;
    last_percent = percent;
    status.transient(str("make-model: writing ", args.output, " ", percent, "%"));
  };
  double start = now_seconds();
  model::write_random_model(shape, type, args.vocab, seed, args.output, progress);
  status.clear();
  uintmax_t size = std::filesystem::file_size(args.output);
  std::cout << "wrote " << args.output << ": shape " << shape.name << ", " << args.dtype << ", " << size
            << " bytes (" << human_bytes(size) << ") in " << std::fixed << std::setprecision(1)
            << now_seconds() - start << " s\n";
  if (args.vocab.empty()) {
    std::cerr << "note: made without --vocab, so the model has no tokenizer: `logits --tokens` and `bench` run it; "
                 "generate, tokenize and perplexity need a model made with --vocab VOCAB.gguf\n";
  }
  return 0;
}

}  // namespace bifurcate::cli
