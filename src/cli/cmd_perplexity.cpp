// `bifurcate perplexity`: perplexity of a model over a text file, in windows
// of --ctx tokens that advance by --stride, the way llama.cpp's perplexity
// tool scores a text, so the two can be compared number for number.
//
// Windows start at 0, S, 2S, ... and end at min(start + ctx, n). The first
// window scores every token after the first; each later one scores only the
// tokens past the previous window's end (its last S). So every token but the
// first is scored exactly once, and always with at least ctx - S tokens of
// context before it (except inside the first window). Like llama.cpp, a
// window's first token is replaced by BOS when the vocabulary adds BOS.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <limits>

#include "bifurcate/engine.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/json_output.h"
#include "cli/engine_flags.h"
#include "cli/interrupt.h"
#include "cli/model_session.h"
#include "util/error.h"
#include "util/timer.h"

namespace bifurcate::cli {
namespace {

struct PerplexityArgs {
  EngineFlags engine;
  std::string file;
  std::string prompt;
  int64_t ctx = 0;
  int64_t stride = 0;
  bool json = false;

  template <class Visitor>
  void for_each(Visitor& v) {
    engine.for_each(v);
    v(file, "file", 'f', "text file to score (exact bytes)");
    v(prompt, "prompt", 'p', "text to score, instead of --file");
    v(ctx, "ctx-size|ctx", 'c', "tokens per window (0 = min(512, the model's context length))",
      IntRange{0, std::numeric_limits<int32_t>::max()});
    v(stride, "stride", '\0', "tokens each window advances by (0 = ctx / 2); must be < ctx",
      IntRange{0, std::numeric_limits<int32_t>::max()});
    v(json, "json", '\0', "print JSON with every window's scores");
  }
};

// printf's formatting into a string, for std::cout (where write errors are tracked).
template <class... Args>
std::string str_printf(const char* format, Args... args) {
  char text[160];
  std::snprintf(text, sizeof text, format, args...);
  return text;
}

// One window [start, end) of the token sequence; tokens [first_target, end) are scored.
struct Window {
  int64_t start, end, first_target;
  double nll_sum = 0;   // sum of -log p(token | preceding window tokens)
  double nll2_sum = 0;  // sum of squares, for the uncertainty
};

std::vector<Window> plan_windows(int64_t n_tokens, int64_t ctx, int64_t stride) {
  std::vector<Window> windows;
  int64_t scored_until = 1;  // the first token has no prediction
  for (int64_t start = 0;; start += stride) {
    const int64_t end = std::min(start + ctx, n_tokens);
    windows.push_back({start, end, std::max(scored_until, start + 1)});
    scored_until = end;
    if (end == n_tokens) break;
  }
  return windows;
}

// Runs one window and adds -log p of each scored token. Error when the
// model's logits are not finite (a NaN would print "nan" and exit 0).
void score_window(Engine& engine, const std::vector<int32_t>& tokens, int32_t bos, Window& w) {
  std::vector<int32_t> input(tokens.begin() + w.start, tokens.begin() + w.end);
  if (bos >= 0) input.front() = bos;
  const std::vector<float> logits = engine.evaluate(input, true);
  const size_t n_vocab = size_t(engine.model_info().n_vocab);
  for (int64_t t = w.first_target; t < w.end; ++t) {
    // Row t - 1 - start holds the logits that predict token t.
    const float* row = logits.data() + size_t(t - 1 - w.start) * n_vocab;
    const double nll = log_sum_exp(std::span<const float>(row, n_vocab)) - double(row[size_t(tokens[size_t(t)])]);
    if (!std::isfinite(nll)) {
      throw Error(str("the model's logits predicting token ", t, " are not finite (NaN or infinity): -log p = ", nll,
                      ", so the perplexity is undefined"));
    }
    w.nll_sum += nll;
    w.nll2_sum += nll * nll;
  }
}

// Perplexity and its standard error (llama.cpp's formula: the error of the
// mean NLL, propagated through exp).
struct Score {
  int64_t n_scored = 0;
  double mean_nll = 0, perplexity = 0, uncertainty = 0;
};

Score summarize(const std::vector<Window>& windows, size_t n_done) {
  double nll = 0, nll2 = 0;
  Score s;
  for (size_t i = 0; i < n_done; ++i) {
    nll += windows[i].nll_sum;
    nll2 += windows[i].nll2_sum;
    s.n_scored += windows[i].end - windows[i].first_target;
  }
  s.mean_nll = nll / double(s.n_scored);
  s.perplexity = std::exp(s.mean_nll);
  const double variance = nll2 / double(s.n_scored) - s.mean_nll * s.mean_nll;
  if (s.n_scored > 1 && variance > 0) s.uncertainty = s.perplexity * std::sqrt(variance / double(s.n_scored - 1));
  return s;
}

void print_result_json(const Engine& engine, int64_t n_tokens, int64_t ctx, int64_t stride, bool bos,
                const std::vector<Window>& windows, const Score& s) {
  Json list = Json::array();
  for (const Window& w : windows) {
    list.push_back({{"start", w.start}, {"end", w.end}, {"first_scored", w.first_target}, {"nll_sum", w.nll_sum}});
  }
  print_json(std::cout, {{"model", engine.model_info().path},
                         {"n_tokens", n_tokens},
                         {"ctx", ctx},
                         {"stride", stride},
                         {"bos_at_window_start", bos},
                         {"windows", std::move(list)},
                         {"n_scored", s.n_scored},
                         {"mean_nll", s.mean_nll},
                         {"perplexity", s.perplexity},
                         {"uncertainty", s.n_scored > 1 ? Json(s.uncertainty) : Json(nullptr)}});
}

}  // namespace

int run_perplexity(int argc, char** argv) {
  PerplexityArgs args;
  FlagParser parser = make_flag_parser(args, "perplexity",
                                       "Perplexity of the model over a text, scored in overlapping windows "
                                       "(as llama.cpp's perplexity tool does).");
  if (parser.parse(argc, argv) == ParseResult::kShowHelp) {
    std::cout << parser.help();
    return 0;
  }
  const std::string text = input_text(args.prompt, args.file);
  Engine engine(args.engine.options());
  const ModelInfo& info = engine.model_info();
  print_model_banner(info);

  const int64_t ctx = args.ctx == 0 ? std::min<int64_t>(512, info.context_length) : args.ctx;
  if (ctx < 2) throw UsageError(str("flag --ctx-size: ", ctx, " must be >= 2 (one token to predict from another)"));
  require(ctx <= info.context_length, "--ctx-size ", ctx, " is longer than the model's context length ",
          info.context_length);
  const int64_t stride = args.stride == 0 ? std::max<int64_t>(1, ctx / 2) : args.stride;
  if (stride < 1 || stride >= ctx) {
    throw UsageError(str("flag --stride: ", stride, " must be in [1, ", ctx - 1, "] for --ctx ", ctx));
  }

  const std::vector<int32_t> tokens = engine.tokenize(text, true);
  require(tokens.size() >= 2, "the text has ", tokens.size(), " token(s); perplexity needs at least 2");
  // [BOS] when the vocabulary adds one (then tokens[0] is BOS too), else [].
  const std::vector<int32_t> bos_only = engine.tokenize("", true);
  const bool add_bos = !bos_only.empty();
  const int32_t bos = add_bos ? bos_only.front() : -1;

  std::vector<Window> windows = plan_windows(int64_t(tokens.size()), ctx, stride);
  std::fprintf(stderr, "perplexity: %zu tokens, %zu windows of up to %lld tokens, stride %lld\n", tokens.size(),
               windows.size(), static_cast<long long>(ctx), static_cast<long long>(stride));
  const double t0 = now_seconds();
  InterruptScope interrupt;
  size_t n_done = 0;
  while (n_done < windows.size() && !interrupt.raised()) {
    score_window(engine, tokens, bos, windows[n_done]);
    ++n_done;
    std::fprintf(stderr, "[%zu/%zu] ppl %.4f  (%.1f s)\n", n_done, windows.size(),
                 summarize(windows, n_done).perplexity, now_seconds() - t0);
  }
  if (interrupt.raised()) {
    if (n_done == 0) {
      std::fprintf(stderr, "interrupted before the first window finished: nothing to report\n");
      return kInterruptedExitCode;
    }
    std::fprintf(stderr, "interrupted: reporting the %zu of %zu windows finished\n", n_done, windows.size());
    windows.resize(n_done);
  }
  const Score score = summarize(windows, windows.size());
  if (args.json) {
    print_result_json(engine, int64_t(tokens.size()), ctx, stride, add_bos, windows, score);
  } else if (score.n_scored > 1) {
    std::cout << str_printf("perplexity: %.4f ± %.4f over %lld tokens\n", score.perplexity, score.uncertainty,
                            static_cast<long long>(score.n_scored));
  } else {
    // One scored token has no spread to estimate an uncertainty from.
    std::cout << str_printf("perplexity: %.4f over 1 token (no uncertainty from a single token)\n",
                            score.perplexity);
  }
  return interrupt.raised() ? kInterruptedExitCode : 0;
}

}  // namespace bifurcate::cli
