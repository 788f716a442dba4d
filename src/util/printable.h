// Bytes read from files (tensor names, metadata keys, general.name) on their
// way to a terminal or into an error message: a NUL would cut a C-string
// message short and an ESC would drive the terminal, so every byte that is
// not printable text is written as \xNN.
#pragma once

#include <string>
#include <string_view>

namespace bifurcate {

// `bytes` with control characters (< 0x20, 0x7f) and bytes that are not
// part of valid UTF-8 written as \xNN, and a backslash as \\ (so the
// result reads back unambiguously); valid UTF-8 characters are kept.
std::string printable(std::string_view bytes);

// The same for a whole message that may already hold escaped fields and is
// laid out over lines: '\n', '\t' and backslashes stay as they are.
std::string printable_message(std::string_view message);

}  // namespace bifurcate
