// A request inside the engine: what the caller submitted (Submission, shared
// by the caller's thread and the model thread) and, once admitted, its state
// between steps (ActiveRequest, the model thread's alone).
#pragma once

#include <cstddef>
#include <exception>
#include <memory>
#include <vector>

#include "bifurcate/engine.h"
#include "engine/completion.h"
#include "engine/sequence.h"
#include "kv/prefix_cache.h"
#include "sampling/sampling_params.h"

namespace bifurcate::engine {

// Written by the caller before it is queued, read-only afterwards except
// `done`, which the model thread fulfils exactly once.
struct Submission {
  const GenerationRequest* request = nullptr;      // the caller's; it waits in generate() until done
  const GenerationCallbacks* callbacks = nullptr;  // likewise
  std::vector<int32_t> prompt;
  sampling::SamplingParams params;
  int n_samples = 0;       // max(n, best_of)
  int max_new_tokens = 0;  // max_tokens, capped by the context
  double t_submit = 0;
  Completion<GenerationResult> done;
};

enum class RequestPhase { prefill, decode };

struct ActiveRequest {
  std::shared_ptr<Submission> submission;
  RequestPhase phase = RequestPhase::prefill;
  // Prefix cache: the node whose path this request references (kPrefixRoot: none).
  kv::PrefixNodeId node = kv::kPrefixRoot;
  int cached_tokens = 0;                    // prompt tokens matched in the cache (not prefilled)
  kv::SegmentId prompt_segment = kv::kNoSegment;  // receives the unmatched prompt while prefilling
  int prefilled = 0;                        // tokens of the unmatched prompt done so far
  std::vector<Sequence> samples;            // empty until the prompt is prefilled
  GenerationStats stats;
  double t_admit = 0, t_prefilled = 0;
  int waiters = 0;             // queued requests waiting for this prompt's prefill (counted by admit())
  bool decoded_this_step = false;
  std::exception_ptr error;  // set when the request failed; its KV is already released

  int prompt_tokens() const { return int(submission->prompt.size()); }
  int unmatched_tokens() const { return prompt_tokens() - cached_tokens; }
  int running_samples() const;
  bool finished() const { return phase == RequestPhase::decode && running_samples() == 0; }
};

// The ranked result of a request whose samples have all finished.
GenerationResult collect_result(ActiveRequest& request);

}  // namespace bifurcate::engine
