// Repetition, presence and frequency penalties over a window of the history.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "sampling/sampling_params.h"

namespace bifurcate::sampling {

// For every distinct token t among the last `repeat_last_n` tokens of
// `history` (all of it if -1, none if 0), occurring count(t) times there:
//   logit = logit > 0 ? logit / repetition_penalty : logit * repetition_penalty   (llama.cpp/CTRL)
//   logit -= presence_penalty * (count > 0) + frequency_penalty * count           (OpenAI)
// in that order. `window_scratch` is reused storage (no allocation once grown).
// Throws Error if a token in the window is outside [0, logits.size()); with
// neutral penalties (see penalties_are_neutral) nothing is read or checked.
void apply_penalties(const SamplingParams& params, std::span<const int32_t> history, std::span<float> logits,
                     std::vector<int32_t>& window_scratch);

}  // namespace bifurcate::sampling
