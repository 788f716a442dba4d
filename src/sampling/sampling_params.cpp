#include "sampling/sampling_params.h"

#include <cmath>

#include "util/error.h"

namespace bifurcate::sampling {

void validate(const SamplingParams& p) {
  // `!(x >= 0)` rather than `x < 0` so NaN is rejected too.
  require(std::isfinite(p.temperature) && p.temperature >= 0.0f,
          "sampling: temperature must be finite and >= 0, got ", p.temperature);
  require(p.top_k >= 0, "sampling: top_k must be >= 0 (0 = off), got ", p.top_k);
  require(p.top_p > 0.0f && p.top_p <= 1.0f, "sampling: top_p must be in (0, 1] (1 = off), got ", p.top_p);
  require(p.min_p >= 0.0f && p.min_p <= 1.0f, "sampling: min_p must be in [0, 1] (0 = off), got ", p.min_p);
  require(std::isfinite(p.repetition_penalty) && p.repetition_penalty > 0.0f,
          "sampling: repetition_penalty must be finite and > 0 (1 = off), got ", p.repetition_penalty);
  require(std::isfinite(p.presence_penalty), "sampling: presence_penalty must be finite, got ",
          p.presence_penalty);
  require(std::isfinite(p.frequency_penalty), "sampling: frequency_penalty must be finite, got ",
          p.frequency_penalty);
  require(p.repeat_last_n >= -1, "sampling: repeat_last_n must be >= -1 (-1 = whole history), got ",
          p.repeat_last_n);
  require(p.top_logprobs >= 0, "sampling: top_logprobs must be >= 0, got ", p.top_logprobs);
  for (const auto& [token, bias] : p.logit_bias) {
    require(token >= 0, "sampling: logit_bias token must be >= 0, got ", token);
    require(!std::isnan(bias) && bias != INFINITY, "sampling: logit_bias of token ", token,
            " must be a number or -inf, got ", bias);
  }
}

bool penalties_are_neutral(const SamplingParams& p) {
  return p.repeat_last_n == 0 ||
         (p.repetition_penalty == 1.0f && p.presence_penalty == 0.0f && p.frequency_penalty == 0.0f);
}

}  // namespace bifurcate::sampling
