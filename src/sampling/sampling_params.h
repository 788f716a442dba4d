// What a request asks of the sampler, and the check that it makes sense.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

namespace bifurcate::sampling {

struct SamplingParams {
  float temperature = 1.0f;         // 0 = greedy (argmax; ties → lowest id)
  int top_k = 0;                    // 0 = off
  float top_p = 1.0f;               // 1 = off
  float min_p = 0.0f;               // 0 = off (keep tokens with p >= min_p * p_max)
  float repetition_penalty = 1.0f;  // llama.cpp/CTRL style: logit>0 ? logit/pen : logit*pen, once per distinct token
  float presence_penalty = 0.0f;    // OpenAI style: logit -= presence * (count>0) + frequency * count
  float frequency_penalty = 0.0f;
  int repeat_last_n = 64;           // window of history for the penalties; -1 = whole history, 0 = none
  uint64_t seed = 0;
  int top_logprobs = 0;             // also report this many most likely alternatives
  // (token, bias) added to that token's logit before every other step
  // (OpenAI's and llama.cpp's logit_bias): +100 all but forces a token,
  // -100 all but bans it; -inf bans it outright.
  std::vector<std::pair<int32_t, float>> logit_bias;
};

// Throws Error naming the first bad field and its value: temperature < 0 or
// not finite, top_k < 0, top_p outside (0, 1], min_p outside [0, 1],
// repetition_penalty <= 0 or not finite, non-finite presence/frequency
// penalties, repeat_last_n < -1, top_logprobs < 0, a logit_bias token < 0 or
// a bias that is NaN or +inf.
void validate(const SamplingParams& params);

// True when the penalties leave every logit unchanged, so they can be skipped.
bool penalties_are_neutral(const SamplingParams& params);

}  // namespace bifurcate::sampling
