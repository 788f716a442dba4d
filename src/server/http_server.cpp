#include "server/http_server.h"

#include <httplib.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>

#include "server/api_error.h"
#include "server/chat_renderer.h"
#include "server/generation_runner.h"
#include "server/openai_format.h"
#include "server/request_parse.h"
#include "util/error.h"
#include "util/timer.h"

namespace bifurcate::server {
namespace {

using nlohmann::json;

// The request being served on this HTTP thread, for the access log (the
// logger runs on the same thread after the response, streamed or not, is written).
thread_local RequestRecord t_record;

// Debian's cpp-httplib 0.11 listens with a backlog of 5 (compiled in): 32
// clients connecting at once overflow it and the dropped SYNs are resent a
// second later. listen() again on the bound socket raises the backlog.
class Listener : public httplib::Server {
 public:
  void raise_backlog() const {
    if (svr_sock_ != INVALID_SOCKET) ::listen(svr_sock_, SOMAXCONN);
  }
};
thread_local double t_start = 0;

void send_json(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(to_text(body), "application/json");
}

void send_error(httplib::Response& res, const ApiError& e) {
  send_json(res, e.status(), error_body(e));
  if (e.status() == 503) res.set_header("Retry-After", "1");
}

// The metrics label of a path: the routes served, everything else "other"
// (so a scan of random paths cannot grow the label set).
std::string route_label(const std::string& path) {
  static const char* const kRoutes[] = {"/v1/completions", "/v1/chat/completions", "/completions",
                                        "/chat/completions", "/v1/models", "/models", "/health", "/metrics",
                                        "/tokenize", "/detokenize"};
  for (const char* r : kRoutes) {
    if (path == r) return r;
  }
  return "other";
}

// llama.cpp's /tokenize piece: the text, or its byte values when it is not
// valid UTF-8 (a byte-fallback token holding part of a character).
json piece_json(const std::string& piece) {
  try {
    (void)json(piece).dump();  // the strict handler throws on invalid UTF-8
    return piece;
  } catch (const json::type_error&) {
    json bytes = json::array();
    for (char c : piece) bytes.push_back(int(static_cast<unsigned char>(c)));
    return bytes;
  }
}

}  // namespace

HttpServer::HttpServer(ServerOptions options, EngineOptions engine_options)
    : options_(std::move(options)), engine_options_(std::move(engine_options)),
      http_(std::make_unique<Listener>()) {
  model_id_ = options_.model_alias.empty() ? std::filesystem::path(engine_options_.model_path).stem().string()
                                           : options_.model_alias;
  add_routes();
}

HttpServer::~HttpServer() = default;

HttpServer::Handler HttpServer::guarded(bool needs_engine, Handler handler) {
  return [this, needs_engine, handler = std::move(handler)](const httplib::Request& req, httplib::Response& res) {
    try {
      if (needs_engine) {
        const State state = state_.load();
        if (state == State::loading) throw ApiError(503, "the model is loading", "", "model_loading");
        if (state == State::draining) throw ApiError(503, "the server is shutting down", "", "server_draining");
      }
      handler(req, res);
    } catch (const ApiError& e) {
      send_error(res, e);
    } catch (...) {
      send_error(res, api_error_from(std::current_exception()));
    }
  };
}

void HttpServer::add_routes() {
  httplib::Server& s = *http_;
  s.new_task_queue = [n = options_.http_threads] { return new httplib::ThreadPool(size_t(n)); };
  s.set_payload_max_length(options_.max_body_bytes);
  const auto read_timeout = std::chrono::duration<double>(options_.read_timeout_seconds);
  s.set_read_timeout(std::chrono::duration_cast<std::chrono::microseconds>(read_timeout));
  s.set_write_timeout(std::chrono::seconds(30));
  s.set_keep_alive_max_count(1000);
  s.set_keep_alive_timeout(5);
  s.set_tcp_nodelay(true);  // stream chunks are small and latency is the point

  s.set_pre_routing_handler([](const httplib::Request&, httplib::Response&) {
    t_record = RequestRecord{};
    t_start = now_seconds();
    return httplib::Server::HandlerResponse::Unhandled;
  });
  // Statuses the library sets itself (404 no route, 413 body too large,
  // 400 malformed HTTP) get OpenAI's error body too.
  s.set_error_handler(httplib::Server::HandlerWithResponse([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    std::string message;
    if (res.status == 404) {
      message = str("no route for ", req.method, " ", req.path);
    } else if (res.status == 413) {
      message = "the request body is larger than the server's limit (--max-body-bytes)";
    } else if (res.status == 400) {
      message = "the request could not be read (malformed HTTP, or the client stalled past --read-timeout)";
    } else {
      message = str("HTTP ", res.status);
    }
    send_json(res, res.status, error_body(res.status, message));
    return httplib::Server::HandlerResponse::Handled;
  }));
  s.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr e) {
    send_error(res, api_error_from(e));
  });
  s.set_logger([this](const httplib::Request& req, const httplib::Response& res) { access_log(req, res); });

  s.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    switch (state_.load()) {
      case State::loading: send_error(res, ApiError(503, "the model is loading", "", "model_loading")); break;
      case State::draining: send_error(res, ApiError(503, "the server is shutting down", "", "server_draining")); break;
      case State::ready: send_json(res, 200, {{"status", "ok"}}); break;
    }
  });
  s.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) { handle_metrics(res); });
  for (const char* path : {"/v1/models", "/models"})
    s.Get(path, guarded(true, [this](const httplib::Request&, httplib::Response& res) { handle_models(res); }));
  for (const char* path : {"/v1/completions", "/completions"})
    s.Post(path, guarded(true, [this](const auto& req, auto& res) { handle_generation(req, res, false); }));
  for (const char* path : {"/v1/chat/completions", "/chat/completions"})
    s.Post(path, guarded(true, [this](const auto& req, auto& res) { handle_generation(req, res, true); }));
  s.Post("/tokenize", guarded(true, [this](const auto& req, auto& res) { handle_tokenize(req, res); }));
  s.Post("/detokenize", guarded(true, [this](const auto& req, auto& res) { handle_detokenize(req, res); }));
}

