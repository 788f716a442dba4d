// `bifurcate generate`: many continuations of one prompt, prefilled once and
// decoded together, ranked by mean log-probability, as text or JSON.
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <limits>
#include <string_view>
#include <vector>

#include "bifurcate/engine.h"
#include "chat/chat_template.h"
#include "cli/args.h"
#include "cli/chat_prompt.h"
#include "cli/commands.h"
#include "cli/engine_flags.h"
#include "cli/interrupt.h"
#include "cli/json_output.h"
#include "cli/model_session.h"
#include "cli/status_line.h"
#include "util/error.h"

namespace bifurcate::cli {
namespace {

constexpr int64_t kMaxSamples = 65536;
constexpr int64_t kIntMax = std::numeric_limits<int32_t>::max();
constexpr double kFiniteMax = std::numeric_limits<double>::max();

struct GenerateArgs {
  EngineFlags engine;
  std::string prompt = "Once upon a time";
  std::string prompt_file;
  int64_t samples = 4;
  int64_t best_of = 0;
  int64_t n_predict = 64;
  double temperature = 0.8;
  int64_t top_k = 40;
  double top_p = 0.95;
  double min_p = 0.05;
  double repeat_penalty = 1.0;
  double presence_penalty = 0.0;
  double frequency_penalty = 0.0;
  int64_t repeat_last_n = 64;
  int64_t seed = 42;
  int64_t logprobs = 0;
  std::vector<std::string> stop;
  std::string rank = "mean";
  bool ignore_eos = false;
  bool no_bos = false;
  bool json = false;
  bool stream = false;
  bool chat = false;
  std::string system;
  std::string chat_template;

  template <class Visitor>
  void for_each(Visitor& v) {
    engine.for_each(v);
    v(prompt, "prompt", 'p', "prompt text");
    v(prompt_file, "file", 'f', "read the prompt from this file (exact bytes) instead of --prompt");
    v(n_predict, "n-predict|predict|max-tokens", 'n',
      "tokens to generate per continuation (-1 = until the context is full)", IntRange{-1, kIntMax});
    v(samples, "samples|parallel", "np", "number of continuations returned", IntRange{1, kMaxSamples});
    v(best_of, "best-of", '\0', "continuations drawn (>= --samples); the best --samples by --rank are returned (0: as many as --samples)",
      IntRange{0, kMaxSamples});
    v(temperature, "temp", '\0', "sampling temperature; 0 = greedy", RealRange{0, kFiniteMax});
    v(top_k, "top-k", '\0', "keep the k most likely tokens (0 = off)", IntRange{0, kIntMax});
    v(top_p, "top-p", '\0', "nucleus sampling mass (1 = off)", RealRange{0, 1, true});
    v(min_p, "min-p", '\0', "drop tokens below min-p x the top probability (0 = off)", RealRange{0, 1});
    v(repeat_penalty, "repeat-penalty", '\0', "repetition penalty over the last --repeat-last-n tokens (1 = off)",
      RealRange{0, kFiniteMax, true});
    v(presence_penalty, "presence-penalty", '\0', "OpenAI presence penalty (0 = off)", RealRange{-kFiniteMax, kFiniteMax});
    v(frequency_penalty, "frequency-penalty", '\0', "OpenAI frequency penalty (0 = off)",
      RealRange{-kFiniteMax, kFiniteMax});
    v(repeat_last_n, "repeat-last-n", '\0', "window of the penalties (-1 = whole history)", IntRange{-1, kIntMax});
    v(seed, "seed", 's', "random seed (-1 = random, printed); the same seed gives the same samples in either attention mode",
      kSeedRange);
    v(logprobs, "logprobs", '\0', "report this many most likely alternatives per token (JSON)", IntRange{0, 1000});
    v(stop, "stop", '\0', "stop string, taken whole ('|' is an ordinary character); give --stop again for more; "
      "\\n, \\t and \\\\ stand for newline, tab and backslash");
    v(rank, "rank", '\0', "order of the samples: mean (mean log-prob), sum, none");
    v(ignore_eos, "ignore-eos", '\0', "keep generating past end-of-generation tokens");
    v(no_bos, "no-bos", '\0', "do not prepend the BOS token");
    v(json, "json", '\0', "print one JSON document with every sample and its scores");
    v(stream, "stream", '\0', "print sample 0's text as it is generated (text mode)");
    v(chat, "chat", '\0',
      "treat --prompt as a user message: render it with the model's chat template (ChatML when the file has "
      "none), control tokens recognised, BOS not doubled");
    v(system, "system", '\0', "system message for --chat (none when empty)");
    v(chat_template, "chat-template", '\0', "Jinja chat template file used by --chat instead of the model's");
  }
};

// One --stop value with its escapes applied: \n, \t, \r and \\ (a newline
// is awkward to type in a shell); any other backslash stays as it is.
std::string unescape_stop(std::string_view text) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '\\' || i + 1 == text.size()) {
      out += text[i];
      continue;
    }
    switch (text[i + 1]) {
      case 'n': out += '\n'; break;
      case 't': out += '\t'; break;
      case 'r': out += '\r'; break;
      case '\\': out += '\\'; break;
      default: out += text[i]; continue;
    }
    ++i;
  }
  return out;
}

