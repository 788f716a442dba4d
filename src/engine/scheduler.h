// The scheduler: one thread owns the model and runs steps; any number of
// callers submit requests and wait for their results (continuous batching,
// DESIGN.md §7).
//
// Each step, on the model thread:
//   1. requests whose cancel flag is set finish as `cancelled`, their KV freed;
//   2. waiting requests are admitted in FIFO order while the head's worst-case
//      KV fits beside the running ones after evicting cached prefixes
//      (scheduler_step.cpp); a head that does not fit is not overtaken, so a
//      big request waits only for running ones to finish, never for later
//      arrivals. A request whose prompt shares more with a prompt being
//      prefilled than with the cache waits for that prefill (passed over, not
//      blocking the queue) and then finds it cached;
//   3. one batch: a decode row per running sample plus prefill chunks of
//      admitted prompts, up to EngineOptions::step_tokens rows;
//   4. one Transformer::forward for the whole batch;
//   5. sampling, callbacks, stop rules; finished samples free their leaves,
//      finished requests release their prefix nodes and wake their callers.
// An exception while handling one request (a callback that throws, say)
// fails that request alone; a failing forward pass fails the requests in it.
//
// Locking: `mutex_` guards only the hand-over between threads — the incoming
// queue, the model-thread tasks, the queued count, the published status and
// the stop flag. Everything else (the KV cache, the prefix cache, the model,
// the active and waiting requests) belongs to the model thread and is touched
// by no other thread while the scheduler runs.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "bifurcate/engine.h"
#include "engine/request_state.h"
#include "kv/prefix_cache.h"
#include "model/transformer.h"

namespace bifurcate::engine {

class Scheduler {
 public:
  // Starts the model thread. `engine` outlives the scheduler.
  explicit Scheduler(Engine::Impl& engine);
  // Stops the model thread; requests still waiting or running fail with Error.
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Queues a validated request; Overloaded when max_queued_requests wait already.
  // The caller then waits in submission->done.get().
  void submit(std::shared_ptr<Submission> submission);
  // Runs `task` on the model thread between two steps and waits for it
  // (rethrowing what it throws). Never call it from the model thread.
  void run_on_model_thread(const std::function<void()>& task);
  // Evicts cached prefixes, least recently used first, until `blocks` KV blocks
  // are free or nothing more is evictable. Model thread only (a task).
  void make_room(std::size_t blocks);
  EngineStatus status() const;

  // Worst-case KV blocks of a request (prompt of `prompt_tokens`, `matched`
  // of them cached) beyond what it shares: its unmatched prompt plus
  // n_samples leaves of max_new_tokens (bifurcated), or the prompt plus
  // n_samples private copies of prompt + max_new_tokens (replicated).
  std::size_t worst_case_blocks(int prompt_tokens, int matched, int n_samples, int max_new_tokens) const;

  // For tests: the prefix cache, read on the model thread (run_on_model_thread).
  const kv::PrefixCache& prefix_cache() const { return prefix_; }

 private:
  struct Task {
    std::function<void()> run;
    Completion<bool> done;
  };
  // One batch entry: a decode row of sample `sample`, or (sample < 0) a prefill chunk of `rows` tokens.
  struct Entry {
    ActiveRequest* request;
    int sample;
    int rows;
    bool logits;
  };
  struct Admission {
    kv::PrefixCache::Match match;
  };

  void loop();
  void step();
  void drop_cancelled();
  void admit();
  std::optional<Admission> plan_admission(const Submission& s) const;
  ActiveRequest* awaited_prefill(const Submission& s) const;
  void start(std::shared_ptr<Submission> submission, const Admission& admission);
  std::size_t promised_blocks(const ActiveRequest& r) const;
  void build_batch();
  void run_batch();
  void start_decoding(ActiveRequest& r, const float* logits);
  void make_samples(ActiveRequest& r);
  void finish_sample(ActiveRequest& r, int sample, FinishReason reason);
  void fail(ActiveRequest& r, std::exception_ptr error);
  void release_kv(ActiveRequest& r);
  void complete_finished(double step_seconds);
  void publish_status(double step_seconds);
  void note_decode_step(double forward_seconds, const model::ForwardWork& work);
  void cancel_waiting();
  void shut_down();

  Engine::Impl& e_;
  const bool bifurcated_;
  const bool use_prefix_cache_;

  // Model thread only.
  kv::PrefixCache prefix_;
  std::deque<std::shared_ptr<Submission>> waiting_;
  std::vector<std::unique_ptr<ActiveRequest>> active_;  // in admission order
  model::Batch batch_;
  std::vector<Entry> entries_;
  std::vector<float> logits_;
  std::vector<ActiveRequest*> prefill_order_;  // build_batch's, reused

  // Guarded by mutex_.
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::shared_ptr<Submission>> incoming_;
  std::deque<std::shared_ptr<Task>> tasks_;
  int queued_ = 0;  // incoming_ + waiting_
  EngineStatus status_;
  bool stopping_ = false;

  std::thread thread_;  // last: starts after everything above exists
};

}  // namespace bifurcate::engine
