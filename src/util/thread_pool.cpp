#include "util/thread_pool.h"

#include <immintrin.h>

#include <algorithm>

#include "util/error.h"

namespace bifurcate {
namespace {
constexpr int kSpinIterations = 10000;
}  // namespace

ThreadPool::ThreadPool(int n_threads) : n_threads_(n_threads) {
  require(n_threads >= 1, "thread pool needs at least 1 thread, got ", n_threads);
  for (int t = 1; t < n_threads; ++t) workers_.emplace_back([this, t] { worker_loop(t); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    generation_.fetch_add(1);
  }
  wake_.notify_all();
  for (auto& w : workers_) w.join();
}

void ThreadPool::work_on_current_job(int thread) {
  for (;;) {
    std::size_t i = next_task_.fetch_add(1, std::memory_order_relaxed);
    if (i >= n_tasks_) return;
    try {
      (*job_)(i, thread);
    } catch (...) {
      std::lock_guard lock(error_mutex_);
      if (!error_) error_ = std::current_exception();
    }
  }
}

void ThreadPool::worker_loop(int thread) {
  uint64_t seen = 0;
  for (;;) {
    // Spin briefly (~0.2 ms) before sleeping: decode steps issue many short
    // jobs back to back, and a futex wake-up costs more than the job. Kept
    // short so an oversubscribed machine is not starved by spinning.
    for (int spin = 0; spin < kSpinIterations && generation_.load(std::memory_order_acquire) == seen; ++spin) {
      _mm_pause();
    }
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return generation_.load() != seen; });
      seen = generation_.load();
      if (stopping_) return;
    }
    work_on_current_job(thread);
    if (busy_workers_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard lock(mutex_);
      done_.notify_one();
    }
  }
}

void ThreadPool::run(std::size_t n_tasks, const std::function<void(std::size_t, int)>& task) {
  if (n_tasks == 0) return;
  if (workers_.empty() || n_tasks == 1) {
    for (std::size_t i = 0; i < n_tasks; ++i) task(i, 0);
    return;
  }
  {
    std::lock_guard lock(mutex_);
    job_ = &task;
    n_tasks_ = n_tasks;
    next_task_.store(0);
    error_ = nullptr;
    busy_workers_.store(int(workers_.size()));
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_.notify_all();
  work_on_current_job(0);
  for (int spin = 0; spin < kSpinIterations && busy_workers_.load(std::memory_order_acquire) != 0; ++spin) {
    _mm_pause();
  }
  {
    std::unique_lock lock(mutex_);
    done_.wait(lock, [&] { return busy_workers_.load() == 0; });
    job_ = nullptr;
  }
  if (error_) std::rethrow_exception(error_);
}

void ThreadPool::parallel_for(std::size_t n, std::size_t grain,
                              const std::function<void(std::size_t, std::size_t, int)>& body) {
  if (n == 0) return;
  grain = std::max<std::size_t>(grain, 1);
  std::size_t chunks = std::min<std::size_t>(std::size_t(n_threads_), (n + grain - 1) / grain);
  chunks = std::max<std::size_t>(chunks, 1);
  run(chunks, [&](std::size_t c, int thread) {
    std::size_t begin = n * c / chunks, end = n * (c + 1) / chunks;
    if (begin < end) body(begin, end, thread);
  });
}

}  // namespace bifurcate
