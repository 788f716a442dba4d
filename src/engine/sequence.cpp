#include "engine/sequence.h"

namespace bifurcate::engine {

Sequence::Sequence(int index, const sampling::SamplingParams& params, const SequenceRules& rules,
                   const std::vector<std::string>& stop, std::span<const int32_t> prompt)
    : rules_(rules),
      sampler_(params, uint64_t(index)),
      detokenizer_(*rules.tokenizer, /*continues_text=*/true),
      stop_(stop),
      history_(prompt.begin(), prompt.end()) {
  result_.index = index;
}

std::optional<FinishReason> Sequence::accept(std::span<const float> logits) {
  const sampling::TokenChoice choice = sampler_.sample(logits, history_);
  if (!rules_.ignore_eos && rules_.tokenizer->is_end_of_generation(choice.token)) return FinishReason::eos;
  history_.push_back(choice.token);
  result_.tokens.push_back(choice.token);
  result_.logprobs.push_back(choice.logprob);
  if (rules_.top_logprobs) result_.top_logprobs.push_back(choice.top);
  next_token_ = choice.token;
  if (rules_.callbacks->on_token) rules_.callbacks->on_token(result_.index, TokenEvent{choice.token, choice.logprob, choice.top});
  emit(stop_.push(detokenizer_.push(choice.token)));
  if (stop_.stopped()) return FinishReason::stop;
  if (int(result_.tokens.size()) >= rules_.max_new_tokens) return FinishReason::length;
  return std::nullopt;
}

void Sequence::emit(const std::string& text) {
  if (text.empty()) return;
  result_.text += text;
  if (rules_.callbacks->on_text) rules_.callbacks->on_text(result_.index, text);
}

void Sequence::finish(FinishReason reason) {
  running_ = false;
  result_.finish_reason = reason;
  if (reason != FinishReason::stop) emit(stop_.push(detokenizer_.finish()) + stop_.finish());
  for (float lp : result_.logprobs) result_.sum_logprob += lp;
  result_.mean_logprob = result_.tokens.empty() ? 0.0 : result_.sum_logprob / double(result_.tokens.size());
  if (rules_.callbacks->on_finish) rules_.callbacks->on_finish(result_.index, reason);
}

}  // namespace bifurcate::engine
