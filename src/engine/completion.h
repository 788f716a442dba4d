// A one-shot result handed from the model thread to a caller waiting for it.
//
// Not std::promise / std::future: libstdc++ waits for those with a futex
// inside the shared library, which ThreadSanitizer does not see, so it
// reports the hand-over of the result (or exception) as a data race. A mutex
// and a condition variable are seen, and cost the same here.
#pragma once

#include <condition_variable>
#include <exception>
#include <mutex>
#include <optional>
#include <utility>

namespace bifurcate::engine {

template <class T>
class Completion {
 public:
  // Exactly one of set_value / set_exception, once.
  void set_value(T value) {
    std::lock_guard lock(mutex_);
    value_ = std::move(value);
    ready_ = true;
    ready_cv_.notify_all();
  }
  void set_exception(std::exception_ptr error) {
    std::lock_guard lock(mutex_);
    error_ = std::move(error);
    ready_ = true;
    ready_cv_.notify_all();
  }
  // Waits for the result; rethrows the exception if one was set.
  T get() {
    std::unique_lock lock(mutex_);
    ready_cv_.wait(lock, [this] { return ready_; });
    // The error moves out, so the caller's thread drops the exception's last
    // reference (its refcount lives in uninstrumented libstdc++ code).
    if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
    return std::move(*value_);
  }

 private:
  std::mutex mutex_;
  std::condition_variable ready_cv_;
  bool ready_ = false;
  std::optional<T> value_;
  std::exception_ptr error_;
};

}  // namespace bifurcate::engine
