// The scheduler's thread, queue and request lifecycle; the step's admission
// and batch are in scheduler_step.cpp.
#include "engine/scheduler.h"

#include "engine/engine_impl.h"
#include "util/error.h"
#include "util/timer.h"

namespace bifurcate::engine {

Scheduler::Scheduler(Engine::Impl& engine)
    : e_(engine),
      bifurcated_(engine.options.attention == AttentionMode::bifurcated),
      use_prefix_cache_(engine.options.prefix_cache && bifurcated_),
      prefix_(engine.cache) {
  status_.kv_bytes_budget = e_.cache.budget_bytes();
  thread_ = std::thread([this] { loop(); });
}

Scheduler::~Scheduler() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void Scheduler::submit(std::shared_ptr<Submission> submission) {
  {
    std::lock_guard lock(mutex_);
    require(!stopping_, "the engine is shutting down");
    if (queued_ >= e_.options.max_queued_requests)
      throw Overloaded(str("the queue is full (", e_.options.max_queued_requests, " requests waiting)"));
    ++queued_;
    status_.queued_requests = queued_;
    incoming_.push_back(std::move(submission));
  }
  wake_.notify_one();
}

void Scheduler::run_on_model_thread(const std::function<void()>& run) {
  require(std::this_thread::get_id() != thread_.get_id(), "an engine call from inside a callback (the model thread)");
  auto task = std::make_shared<Task>();
  task->run = run;
  {
    std::lock_guard lock(mutex_);
    require(!stopping_, "the engine is shutting down");
    tasks_.push_back(task);
  }
  wake_.notify_one();
  task->done.get();
}

EngineStatus Scheduler::status() const {
  std::lock_guard lock(mutex_);
  return status_;
}

void Scheduler::loop() {
  while (true) {
    std::deque<std::shared_ptr<Task>> tasks;
    {
      std::unique_lock lock(mutex_);
      // waiting_ and active_ are this thread's own: reading them here is safe.
      wake_.wait(lock, [this] {
        return stopping_ || !incoming_.empty() || !tasks_.empty() || !active_.empty() || !waiting_.empty();
      });
      if (stopping_) break;
      for (auto& s : incoming_) waiting_.push_back(std::move(s));
      incoming_.clear();
      tasks.swap(tasks_);
    }
    for (auto& task : tasks) {
      try {
        task->run();
        task->done.set_value(true);
      } catch (...) {
        task->done.set_exception(std::current_exception());
      }
    }
    step();
  }
  shut_down();
}

void Scheduler::shut_down() {
  const auto error = std::make_exception_ptr(Error("the engine shut down before the request finished"));
  for (auto& r : active_) {
    release_kv(*r);
    r->submission->done.set_exception(error);
  }
  active_.clear();
  std::lock_guard lock(mutex_);
  for (auto& s : waiting_) s->done.set_exception(error);
  for (auto& s : incoming_) s->done.set_exception(error);
  for (auto& t : tasks_) t->done.set_exception(error);
  waiting_.clear(), incoming_.clear(), tasks_.clear();
}

void Scheduler::step() {
  const double t_begin = now_seconds();
  drop_cancelled();
  cancel_waiting();
  admit();
  build_batch();
  if (batch_.rows() > 0) run_batch();
  complete_finished(now_seconds() - t_begin);
}

// A cancelled request's running samples finish as `cancelled` (one still
// prefilling gets its n samples, empty); its KV is freed now.
void Scheduler::drop_cancelled() {
  for (auto& p : active_) {
    ActiveRequest& r = *p;
    const std::atomic<bool>* cancel = r.submission->callbacks->cancel;
    if (r.error || cancel == nullptr || !cancel->load()) continue;
    try {
      if (r.phase == RequestPhase::prefill) {
        release_kv(r);
        make_samples(r);
      }
      for (int i = 0; i < int(r.samples.size()); ++i)
        if (r.samples[size_t(i)].running()) finish_sample(r, i, FinishReason::cancelled);
    } catch (...) {
      fail(r, std::current_exception());
    }
  }
}

// Cancelled requests still waiting for admission leave the queue at once.
void Scheduler::cancel_waiting() {
  for (auto it = waiting_.begin(); it != waiting_.end();) {
    const std::atomic<bool>* cancel = (*it)->callbacks->cancel;
    if (cancel == nullptr || !cancel->load()) {
      ++it;
      continue;
    }
    {
      std::lock_guard lock(mutex_);
      status_.queued_requests = --queued_;
    }
    ActiveRequest r;
    r.submission = *it;
    r.stats.prompt_tokens = r.prompt_tokens();
    r.stats.queue_seconds = now_seconds() - r.submission->t_submit;
    try {
      make_samples(r);
      for (int i = 0; i < int(r.samples.size()); ++i) finish_sample(r, i, FinishReason::cancelled);
      r.submission->done.set_value(collect_result(r));
    } catch (...) {
      r.submission->done.set_exception(std::current_exception());
    }
    it = waiting_.erase(it);
  }
}

void Scheduler::make_samples(ActiveRequest& r) {
  const Submission& s = *r.submission;
  SequenceRules rules;
  rules.tokenizer = e_.tokenizer.get();
  rules.callbacks = s.callbacks;
  rules.ignore_eos = s.request->ignore_eos;
  rules.max_new_tokens = s.max_new_tokens;
  rules.top_logprobs = s.params.top_logprobs > 0;
  r.samples.clear();
  r.samples.reserve(size_t(s.n_samples));
  for (int i = 0; i < s.n_samples; ++i) r.samples.emplace_back(i, s.params, rules, s.request->stop, s.prompt);
  r.phase = RequestPhase::decode;
}

void Scheduler::finish_sample(ActiveRequest& r, int index, FinishReason reason) {
  Sequence& s = r.samples[size_t(index)];
  if (s.leaf != kv::kNoSegment) {
    e_.cache.release(s.leaf);
    s.leaf = kv::kNoSegment;
  }
  s.finish(reason);
}

void Scheduler::release_kv(ActiveRequest& r) {
  for (Sequence& s : r.samples) {
    if (s.leaf != kv::kNoSegment) e_.cache.release(s.leaf);
    s.leaf = kv::kNoSegment;
  }
  if (r.prompt_segment != kv::kNoSegment) e_.cache.release(r.prompt_segment);
  r.prompt_segment = kv::kNoSegment;
  if (r.node != kv::kPrefixRoot) prefix_.release(r.node);
  r.node = kv::kPrefixRoot;
}

void Scheduler::fail(ActiveRequest& r, std::exception_ptr error) {
  if (r.error) return;
  r.error = error;
  try {
    release_kv(r);
  } catch (...) {
    // The request is failing already; its KV bookkeeping error is secondary.
  }
}

// Finished and failed requests leave; their callers are woken only after the
// status is published, so a caller sees its request gone from status().
void Scheduler::complete_finished(double step_seconds) {
  struct Done {
    std::shared_ptr<Submission> submission;
    GenerationResult result;
    std::exception_ptr error;
  };
  std::vector<Done> done;
  size_t kept = 0;
  for (size_t i = 0; i < active_.size(); ++i) {
    ActiveRequest& r = *active_[i];
    if (r.error) {
      done.push_back({r.submission, {}, r.error});
    } else if (r.finished()) {
      if (r.t_prefilled > 0) r.stats.decode_seconds = now_seconds() - r.t_prefilled;  // 0: cancelled in prefill
      release_kv(r);
      done.push_back({r.submission, collect_result(r), nullptr});
    } else {
      if (kept != i) active_[kept] = std::move(active_[i]);
      ++kept;
    }
  }
  active_.resize(kept);
  publish_status(step_seconds);
  for (Done& d : done) {
    if (d.error) {
      d.submission->done.set_exception(std::move(d.error));  // the waiting caller holds the only reference
    } else {
      d.submission->done.set_value(std::move(d.result));
    }
  }
}

void Scheduler::publish_status(double step_seconds) {
  const size_t cached = prefix_.evictable_blocks() * e_.cache.block_bytes();
  std::lock_guard lock(mutex_);
  ++status_.steps;
  status_.step_seconds += step_seconds;
  status_.forward_seconds = e_.transformer.timings().total;
  status_.running_requests = int(active_.size());
  status_.kv_bytes_used = e_.cache.bytes_in_use();
  status_.kv_bytes_cached = cached;
}

void Scheduler::note_decode_step(double forward_seconds, const model::ForwardWork& work) {
  std::lock_guard lock(mutex_);
  ++status_.decode_steps;
  status_.decode_forward_seconds += forward_seconds;
  status_.decode_rows += work.rows;
  status_.decode_keys_read += work.keys_read;
  status_.decode_row_keys += work.row_keys;
}

void Scheduler::make_room(std::size_t blocks) {
  while (e_.cache.blocks_available() < blocks && prefix_.evict_one() > 0) {
  }
}

}  // namespace bifurcate::engine
