#include "sampling/penalties.h"

#include <algorithm>
#include <cstddef>

#include "util/error.h"

namespace bifurcate::sampling {

namespace {

std::span<const int32_t> penalty_window(std::span<const int32_t> history, int repeat_last_n) {
  if (repeat_last_n < 0 || static_cast<std::size_t>(repeat_last_n) >= history.size()) return history;
  return history.subspan(history.size() - static_cast<std::size_t>(repeat_last_n));
}

float penalize(float logit, int count, const SamplingParams& p) {
  logit = logit > 0.0f ? logit / p.repetition_penalty : logit * p.repetition_penalty;
  return logit - (p.presence_penalty + p.frequency_penalty * static_cast<float>(count));
}

}  // namespace

void apply_penalties(const SamplingParams& params, std::span<const int32_t> history, std::span<float> logits,
                     std::vector<int32_t>& window_scratch) {
  if (penalties_are_neutral(params)) return;
  const std::span<const int32_t> window = penalty_window(history, params.repeat_last_n);
  // Sorting a copy of the window groups equal tokens, so counts need no
  // vocabulary-sized table.
  window_scratch.assign(window.begin(), window.end());
  std::sort(window_scratch.begin(), window_scratch.end());
  const std::size_t n = window_scratch.size();
  for (std::size_t begin = 0; begin < n;) {
    const int32_t token = window_scratch[begin];
    require(token >= 0 && static_cast<std::size_t>(token) < logits.size(), "sampling: history token ", token,
            " is outside the vocabulary of ", logits.size(), " logits");
    std::size_t end = begin + 1;
    while (end < n && window_scratch[end] == token) ++end;
    logits[token] = penalize(logits[token], static_cast<int>(end - begin), params);
    begin = end;
  }
}

}  // namespace bifurcate::sampling
