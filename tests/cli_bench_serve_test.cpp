// `bifurcate bench-serve` end to end on the real stories260K model: both
// modes run the same workload, the tree's cache hit rate is what block-aligned
// matching of the shared system prompts predicts, and the workload file holds
// the requests other clients will replay.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "cli_support.h"

namespace bifurcate::cli_test {
namespace {

const std::string kModel = std::string(BIFURCATE_TESTDATA_DIR) + "/stories260K/stories260K.gguf";

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(CliBenchServe, TreeAndReplicatedRunTheSameWorkload) {
  if (!std::filesystem::exists(program_path()) || !std::filesystem::exists(kModel))
    GTEST_SKIP() << "needs " << program_path() << " and " << kModel;
  const std::string dir = (std::filesystem::temp_directory_path() / str("bf_bench_serve_", getpid())).string();
  std::filesystem::create_directories(dir);
  const RunResult r = run_bifurcate(str("bench-serve -m '", kModel, "' -G 2 -Q 3 -S 70 -U 5 -n 2 -T 6 -t 2 --probe-mib 16 --json '", dir,
                                        "/runs.json' --workload-out '", dir, "/workload.json'"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "| tree | all |")) << r.out;
  const Json runs = parse_json(slurp(dir + "/runs.json"))["runs"];
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(runs[0]["mode"].get<std::string>(), "tree");
  EXPECT_EQ(runs[1]["mode"].get<std::string>(), "replicated");
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(runs[i]["requests"].get<int64_t>(), 6);
    EXPECT_EQ(runs[i]["generated_tokens"].get<int64_t>(), 6 * 2 * 6);  // EOS ignored: exactly T per sample
    EXPECT_GT(runs[i]["tokens_per_second"].get<double>(), 0);
    EXPECT_LE(runs[i]["ttft_ms_p50"].get<double>(), runs[i]["ttft_ms_p99"].get<double>());
    // The steady decode step and its floor: once every prompt is in, up to 12 rows decode alone.
    EXPECT_GT(runs[i]["decode_steps"].get<int64_t>(), 0);
    EXPECT_GE(runs[i]["decode_rows"].get<double>(), 1);
    EXPECT_LE(runs[i]["decode_rows"].get<double>(), 12);
    EXPECT_GT(runs[i]["decode_step_seconds"].get<double>(), 0);
    EXPECT_GT(runs[i]["floor_seconds"].get<double>(), 0);
    EXPECT_GT(runs[i]["read_bytes_per_second"].get<double>(), 0);
  }
  // Per group the first request prefills its 75 tokens; the other two wait
  // for it and match 64 of them (70 shared, cut to two 32-token blocks).
  EXPECT_NEAR(runs[0]["cache_hit_rate"].get<double>(), 2 * 2 * 64 / (6.0 * 75), 1e-9);
  EXPECT_EQ(runs[1]["cache_hit_rate"].get<double>(), 0);

  const Json workload = parse_json(slurp(dir + "/workload.json"));
  ASSERT_EQ(workload["requests"].size(), 6u);
  for (size_t i = 0; i < 6; ++i) {
    const Json& q = workload["requests"][i];
    EXPECT_EQ(q["group"].get<int64_t>(), int64_t(i % 2));
    EXPECT_EQ(q["arrival_seconds"].get<double>(), 0);
    ASSERT_EQ(q["prompt_tokens"].size(), 75u);
    const Json& same_group = workload["requests"][i % 2];
    for (size_t t = 0; t < 70; ++t) EXPECT_EQ(q["prompt_tokens"][t].get<int64_t>(), same_group["prompt_tokens"][t].get<int64_t>());
  }
  std::filesystem::remove_all(dir);
}

TEST(CliBenchServe, BadFlagsAreUsageErrors) {
  if (!std::filesystem::exists(program_path())) GTEST_SKIP() << "needs " << program_path();
  EXPECT_EQ(run_bifurcate(str("bench-serve -m '", kModel, "' --rate -1")).exit_code, 2);
  EXPECT_EQ(run_bifurcate(str("bench-serve -m '", kModel, "' --modes tree,fast")).exit_code, 2);
  EXPECT_EQ(run_bifurcate(str("bench-serve -m '", kModel, "' -G 0")).exit_code, 2);
}

}  // namespace
}  // namespace bifurcate::cli_test
