// One sample's token sampler.
//
// Pipeline of sample(), in this order:
//   0. logit_bias added to a copy of the logits
//   1. penalties (repetition, presence, frequency) on the biased logits
//   2. temperature == 0: greedy, argmax of the penalised logits (ties → lowest id); stop here
//   3. top-k: keep the k largest penalised logits (ties → lower id first)
//   4. temperature: divide by it
//   5. softmax over the kept tokens
//   6. min-p: keep tokens with p >= min_p * p_max
//   7. top-p: keep the smallest most-likely-first prefix whose mass is >= top_p of what is left
//   8. draw one token in proportion to the kept probabilities
// The reported logprobs are always those of the RAW logits (the model's own
// distribution), whatever the steps above did.
//
// Randomness: call number c of sample() uses random_uniform(seed, stream_id, c)
// (sampling/random.h), one draw per call, greedy included, so token c of a
// sample depends only on (seed, stream_id, c) and its logits and history.
#pragma once

#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "sampling/sampling_params.h"

namespace bifurcate::sampling {

struct TokenChoice {
  int32_t token;
  float logprob;                                // log softmax of the raw logits at `token`
  std::vector<std::pair<int32_t, float>> top;   // top_logprobs alternatives (token, raw logprob), descending
};

class Sampler {
 public:
  // Throws Error if `params` is invalid (see validate()).
  Sampler(const SamplingParams& params, uint64_t stream_id);

  // logits: [vocab], the model's output for this sample's next token.
  // history: this sample's tokens so far (prompt + generated), for the penalties.
  // Deterministic; allocates only to grow its reused buffers (and `top`).
  // Throws Error on empty logits, NaN or +inf logits, all logits -inf, or
  // (when penalties are on) a history token or a logit_bias token outside
  // the vocabulary, or a logit_bias that leaves every token at -inf.
  TokenChoice sample(std::span<const float> logits, std::span<const int32_t> history);

  // The distribution sample() would draw from next (after steps 1–7), as
  // (token, probability) pairs summing to 1, most likely first. Does not
  // consume a draw. For inspection and tests.
  std::vector<std::pair<int32_t, double>> distribution(std::span<const float> logits,
                                                       std::span<const int32_t> history);

  const SamplingParams& params() const { return params_; }
  uint64_t draws() const { return draws_; }

 private:
  struct Candidate {
    float logit;   // penalised logit
    float weight;  // exp((logit - max_logit) / temperature), unnormalised
    int32_t token;
  };

  void penalize_logits(std::span<const float> logits, std::span<const int32_t> history);
  int32_t greedy_token() const;
  // Steps 3–7 on penalized_: leaves the kept tokens in candidates_[0, n) and returns n.
  std::size_t truncate_candidates();
  std::size_t top_k_candidates(std::size_t k);
  std::size_t all_candidates();
  void select_top(std::span<const float> values, std::size_t k);
  std::size_t apply_min_p(std::size_t n);
  std::size_t apply_top_p(std::size_t n, bool sorted);
  double candidate_mass(std::size_t begin, std::size_t end) const;
  void narrow_by_weight_buckets(std::size_t& lo, std::size_t& hi, double& need);
  int32_t draw(std::size_t n, double uniform) const;
  std::vector<std::pair<int32_t, float>> top_raw_logprobs(std::span<const float> logits, double log_norm);

  SamplingParams params_;
  uint64_t stream_id_;
  uint64_t draws_ = 0;
  // Reused per call, sized to the vocabulary.
  std::vector<float> penalized_;
  std::vector<float> weights_;
  std::vector<Candidate> candidates_;
  std::vector<double> bucket_mass_;
  std::vector<int32_t> window_scratch_;
};

}  // namespace bifurcate::sampling
