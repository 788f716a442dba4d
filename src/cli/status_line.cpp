#include "cli/status_line.h"

#include <unistd.h>

#include <cstdio>

namespace bifurcate::cli {

bool stderr_is_terminal() { return isatty(STDERR_FILENO) != 0; }
bool stdout_is_terminal() { return isatty(STDOUT_FILENO) != 0; }

StatusLine::StatusLine() : StatusLine(true) {}
StatusLine::StatusLine(bool transient) : transient_(transient && stderr_is_terminal()) {}
StatusLine::~StatusLine() { clear(); }

void StatusLine::transient(std::string_view line) {
  if (!transient_) return;
  std::fprintf(stderr, "\r%.*s\033[K", int(line.size()), line.data());
  std::fflush(stderr);
  showing_ = true;
}

void StatusLine::lasting(std::string_view line) {
  clear();
  std::fprintf(stderr, "%.*s\n", int(line.size()), line.data());
}

void StatusLine::clear() {
  if (!showing_) return;
  std::fprintf(stderr, "\r\033[K");
  std::fflush(stderr);
  showing_ = false;
}

}  // namespace bifurcate::cli
