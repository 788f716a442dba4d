// Progress on stderr. On a terminal a transient line overwrites itself
// ("\r", then erase to the end of the line); anywhere else (a pipe, a log
// file) transient lines are dropped, so logs hold no "\r" soup, and only
// lasting lines are written, one per line.
#pragma once

#include <string_view>

namespace bifurcate::cli {

bool stderr_is_terminal();
bool stdout_is_terminal();

class StatusLine {
 public:
  // Transient lines are shown when stderr is a terminal.
  StatusLine();
  // Transient lines are shown when `transient` (and stderr is a terminal).
  explicit StatusLine(bool transient);
  ~StatusLine();
  StatusLine(const StatusLine&) = delete;
  StatusLine& operator=(const StatusLine&) = delete;

  void transient(std::string_view line);
  void lasting(std::string_view line);
  // Erases a transient line, if one is showing.
  void clear();

 private:
  bool transient_;
  bool showing_ = false;
};

}  // namespace bifurcate::cli
