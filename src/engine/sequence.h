// One sample of a request between steps: its sampler, detokenizer, stop
// matcher, KV leaf and history. The scheduler owns these; a Sequence knows
// nothing of batches or blocks beyond the id of its leaf.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <vector>

#include "bifurcate/engine.h"
#include "engine/stop_matcher.h"
#include "kv/kv_cache.h"
#include "sampling/sampler.h"
#include "tokenizer/tokenizer.h"

namespace bifurcate::engine {

// What every sample of one request shares.
struct SequenceRules {
  const tokenizer::Tokenizer* tokenizer = nullptr;
  const GenerationCallbacks* callbacks = nullptr;
  bool ignore_eos = false;
  int max_new_tokens = 0;
  bool top_logprobs = false;
};

class Sequence {
 public:
  // Sample `index` of a request whose prompt is `prompt` (its penalties' history starts there).
  Sequence(int index, const sampling::SamplingParams& params, const SequenceRules& rules,
           const std::vector<std::string>& stop, std::span<const int32_t> prompt);

  kv::SegmentId leaf = kv::kNoSegment;  // where its next token's K/V goes; kNoSegment once finished
  bool running() const { return running_; }
  int32_t next_token() const { return next_token_; }  // sampled, not yet fed to the model
  const Sample& result() const { return result_; }
  Sample take_result() { return std::move(result_); }

  // Samples the next token from `logits`, reports it (on_token, on_text) and
  // applies the stop rules; returns the reason when this token ends the sample
  // (the caller then calls finish()).
  std::optional<FinishReason> accept(std::span<const float> logits);
  // Ends the sample: flushes held-back text (unless a stop string cut it),
  // records the reason and calls on_finish. The caller releases the leaf.
  void finish(FinishReason reason);

 private:
  void emit(const std::string& text);

  SequenceRules rules_;
  sampling::Sampler sampler_;
  tokenizer::StreamingDetokenizer detokenizer_;
  StopMatcher stop_;
  std::vector<int32_t> history_;  // prompt + generated, for penalties
  int32_t next_token_ = -1;
  bool running_ = true;
  Sample result_;
};

}  // namespace bifurcate::engine
