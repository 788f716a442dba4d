// The HTTP server in process, over loopback (tests/server/*.test.mjs drive
// the built program with the `openai` client): /health and the endpoints
// while the model is still loading, and concurrent plain and streamed
// requests, a client gone mid-stream and a drain — the server's threads,
// which the ThreadSanitizer flavour runs (scripts/test.sh).
#include <gtest/gtest.h>
#include <httplib.h>
#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "server/http_server.h"
#include "util/error.h"

namespace bifurcate::server {
namespace {

using nlohmann::json;

const std::string kModel = std::string(BIFURCATE_TESTDATA_DIR) + "/stories260K/stories260K.gguf";

// HttpServer::run() on a thread of its own, on a free loopback port.
class RunningServer {
 public:
  explicit RunningServer(const std::string& model_path) : server_(options(), engine_options(model_path)) {
    thread_ = std::thread([this] { code_ = server_.run(); });
    for (int i = 0; i < 30000 && server_.port() == 0 && !returned(); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~RunningServer() { stop(); }

  // Drains and waits for run() to return; its exit code.
  int stop() {
    if (thread_.joinable()) {
      server_.shutdown();
      thread_.join();
    }
    return code_;
  }
  HttpServer& server() { return server_; }
  int port() const { return server_.port(); }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port());
    c.set_read_timeout(120, 0);
    return c;
  }
  // Polls /health until 200 (bounded: the model loads in well under a minute).
  bool wait_ready() const {
    httplib::Client c = client();
    for (int i = 0; i < 6000; ++i) {
      if (auto r = c.Get("/health"); r && r->status == 200) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }

 private:
  static ServerOptions options() {
    ServerOptions o;
    o.port = 0;
    o.model_alias = "stories260K";
    o.http_threads = 16;
    o.drain_seconds = 30;
    return o;
  }
  static EngineOptions engine_options(const std::string& model_path) {
    EngineOptions e;
    e.model_path = model_path;
    e.threads = 1;
    return e;
  }
  bool returned() const { return code_ >= 0; }

  HttpServer server_;
  std::atomic<int> code_{-1};
  std::thread thread_;
};

json post(httplib::Client& c, const std::string& path, const json& body, int* status) {
  auto r = c.Post(path, body.dump(), "application/json");
  *status = r ? r->status : -1;
  return r ? json::parse(r->body, nullptr, /*allow_exceptions=*/false) : json();
}

// The text of every choice of a streamed completion, by index, and whether [DONE] came.
struct StreamedText {
  std::vector<std::string> choices;
  bool done = false;
  int status = -1;
};

// `stop_after_bytes` > 0: hang up once that many bytes came. `on_first` runs
// when the first bytes come.
StreamedText stream_completion(httplib::Client& c, const json& body, std::size_t stop_after_bytes = 0,
                               const std::function<void()>& on_first = nullptr) {
  StreamedText out;
  std::string buffer;
  std::size_t received = 0;
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/completions";
  req.body = body.dump();
  req.set_header("Content-Type", "application/json");
  req.content_receiver = [&](const char* data, size_t size, uint64_t, uint64_t) {
    if (received == 0 && on_first) on_first();
    received += size;
    buffer.append(data, size);
    for (std::size_t end; (end = buffer.find("\n\n")) != std::string::npos; buffer.erase(0, end + 2)) {
      const std::string event = buffer.substr(0, end);
      if (event == "data: [DONE]") {
        out.done = true;
        continue;
      }
      const json chunk = json::parse(event.substr(6));
      for (const json& choice : chunk["choices"]) {
        const std::size_t i = choice["index"].get<std::size_t>();
        if (out.choices.size() <= i) out.choices.resize(i + 1);
        out.choices[i] += choice["text"].get<std::string>();
      }
    }
    return stop_after_bytes == 0 || received < stop_after_bytes;  // false: hang up
  };
  auto r = c.send(req);
  out.status = r ? r->status : -1;
  return out;
}

class ServerHttp : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(kModel)) GTEST_SKIP() << "test data missing: " << kModel;
  }
};

