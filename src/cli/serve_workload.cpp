#include "cli/serve_workload.h"

#include <random>

#include "util/error.h"
#include "cli/json_output.h"

namespace bifurcate::cli {

std::vector<ServeWorkloadRequest> make_serve_workload(const ServeWorkloadSpec& s) {
  require(s.groups >= 1 && s.questions >= 1, "workload: groups (", s.groups, ") and questions (", s.questions,
          ") must be >= 1");
  require(s.system_tokens >= 0 && s.question_tokens >= 0 && s.system_tokens + s.question_tokens >= 1,
          "workload: system (", s.system_tokens, ") and question (", s.question_tokens,
          ") tokens must be >= 0 and not both 0");
  require(s.samples >= 1 && s.max_tokens >= 1, "workload: samples (", s.samples, ") and max_tokens (",
          s.max_tokens, ") must be >= 1");
  require(s.rate >= 0, "workload: rate must be >= 0 requests/s (0: all at once), got ", s.rate);
  require(s.n_vocab > 3, "workload: n_vocab must be > 3, got ", s.n_vocab);
  std::mt19937_64 rng(s.seed);
  std::uniform_int_distribution<int32_t> token(3, s.n_vocab - 1);
  std::vector<std::vector<int32_t>> systems(size_t(s.groups));
  for (auto& system : systems)
    for (int i = 0; i < s.system_tokens; ++i) system.push_back(token(rng));
  std::exponential_distribution<double> gap(s.rate > 0 ? s.rate : 1.0);
  std::vector<ServeWorkloadRequest> out;
  double t = 0;
  for (int i = 0; i < s.groups * s.questions; ++i) {
    ServeWorkloadRequest r;
    r.group = i % s.groups;
    if (s.rate > 0 && i > 0) t += gap(rng);
    r.arrival_seconds = t;
    r.n = s.samples;
    r.max_tokens = s.max_tokens;
    r.prompt_tokens = systems[size_t(r.group)];
    for (int j = 0; j < s.question_tokens; ++j) r.prompt_tokens.push_back(token(rng));
    out.push_back(std::move(r));
  }
  return out;
}

void write_serve_workload_json(std::ostream& out, const ServeWorkloadSpec& s,
                               const std::vector<ServeWorkloadRequest>& requests) {
  Json list = Json::array();
  for (const ServeWorkloadRequest& r : requests) {
    list.push_back({{"arrival_seconds", r.arrival_seconds},
                    {"group", r.group},
                    {"n", r.n},
                    {"max_tokens", r.max_tokens},
                    {"prompt_tokens", r.prompt_tokens}});
  }
  print_json(out,
             {{"spec",
               {{"groups", s.groups},
                {"questions", s.questions},
                {"system_tokens", s.system_tokens},
                {"question_tokens", s.question_tokens},
                {"samples", s.samples},
                {"max_tokens", s.max_tokens},
                {"rate", s.rate},
                {"seed", s.seed},
                {"n_vocab", s.n_vocab}}},
              {"requests", std::move(list)}},
             /*pretty=*/false);
}

}  // namespace bifurcate::cli
