#include "engine/stop_matcher.h"

#include <algorithm>
#include <utility>

#include "util/error.h"

namespace bifurcate::engine {

StopMatcher::StopMatcher(std::vector<std::string> stop_strings) : stop_strings_(std::move(stop_strings)) {
  for (std::size_t i = 0; i < stop_strings_.size(); ++i) {
    require(!stop_strings_[i].empty(), "stop strings: string ", i, " of ", stop_strings_.size(), " is empty");
  }
}

std::string StopMatcher::push(std::string_view text) {
  if (stopped_) return {};
  pending_.append(text);
  if (const std::size_t stop = earliest_match(); stop != std::string::npos) {
    stopped_ = true;
    std::string emitted = pending_.substr(0, stop);
    pending_.clear();
    return emitted;
  }
  const std::size_t emit = pending_.size() - partial_match_length();
  std::string emitted = pending_.substr(0, emit);
  pending_.erase(0, emit);
  return emitted;
}

std::string StopMatcher::finish() {
  return std::exchange(pending_, std::string());
}

std::size_t StopMatcher::earliest_match() const {
  std::size_t earliest = std::string::npos;
  for (const std::string& stop : stop_strings_) earliest = std::min(earliest, pending_.find(stop));
  return earliest;
}

// A tail of length n of pending_ that equals the first n bytes of a stop
// string (n < its length, since no stop string is complete). Every later
// match must start inside the longest such tail, so that is what to hold.
std::size_t StopMatcher::partial_match_length() const {
  const std::string_view pending = pending_;
  std::size_t longest = 0;
  for (const std::string& stop : stop_strings_) {
    for (std::size_t n = std::min(stop.size() - 1, pending.size()); n > longest; --n) {
      if (pending.substr(pending.size() - n) == std::string_view(stop).substr(0, n)) {
        longest = n;
        break;
      }
    }
  }
  return longest;
}

}  // namespace bifurcate::engine
