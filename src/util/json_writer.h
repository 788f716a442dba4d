// A small streaming JSON writer: commas, nesting and string escaping handled
// in one place so commands can print machine-readable output safely.
//
//   JsonWriter j(out);
//   j.begin_object(); j.key("n"); j.value(3); j.key("tokens"); j.begin_array(); ... j.end_array(); j.end_object();
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

namespace bifurcate {

// JSON string literal for arbitrary bytes: invalid UTF-8 bytes become U+FFFD.
std::string json_quote(std::string_view text);

class JsonWriter {
 public:
  explicit JsonWriter(std::ostream& out, bool pretty = true) : out_(out), pretty_(pretty) {}

  void begin_object() { open('{'); }
  void end_object() { close('}'); }
  void begin_array() { open('['); }
  void end_array() { close(']'); }
  void key(std::string_view name);
  void value(std::string_view text);
  void value(const char* text) { value(std::string_view(text)); }
  void value(double number);
  void value(int64_t number);
  void value(int number) { value(int64_t(number)); }
  void value(uint64_t number);
  void value(bool flag);
  void null();

 private:
  void open(char bracket);
  void close(char bracket);
  void before_value();
  void newline();

  std::ostream& out_;
  bool pretty_;
  std::vector<bool> first_;  // per open container: nothing written into it yet
  bool after_key_ = false;
};

}  // namespace bifurcate
