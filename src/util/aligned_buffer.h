// A fixed-size, 64-byte aligned, uninitialised array: scratch space for kernels.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <memory>
#include <new>

#include "util/aligned_alloc.h"

namespace bifurcate {

template <class T>
class AlignedBuffer {
 public:
  static constexpr std::size_t kAlignment = 64;

  AlignedBuffer() = default;
  explicit AlignedBuffer(std::size_t count) { resize(count); }

  // Discards the contents; grows only when `count` exceeds the capacity.
  void resize(std::size_t count) {
    if (count > capacity_) {
      std::size_t bytes = (count * sizeof(T) + kAlignment - 1) / kAlignment * kAlignment;
      void* p = allocate_aligned(kAlignment, bytes);
      if (p == nullptr) throw std::bad_alloc();
      data_.reset(static_cast<T*>(p));
      capacity_ = count;
    }
    size_ = count;
  }

  T* data() { return data_.get(); }
  const T* data() const { return data_.get(); }
  std::size_t size() const { return size_; }
  T& operator[](std::size_t i) { return data_.get()[i]; }
  const T& operator[](std::size_t i) const { return data_.get()[i]; }
  T* begin() { return data(); }
  T* end() { return data() + size_; }

 private:
  struct Free {
    void operator()(T* p) const { std::free(p); }
  };
  std::unique_ptr<T, Free> data_;
  std::size_t size_ = 0;
  std::size_t capacity_ = 0;
};

}  // namespace bifurcate
