// Support for the cli_* tests: runs the built `bifurcate` program with
// stdout and stderr kept apart, and what it prints with --json parsed.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "util/error.h"

namespace bifurcate::cli_test {

struct RunResult {
  int exit_code;
  std::string out;  // stdout
  std::string err;  // stderr

  // stdout then stderr, for checks that do not care which stream says it.
  std::string combined() const { return out + err; }
};

// The built program; the cli_* tests skip when it is missing.
inline std::string program_path() { return str(BIFURCATE_BINARY_DIR, "/bifurcate"); }

inline bool contains(std::string_view text, std::string_view part) { return text.find(part) != std::string_view::npos; }

inline std::string read_all(FILE* f) {
  std::string text;
  char buffer[65536];
  while (std::size_t n = std::fread(buffer, 1, sizeof buffer, f)) text.append(buffer, n);
  return text;
}

// A shell command's exit code, stdout and stderr.
inline RunResult run_shell(const std::string& command) {
  const std::string err_path = (std::filesystem::temp_directory_path() / str("bf_cli_err_", getpid())).string();
  FILE* pipe = popen(str("( ", command, " ) 2>'", err_path, "'").c_str(), "r");
  if (pipe == nullptr) throw Error(str("popen failed for: ", command));
  RunResult r{-1, read_all(pipe), ""};
  const int status = pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  if (FILE* f = std::fopen(err_path.c_str(), "rb")) {
    r.err = read_all(f);
    std::fclose(f);
  }
  std::filesystem::remove(err_path);
  return r;
}

// Runs `bifurcate ARGUMENTS` (a shell-quoted string).
inline RunResult run_bifurcate(const std::string& arguments) {
  return run_shell(str("'", program_path(), "' ", arguments));
}

// What the commands print with --json, parsed; a parse error names the text.
using Json = nlohmann::json;

inline Json parse_json(std::string_view text) {
  try {
    return Json::parse(text);
  } catch (const Json::parse_error& e) {
    throw Error(str("JSON: ", e.what(), " in: ", text.substr(0, 200)));
  }
}

}  // namespace bifurcate::cli_test
