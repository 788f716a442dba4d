// Measured (not estimated) memory figures for `bifurcate bench`: the
// process's peak resident set, reset before each row where Linux permits.
#pragma once

#include <cstddef>
#include <string>

namespace bifurcate::cli {

// Writes "5" to /proc/self/clear_refs, which resets VmHWM to the current RSS.
// Returns false where that is not permitted (then the peak is process-wide).
bool reset_peak_rss();

// VmHWM of /proc/self/status in bytes; 0 if it cannot be read.
std::size_t read_peak_rss_bytes();

// Parses the VmHWM line of a /proc/<pid>/status text ("VmHWM:  1234 kB"); 0 if absent.
std::size_t parse_vm_hwm_bytes(const std::string& status_text);

}  // namespace bifurcate::cli