void HttpServer::handle_generation(const httplib::Request& req, httplib::Response& res, bool chat) {
  const json body = parse_body(req.body);
  ParsedRequest request = chat ? parse_chat_request(body, *engine_, options_, model_id_, render_chat_)
                               : parse_completion_request(body, *engine_, options_, model_id_);
  const ResponseIds ids = new_response_ids(chat, model_id_);
  const int fd = find_connection_socket(req.local_port, req.remote_addr, req.remote_port);
  const double deadline = options_.request_timeout_seconds > 0 ? now_seconds() + options_.request_timeout_seconds : 0;
  // With echo and logprobs the prompt's own log-probs (before generating,
  // so a prompt too long to score is still a 400).
  std::vector<std::vector<TokenLogprob>> echoed;
  if (request.echo && request.logprobs) {
    for (const PromptInput& p : request.prompts) echoed.push_back(prompt_logprobs(*engine_, p.tokens, request.top_logprobs));
  }

  if (!request.stream) {
    Generation control;
    control.fd = fd;
    control.deadline = deadline;
    std::vector<GenerationResult> results;
    {
      WatchedGeneration watched(watch_, control);
      results = run_prompts(*engine_, request, control, metrics_, t_record);
    }
    wake_.notify_all();  // a drain waits for generations to end
    send_json(res, 200, chat ? chat_response(ids, request, results.at(0), *engine_)
                             : completion_response(ids, request, results, *engine_, echoed));
    return;
  }

  auto session = std::make_shared<StreamSession>(*engine_, std::move(request), ids, metrics_, std::move(echoed));
  session->control().fd = fd;
  session->control().deadline = deadline;
  watch_.add(&session->control());
  if (std::optional<ApiError> error = session->start()) {
    watch_.remove(&session->control());
    throw *error;
  }
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream",
      [session](size_t, httplib::DataSink& sink) {
        session->write_events([&sink](std::string_view data) { return sink.write(data.data(), data.size()); },
                              t_record);
        sink.done();
        return true;
      },
      [this, session](bool) {
        watch_.remove(&session->control());
        wake_.notify_all();
      });
}

void HttpServer::handle_tokenize(const httplib::Request& req, httplib::Response& res) {
  const json body = parse_body(req.body);
  if (!body.is_object() || !body.contains("content") || !body["content"].is_string())
    throw invalid_param("content", "'content' must be a string");
  auto flag = [&](const char* name, bool fallback) {
    if (!body.contains(name) || body[name].is_null()) return fallback;
    if (!body[name].is_boolean()) throw invalid_param(name, str("'", name, "' must be a boolean"));
    return body[name].get<bool>();
  };
  const bool add_special = flag("add_special", false);
  const bool parse_special = flag("parse_special", true);
  const bool with_pieces = flag("with_pieces", false);
  const std::vector<int32_t> tokens = engine_->tokenize(body["content"].get<std::string>(), add_special, parse_special);
  json out = json::array();
  for (int32_t t : tokens) {
    if (!with_pieces) {
      out.push_back(t);
      continue;
    }
    out.push_back({{"id", t}, {"piece", piece_json(engine_->token_to_piece(t))}});
  }
  send_json(res, 200, {{"tokens", out}});
}

void HttpServer::handle_detokenize(const httplib::Request& req, httplib::Response& res) {
  const json body = parse_body(req.body);
  if (!body.is_object() || !body.contains("tokens") || !body["tokens"].is_array())
    throw invalid_param("tokens", "'tokens' must be an array of token ids");
  std::vector<int32_t> tokens;
  const int n_vocab = engine_->model_info().n_vocab;
  for (const json& t : body["tokens"]) {
    if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() >= n_vocab)
      throw invalid_param("tokens", str("'tokens' must hold token ids in [0, ", n_vocab, ")"));
    tokens.push_back(int32_t(t.get<int64_t>()));
  }
  send_json(res, 200, {{"content", engine_->detokenize(tokens)}});
}

