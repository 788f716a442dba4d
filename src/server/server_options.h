// What `bifurcate serve` is configured with beyond the engine's own options:
// where it listens and the limits every request is checked against. The
// defaults here are the documented defaults of the command's flags.
#pragma once

#include <cstddef>
#include <string>

namespace bifurcate::server {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;                    // 0: any free port (printed when listening)
  std::string model_alias;            // the model id in /v1/models and responses; "" = the file's stem
  std::string chat_template_file;     // overrides the model's chat template; "" = the model's (or ChatML)
  int http_threads = 64;              // connections served at once (each request holds one while it runs)
  std::size_t max_body_bytes = std::size_t(4) << 20;  // larger request bodies get 413
  int max_n = 16;                     // choices per prompt
  int max_best_of = 32;               // samples drawn per prompt
  int max_tokens = 4096;              // generated tokens per choice (also capped by the context)
  int max_prompts = 32;               // prompts in one completions request
  double request_timeout_seconds = 600;  // a generation running longer is cancelled (0: never)
  double read_timeout_seconds = 10;   // a client that stalls while sending its request is dropped
  double drain_seconds = 10;          // on SIGTERM/SIGINT, how long running requests may finish
};

}  // namespace bifurcate::server
