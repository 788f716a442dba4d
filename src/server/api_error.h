// Errors as the OpenAI API reports them: an HTTP status and the body
// {"error": {"message", "type", "param", "code"}}. Request handling throws
// ApiError; the HTTP layer turns it (and any other exception) into a response.
#pragma once

#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

namespace bifurcate::server {

class ApiError : public std::runtime_error {
 public:
  ApiError(int status, std::string message, std::string param = "", std::string code = "");
  int status() const { return status_; }
  const std::string& param() const { return param_; }
  const std::string& code() const { return code_; }

 private:
  int status_;
  std::string param_;
  std::string code_;
};

// A 400 naming the offending request field.
ApiError invalid_param(const std::string& param, const std::string& message);

// OpenAI's error type for an HTTP status (invalid_request_error for 4xx, ...).
std::string error_type(int status);

// The error object for a status and message; `param` and `code` are null when empty.
nlohmann::json error_body(int status, const std::string& message, const std::string& param = "",
                          const std::string& code = "");
nlohmann::json error_body(const ApiError& error);

// Serialises JSON compactly; bytes that are not UTF-8 (a token's partial
// character) become U+FFFD instead of throwing.
std::string to_text(const nlohmann::json& value);

}  // namespace bifurcate::server
