// `bifurcate serve`'s HTTP server: OpenAI's completions and chat endpoints,
// /v1/models, /health, /metrics, /tokenize and /detokenize over one Engine.
// The socket listens before the model loads, so /health answers 503 while
// it loads; shutdown() drains: new work gets 503, running requests may
// finish for ServerOptions::drain_seconds, the rest are cancelled (their
// streams end with their finish events and [DONE]), then run() returns.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "bifurcate/engine.h"
#include "server/connection_watch.h"
#include "server/metrics.h"
#include "server/request_parse.h"
#include "server/server_options.h"

namespace httplib {
class Server;
struct Request;
struct Response;
}  // namespace httplib

namespace bifurcate::server {

class HttpServer {
 public:
  HttpServer(ServerOptions options, EngineOptions engine_options);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds, listens, loads the model and serves until shutdown() has
  // drained. Returns the exit code: 0 after a drain, 1 if the model failed
  // to load; throws Error if the address cannot be bound.
  int run();

  // Safe from any thread (the signal thread): begins the drain. A second
  // call cancels the running requests at once.
  void shutdown();

  // The port listened on once run() has bound it (before the model loads);
  // 0 before. For `--port 0` and in-process tests.
  int port() const { return port_.load(); }

 private:
  enum class State { loading, ready, draining };
  using Handler = std::function<void(const httplib::Request&, httplib::Response&)>;

  void add_routes();
  // Wraps a route: state check (503 while loading or draining when
  // `needs_engine`), ApiError and exceptions as OpenAI error responses.
  Handler guarded(bool needs_engine, Handler handler);
  void handle_generation(const httplib::Request& req, httplib::Response& res, bool chat);
  void handle_tokenize(const httplib::Request& req, httplib::Response& res);
  void handle_detokenize(const httplib::Request& req, httplib::Response& res);
  void handle_models(httplib::Response& res);
  void handle_metrics(httplib::Response& res);
  void access_log(const httplib::Request& req, const httplib::Response& res);
  void load_model();
  void drain();

  ServerOptions options_;
  EngineOptions engine_options_;
  std::unique_ptr<httplib::Server> http_;
  std::unique_ptr<Engine> engine_;
  ChatRender render_chat_;  // server/chat_renderer.h
  std::string model_id_;
  std::atomic<State> state_{State::loading};
  std::atomic<int> port_{0};
  Metrics metrics_;
  ConnectionWatch watch_;
  std::mutex mutex_;
  std::condition_variable wake_;
  int shutdown_requests_ = 0;
};

}  // namespace bifurcate::server
