#include "engine/request_state.h"

#include "engine/engine_impl.h"

namespace bifurcate::engine {

int ActiveRequest::running_samples() const {
  int n = 0;
  for (const Sequence& s : samples) n += s.running() ? 1 : 0;
  return n;
}

GenerationResult collect_result(ActiveRequest& request) {
  const GenerationRequest& r = *request.submission->request;
  GenerationResult out;
  out.stats = request.stats;
  for (Sequence& s : request.samples) {
    out.stats.generated_tokens += int(s.result().tokens.size());
    out.samples.push_back(s.take_result());
  }
  // best_of without a ranking still keeps the best: OpenAI's semantics.
  const Ranking ranking = (int(out.samples.size()) > r.n && r.ranking == Ranking::none) ? Ranking::mean_logprob : r.ranking;
  rank_samples(out.samples, ranking, r.n);
  return out;
}

}  // namespace bifurcate::engine