// The model is read from a pipe that this test fills only after it has seen
// the 503s, so the server is certainly still loading when they are asked for.
TEST_F(ServerHttp, HealthAndCompletionsAre503WhileTheModelLoads) {
  const std::string fifo = (std::filesystem::temp_directory_path() / str("bf_server_http_", getpid(), ".gguf")).string();
  std::remove(fifo.c_str());
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  RunningServer s(fifo);
  ASSERT_GT(s.port(), 0) << "the server did not listen before loading";
  httplib::Client c = s.client();

  auto health = c.Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 503);
  EXPECT_EQ(health->get_header_value("Retry-After"), "1");
  const json error = json::parse(health->body)["error"];
  EXPECT_EQ(error["type"], "service_unavailable_error");
  EXPECT_EQ(error["code"], "model_loading");
  EXPECT_EQ(error["message"], "the model is loading");
  EXPECT_TRUE(error.contains("param"));
  int status = 0;
  json body = post(c, "/v1/completions", {{"prompt", "Once upon a time"}, {"max_tokens", 4}}, &status);
  EXPECT_EQ(status, 503);
  EXPECT_EQ(body["error"]["code"], "model_loading");
  body = post(c, "/v1/chat/completions", {{"messages", {{{"role", "user"}, {"content", "hi"}}}}}, &status);
  EXPECT_EQ(status, 503);
  auto metrics = c.Get("/metrics");  // answers while loading (a scraper must not see the server as down)
  ASSERT_TRUE(metrics);
  EXPECT_EQ(metrics->status, 200);

  {  // now the model: the loader has been waiting on the pipe all along
    std::ifstream in(kModel, std::ios::binary);
    std::ofstream out(fifo, std::ios::binary);
    out << in.rdbuf();
  }
  ASSERT_TRUE(s.wait_ready());
  body = post(c, "/v1/completions", {{"prompt", "Once upon a time"}, {"max_tokens", 8}, {"temperature", 0}}, &status);
  EXPECT_EQ(status, 200) << body.dump();
  // The same greedy text as an engine that mapped the file itself.
  Engine reference(EngineOptions{.model_path = kModel, .threads = 1});
  GenerationRequest g;
  g.prompt = "Once upon a time";
  g.max_tokens = 8;
  g.sampling.temperature = 0;
  EXPECT_EQ(body["choices"][0]["text"], reference.generate(g).samples.at(0).text);
  EXPECT_EQ(s.stop(), 0);
  std::remove(fifo.c_str());
}

// Clients on many threads at once, plain and streamed, over shared prompt
// prefixes; one hangs up mid-stream; then a drain while a stream runs.
TEST_F(ServerHttp, ConcurrentRequestsHangUpsAndADrain) {
  RunningServer s(kModel);
  ASSERT_TRUE(s.wait_ready());
  const std::vector<std::string> prompts = {"Once upon a time, there was a little dog",
                                            "Once upon a time, there was a little cat",
                                            "Once upon a time, there was a big tree"};
  std::vector<std::string> plain(prompts.size());
  {
    httplib::Client c = s.client();
    for (std::size_t i = 0; i < prompts.size(); ++i) {
      int status = 0;
      const json body = post(c, "/v1/completions",
                             {{"prompt", prompts[i]}, {"max_tokens", 24}, {"temperature", 0}, {"n", 2}}, &status);
      ASSERT_EQ(status, 200) << body.dump();
      plain[i] = body["choices"][0]["text"];
      EXPECT_EQ(body["choices"][1]["text"], plain[i]);  // greedy: every choice alike
    }
  }
  std::atomic<int> mismatches{0}, failures{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < 6; ++t) {
    clients.emplace_back([&, t] {
      httplib::Client c = s.client();
      for (int k = 0; k < 2; ++k) {
        const std::size_t i = std::size_t(t + k) % prompts.size();
        const json request = {{"prompt", prompts[i]}, {"max_tokens", 24}, {"temperature", 0}, {"n", 2}};
        if ((t + k) % 2 == 0) {
          int status = 0;
          const json body = post(c, "/v1/completions", request, &status);
          if (status != 200) ++failures;
          else if (body["choices"][0]["text"] != plain[i]) ++mismatches;
        } else {
          json streamed = request;
          streamed["stream"] = true;
          const StreamedText r = stream_completion(c, streamed);
          if (r.status != 200 || !r.done || r.choices.size() != 2) ++failures;
          else if (r.choices[0] != plain[i] || r.choices[1] != plain[i]) ++mismatches;
        }
      }
    });
  }
  clients.emplace_back([&] {  // hangs up after the first bytes of a long stream
    httplib::Client c = s.client();
    stream_completion(c, {{"prompt", prompts[0]}, {"max_tokens", 400}, {"ignore_eos", true}, {"stream", true}}, 200);
  });
  for (std::thread& t : clients) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(mismatches.load(), 0);

  // A drain while a stream runs, cancelled at once (a second shutdown()):
  // the stream still ends with its finish events and [DONE]; run() returns 0.
  std::atomic<bool> streaming{false}, finished{false};
  StreamedText during_drain;
  std::thread streamer([&] {
    httplib::Client c = s.client();
    during_drain = stream_completion(
        c, {{"prompt", prompts[1]}, {"max_tokens", 400}, {"ignore_eos", true}, {"stream", true}, {"n", 2}}, 0,
        [&] { streaming = true; });
    finished = true;
  });
  while (!streaming.load() && !finished.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  s.server().shutdown();
  s.server().shutdown();
  EXPECT_EQ(s.stop(), 0);
  streamer.join();
  EXPECT_EQ(during_drain.status, 200);
  EXPECT_TRUE(during_drain.done);
  EXPECT_EQ(during_drain.choices.size(), 2u);
}

}  // namespace
}  // namespace bifurcate::server
