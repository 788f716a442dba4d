#include "sampling/sampler.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <limits>

#include "sampling/penalties.h"
#include "sampling/random.h"
#include "sampling/vocab_math.h"
#include "util/error.h"

namespace bifurcate::sampling {

namespace {

// Top-p's quickselect stops halving at this many candidates and sorts them.
constexpr std::size_t kTopPSortedTail = 64;

// log(sum(exp(logits))), the log-softmax normaliser. NaN or +inf logits, or
// all -inf, have no distribution: Error naming the offending index.
double log_normalizer(std::span<const float> logits) {
  require(!logits.empty(), "sampling: empty logits");
  const LogitRange range = scan_logits(logits);
  if (!range.has_nan && std::isfinite(range.max)) {
    return static_cast<double>(range.max) + std::log(sum_exp(logits, range.max));
  }
  for (std::size_t i = 0; i < logits.size(); ++i) {
    require(!std::isnan(logits[i]) && logits[i] != std::numeric_limits<float>::infinity(), "sampling: logit ",
            i, " of ", logits.size(), " is ", logits[i]);
  }
  throw Error(str("sampling: all ", logits.size(), " logits are -inf"));
}

// Larger logit first, lower id on ties: a strict total order, so the kept
// set and the order of any sorted prefix are fully determined.
template <class C>
bool more_likely(const C& a, const C& b) {
  return a.logit > b.logit || (a.logit == b.logit && a.token < b.token);
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
  const double total = candidate_mass(0, n);
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
  if (!params_.logit_bias.empty()) {
    for (const auto& [token, bias] : params_.logit_bias) {
      require(std::size_t(token) < penalized_.size(), "sampling: logit_bias token ", token,
              " is outside the vocabulary of ", penalized_.size());
      penalized_[std::size_t(token)] += bias;
    }
    require(std::any_of(penalized_.begin(), penalized_.end(), [](float x) { return x != -INFINITY; }),
            "sampling: logit_bias bans every token");
  }
  apply_penalties(params_, history, penalized_, window_scratch_);
}

int32_t Sampler::greedy_token() const {
  // max_element returns the first maximum: ties go to the lowest id.
  return static_cast<int32_t>(std::max_element(penalized_.begin(), penalized_.end()) - penalized_.begin());
}

std::size_t Sampler::truncate_candidates() {
  const std::size_t vocab = penalized_.size();
  const auto k = static_cast<std::size_t>(params_.top_k);
  if (k > 0 && k < vocab) return apply_top_p(apply_min_p(top_k_candidates(k)), /*sorted=*/true);
  return apply_top_p(all_candidates(), /*sorted=*/false);
}

// The k most likely tokens, sorted, with their weights: candidates_[0, k).
std::size_t Sampler::top_k_candidates(std::size_t k) {
  select_top(penalized_, k);
  const float max = candidates_[0].logit;
  for (std::size_t i = 0; i < k; ++i) {
    candidates_[i].weight = std::exp((candidates_[i].logit - max) / params_.temperature);
  }
  return k;
}

// candidates_[0, k) = the k most likely of `values`, sorted, weights unset.
// One pass with a heap of the k best so far, whose top is the least likely of
// them: most values lose one comparison with it, so this is O(vocab) for small k.
void Sampler::select_top(std::span<const float> values, std::size_t k) {
  candidates_.clear();
  for (std::size_t i = 0; i < values.size(); ++i) {
    const Candidate c{values[i], 0.0f, static_cast<int32_t>(i)};
    if (candidates_.size() < k) {
      candidates_.push_back(c);
      std::push_heap(candidates_.begin(), candidates_.end(), more_likely<Candidate>);
    } else if (more_likely(c, candidates_.front())) {
      std::pop_heap(candidates_.begin(), candidates_.end(), more_likely<Candidate>);
      candidates_.back() = c;
      std::push_heap(candidates_.begin(), candidates_.end(), more_likely<Candidate>);
    }
  }
  std::sort(candidates_.begin(), candidates_.end(), more_likely<Candidate>);
}

// Every token that passes min-p, unsorted, with its weight; weights of the
// whole vocabulary are one vectorised pass.
std::size_t Sampler::all_candidates() {
  const std::size_t vocab = penalized_.size();
  weights_.resize(vocab);
  exp_weights(penalized_, scan_logits(penalized_).max, params_.temperature, weights_);
  candidates_.resize(vocab);
  const float threshold = params_.min_p;
  std::size_t n = 0;
  for (std::size_t i = 0; i < vocab; ++i) {
    if (weights_[i] >= threshold) candidates_[n++] = {penalized_[i], weights_[i], static_cast<int32_t>(i)};
  }
  return n;
}

// Weights are relative to the most likely token, whose weight is exactly 1,
// so p >= min_p * p_max is weight >= min_p. remove_if keeps the survivors'
// order, so a sorted prefix stays sorted.
std::size_t Sampler::apply_min_p(std::size_t n) {
  if (params_.min_p <= 0.0f) return n;
  const float threshold = params_.min_p;
  const auto end = std::remove_if(candidates_.begin(), candidates_.begin() + static_cast<std::ptrdiff_t>(n),
                                  [threshold](const Candidate& c) { return c.weight < threshold; });
  return static_cast<std::size_t>(end - candidates_.begin());
}

// Keeps the shortest most-likely-first prefix of candidates_[0, n) whose
// weight reaches top_p of the total; returns its length. Sorted candidates
// are walked. Unsorted ones are never fully sorted: the range [lo, hi) that
// holds the boundary is narrowed first by a histogram of the weights, then by
// a quickselect on mass, and only the last few dozen are sorted. Invariant:
// everything before lo is more likely than [lo, hi) and kept, and
// mass(lo, hi) >= need. O(n) even when a flat distribution needs thousands.
std::size_t Sampler::apply_top_p(std::size_t n, bool sorted) {
  if (params_.top_p >= 1.0f || n == 0) return n;
  double need = static_cast<double>(params_.top_p) * candidate_mass(0, n);
  std::size_t lo = 0, hi = n;
  if (!sorted) {
    narrow_by_weight_buckets(lo, hi, need);
    const auto at = [&](std::size_t i) { return candidates_.begin() + static_cast<std::ptrdiff_t>(i); };
    while (hi - lo > kTopPSortedTail) {
      const std::size_t mid = lo + (hi - lo) / 2;
      std::nth_element(at(lo), at(mid), at(hi), more_likely<Candidate>);
      const double upper = candidate_mass(lo, mid);
      if (upper >= need) {
        hi = mid;
      } else {
        need -= upper;
        lo = mid;
      }
    }
    std::sort(at(lo), at(hi), more_likely<Candidate>);
  }
  double mass = 0.0;
  for (std::size_t i = lo; i < hi; ++i) {
    mass += candidates_[i].weight;
    if (mass >= need) return i + 1;
  }
  return hi;  // only reached through rounding: keep the whole range
}

double Sampler::candidate_mass(std::size_t begin, std::size_t end) const {
  double mass = 0.0;
  for (std::size_t i = begin; i < end; ++i) mass += candidates_[i].weight;
  return mass;
}

// Buckets by the top bits of the float weight (exponent + 3 mantissa bits:
// 8 buckets per octave), which are monotone in the weight and so in the
// logit. Finds the bucket where the running mass, most likely first, reaches
// `need`; moves the buckets above it to the front (kept) and that bucket
// after them, and narrows [lo, hi) to it.
void Sampler::narrow_by_weight_buckets(std::size_t& lo, std::size_t& hi, double& need) {
  constexpr int kShift = 20;  // 32 bits - sign - 8 exponent - 3 mantissa
  constexpr std::size_t kBuckets = std::size_t{1} << (31 - kShift);
  const auto bucket_of = [](float w) { return std::bit_cast<uint32_t>(w) >> kShift; };
  bucket_mass_.assign(kBuckets, 0.0);
  for (std::size_t i = lo; i < hi; ++i) bucket_mass_[bucket_of(candidates_[i].weight)] += candidates_[i].weight;
  std::size_t boundary = kBuckets;
  double above = 0.0;
  while (boundary > 0 && above + bucket_mass_[boundary - 1] < need) above += bucket_mass_[--boundary];
  if (boundary == 0) return;  // rounding: the walk over everything decides
  const uint32_t b = static_cast<uint32_t>(boundary - 1);
  const auto first = candidates_.begin() + static_cast<std::ptrdiff_t>(lo);
  const auto last = candidates_.begin() + static_cast<std::ptrdiff_t>(hi);
  const auto kept_end = std::partition(first, last, [&](const Candidate& c) { return bucket_of(c.weight) > b; });
  const auto boundary_end =
      std::partition(kept_end, last, [&](const Candidate& c) { return bucket_of(c.weight) == b; });
  lo = static_cast<std::size_t>(kept_end - candidates_.begin());
  hi = static_cast<std::size_t>(boundary_end - candidates_.begin());
  need -= above;
}

// Inverse-CDF draw over candidates_[0, n) in their current order.
int32_t Sampler::draw(std::size_t n, double uniform) const {
  const double target = uniform * candidate_mass(0, n);
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
  const std::size_t n = std::min(logits.size(), static_cast<std::size_t>(params_.top_logprobs));
  select_top(logits, n);
  std::vector<std::pair<int32_t, float>> top;
  top.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    top.emplace_back(candidates_[i].token, static_cast<float>(candidates_[i].logit - log_norm));
  }
  return top;
}

}  // namespace bifurcate::sampling
