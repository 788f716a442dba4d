// JSON output of the commands: nlohmann::ordered_json (keys stay in the order
// they are written), printed with 2-space indentation and a final newline;
// bytes that are not UTF-8 become U+FFFD instead of throwing.
#pragma once

#include <ostream>
#include <string>

#include <nlohmann/json.hpp>

namespace bifurcate::cli {

using Json = nlohmann::ordered_json;

inline void print_json(std::ostream& out, const Json& value, bool pretty = true) {
  out << value.dump(pretty ? 2 : -1, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
}

// A token's bytes as llama.cpp's server writes a piece: the text when it is
// valid UTF-8, else (a byte-fallback token, part of a character) its byte values.
Json token_piece_json(const std::string& piece);  // model_session.cpp

}  // namespace bifurcate::cli
