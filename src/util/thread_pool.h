// A fixed set of worker threads that run one parallel job at a time.
// The calling thread takes part as thread 0, so a pool of size 1 has no
// workers and runs everything inline. One pool per Engine; never global.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace bifurcate {

class ThreadPool {
 public:
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Runs task(i, thread) for every i in [0, n_tasks); tasks are claimed
  // dynamically, so uneven tasks balance. Returns when all are done; the
  // first exception thrown by a task is rethrown here.
  void run(std::size_t n_tasks, const std::function<void(std::size_t task, int thread)>& task);

  // Splits [0, n) into contiguous ranges of at least `grain` items, about
  // one per thread, and runs body(begin, end, thread) on each.
  void parallel_for(std::size_t n, std::size_t grain,
                    const std::function<void(std::size_t begin, std::size_t end, int thread)>& body);

 private:
  void worker_loop(int thread);
  void work_on_current_job(int thread);

  int n_threads_;
  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  const std::function<void(std::size_t, int)>* job_ = nullptr;
  std::size_t n_tasks_ = 0;
  std::atomic<std::size_t> next_task_{0};
  std::atomic<int> busy_workers_{0};
  std::atomic<uint64_t> generation_{0};
  bool stopping_ = false;
  std::exception_ptr error_;
  std::mutex error_mutex_;
};

}  // namespace bifurcate