std::vector<std::string> parse_stop_flags(const std::vector<std::string>& values) {
  std::vector<std::string> out;
  for (const std::string& value : values) {
    if (value.empty()) throw UsageError("flag --stop: a stop string must not be empty");
    out.push_back(unescape_stop(value));
  }
  return out;
}

Ranking parse_rank(const std::string& text) {
  if (text == "mean") return Ranking::mean_logprob;
  if (text == "sum") return Ranking::sum_logprob;
  if (text == "none") return Ranking::none;
  throw UsageError(str("flag --rank: unknown ranking '", text, "' (expected mean, sum or none)"));
}

// The request, after the checks that involve more than one flag (UsageError
// naming the flags). The numbers are already range-checked by the parser.
GenerationRequest make_request(const GenerateArgs& a, const FlagParser& parser, uint64_t seed) {
  GenerationRequest r;
  if (!a.prompt_file.empty() && parser.given("prompt")) {
    throw UsageError("give the prompt with -p TEXT or -f FILE, not both");
  }
  if (a.best_of != 0 && a.best_of < a.samples) {
    throw UsageError(str("flag --best-of: ", a.best_of, " must be >= --samples (", a.samples,
                         "), or 0 to draw exactly --samples"));
  }
  if (a.n_predict == 0) throw UsageError("flag --n-predict: 0 tokens would generate nothing (-1 = until the context is full)");
  r.prompt = a.prompt_file.empty() ? a.prompt : read_text_file(a.prompt_file);
  if (!a.prompt_file.empty() && r.prompt.empty()) throw Error(str("prompt file '", a.prompt_file, "' is empty"));
  r.add_bos = !a.no_bos;
  r.n = int(a.samples);
  r.best_of = int(a.best_of);
  // -1: as many as fit; the engine stops every sample at the context's end.
  r.max_tokens = a.n_predict < 0 ? int(kIntMax) : int(a.n_predict);
  r.stop = parse_stop_flags(a.stop);
  r.ignore_eos = a.ignore_eos;
  r.ranking = parse_rank(a.rank);
  SamplingOptions& s = r.sampling;
  s.temperature = float(a.temperature);
  s.top_k = int(a.top_k);
  s.top_p = float(a.top_p);
  s.min_p = float(a.min_p);
  s.repetition_penalty = float(a.repeat_penalty);
  s.presence_penalty = float(a.presence_penalty);
  s.frequency_penalty = float(a.frequency_penalty);
  s.repeat_last_n = int(a.repeat_last_n);
  s.seed = seed;
  s.top_logprobs = int(a.logprobs);
  return r;
}

void print_result_json(const Engine& engine, const GenerateArgs& a, const GenerationRequest& request,
                       const GenerationResult& result) {
  Json samples = Json::array();
  for (size_t rank = 0; rank < result.samples.size(); ++rank) {
    const Sample& s = result.samples[rank];
    Json tokens = Json::array();
    for (size_t t = 0; t < s.tokens.size(); ++t) {
      Json token = {{"id", s.tokens[t]}, {"piece", engine.token_to_piece(s.tokens[t])},
                    {"logprob", double(s.logprobs[t])}};
      if (t < s.top_logprobs.size()) {
        Json top = Json::array();
        for (const auto& [id, lp] : s.top_logprobs[t]) top.push_back({{"id", id}, {"logprob", double(lp)}});
        token["top_logprobs"] = std::move(top);
      }
      tokens.push_back(std::move(token));
    }
    samples.push_back({{"rank", rank + 1},
                       {"index", s.index},
                       {"text", s.text},
                       {"finish_reason", finish_reason_name(s.finish_reason)},
                       {"n_tokens", s.tokens.size()},
                       {"sum_logprob", s.sum_logprob},
                       {"mean_logprob", s.mean_logprob},
                       {"tokens", std::move(tokens)}});
  }
  const GenerationStats& st = result.stats;
  print_json(std::cout, {{"model", engine.model_info().path},
                         {"prompt", request.prompt},
                         {"attention", attention_mode_name(engine.options().attention)},
                         {"seed", request.sampling.seed},
                         {"samples", std::move(samples)},
                         {"stats",
                          {{"prompt_tokens", st.prompt_tokens},
                           {"generated_tokens", st.generated_tokens},
                           {"decode_steps", st.decode_steps},
                           {"prefill_seconds", st.prefill_seconds},
                           {"decode_seconds", st.decode_seconds},
                           {"kv_bytes_peak", st.kv_bytes_peak}}}});
}

