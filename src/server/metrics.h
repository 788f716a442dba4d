// The server's counters and latency histograms, rendered in Prometheus'
// text exposition format (version 0.0.4) for GET /metrics. Thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "bifurcate/engine.h"

namespace bifurcate::server {

// A cumulative histogram with fixed upper bounds (seconds).
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double value);
  // _bucket{le=...}, _sum and _count lines for `name`.
  void render(std::string& out, const std::string& name) const;

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bound, not cumulative; the last is +Inf
  double sum_ = 0;
  uint64_t count_ = 0;
};

class Metrics {
 public:
  Metrics();

  // One finished HTTP request (every route, every status).
  void count_request(const std::string& route, int status);
  // One finished generation: its token counts and latencies.
  void count_generation(const GenerationStats& stats, const std::vector<double>& inter_token_seconds);

  // The exposition text; `engine` is null while the model loads.
  std::string render(const EngineStatus* engine, int in_flight, bool ready) const;

 private:
  mutable std::mutex mutex_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;  // (route, status) -> count
  uint64_t prompt_tokens_ = 0;
  uint64_t cached_tokens_ = 0;
  uint64_t generated_tokens_ = 0;
  uint64_t generations_ = 0;
  Histogram ttft_;
  Histogram inter_token_;
  Histogram queue_;
};

}  // namespace bifurcate::server
