// Shared by the chat-template tests: running the jinja2 oracles through
// /usr/bin/python3 (Debian's python3-jinja2, installed by install-deps) and
// the options reference_render.py renders with.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "chat/chat_template.h"

namespace bifurcate::chat::testing {

inline std::string chat_templates_dir() { return std::string(BIFURCATE_TESTDATA_DIR) + "/chat-templates"; }
inline std::string tests_dir() { return BIFURCATE_TESTS_DIR; }

struct CommandResult {
  int status = -1;
  std::string out;
};

// Runs a shell command, optionally feeding `input` on stdin through a file.
inline CommandResult run_command(const std::string& command) {
  CommandResult r;
  FILE* p = popen(command.c_str(), "r");
  if (!p) return r;
  char buf[65536];
  std::size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  r.status = pclose(p);
  return r;
}

inline bool jinja2_available() {
  return run_command("/usr/bin/python3 -c 'import jinja2' 2>/dev/null").status == 0;
}

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

inline void write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

// reference_render.py's fixed clock and date_string.
inline RenderOptions reference_options() {
  RenderOptions o;
  o.bos_token = "<s>";
  o.eos_token = "</s>";
  o.now = std::chrono::sys_seconds(std::chrono::sys_days(std::chrono::year(2026) / 1 / 2).time_since_epoch());
  o.extra_variables = {{"date_string", "02 Jan 2026"}};
  return o;
}

}  // namespace bifurcate::chat::testing
