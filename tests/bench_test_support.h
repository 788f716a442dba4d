// Shared helpers of the bench tests (cli_bench_test, cli_bench_report_test):
// text utilities for reading what bench wrote, and an XML well-formedness check.
#pragma once

#include <gtest/gtest.h>

#include <cstddef>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

namespace bifurcate::cli::bench_test {

inline std::string read_text(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

inline std::size_t count(const std::string& text, const std::string& needle) {
  std::size_t n = 0;
  for (std::size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

inline std::vector<std::string> split(const std::string& text, char separator) {
  std::vector<std::string> parts;
  std::stringstream in(text);
  std::string part;
  while (std::getline(in, part, separator)) parts.push_back(part);
  if (!text.empty() && text.back() == separator) parts.emplace_back();
  return parts;
}

// Minimal XML well-formedness: every element opened is closed in order, every
// attribute quote is balanced, and exactly one root element (<svg>) exists.
inline void expect_well_formed_xml(const std::string& xml) {
  std::vector<std::string> open;
  int roots = 0;
  for (std::size_t i = xml.find('<'); i != std::string::npos; i = xml.find('<', i + 1)) {
    const std::size_t end = xml.find('>', i);
    ASSERT_NE(end, std::string::npos) << "unterminated tag at " << i;
    const std::string tag = xml.substr(i + 1, end - i - 1);
    ASSERT_EQ(count(tag, "'") % 2, 0u) << "unbalanced quotes in <" << tag << ">";
    if (tag.front() == '?') continue;
    const std::string name =
        tag.substr(tag.front() == '/' ? 1 : 0, tag.find_first_of(" />", 1) - (tag.front() == '/' ? 1 : 0));
    if (tag.front() == '/') {
      ASSERT_FALSE(open.empty()) << "closing </" << name << "> with nothing open";
      ASSERT_EQ(open.back(), name);
      open.pop_back();
    } else if (tag.back() != '/') {
      if (open.empty()) ++roots;
      open.push_back(name);
    } else if (open.empty()) {
      ++roots;
    }
  }
  EXPECT_TRUE(open.empty()) << open.size() << " elements left open";
  EXPECT_EQ(roots, 1);
}

}  // namespace bifurcate::cli::bench_test
