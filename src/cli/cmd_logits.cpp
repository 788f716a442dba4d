// `bifurcate logits`: runs a prompt and prints the top-K next-token logits
// and log-probs (for the last position or all of them) as JSON, so another
// engine's numbers can be diffed against these. With --samples B it also
// checks the decode path: B forked samples decoding the last token must give
// the single-sequence logits (relative error <= 1e-5 with f32 KV).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <limits>
#include <numeric>

#include "bifurcate/engine.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/json_output.h"
#include "cli/engine_flags.h"
#include "cli/interrupt.h"
#include "cli/model_session.h"
#include "model/model_config.h"
#include "util/error.h"

namespace bifurcate::cli {
namespace {

// The decode-path tolerance of DESIGN.md §6: bifurcated/replicated logits
// equal the reference to this relative error with f32 KV.
constexpr double kForkTolerance = 1e-5;

struct LogitsArgs {
  EngineFlags engine;
  std::string prompt;
  std::string file;
  std::string tokens;
  bool no_bos = false;
  int64_t top = 10;
  bool all = false;
  int64_t n_samples = 0;

  template <class Visitor>
  void for_each(Visitor& v) {
    engine.for_each(v);
    v(prompt, "prompt", 'p', "prompt text");
    v(file, "file", 'f', "read the prompt from this file (exact bytes)");
    v(tokens, "tokens", '\0', "prompt as token ids, e.g. 1,2,3 (instead of text; no BOS is added)");
    v(no_bos, "no-bos", '\0', "do not prepend BOS to a text prompt");
    v(top, "top", 'k', "most likely tokens reported per position", IntRange{1, std::numeric_limits<int32_t>::max()});
    v(all, "all", '\0', "report every position, not only the last");
    v(n_samples, "samples|parallel", "np",
      "also prefill all but the last token once, fork this many samples that decode the last token, and "
      "report their largest difference from the single-sequence logits (0 = off)",
      IntRange{0, 4096});
  }
};

// How far forked-decode logits stray from the single-sequence ones.
struct ForkCheck {
  int n_samples = 0;
  double max_abs_diff = 0;
  double max_rel_diff = 0;  // max |forked - single| / max |single|, over all samples
  int worst_sample = 0;
};

std::vector<int32_t> prompt_tokens(const LogitsArgs& a, const Engine& engine) {
  if (!a.tokens.empty()) {
    if (!a.prompt.empty() || !a.file.empty()) throw UsageError("give the prompt as text or as --tokens, not both");
    std::vector<int32_t> ids = parse_token_ids(a.tokens, "--tokens");
    model::require_in_vocabulary(ids, engine.model_info().n_vocab);
    return ids;
  }
  const std::vector<int32_t> ids = engine.tokenize(input_text(a.prompt, a.file), !a.no_bos);
  require(!ids.empty(), "the prompt has no tokens");
  return ids;
}

// Ids of the k largest logits, largest first; ties by smaller id.
std::vector<int32_t> top_ids(std::span<const float> row, int k) {
  std::vector<int32_t> ids(row.size());
  std::iota(ids.begin(), ids.end(), 0);
  std::partial_sort(ids.begin(), ids.begin() + k, ids.end(),
                    [&](int32_t a, int32_t b) { return row[size_t(a)] > row[size_t(b)] || (row[size_t(a)] == row[size_t(b)] && a < b); });
  ids.resize(size_t(k));
  return ids;
}

ForkCheck compare_forked(std::span<const float> single, std::span<const float> forked, int n_samples) {
  const size_t n_vocab = single.size();
  double scale = 0;
  for (float x : single) scale = std::max(scale, std::fabs(double(x)));
  ForkCheck check;
  check.n_samples = n_samples;
  for (int s = 0; s < n_samples; ++s) {
    for (size_t i = 0; i < n_vocab; ++i) {
      double d = std::fabs(double(forked[size_t(s) * n_vocab + i]) - double(single[i]));
      if (std::isnan(d)) d = INFINITY;  // a NaN must fail the check, not vanish in max()
      if (d > check.max_abs_diff) check.max_abs_diff = d, check.worst_sample = s;
    }
  }
  check.max_rel_diff = scale > 0 ? check.max_abs_diff / scale : check.max_abs_diff;
  return check;
}

Json position_json(const Engine& engine, std::span<const int32_t> tokens, size_t position,
                   std::span<const float> row, int k) {
  const double lse = log_sum_exp(row);
  Json out = {{"position", position}, {"token", tokens[position]}};
  if (position + 1 < tokens.size()) {  // how likely the prompt's own next token was
    out["next_token"] = tokens[position + 1];
    out["next_logprob"] = double(row[size_t(tokens[position + 1])]) - lse;
  }
  Json top = Json::array();
  for (int32_t id : top_ids(row, k)) {
    Json entry = {{"id", id}};
    if (engine.model_info().has_vocabulary) entry["piece"] = token_piece_json(engine.token_to_piece(id));
    entry["logit"] = double(row[size_t(id)]);
    entry["logprob"] = double(row[size_t(id)]) - lse;
    top.push_back(std::move(entry));
  }
  out["top"] = std::move(top);
  return out;
}

Json fork_check_json(const Engine& engine, const ForkCheck& c, bool f32_kv) {
  return {{"attention", attention_mode_name(engine.options().attention)},
          {"kv_type", f32_kv ? "f32" : "f16"},
          {"n_samples", c.n_samples},
          {"max_abs_diff", c.max_abs_diff},
          {"max_rel_diff", c.max_rel_diff},
          {"worst_sample", c.worst_sample},
          // only f32 KV promises the tolerance; f16 KV rounds K/V differently per path
          {"tolerance", f32_kv ? Json(kForkTolerance) : Json(nullptr)},
          {"ok", !f32_kv || c.max_rel_diff <= kForkTolerance}};
}

}  // namespace

int run_logits(int argc, char** argv) {
  LogitsArgs args;
  FlagParser parser = make_flag_parser(args, "logits",
                                       "Run a prompt and print the top-K next-token logits and log-probs as JSON; "
                                       "optionally check that forked decoding reproduces them.");
  if (parser.parse(argc, argv) == ParseResult::kShowHelp) {
    std::cout << parser.help();
    return 0;
  }
  Engine engine(args.engine.options());
  const ModelInfo& info = engine.model_info();
  print_model_banner(info);
  const std::vector<int32_t> tokens = prompt_tokens(args, engine);
  const size_t n_vocab = size_t(info.n_vocab);
  const int k = int(std::min<int64_t>(args.top, info.n_vocab));

  // Ctrl-C cannot cut an evaluation short, so it is honoured between the
  // two: the prompt's logits, once computed, are printed; the fork check is
  // skipped if it has not started.
  InterruptScope interrupt;
  const std::vector<float> logits = engine.evaluate(tokens, args.all);
  const size_t rows = logits.size() / n_vocab;
  const std::span<const float> last = std::span<const float>(logits).subspan((rows - 1) * n_vocab, n_vocab);
  ForkCheck check;
  const bool checked = args.n_samples > 0 && !interrupt.raised();
  if (checked) {
    const std::vector<float> forked = engine.evaluate_forked(tokens, int(args.n_samples));
    check = compare_forked(last, forked, int(args.n_samples));
  }
  if (interrupt.raised()) {
    std::fprintf(stderr, "interrupted: printing the logits computed%s\n",
                 args.n_samples > 0 && !checked ? ", without the fork check" : "");
  }

  Json positions = Json::array();  // position i's logits predict token i + 1
  for (size_t r = 0; r < rows; ++r) {
    const size_t position = args.all ? r : tokens.size() - 1;
    positions.push_back(
        position_json(engine, tokens, position, std::span<const float>(logits).subspan(r * n_vocab, n_vocab), k));
  }
  Json out = {{"model", info.path},
              {"n_vocab", info.n_vocab},
              {"n_tokens", tokens.size()},
              {"tokens", tokens},
              {"positions", std::move(positions)}};
  const bool f32_kv = engine.options().kv_precision == KvPrecision::f32;
  if (checked) out["fork_check"] = fork_check_json(engine, check, f32_kv);
  print_json(std::cout, out);
  std::cout << std::flush;
  if (interrupt.raised()) return kInterruptedExitCode;

  if (checked) {
    std::fprintf(stderr, "fork check: %d samples, max abs diff %.3g, max rel diff %.3g%s\n", check.n_samples,
                 check.max_abs_diff, check.max_rel_diff,
                 !f32_kv ? " (f16 KV: no tolerance; use --kv-type f32 for the exactness check)"
                 : check.max_rel_diff <= kForkTolerance ? " (ok: <= 1e-5)"
                                                        : " (FAILED: > 1e-5)");
    if (f32_kv && check.max_rel_diff > kForkTolerance) return 1;
  }
  return 0;
}

}  // namespace bifurcate::cli
