// Support for the cli_* tests: runs the built `bifurcate` program with
// stdout and stderr kept apart, and a tiny JSON reader for what it prints
// (objects, arrays, strings with escapes, numbers, true/false/null).
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

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

// A parsed JSON value; numbers are doubles.
struct Json {
  enum Kind { kNull, kBool, kNumber, kString, kArray, kObject } kind = kNull;
  bool boolean = false;
  double number = 0;
  std::string string;
  std::vector<Json> array;
  std::map<std::string, Json> object;

  const Json& operator[](const std::string& key) const {
    auto it = object.find(key);
    if (kind != kObject || it == object.end()) throw Error(str("JSON: no key '", key, "'"));
    return it->second;
  }
  const Json& operator[](size_t i) const {
    if (kind != kArray || i >= array.size()) throw Error(str("JSON: no element ", i));
    return array[i];
  }
  bool has(const std::string& key) const { return kind == kObject && object.count(key) > 0; }
  size_t size() const { return kind == kArray ? array.size() : object.size(); }
  int64_t integer() const { return int64_t(number); }
};

class JsonReader {
 public:
  explicit JsonReader(std::string_view text) : text_(text) {}

  Json parse_document() {
    Json v = parse_value();
    skip_space();
    if (pos_ != text_.size()) fail("trailing characters");
    return v;
  }

 private:
  [[noreturn]] void fail(std::string_view what) const {
    throw Error(str("JSON: ", what, " at offset ", pos_, " in: ", text_.substr(0, 200)));
  }
  void skip_space() {
    while (pos_ < text_.size() && std::isspace(static_cast<unsigned char>(text_[pos_]))) ++pos_;
  }
  bool eat(char c) {
    skip_space();
    if (pos_ < text_.size() && text_[pos_] == c) return ++pos_, true;
    return false;
  }
  void expect(char c) {
    if (!eat(c)) fail(str("expected '", c, "'"));
  }
  bool eat_word(std::string_view word) {
    if (text_.substr(pos_, word.size()) != word) return false;
    pos_ += word.size();
    return true;
  }

  Json parse_value() {
    skip_space();
    if (pos_ >= text_.size()) fail("unexpected end");
    Json v;
    const char c = text_[pos_];
    if (c == '{') {
      v.kind = Json::kObject;
      ++pos_;
      if (eat('}')) return v;
      do {
        skip_space();
        std::string key = parse_string();
        expect(':');
        v.object[key] = parse_value();
      } while (eat(','));
      expect('}');
    } else if (c == '[') {
      v.kind = Json::kArray;
      ++pos_;
      if (eat(']')) return v;
      do v.array.push_back(parse_value());
      while (eat(','));
      expect(']');
    } else if (c == '"') {
      v.kind = Json::kString;
      v.string = parse_string();
    } else if (eat_word("true")) {
      v.kind = Json::kBool;
      v.boolean = true;
    } else if (eat_word("false")) {
      v.kind = Json::kBool;
    } else if (eat_word("null")) {
      v.kind = Json::kNull;
    } else {
      v.kind = Json::kNumber;
      const std::string rest(text_.substr(pos_, 64));
      char* end = nullptr;
      v.number = std::strtod(rest.c_str(), &end);
      if (end == rest.c_str()) fail("bad value");
      pos_ += size_t(end - rest.c_str());
    }
    return v;
  }

  std::string parse_string() {
    if (pos_ >= text_.size() || text_[pos_] != '"') fail("expected a string");
    ++pos_;
    std::string out;
    while (pos_ < text_.size() && text_[pos_] != '"') {
      char c = text_[pos_++];
      if (c != '\\') {
        out += c;
        continue;
      }
      if (pos_ >= text_.size()) fail("bad escape");
      c = text_[pos_++];
      switch (c) {
        case 'n': out += '\n'; break;
        case 't': out += '\t'; break;
        case 'r': out += '\r'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'u': append_utf8(out, parse_hex4()); break;
        default: out += c;  // \" \\ \/
      }
    }
    if (pos_ >= text_.size()) fail("unterminated string");
    ++pos_;
    return out;
  }

  unsigned parse_hex4() {
    if (pos_ + 4 > text_.size()) fail("short \\u escape");
    const unsigned code = unsigned(std::stoul(std::string(text_.substr(pos_, 4)), nullptr, 16));
    pos_ += 4;
    return code;
  }

  // Code points from \u escapes (the writer emits only BMP ones: control characters and U+FFFD).
  static void append_utf8(std::string& out, unsigned cp) {
    if (cp < 0x80) {
      out += char(cp);
    } else if (cp < 0x800) {
      out += char(0xc0 | (cp >> 6));
      out += char(0x80 | (cp & 0x3f));
    } else {
      out += char(0xe0 | (cp >> 12));
      out += char(0x80 | ((cp >> 6) & 0x3f));
      out += char(0x80 | (cp & 0x3f));
    }
  }

  std::string_view text_;
  size_t pos_ = 0;
};

inline Json parse_json(std::string_view text) { return JsonReader(text).parse_document(); }

}  // namespace bifurcate::cli_test
