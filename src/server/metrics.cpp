#include "server/metrics.h"

#include <algorithm>
#include <cstdio>

namespace bifurcate::server {
namespace {

void append(std::string& out, const char* format, auto... args) {
  char line[256];
  std::snprintf(line, sizeof line, format, args...);
  out += line;
}

void header(std::string& out, const char* name, const char* type, const char* help) {
  append(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void scalar(std::string& out, const char* name, const char* type, const char* help, double value) {
  header(out, name, type, help);
  append(out, "%s %.17g\n", name, value);
}

}  // namespace

Histogram::Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double value) {
  const size_t bucket = size_t(std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin());
  ++counts_[bucket];
  sum_ += value;
  ++count_;
}

void Histogram::render(std::string& out, const std::string& name) const {
  uint64_t cumulative = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += counts_[i];
    append(out, "%s_bucket{le=\"%g\"} %llu\n", name.c_str(), bounds_[i], static_cast<unsigned long long>(cumulative));
  }
  append(out, "%s_bucket{le=\"+Inf\"} %llu\n", name.c_str(), static_cast<unsigned long long>(count_));
  append(out, "%s_sum %.17g\n%s_count %llu\n", name.c_str(), sum_, name.c_str(),
         static_cast<unsigned long long>(count_));
}

Metrics::Metrics()
    : ttft_({0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}),
      inter_token_({0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}),
      queue_({0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}) {}

void Metrics::count_request(const std::string& route, int status) {
  std::lock_guard lock(mutex_);
  ++requests_[{route, status}];
}

void Metrics::count_generation(const GenerationStats& stats, const std::vector<double>& inter_token_seconds) {
  std::lock_guard lock(mutex_);
  ++generations_;
  prompt_tokens_ += uint64_t(stats.prompt_tokens);
  cached_tokens_ += uint64_t(stats.cached_prompt_tokens);
  generated_tokens_ += uint64_t(stats.generated_tokens);
  if (stats.first_token_seconds > 0) ttft_.observe(stats.first_token_seconds);
  queue_.observe(stats.queue_seconds);
  for (double s : inter_token_seconds) inter_token_.observe(s);
}

std::string Metrics::render(const EngineStatus* engine, int in_flight, bool ready) const {
  std::string out;
  std::lock_guard lock(mutex_);
  header(out, "bifurcate_http_requests_total", "counter", "HTTP requests finished, by route and status");
  for (const auto& [key, count] : requests_) {
    append(out, "bifurcate_http_requests_total{route=\"%s\",status=\"%d\"} %llu\n", key.first.c_str(), key.second,
           static_cast<unsigned long long>(count));
  }
  scalar(out, "bifurcate_generations_total", "counter", "prompts generated from (one per prompt of a request)",
         double(generations_));
  scalar(out, "bifurcate_prompt_tokens_total", "counter", "prompt tokens of finished generations",
         double(prompt_tokens_));
  scalar(out, "bifurcate_prompt_cached_tokens_total", "counter",
         "prompt tokens whose KV came from the prefix cache", double(cached_tokens_));
  scalar(out, "bifurcate_generated_tokens_total", "counter", "tokens generated over all samples",
         double(generated_tokens_));
  header(out, "bifurcate_time_to_first_token_seconds", "histogram", "submission to the first generated token");
  ttft_.render(out, "bifurcate_time_to_first_token_seconds");
  header(out, "bifurcate_inter_token_latency_seconds", "histogram", "time between a sample's consecutive tokens");
  inter_token_.render(out, "bifurcate_inter_token_latency_seconds");
  header(out, "bifurcate_queue_seconds", "histogram", "submission to admission");
  queue_.render(out, "bifurcate_queue_seconds");
  scalar(out, "bifurcate_ready", "gauge", "1 when the model is loaded and the server is not draining",
         ready ? 1.0 : 0.0);
  scalar(out, "bifurcate_http_generations_in_flight", "gauge", "generation requests being served",
         double(in_flight));
  const EngineStatus idle;
  const EngineStatus& s = engine != nullptr ? *engine : idle;
  scalar(out, "bifurcate_requests_running", "gauge", "requests the engine is decoding", double(s.running_requests));
  scalar(out, "bifurcate_requests_queued", "gauge", "requests waiting for admission", double(s.queued_requests));
  scalar(out, "bifurcate_kv_bytes_used", "gauge", "KV cache bytes held by sequences and cached prefixes",
         double(s.kv_bytes_used));
  scalar(out, "bifurcate_kv_bytes_cached", "gauge", "KV cache bytes held only by the prefix cache (evictable)",
         double(s.kv_bytes_cached));
  scalar(out, "bifurcate_kv_bytes_budget", "gauge", "KV cache budget in bytes", double(s.kv_bytes_budget));
  return out;
}

}  // namespace bifurcate::server
