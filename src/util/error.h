// Errors: every failure the library reports is a bifurcate::Error whose
// message names the offending values. Library code never calls exit().
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace bifurcate {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A valid request refused for lack of capacity right now (the admission
// queue is full): the caller may retry later (HTTP 429).
class Overloaded : public Error {
 public:
  using Error::Error;
};

// Concatenates any streamable values into one string: str("n=", n, " > ", max).
template <class... Args>
std::string str(Args&&... args) {
  std::ostringstream out;
  (out << ... << std::forward<Args>(args));
  return out.str();
}

// Throws Error(str(args...)) unless `condition` holds. For argument checks at
// public entry points; inner loops use assert().
template <class... Args>
void require(bool condition, Args&&... args) {
  if (!condition) throw Error(str(std::forward<Args>(args)...));
}

}  // namespace bifurcate
