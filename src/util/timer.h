// Wall-clock time in seconds, for progress and benchmark figures.
#pragma once

#include <chrono>

namespace bifurcate {

inline double now_seconds() {
  using clock = std::chrono::steady_clock;
  return std::chrono::duration<double>(clock::now().time_since_epoch()).count();
}

}  // namespace bifurcate
