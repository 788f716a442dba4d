#include "server/openai_format.h"

#include <chrono>
#include <cstdio>
#include <random>

namespace bifurcate::server {
namespace {

using nlohmann::json;

json bytes_of(const std::string& piece) {
  json bytes = json::array();
  for (char c : piece) bytes.push_back(int(static_cast<unsigned char>(c)));
  return bytes;
}

json base_object(const ResponseIds& ids, const char* object) {
  return {{"id", ids.id}, {"object", object}, {"created", ids.created}, {"model", ids.model},
          {"system_fingerprint", "bifurcate"}};
}

json finish_json(std::optional<FinishReason> finish) {
  return finish ? json(finish_reason_text(*finish)) : json(nullptr);
}

}  // namespace

ResponseIds new_response_ids(bool chat, const std::string& model) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  char hex[33];
  std::snprintf(hex, sizeof hex, "%016llx%016llx", static_cast<unsigned long long>(rng()),
                static_cast<unsigned long long>(rng()));
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  return {std::string(chat ? "chatcmpl-" : "cmpl-") + hex,
          int64_t(std::chrono::duration_cast<std::chrono::seconds>(now).count()), model};
}

std::vector<TokenLogprob> sample_logprobs(const Sample& s) {
  std::vector<TokenLogprob> out(s.tokens.size());
  for (size_t i = 0; i < s.tokens.size(); ++i) {
    out[i].token = s.tokens[i];
    out[i].logprob = s.logprobs[i];
    if (i < s.top_logprobs.size()) out[i].top = s.top_logprobs[i];
  }
  return out;
}

std::string finish_reason_text(FinishReason reason) {
  return (reason == FinishReason::stop || reason == FinishReason::eos) ? "stop" : "length";
}

json completion_logprobs(const Engine& engine, std::span<const TokenLogprob> tokens, std::size_t first_offset) {
  json text_tokens = json::array(), token_logprobs = json::array(), top = json::array(), offsets = json::array();
  std::size_t offset = first_offset;
  for (const TokenLogprob& t : tokens) {
    const std::string piece = engine.token_to_piece(t.token);
    text_tokens.push_back(piece);
    if (!t.has_logprob) {
      token_logprobs.push_back(nullptr);
      top.push_back(nullptr);
    } else {
      token_logprobs.push_back(t.logprob);
      json alternatives = json::object();
      for (const auto& [id, lp] : t.top) alternatives[engine.token_to_piece(id)] = lp;
      alternatives[piece] = t.logprob;
      top.push_back(std::move(alternatives));
    }
    offsets.push_back(offset);
    offset += piece.size();
  }
  return {{"tokens", text_tokens}, {"token_logprobs", token_logprobs}, {"top_logprobs", top},
          {"text_offset", offsets}};
}

json chat_logprobs(const Engine& engine, std::span<const TokenLogprob> tokens, int top_logprobs) {
  json content = json::array();
  for (const TokenLogprob& t : tokens) {
    const std::string piece = engine.token_to_piece(t.token);
    json top = json::array();
    for (size_t k = 0; k < t.top.size() && k < size_t(top_logprobs); ++k) {
      const std::string alt = engine.token_to_piece(t.top[k].first);
      top.push_back({{"token", alt}, {"logprob", t.top[k].second}, {"bytes", bytes_of(alt)}});
    }
    content.push_back({{"token", piece}, {"logprob", t.logprob}, {"bytes", bytes_of(piece)}, {"top_logprobs", top}});
  }
  return {{"content", content}};
}

void Usage::add(const GenerationStats& stats) {
  prompt_tokens += stats.prompt_tokens;
  completion_tokens += stats.generated_tokens;
  cached_tokens += stats.cached_prompt_tokens;
}

json usage_json(const Usage& u) {
  return {{"prompt_tokens", u.prompt_tokens},
          {"completion_tokens", u.completion_tokens},
          {"total_tokens", u.prompt_tokens + u.completion_tokens},
          {"prompt_tokens_details", {{"cached_tokens", u.cached_tokens}}}};
}

json completion_response(const ResponseIds& ids, const ParsedRequest& request,
                         const std::vector<GenerationResult>& results, const Engine& engine,
                         const std::vector<std::vector<TokenLogprob>>& prompt_logprobs) {
  json out = base_object(ids, "text_completion");
  json choices = json::array();
  Usage usage;
  for (size_t p = 0; p < results.size(); ++p) {
    const std::string& prompt_text = request.prompts[p].text;
    usage.add(results[p].stats);
    for (size_t k = 0; k < results[p].samples.size(); ++k) {
      const Sample& s = results[p].samples[k];
      json choice = {{"index", p * size_t(request.generation.n) + k},
                     {"text", request.echo ? prompt_text + s.text : s.text},
                     {"logprobs", nullptr},
                     {"finish_reason", finish_reason_text(s.finish_reason)}};
      if (request.logprobs) {
        // The generated tokens' offsets count from the end of the prompt's
        // text (as the streamed chunks do), the echoed prompt's from 0.
        json generated = completion_logprobs(engine, sample_logprobs(s), prompt_text.size());
        if (p < prompt_logprobs.size()) {
          json echoed = completion_logprobs(engine, prompt_logprobs[p], 0);
          for (auto& [key, values] : echoed.items()) values.insert(values.end(), generated[key].begin(), generated[key].end());
          generated = std::move(echoed);
        }
        choice["logprobs"] = std::move(generated);
      }
      choices.push_back(std::move(choice));
    }
  }
  out["choices"] = std::move(choices);
  out["usage"] = usage_json(usage);
  return out;
}

json chat_response(const ResponseIds& ids, const ParsedRequest& request, const GenerationResult& result,
                   const Engine& engine) {
  json out = base_object(ids, "chat.completion");
  json choices = json::array();
  for (size_t k = 0; k < result.samples.size(); ++k) {
    const Sample& s = result.samples[k];
    json choice = {{"index", k},
                   {"message", {{"role", "assistant"}, {"content", s.text}}},
                   {"logprobs", nullptr},
                   {"finish_reason", finish_reason_text(s.finish_reason)}};
    if (request.logprobs) choice["logprobs"] = chat_logprobs(engine, sample_logprobs(s), request.top_logprobs);
    choices.push_back(std::move(choice));
  }
  out["choices"] = std::move(choices);
  Usage usage;
  usage.add(result.stats);
  out["usage"] = usage_json(usage);
  return out;
}

json completion_chunk(const ResponseIds& ids, int index, const std::string& text, const json& logprobs,
                      std::optional<FinishReason> finish) {
  json out = base_object(ids, "text_completion");
  out["choices"] = json::array(
      {{{"index", index}, {"text", text}, {"logprobs", logprobs}, {"finish_reason", finish_json(finish)}}});
  return out;
}

json chat_chunk(const ResponseIds& ids, int index, const json& delta, const json& logprobs,
                std::optional<FinishReason> finish) {
  json out = base_object(ids, "chat.completion.chunk");
  out["choices"] = json::array(
      {{{"index", index}, {"delta", delta}, {"logprobs", logprobs}, {"finish_reason", finish_json(finish)}}});
  return out;
}

json usage_chunk(const ResponseIds& ids, bool chat, const Usage& usage) {
  json out = base_object(ids, chat ? "chat.completion.chunk" : "text_completion");
  out["choices"] = json::array();
  out["usage"] = usage_json(usage);
  return out;
}

}  // namespace bifurcate::server
