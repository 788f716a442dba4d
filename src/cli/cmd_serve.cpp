// `bifurcate serve`: the OpenAI-compatible HTTP server (src/server/) over one
// Engine. SIGTERM/SIGINT drain it (see server/http_server.h) and exit 0.
#include <pthread.h>

#include <csignal>
#include <iostream>
#include <thread>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/engine_flags.h"
#include "server/http_server.h"
#include "server/server_options.h"

namespace bifurcate::cli {
namespace {

struct ServeArgs {
  EngineFlags engine;
  server::ServerOptions d;  // the documented defaults
  std::string host = d.host;
  int64_t port = d.port;
  std::string alias = d.model_alias;
  std::string chat_template = d.chat_template_file;
  int64_t http_threads = d.http_threads;
  uint64_t max_body_bytes = d.max_body_bytes;
  int64_t max_n = d.max_n;
  int64_t max_best_of = d.max_best_of;
  int64_t max_tokens = d.max_tokens;
  int64_t max_prompts = d.max_prompts;
  int64_t max_queue = EngineOptions{}.max_queued_requests;
  double request_timeout = d.request_timeout_seconds;
  double read_timeout = d.read_timeout_seconds;
  double drain_seconds = d.drain_seconds;
  bool no_prefix_cache = false;

  template <class Visitor>
  void for_each(Visitor& v) {
    engine.for_each(v);
    v(host, "host", '\0', "address to listen on");
    v(port, "port", '\0', "port to listen on (0 = any free port; the port is printed)");
    v(alias, "alias", '\0', "model id in /v1/models and responses (default: the model file's name without .gguf)");
    v(chat_template, "chat-template", '\0',
      "Jinja chat template file for /v1/chat/completions (default: the model's; ChatML if it has none)");
    v(http_threads, "http-threads", '\0', "connections served at once");
    v(max_body_bytes, "max-body-bytes", '\0', "largest request body (larger: 413)");
    v(max_n, "max-n", '\0', "largest n (choices per prompt)");
    v(max_best_of, "max-best-of", '\0', "largest best_of (samples drawn per prompt)");
    v(max_tokens, "max-tokens", '\0', "largest max_tokens (tokens per choice; the context caps it too)");
    v(max_prompts, "max-prompts", '\0', "most prompts in one completions request");
    v(max_queue, "max-queue", '\0', "requests waiting for the engine beyond this get 429");
    v(request_timeout, "request-timeout", '\0', "seconds a generation may run before it is cancelled (0 = no limit)");
    v(read_timeout, "read-timeout", '\0', "seconds a client may stall while sending its request");
    v(drain_seconds, "drain-seconds", '\0',
      "on SIGTERM/SIGINT: seconds running requests may finish before they are cancelled");
    v(no_prefix_cache, "no-prefix-cache", '\0', "do not keep prompts' KV for later requests sharing a prefix");
  }
};

int64_t in_range(int64_t value, int64_t lo, int64_t hi, const char* flag) {
  if (value < lo || value > hi) throw UsageError(str("flag --", flag, ": ", value, " is out of range [", lo, ", ", hi, "]"));
  return value;
}

double seconds(double value, const char* flag) {
  if (!(value >= 0) || value > 1e7) throw UsageError(str("flag --", flag, ": ", value, " must be >= 0 seconds"));
  return value;
}

}  // namespace

int run_serve(int argc, char** argv) {
  ServeArgs a;
  FlagParser parser = make_flag_parser(a, "serve",
                                       "Serve the model over HTTP with OpenAI's API (/v1/completions, "
                                       "/v1/chat/completions, /v1/models) plus /health, /metrics, /tokenize and "
                                       "/detokenize.");
  if (parser.parse(argc, argv) == ParseResult::kShowHelp) {
    std::cout << parser.help();
    return 0;
  }
  EngineOptions engine = a.engine.options();
  engine.prefix_cache = !a.no_prefix_cache;
  engine.max_queued_requests = int(in_range(a.max_queue, 1, 1 << 20, "max-queue"));
  server::ServerOptions o;
  o.host = a.host;
  o.port = int(in_range(a.port, 0, 65535, "port"));
  o.model_alias = a.alias;
  o.chat_template_file = a.chat_template;
  o.http_threads = int(in_range(a.http_threads, 1, 4096, "http-threads"));
  if (a.max_body_bytes < 1) throw UsageError("flag --max-body-bytes: must be >= 1");
  o.max_body_bytes = a.max_body_bytes;
  o.max_n = int(in_range(a.max_n, 1, 1024, "max-n"));
  o.max_best_of = int(in_range(a.max_best_of, 1, 1024, "max-best-of"));
  o.max_tokens = int(in_range(a.max_tokens, 1, 1 << 24, "max-tokens"));
  o.max_prompts = int(in_range(a.max_prompts, 1, 1024, "max-prompts"));
  o.request_timeout_seconds = seconds(a.request_timeout, "request-timeout");
  o.read_timeout_seconds = seconds(a.read_timeout, "read-timeout");
  if (o.read_timeout_seconds == 0) throw UsageError("flag --read-timeout: must be > 0 seconds");
  o.drain_seconds = seconds(a.drain_seconds, "drain-seconds");

  // SIGTERM and SIGINT reach one thread that asks the server to drain; every
  // other thread (created after this) has them blocked.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  server::HttpServer http(o, engine);
  std::thread([&http, signals] {
    for (;;) {
      int signal = 0;
      if (sigwait(&signals, &signal) != 0) continue;
      std::fprintf(stderr, "received %s: draining\n", signal == SIGTERM ? "SIGTERM" : "SIGINT");
      http.shutdown();
    }
  }).detach();
  return http.run();
}

}  // namespace bifurcate::cli
