// One scheduler step's work on the model thread: admission (worst-case KV
// against the budget, after eviction), the mixed batch, and what each row's
// logits do to its request.
#include <algorithm>

#include "engine/engine_impl.h"
#include "engine/scheduler.h"
#include "util/error.h"
#include "util/timer.h"

namespace bifurcate::engine {

std::size_t Scheduler::worst_case_blocks(int prompt_tokens, int matched, int n_samples, int max_new_tokens) const {
  const kv::KvCache& c = e_.cache;
  if (!bifurcated_) return c.blocks_for_tokens(prompt_tokens) + size_t(n_samples) * c.blocks_for_tokens(prompt_tokens + max_new_tokens);
  return c.blocks_for_tokens(prompt_tokens - matched) + size_t(n_samples) * c.blocks_for_tokens(max_new_tokens);
}

// Blocks request `r` may still take from the pool before it finishes.
std::size_t Scheduler::promised_blocks(const ActiveRequest& r) const {
  const kv::KvCache& c = e_.cache;
  const Submission& s = *r.submission;
  if (r.phase == RequestPhase::prefill) {
    const size_t all = worst_case_blocks(r.prompt_tokens(), r.cached_tokens, s.n_samples, s.max_new_tokens);
    return all - size_t(c.n_blocks(r.prompt_segment));
  }
  const size_t leaf_cap = c.blocks_for_tokens(bifurcated_ ? s.max_new_tokens : r.prompt_tokens() + s.max_new_tokens);
  size_t promised = 0;
  for (const Sequence& q : r.samples)
    if (q.running() && q.leaf != kv::kNoSegment) promised += leaf_cap - size_t(c.n_blocks(q.leaf));
  return promised;
}

// The head fits when the blocks nobody can take away (in use and not
// evictable, with its matched path pinned) plus what running requests may
// still take plus its own worst case stay within the budget. When nothing
// runs and its match does not fit (the matched node may be longer than the
// match), it is admitted cold: then everything cached is evictable.
std::optional<Scheduler::Admission> Scheduler::plan_admission(const Submission& s) const {
  const kv::KvCache& c = e_.cache;
  const int n_prompt = int(s.prompt.size());
  size_t promised = 0;
  for (const auto& r : active_) promised += r->error ? 0 : promised_blocks(*r);
  const size_t evictable = prefix_.evictable_blocks();
  const size_t pinned = c.blocks_in_use() - evictable;
  const size_t capacity = c.capacity_blocks();
  Admission a;
  if (use_prefix_cache_) {
    a.match = prefix_.match(s.prompt, n_prompt - 1);
    const size_t need = worst_case_blocks(n_prompt, a.match.tokens, s.n_samples, s.max_new_tokens);
    if (pinned + prefix_.unreferenced_blocks_on_path(a.match.node) + promised + need <= capacity) return a;
  }
  a.match = {};
  const size_t need = worst_case_blocks(n_prompt, 0, s.n_samples, s.max_new_tokens);
  if (pinned + promised + need <= capacity) return a;
  return std::nullopt;
}

// The request whose prompt, being prefilled now, shares at least one more
// whole block with `s`'s prompt than the prefix cache does, or null: `s` then
// waits for that prefill to land in the cache instead of prefilling the same
// tokens again (requests arriving together with one system prompt share it
// from the first).
ActiveRequest* Scheduler::awaited_prefill(const Submission& s) const {
  const int block = e_.cache.layout().block_tokens;
  const int limit = int(s.prompt.size()) - 1;
  const int matched = prefix_.match(s.prompt, limit).tokens;
  for (const auto& r : active_) {
    if (r->error || r->phase != RequestPhase::prefill) continue;
    const std::vector<int32_t>& other = r->submission->prompt;
    const auto [mine, theirs] = std::mismatch(s.prompt.begin(), s.prompt.end(), other.begin(), other.end());
    const int common = std::min(int(mine - s.prompt.begin()), limit) / block * block;
    if (common > matched) return r.get();
  }
  return nullptr;
}

// In FIFO order. A request waiting for a prefill in flight (above) is passed
// over, keeping its place: it waits at most for that prefill (which counts
// it among its waiters, for build_batch's order). Otherwise the first request
// that does not fit stops admission, so a big request is never overtaken by
// later, smaller ones.
void Scheduler::admit() {
  for (auto& r : active_) r->waiters = 0;
  for (auto it = waiting_.begin(); it != waiting_.end();) {
    if (use_prefix_cache_) {
      if (ActiveRequest* awaited = awaited_prefill(**it)) {
        ++awaited->waiters;
        ++it;
        continue;
      }
    }
    const std::optional<Admission> admission = plan_admission(**it);
    if (!admission) break;
    std::shared_ptr<Submission> s = std::move(*it);
    it = waiting_.erase(it);
    {
      std::lock_guard lock(mutex_);
      status_.queued_requests = --queued_;
    }
    start(std::move(s), *admission);
  }
}

void Scheduler::start(std::shared_ptr<Submission> submission, const Admission& admission) {
  auto r = std::make_unique<ActiveRequest>();
  r->submission = std::move(submission);
  r->t_admit = now_seconds();
  r->stats.prompt_tokens = r->prompt_tokens();
  r->stats.queue_seconds = r->t_admit - r->submission->t_submit;
  try {
    if (admission.match.tokens > 0) r->node = prefix_.acquire(admission.match);
    r->cached_tokens = admission.match.tokens;
    r->stats.cached_prompt_tokens = r->cached_tokens;
    size_t promised = 0;
    for (const auto& other : active_) promised += other->error ? 0 : promised_blocks(*other);
    make_room(promised + worst_case_blocks(r->prompt_tokens(), r->cached_tokens, r->submission->n_samples,
                                           r->submission->max_new_tokens));
    r->prompt_segment = r->node == kv::kPrefixRoot ? e_.cache.create_root() : e_.cache.fork(prefix_.segment(r->node));
  } catch (...) {
    fail(*r, std::current_exception());
  }
  active_.push_back(std::move(r));
}

// Decode rows first (one per running sample), then prefill chunks with what
// is left of the step's token budget — at least a quarter of it, so new
// prompts progress even under a full decode batch.
//
// Prefill order: fewest tokens left per request that gets its first token
// when they are done (Smith's rule for mean TTFT; the request itself plus the
// queued requests waiting for this prefill to reach the prefix cache). A
// 64-token question admitted behind other groups' 2048-token system prompts
// goes first, and a system prompt that 7 queued requests wait for counts as
// 2048 / 8 (bench-serve's default workload: docs/perf-notes.md). So that no
// prompt is passed over forever, the longest-admitted one still prefilling
// is always given at least an eighth of the budget.
void Scheduler::build_batch() {
  batch_.clear();
  entries_.clear();
  int decode_rows = 0;
  prefill_order_.clear();
  for (auto& p : active_) {
    ActiveRequest& r = *p;
    r.decoded_this_step = false;
    if (r.error) continue;
    if (r.phase == RequestPhase::prefill) {
      prefill_order_.push_back(&r);
      continue;
    }
    for (int i = 0; i < int(r.samples.size()); ++i) {
      const Sequence& q = r.samples[size_t(i)];
      if (!q.running()) continue;
      const int32_t token = q.next_token();
      batch_.add(q.leaf, std::span(&token, 1), model::Batch::Logits::last);
      entries_.push_back(Entry{&r, i, 1, true});
      ++decode_rows;
    }
  }
  const int budget = e_.options.step_tokens;
  ActiveRequest* const oldest = prefill_order_.empty() ? nullptr : prefill_order_.front();  // admission order
  const auto left = [](const ActiveRequest* r) { return r->unmatched_tokens() - r->prefilled; };
  std::stable_sort(prefill_order_.begin(), prefill_order_.end(), [&](const ActiveRequest* a, const ActiveRequest* b) {
    return int64_t(left(a)) * (1 + b->waiters) < int64_t(left(b)) * (1 + a->waiters);
  });
  int allowance = std::max(budget - decode_rows, budget / 4);
  int reserved = oldest == nullptr ? 0 : std::min({left(oldest), budget / 8, e_.options.prefill_chunk});
  for (ActiveRequest* p : prefill_order_) {
    ActiveRequest& r = *p;
    if (p == oldest) reserved = 0;
    const int remaining = left(p);
    const int n = std::min({remaining, allowance - reserved, e_.options.prefill_chunk});
    if (n <= 0) continue;
    const bool last = n == remaining;
    const std::span<const int32_t> tokens =
        std::span(r.submission->prompt).subspan(size_t(r.cached_tokens + r.prefilled), size_t(n));
    batch_.add(r.prompt_segment, tokens, last ? model::Batch::Logits::last : model::Batch::Logits::none);
    entries_.push_back(Entry{&r, -1, n, last});
    allowance -= n;
  }
}

void Scheduler::run_batch() {
  const size_t vocab = size_t(e_.info.n_vocab);
  logits_.resize(batch_.logit_rows.size() * vocab);
  const double forward_before = e_.transformer.timings().total;
  try {
    e_.transformer.forward(e_.cache, batch_, logits_.data(), e_.pool);
  } catch (...) {
    for (const Entry& entry : entries_) fail(*entry.request, std::current_exception());
    return;
  }
  if (std::all_of(entries_.begin(), entries_.end(), [](const Entry& entry) { return entry.sample >= 0; }))
    note_decode_step(e_.transformer.timings().total - forward_before, e_.transformer.last_work());
  const size_t in_use = e_.cache.bytes_in_use();
  size_t logit_row = 0;
  for (const Entry& entry : entries_) {
    ActiveRequest& r = *entry.request;
    const float* logits = entry.logits ? logits_.data() + (logit_row++) * vocab : nullptr;
    if (r.error) continue;
    r.stats.kv_bytes_peak = std::max(r.stats.kv_bytes_peak, in_use);
    try {
      if (entry.sample >= 0) {
        r.decoded_this_step = true;
        const std::optional<FinishReason> reason =
            r.samples[size_t(entry.sample)].accept(std::span(logits, vocab));
        if (reason) finish_sample(r, entry.sample, *reason);
      } else {
        r.prefilled += entry.rows;
        if (entry.logits) start_decoding(r, logits);
      }
    } catch (...) {
      fail(r, std::current_exception());
    }
  }
  for (auto& p : active_) {
    ActiveRequest& r = *p;
    if (r.error || !r.decoded_this_step) continue;
    ++r.stats.decode_steps;
    try {
      if (r.submission->callbacks->on_step) r.submission->callbacks->on_step(r.stats.decode_steps, r.running_samples());
    } catch (...) {
      fail(r, std::current_exception());
    }
  }
}

// The prompt is in the cache: give every sample its leaf — an O(1) fork of
// the prompt's segment (bifurcated; the segment joins the prefix cache) or a
// private copy of the whole path (replicated; the prompt segment is then
// freed) — and draw every sample's first token from the prompt's logits.
void Scheduler::start_decoding(ActiveRequest& r, const float* logits) {
  const Submission& s = *r.submission;
  r.t_prefilled = now_seconds();
  r.stats.prefill_seconds = r.t_prefilled - r.t_admit;
  const kv::SegmentId prompt = r.prompt_segment;
  make_samples(r);
  if (bifurcated_) {
    for (Sequence& q : r.samples) {
      q.leaf = e_.cache.fork(prompt);
      r.prompt_segment = kv::kNoSegment;  // now freed with its last leaf (or held by the prefix cache)
    }
    if (use_prefix_cache_) {
      const std::span<const int32_t> own = std::span(s.prompt).subspan(size_t(r.cached_tokens));
      const kv::PrefixNodeId node = prefix_.insert(r.node, prompt, own);
      if (node >= 0) {
        prefix_.acquire(node);
        if (r.node != kv::kPrefixRoot) prefix_.release(r.node);
        r.node = node;
      }
    }
  } else {
    for (Sequence& q : r.samples) q.leaf = e_.cache.copy_path(prompt);
    e_.cache.release(prompt);
    r.prompt_segment = kv::kNoSegment;
  }
  const std::span<const float> row(logits, size_t(e_.info.n_vocab));
  for (int i = 0; i < int(r.samples.size()); ++i) {
    const std::optional<FinishReason> reason = r.samples[size_t(i)].accept(row);
    if (!r.stats.first_token_seconds) r.stats.first_token_seconds = now_seconds() - s.t_submit;
    if (reason) finish_sample(r, i, *reason);
  }
}

}  // namespace bifurcate::engine
