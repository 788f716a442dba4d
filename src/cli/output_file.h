// Output that must not be lost silently: files the commands write (bench's
// --csv, --json, --plot) and standard output itself. Every write and the
// close are checked, and a failure is an Error with the OS's reason ("No
// space left on device"), so the program exits non-zero instead of reporting
// a file "written" that was cut short.
#pragma once

#include <string>
#include <string_view>

namespace bifurcate::cli {

// Checks, before long work starts, that `path` can be created or replaced:
// it opens it for writing without truncating (a file it had to create is
// removed again). Error naming `what` ("--csv"), the path and the OS reason.
void require_writable_path(const std::string& path, std::string_view what);

// Writes `content` to `path` (created or truncated), checking every write and
// the close. Error naming the path and the OS reason.
void write_output_file(const std::string& path, std::string_view content);

// Routes std::cout through a buffer that hands everything to stdio's stdout
// (so it stays in order with printf) and keeps the errno of the first write
// that fails, which stdio alone forgets. main calls it first.
void guard_stdout();

// Flushes std::cout and stdout and throws Error with the OS reason if any
// write to standard output failed (a full disk, a closed pipe's EPIPE).
void require_stdout_written();

}  // namespace bifurcate::cli
