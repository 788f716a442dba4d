// The shared-prefix serving workload (issue 12's benchmark), one definition
// for every client that drives it: `bifurcate bench-serve` in process, and
// the HTTP benchmarks and scale-out tests over the wire (they read the JSON
// that `bench-serve --workload-out FILE` writes).
//
// G groups; each has a system prompt of S random tokens shared by its Q
// requests; each request appends its own question of U random tokens and asks
// for n samples of exactly T tokens (EOS ignored). Requests are interleaved
// across groups (request i belongs to group i % G) and arrive open-loop:
// Poisson with rate R requests per second, or all at time 0 when R = 0.
// Everything is a function of the spec and its seed.
//
// JSON: {"spec": {groups, questions, system_tokens, question_tokens, samples,
// max_tokens, rate, seed, n_vocab}, "requests": [{"arrival_seconds", "group",
// "n", "max_tokens", "prompt_tokens": [ids]}]} — ids are of the model's
// vocabulary (drawn from [3, n_vocab), clear of the usual control tokens).
#pragma once

#include <cstdint>
#include <ostream>
#include <vector>

namespace bifurcate::cli {

struct ServeWorkloadSpec {
  int groups = 4;            // G
  int questions = 8;         // Q: requests per group
  int system_tokens = 2048;  // S
  int question_tokens = 64;  // U
  int samples = 4;           // n
  int max_tokens = 64;       // T
  double rate = 0;           // R requests/s; 0: all at once
  uint64_t seed = 1;
  int n_vocab = 32000;
};

struct ServeWorkloadRequest {
  double arrival_seconds = 0;  // after the start of the run
  int group = 0;
  int n = 1;
  int max_tokens = 1;
  std::vector<int32_t> prompt_tokens;  // the group's system prompt, then the question
};

// Throws Error naming a field out of range.
std::vector<ServeWorkloadRequest> make_serve_workload(const ServeWorkloadSpec& spec);
void write_serve_workload_json(std::ostream& out, const ServeWorkloadSpec& spec,
                               const std::vector<ServeWorkloadRequest>& requests);

}  // namespace bifurcate::cli
