// `bifurcate generate`: many continuations of one prompt, prefilled once and
// decoded together, ranked by mean log-probability, as text or JSON.
#include <atomic>
#include <csignal>
#include <cstdio>
#include <iostream>

#include "bifurcate/engine.h"
#include "chat/chat_template.h"
#include "cli/args.h"
#include "cli/chat_prompt.h"
#include "cli/commands.h"
#include "cli/engine_flags.h"
#include "cli/json_output.h"
#include "cli/model_session.h"
#include "util/error.h"

namespace bifurcate::cli {
namespace {

struct GenerateArgs {
  EngineFlags engine;
  std::string prompt = "Once upon a time";
  std::string prompt_file;
  int64_t n = 4;
  int64_t best_of = 0;
  int64_t max_tokens = 64;
  double temperature = 0.8;
  int64_t top_k = 40;
  double top_p = 0.95;
  double min_p = 0.05;
  double repeat_penalty = 1.0;
  double presence_penalty = 0.0;
  double frequency_penalty = 0.0;
  int64_t repeat_last_n = 64;
  uint64_t seed = 42;
  int64_t logprobs = 0;
  std::string stop;
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
    v(n, "n-samples", 'n', "number of continuations returned");
    v(best_of, "best-of", '\0', "continuations drawn (>= n); the best n by --rank are returned (0: n)");
    v(max_tokens, "max-tokens", 'l', "maximum tokens generated per continuation");
    v(temperature, "temp", '\0', "sampling temperature; 0 = greedy");
    v(top_k, "top-k", '\0', "keep the k most likely tokens (0 = off)");
    v(top_p, "top-p", '\0', "nucleus sampling mass (1 = off)");
    v(min_p, "min-p", '\0', "drop tokens below min-p x the top probability (0 = off)");
    v(repeat_penalty, "repeat-penalty", '\0', "repetition penalty over the last --repeat-last-n tokens (1 = off)");
    v(presence_penalty, "presence-penalty", '\0', "OpenAI presence penalty (0 = off)");
    v(frequency_penalty, "frequency-penalty", '\0', "OpenAI frequency penalty (0 = off)");
    v(repeat_last_n, "repeat-last-n", '\0', "window of the penalties (-1 = whole history)");
    v(seed, "seed", 's', "random seed; the same seed gives the same samples in either attention mode");
    v(logprobs, "logprobs", '\0', "report this many most likely alternatives per token (JSON)");
    v(stop, "stop", '\0', "stop string; several separated by '|'");
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

std::atomic<bool> g_interrupted{false};

extern "C" void on_interrupt(int) {
  g_interrupted.store(true);
  std::signal(SIGINT, SIG_DFL);  // a second Ctrl-C kills at once
}

std::vector<std::string> split_stop(const std::string& text) {
  std::vector<std::string> out;
  std::string current;
  for (char c : text) {
    if (c == '|') {
      if (!current.empty()) out.push_back(current);
      current.clear();
    } else {
      current += c;
    }
  }
  if (!current.empty()) out.push_back(current);
  return out;
}

Ranking parse_rank(const std::string& text) {
  if (text == "mean") return Ranking::mean_logprob;
  if (text == "sum") return Ranking::sum_logprob;
  if (text == "none") return Ranking::none;
  throw UsageError(str("flag --rank: unknown ranking '", text, "' (expected mean, sum or none)"));
}

GenerationRequest make_request(const GenerateArgs& a) {
  GenerationRequest r;
  r.prompt = a.prompt_file.empty() ? a.prompt : read_text_file(a.prompt_file);
  r.add_bos = !a.no_bos;
  r.n = int(a.n);
  r.best_of = int(a.best_of);
  r.max_tokens = int(a.max_tokens);
  r.stop = split_stop(a.stop);
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
  s.seed = a.seed;
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
                         {"attention", engine.options().attention == AttentionMode::bifurcated ? "bifurcated"
                                                                                                : "replicated"},
                         {"seed", a.seed},
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
  const double tg = s.decode_seconds > 0 ? s.generated_tokens / s.decode_seconds : 0;
  std::fprintf(stderr,
               "\nprefill: %d tokens in %.3f s (%.1f t/s)\n"
               "decode:  %d tokens in %d steps, %.3f s (%.1f t/s total, %.1f t/s per sample, %.2f ms/step)\n"
               "kv cache peak: %.1f MiB\n",
               s.prompt_tokens, s.prefill_seconds, pp, s.generated_tokens, s.decode_steps, s.decode_seconds, tg,
               tg / std::max(1, n_samples), s.decode_steps ? 1e3 * s.decode_seconds / s.decode_steps : 0.0,
               double(s.kv_bytes_peak) / (1 << 20));
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
  GenerationRequest request = make_request(args);
  Engine engine(args.engine.options());
  print_model_banner(engine.model_info());
  if (args.chat) apply_chat_template(engine, args, request);

  g_interrupted.store(false);
  std::signal(SIGINT, on_interrupt);
  GenerationCallbacks callbacks;
  callbacks.cancel = &g_interrupted;
  const int n_drawn = std::max(request.n, request.best_of);
  callbacks.on_step = [&](int step, int active) {
    std::fprintf(stderr, "\rdecoding: step %d/%d, %d of %d samples running   ", step, request.max_tokens, active,
                 n_drawn);
  };
  if (args.stream && !args.json) {
    std::cout << request.prompt << std::flush;
    callbacks.on_text = [](int index, std::string_view text) {
      if (index == 0) std::cout << text << std::flush;
    };
  }
  const GenerationResult result = engine.generate(request, callbacks);
  std::signal(SIGINT, SIG_DFL);
  std::fprintf(stderr, "\n");
  if (args.stream && !args.json) std::cout << "\n";
  if (g_interrupted.load()) std::fprintf(stderr, "interrupted: printing what was generated\n");
  if (args.json) {
    print_result_json(engine, args, request, result);
  } else {
    print_text(request, result);
  }
  print_timing(result, n_drawn);
  return g_interrupted.load() ? 130 : 0;
}

}  // namespace bifurcate::cli
