#include "sampling/sampler.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>

#include "sampling/penalties.h"
#include "sampling/random.h"
#include "util/error.h"

namespace bifurcate::sampling {

namespace {

// First sorted prefixes of the top-p walk hold this many candidates; each
// extension doubles, so a peaked distribution sorts only a few dozen tokens.
constexpr std::size_t kTopPFirstChunk = 64;

// log(sum(exp(logits))), the log-softmax normaliser, accumulated in double.
// NaN or +inf logits, or all -inf, have no distribution: Error naming the index.
double log_normalizer(std::span<const float> logits) {
  require(!logits.empty(), "sampling: empty logits");
  float max = -std::numeric_limits<float>::infinity();
  for (float v : logits) max = std::max(max, v);  // skips NaN; caught by the sum below
  double sum = 0.0;
  for (float v : logits) sum += static_cast<double>(std::exp(v - max));
  if (std::isfinite(max) && std::isfinite(sum)) return static_cast<double>(max) + std::log(sum);
  for (std::size_t i = 0; i < logits.size(); ++i) {
    require(!std::isnan(logits[i]) && logits[i] != std::numeric_limits<float>::infinity(), "sampling: logit ",
            i, " of ", logits.size(), " is ", logits[i]);
  }
  throw Error(str("sampling: all ", logits.size(), " logits are -inf"));
}

}  // namespace

Sampler::Sampler(const SamplingParams& params, uint64_t stream_id) : params_(params), stream_id_(stream_id) {
  validate(params_);
}

TokenChoice Sampler::sample(std::span<const float> logits, std::span<const int32_t> history) {
  const double log_norm = log_normalizer(logits);
  penalize_logits(logits, history);
  const double uniform = random_uniform(params_.seed, stream_id_, draws_++);
  int32_t token;
  if (params_.temperature == 0.0f) {
    token = greedy_token();
  } else {
    token = draw(truncate_candidates(), uniform);
  }
  TokenChoice choice{token, static_cast<float>(static_cast<double>(logits[token]) - log_norm), {}};
  if (params_.top_logprobs > 0) choice.top = top_raw_logprobs(logits, log_norm);
  return choice;
}

std::vector<std::pair<int32_t, double>> Sampler::distribution(std::span<const float> logits,
                                                              std::span<const int32_t> history) {
  log_normalizer(logits);  // same input checks as sample()
  penalize_logits(logits, history);
  if (params_.temperature == 0.0f) return {{greedy_token(), 1.0}};
  const std::size_t n = truncate_candidates();
  double total = 0.0;
  for (std::size_t i = 0; i < n; ++i) total += candidates_[i].weight;
  std::vector<std::pair<int32_t, double>> result;
  result.reserve(n);
  for (std::size_t i = 0; i < n; ++i) result.emplace_back(candidates_[i].token, candidates_[i].weight / total);
  std::sort(result.begin(), result.end(), [](const auto& a, const auto& b) {
    return a.second > b.second || (a.second == b.second && a.first < b.first);
  });
  return result;
}

void Sampler::penalize_logits(std::span<const float> logits, std::span<const int32_t> history) {
  penalized_.assign(logits.begin(), logits.end());
  apply_penalties(params_, history, penalized_, window_scratch_);
}

int32_t Sampler::greedy_token() const {
  // max_element returns the first maximum: ties go to the lowest id.
  return static_cast<int32_t>(std::max_element(penalized_.begin(), penalized_.end()) - penalized_.begin());
}

std::size_t Sampler::truncate_candidates() {
  const std::size_t vocab = penalized_.size();
  candidates_.resize(vocab);
  for (std::size_t i = 0; i < vocab; ++i) candidates_[i] = {penalized_[i], 0.0f, static_cast<int32_t>(i)};
  std::size_t n = apply_top_k();
  const bool sorted = n < vocab;
  apply_weights(n);
  n = apply_min_p(n);
  return apply_top_p(n, sorted);
}

namespace {
// Larger logit first, lower id on ties: a strict total order, so the kept
// set and the order of any sorted prefix are fully determined.
template <class C>
bool more_likely(const C& a, const C& b) {
  return a.logit > b.logit || (a.logit == b.logit && a.token < b.token);
}
}  // namespace

// Leaves candidates_[0, k) as the k most likely, sorted, when top-k is on
// and smaller than the vocabulary; otherwise keeps everything unsorted.
std::size_t Sampler::apply_top_k() {
  const std::size_t vocab = candidates_.size();
  const auto k = static_cast<std::size_t>(params_.top_k);
  if (k == 0 || k >= vocab) return vocab;
  const auto kth = candidates_.begin() + static_cast<std::ptrdiff_t>(k);
  std::nth_element(candidates_.begin(), kth, candidates_.end(), more_likely<Candidate>);
  std::sort(candidates_.begin(), kth, more_likely<Candidate>);
  return k;
}

// Weights relative to the most likely kept token, whose weight is exactly 1.
void Sampler::apply_weights(std::size_t n) {
  float max = -std::numeric_limits<float>::infinity();
  for (std::size_t i = 0; i < n; ++i) max = std::max(max, candidates_[i].logit);
  // Divide rather than multiply by 1/T: for a denormal T, 1/T is inf and 0 * inf is NaN.
  const float temperature = params_.temperature;
  for (std::size_t i = 0; i < n; ++i) {
    candidates_[i].weight = std::exp((candidates_[i].logit - max) / temperature);
  }
}

// p >= min_p * p_max is weight >= min_p because p_max has weight 1.
// remove_if keeps the survivors' order, so a sorted prefix stays sorted.
std::size_t Sampler::apply_min_p(std::size_t n) {
  if (params_.min_p <= 0.0f) return n;
  const float threshold = params_.min_p;
  const auto end = std::remove_if(candidates_.begin(), candidates_.begin() + static_cast<std::ptrdiff_t>(n),
                                  [threshold](const Candidate& c) { return c.weight < threshold; });
  return static_cast<std::size_t>(end - candidates_.begin());
}

// Keeps the shortest most-likely-first prefix of candidates_[0, n) whose
// weight reaches top_p of the total. When the candidates are not sorted yet,
// sorts only as far as the walk needs, in chunks (nth_element, then sort).
std::size_t Sampler::apply_top_p(std::size_t n, bool sorted) {
  if (params_.top_p >= 1.0f || n == 0) return n;
  double total = 0.0;
  for (std::size_t i = 0; i < n; ++i) total += candidates_[i].weight;
  const double target = static_cast<double>(params_.top_p) * total;
  const auto begin = candidates_.begin();
  std::size_t sorted_end = sorted ? n : 0;
  double mass = 0.0;
  std::size_t i = 0;
  while (i < n) {
    if (i == sorted_end) {
      const std::size_t grown = std::min(n, sorted_end + std::max(kTopPFirstChunk, sorted_end));
      const auto first = begin + static_cast<std::ptrdiff_t>(sorted_end);
      const auto last = begin + static_cast<std::ptrdiff_t>(grown);
      if (grown < n) {
        std::nth_element(first, last, begin + static_cast<std::ptrdiff_t>(n), more_likely<Candidate>);
      }
      std::sort(first, last, more_likely<Candidate>);
      sorted_end = grown;
    }
    mass += candidates_[i].weight;
    ++i;
    if (mass >= target) break;
  }
  return i;
}

// Inverse-CDF draw over candidates_[0, n) in their current order.
int32_t Sampler::draw(std::size_t n, double uniform) const {
  double total = 0.0;
  for (std::size_t i = 0; i < n; ++i) total += candidates_[i].weight;
  const double target = uniform * total;
  double mass = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    mass += candidates_[i].weight;
    if (mass > target) return candidates_[i].token;
  }
  // Rounding put target at the very top: take the last token with any weight
  // (the first candidate always has weight 1, so one exists).
  std::size_t i = n;
  while (i > 1 && candidates_[i - 1].weight == 0.0f) --i;
  return candidates_[i - 1].token;
}

std::vector<std::pair<int32_t, float>> Sampler::top_raw_logprobs(std::span<const float> logits, double log_norm) {
  const std::size_t vocab = logits.size();
  const std::size_t n = std::min(vocab, static_cast<std::size_t>(params_.top_logprobs));
  candidates_.resize(vocab);
  for (std::size_t i = 0; i < vocab; ++i) candidates_[i] = {logits[i], 0.0f, static_cast<int32_t>(i)};
  const auto nth = candidates_.begin() + static_cast<std::ptrdiff_t>(n);
  std::nth_element(candidates_.begin(), nth, candidates_.end(), more_likely<Candidate>);
  std::sort(candidates_.begin(), nth, more_likely<Candidate>);
  std::vector<std::pair<int32_t, float>> top;
  top.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    top.emplace_back(candidates_[i].token, static_cast<float>(candidates_[i].logit - log_norm));
  }
  return top;
}

}  // namespace bifurcate::sampling
