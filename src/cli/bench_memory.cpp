#include "cli/bench_memory.h"

#include <fstream>
#include <sstream>

namespace bifurcate::cli {

bool reset_peak_rss() {
  std::ofstream out("/proc/self/clear_refs");
  if (!out) return false;
  out << "5";
  out.flush();
  return bool(out);
}

std::size_t parse_vm_hwm_bytes(const std::string& status_text) {
  std::istringstream in(status_text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) != 0) continue;
    std::istringstream fields(line.substr(6));
    unsigned long long kib = 0;
    std::string unit;
    if (!(fields >> kib >> unit) || unit != "kB") return 0;
    return std::size_t(kib) * 1024;
  }
  return 0;
}

std::size_t read_peak_rss_bytes() {
  std::ifstream in("/proc/self/status");
  if (!in) return 0;
  std::stringstream text;
  text << in.rdbuf();
  return parse_vm_hwm_bytes(text.str());
}

}  // namespace bifurcate::cli
