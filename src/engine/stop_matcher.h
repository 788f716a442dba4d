// Stop strings across token boundaries.
//
// Decoded text arrives a token at a time, so a stop string may be split over
// several pushes. The matcher holds back the longest tail of the text that
// could still be the start of a stop string and releases it once it cannot.
// Matching is on bytes; for valid UTF-8 that is the same as matching on
// characters, because a UTF-8 string can only occur at character boundaries.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace bifurcate::engine {

class StopMatcher {
 public:
  // Throws Error if any stop string is empty. No stop strings: everything passes.
  explicit StopMatcher(std::vector<std::string> stop_strings);

  // Feeds newly decoded text; returns the text now safe to emit. When a stop
  // string completes, stopped() becomes true and the returned text ends just
  // before it; the stop string and everything after it are dropped, and later
  // pushes return "". If several stop strings are complete, the one that
  // starts earliest wins. A stop string that completes now wins over a longer
  // one that might complete later.
  std::string push(std::string_view text);

  // At the end of generation: releases the held-back text ("" once stopped).
  std::string finish();

  bool stopped() const { return stopped_; }

 private:
  std::size_t earliest_match() const;    // npos if none
  std::size_t partial_match_length() const;  // longest tail of pending_ that begins a stop string

  std::vector<std::string> stop_strings_;
  std::string pending_;  // invariant: contains no stop string; held-back text only
  bool stopped_ = false;
};

}  // namespace bifurcate::engine