void HttpServer::handle_models(httplib::Response& res) {
  const ModelInfo& info = engine_->model_info();
  const json model = {{"id", model_id_},
                      {"object", "model"},
                      {"created", new_response_ids(false, model_id_).created},
                      {"owned_by", "bifurcate"},
                      {"meta",
                       {{"architecture", info.architecture},
                        {"n_vocab", info.n_vocab},
                        {"n_ctx_train", info.context_length},
                        {"n_layers", info.n_layers},
                        {"dim", info.dim}}}};
  send_json(res, 200, {{"object", "list"}, {"data", json::array({model})}});
}

void HttpServer::handle_metrics(httplib::Response& res) {
  std::optional<EngineStatus> status;
  if (state_.load() != State::loading) status = engine_->status();
  res.set_content(metrics_.render(status ? &*status : nullptr, watch_.size(), state_.load() == State::ready),
                  "text/plain; version=0.0.4");
}

void HttpServer::access_log(const httplib::Request& req, const httplib::Response& res) {
  metrics_.count_request(route_label(req.path), res.status);
  const double total = t_start > 0 ? now_seconds() - t_start : 0;
  const RequestRecord& r = t_record;
  char ttft[32] = "-";
  if (r.first_token_seconds >= 0) std::snprintf(ttft, sizeof ttft, "%.1fms", 1e3 * r.first_token_seconds);
  std::fprintf(stderr, "%s %s %s %d prompt=%d cached=%d generated=%d ttft=%s total=%.1fms%s\n",
               req.remote_addr.c_str(), req.method.c_str(), req.path.c_str(), res.status, r.prompt_tokens,
               r.cached_tokens, r.generated_tokens, ttft, 1e3 * total, r.cancelled ? " cancelled" : "");
  t_record = RequestRecord{};
  t_start = 0;
}

void HttpServer::load_model() {
  engine_ = std::make_unique<Engine>(engine_options_);
  const ModelInfo& info = engine_->model_info();
  render_chat_ = make_chat_renderer(info, options_.chat_template_file);
  std::fprintf(stderr, "model: %s (%s, %d layers, dim %d, vocab %d, context %d) as '%s'\n", info.path.c_str(),
               info.architecture.c_str(), info.n_layers, info.dim, info.n_vocab, info.context_length,
               model_id_.c_str());
}

void HttpServer::shutdown() {
  {
    std::lock_guard lock(mutex_);
    ++shutdown_requests_;
  }
  wake_.notify_all();
}

void HttpServer::drain() {
  state_.store(State::draining);
  std::fprintf(stderr, "draining: %d generations in flight, up to %.1f s\n", watch_.size(), options_.drain_seconds);
  const double deadline = now_seconds() + options_.drain_seconds;
  std::unique_lock lock(mutex_);
  while (watch_.size() > 0 && now_seconds() < deadline && shutdown_requests_ < 2)
    wake_.wait_for(lock, std::chrono::milliseconds(20));
  if (watch_.size() > 0) std::fprintf(stderr, "draining: cancelling %d generations\n", watch_.size());
  // Cancelled samples end within a decode step; their streams get their
  // finish events and [DONE]. Repeat: a request may register late.
  while (watch_.size() > 0) {
    watch_.cancel_all();
    wake_.wait_for(lock, std::chrono::milliseconds(20));
  }
}

int HttpServer::run() {
  std::signal(SIGPIPE, SIG_IGN);  // a client gone mid-write is an error return, not a signal
  int port = options_.port;
  if (port == 0) {
    port = http_->bind_to_any_port(options_.host);
    require(port > 0, "cannot listen on ", options_.host, " (any port)");
  } else {
    require(http_->bind_to_port(options_.host, port), "cannot listen on ", options_.host, ":", port,
            " (in use, or not an address of this machine)");
  }
  static_cast<const Listener&>(*http_).raise_backlog();
  port_.store(port);
  std::thread listener([this] { http_->listen_after_bind(); });
  std::fprintf(stderr, "listening on http://%s:%d\n", options_.host.c_str(), port);
  int code = 0;
  try {
    load_model();
    state_.store(State::ready);
    std::fprintf(stderr, "ready\n");
    std::unique_lock lock(mutex_);
    wake_.wait(lock, [this] { return shutdown_requests_ > 0; });
    lock.unlock();
    drain();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bifurcate: error: %s\n", e.what());
    code = 1;
  }
  http_->stop();
  shutdown_connections(port);  // idle keep-alive connections would hold their threads until their timeout
  listener.join();
  std::fprintf(stderr, "stopped\n");
  return code;
}

}  // namespace bifurcate::server