void print_text(const GenerationRequest& request, const GenerationResult& result) {
  std::cout << "prompt: " << request.prompt << "\n";
  for (size_t rank = 0; rank < result.samples.size(); ++rank) {
    const Sample& s = result.samples[rank];
    char header[160];
    std::snprintf(header, sizeof header, "\n#%zu  sample %d  mean logprob %.4f  sum %.3f  %zu tokens  (%s)\n",
                  rank + 1, s.index, s.mean_logprob, s.sum_logprob, s.tokens.size(),
                  std::string(finish_reason_name(s.finish_reason)).c_str());
    std::cout << header << request.prompt << s.text << "\n";
  }
}

void print_timing(const GenerationResult& result, int n_samples) {
  const GenerationStats& s = result.stats;
  const double pp = s.prefill_seconds > 0 ? s.prompt_tokens / s.prefill_seconds : 0;
  std::fprintf(stderr, "\nprefill: %d tokens in %.3f s (%.1f t/s)\n", s.prompt_tokens, s.prefill_seconds, pp);
  if (s.decode_steps == 0) {
    // The first token of every sample comes from the prefill's logits: no
    // decode step ran, and a rate over ~0 s would be noise.
    std::fprintf(stderr, "decode:  %d tokens from the prefill's logits, no decode steps\n", s.generated_tokens);
  } else {
    const double tg = s.decode_seconds > 0 ? s.generated_tokens / s.decode_seconds : 0;
    std::fprintf(stderr,
                 "decode:  %d tokens in %d steps, %.3f s (%.1f t/s total, %.1f t/s per sample, %.2f ms/step)\n",
                 s.generated_tokens, s.decode_steps, s.decode_seconds, tg, tg / std::max(1, n_samples),
                 1e3 * s.decode_seconds / s.decode_steps);
  }
  std::fprintf(stderr, "kv cache peak: %.1f MiB\n", double(s.kv_bytes_peak) / (1 << 20));
}

// --chat: the prompt becomes the model's own chat format, tokenized with its
// control tokens; BOS is added only when the template did not write it.
void apply_chat_template(const Engine& engine, const GenerateArgs& args, GenerationRequest& request) {
  const PromptTemplate tmpl = template_for(engine.model_info(), args.chat_template);
  ChatPrompt prompt;
  try {
    prompt = render_chat_prompt(tmpl, args.system, request.prompt);
  } catch (const chat::TemplateError& e) {
    throw Error(str("chat template: ", e.what()));
  }
  request.prompt = prompt.text;
  request.prompt_tokens = engine.tokenize(prompt.text, request.add_bos && !prompt.starts_with_bos, true);
}

}  // namespace

int run_generate(int argc, char** argv) {
  GenerateArgs args;
  FlagParser parser = make_flag_parser(args, "generate",
                                       "Generate many continuations of one prompt, decoded together with "
                                       "bifurcated attention, ranked by mean log-probability.");
  if (parser.parse(argc, argv) == ParseResult::kShowHelp) {
    std::cout << parser.help();
    return 0;
  }
  if (!args.chat && (!args.system.empty() || !args.chat_template.empty()))
    throw UsageError("--system and --chat-template need --chat");
  const EngineOptions options = args.engine.options();
  GenerationRequest request = make_request(args, parser, resolve_seed_flag(args.seed));
  Engine engine(options);
  print_model_banner(engine.model_info());
  if (args.chat) apply_chat_template(engine, args, request);

  InterruptScope interrupt;
  GenerationCallbacks callbacks;
  callbacks.cancel = &InterruptScope::flag();
  const int n_drawn = std::max(request.n, request.best_of);
  const bool streaming = args.stream && !args.json;
  // The step counter is a "\r" line on a terminal only, and not while text
  // streams to the same terminal (they would overwrite each other).
  StatusLine status(!(streaming && stdout_is_terminal()));
  const int max_steps = std::min(request.max_tokens, engine.model_info().context_length);
  callbacks.on_step = [&](int step, int active) {
    status.transient(str("decoding: step ", step, "/", max_steps, ", ", active, " of ", n_drawn, " samples running"));
  };
  if (streaming) {
    std::cout << request.prompt << std::flush;
    callbacks.on_text = [](int index, std::string_view text) {
      if (index == 0) std::cout << text << std::flush;
    };
  }
  const GenerationResult result = engine.generate(request, callbacks);
  status.clear();
  if (streaming) std::cout << "\n";
  if (interrupt.raised()) std::fprintf(stderr, "interrupted: printing what was generated\n");
  if (args.json) {
    print_result_json(engine, args, request, result);
  } else {
    print_text(request, result);
  }
  print_timing(result, n_drawn);
  return interrupt.raised() ? kInterruptedExitCode : 0;
}

}  // namespace bifurcate::cli
