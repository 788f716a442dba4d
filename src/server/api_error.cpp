#include "server/api_error.h"

#include <utility>

namespace bifurcate::server {

ApiError::ApiError(int status, std::string message, std::string param, std::string code)
    : std::runtime_error(std::move(message)), status_(status), param_(std::move(param)), code_(std::move(code)) {}

ApiError invalid_param(const std::string& param, const std::string& message) {
  return ApiError(400, message, param, "invalid_value");
}

std::string error_type(int status) {
  switch (status) {
    case 404: return "not_found_error";
    case 413: return "invalid_request_error";
    case 429: return "rate_limit_error";
    case 503: return "service_unavailable_error";
    default: return status >= 500 ? "server_error" : "invalid_request_error";
  }
}

nlohmann::json error_body(int status, const std::string& message, const std::string& param,
                          const std::string& code) {
  nlohmann::json error = {{"message", message}, {"type", error_type(status)}, {"param", nullptr}, {"code", nullptr}};
  if (!param.empty()) error["param"] = param;
  if (!code.empty()) error["code"] = code;
  return {{"error", std::move(error)}};
}

nlohmann::json error_body(const ApiError& e) { return error_body(e.status(), e.what(), e.param(), e.code()); }

std::string to_text(const nlohmann::json& value) {
  return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace bifurcate::server
