// The built `bifurcate` program: make-model + inspect end to end, help, and
// exit code 2 with a message naming the problem for bad command lines.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include "gguf/gguf_file.h"
#include "util/error.h"

namespace bifurcate {
namespace {

namespace fs = std::filesystem;

struct RunResult {
  int exit_code;
  std::string output;  // stdout and stderr together
};

// Runs the program with `arguments` (a shell-quoted string).
RunResult run_bifurcate(const std::string& arguments) {
  std::string binary = std::string(BIFURCATE_BINARY_DIR) + "/bifurcate";
  std::string command = str("'", binary, "' ", arguments, " 2>&1");
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) throw Error(str("popen failed for: ", command));
  std::string output;
  char buffer[4096];
  while (std::size_t n = std::fread(buffer, 1, sizeof buffer, pipe)) output.append(buffer, n);
  int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

class CliToolsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(std::string(BIFURCATE_BINARY_DIR) + "/bifurcate")) {
      GTEST_SKIP() << "the bifurcate program is not built in " << BIFURCATE_BINARY_DIR;
    }
    dir_ = fs::temp_directory_path() /
           str("bifurcate_cli_tools_", getpid(), "_",
               ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }
  std::string path(std::string_view name) const { return (dir_ / name).string(); }

  fs::path dir_;
};

bool contains(const std::string& text, std::string_view part) { return text.find(part) != std::string::npos; }

TEST_F(CliToolsTest, MakeModelThenInspect) {
  std::string file = path("tiny.gguf");
  RunResult made = run_bifurcate(str("make-model --shape tiny-qwen2 --dtype q8_0 --seed 9 -o '", file, "'"));
  ASSERT_EQ(made.exit_code, 0) << made.output;
  ASSERT_TRUE(fs::exists(file));
  EXPECT_TRUE(contains(made.output, file)) << made.output;
  EXPECT_TRUE(contains(made.output, str(fs::file_size(file), " bytes"))) << made.output;
  EXPECT_TRUE(contains(made.output, "100%")) << made.output;

  RunResult shown = run_bifurcate(str("inspect '", file, "'"));
  ASSERT_EQ(shown.exit_code, 0) << shown.output;
  EXPECT_TRUE(contains(shown.output, "GGUF version 3")) << shown.output;
  // Every tensor and metadata key the file holds (read independently) is listed.
  gguf::GgufFile f = gguf::GgufFile::open(file);
  for (const auto& t : f.tensors()) {
    EXPECT_TRUE(contains(shown.output, t.name + " ")) << t.name;
  }
  for (const auto& [key, value] : f.metadata()) EXPECT_TRUE(contains(shown.output, key)) << key;
  EXPECT_TRUE(contains(shown.output, "blk.1.attn_k.bias")) << shown.output;
  EXPECT_TRUE(contains(shown.output, "Q8_0")) << shown.output;
  EXPECT_TRUE(contains(shown.output, "64 x 512")) << shown.output;
  EXPECT_TRUE(contains(shown.output, "\"qwen2\"")) << shown.output;
  uint64_t total_bytes = 0;
  for (const auto& t : f.tensors()) total_bytes += t.n_bytes;
  EXPECT_TRUE(contains(shown.output, str("total: ", f.tensors().size(), " tensors"))) << shown.output;
  EXPECT_TRUE(contains(shown.output, str(total_bytes, " bytes of tensor data"))) << shown.output;
}

TEST_F(CliToolsTest, InspectAbbreviatesVocabArrays) {
  std::string vocab = std::string(BIFURCATE_TESTDATA_DIR) + "/vocab/ggml-vocab-llama-spm.gguf";
  if (!fs::exists(vocab)) GTEST_SKIP() << "missing test data " << vocab;
  RunResult shown = run_bifurcate(str("inspect --max-items 3 '", vocab, "'"));
  ASSERT_EQ(shown.exit_code, 0) << shown.output;
  EXPECT_TRUE(contains(shown.output, "array<string>[32000]")) << shown.output;
  EXPECT_TRUE(contains(shown.output, "tensors (0)")) << shown.output;
  EXPECT_LT(shown.output.size(), 20000u) << "arrays were not abbreviated";
}

TEST_F(CliToolsTest, HelpListsCommandsAndFlags) {
  RunResult top = run_bifurcate("--help");
  EXPECT_EQ(top.exit_code, 0);
  EXPECT_TRUE(contains(top.output, "make-model")) << top.output;
  EXPECT_TRUE(contains(top.output, "inspect")) << top.output;
  RunResult sub = run_bifurcate("make-model --help");
  EXPECT_EQ(sub.exit_code, 0);
  EXPECT_TRUE(contains(sub.output, "--shape")) << sub.output;
  EXPECT_TRUE(contains(sub.output, "7b-gqa-2l")) << sub.output;
  EXPECT_TRUE(contains(sub.output, "(default: \"f16\")")) << sub.output;
  RunResult bare = run_bifurcate("");
  EXPECT_EQ(bare.exit_code, 2);
  EXPECT_TRUE(contains(bare.output, "usage:")) << bare.output;
}

TEST_F(CliToolsTest, BadCommandLinesExitWithCode2AndSayWhy) {
  struct Case {
    std::string arguments;
    std::string expected;
  };
  std::string out = path("x.gguf");
  const Case cases[] = {
      {"frobnicate", "unknown command 'frobnicate'"},
      {str("make-model --shape tiny --bogus 1 -o ", out), "unknown flag '--bogus'"},
      {str("make-model --shape tiny --seed abc -o ", out), "--seed: 'abc'"},
      {"make-model --shape tiny", "missing required flag --output"},
      {str("make-model --shape tiny -o"), "-o needs a value"},
      {str("make-model --shape enormous -o ", out), "unknown model shape 'enormous'"},
      {str("make-model --shape tiny --dtype q3_k -o ", out), "unknown weight type 'q3_k'"},
      {"inspect", "missing argument FILE"},
  };
  for (const Case& c : cases) {
    RunResult r = run_bifurcate(c.arguments);
    EXPECT_EQ(r.exit_code, 2) << c.arguments << "\n" << r.output;
    EXPECT_TRUE(contains(r.output, "bifurcate: error: ")) << r.output;
    EXPECT_TRUE(contains(r.output, c.expected)) << c.arguments << "\n" << r.output;
  }
  EXPECT_FALSE(fs::exists(out));
}

TEST_F(CliToolsTest, FailuresWhileRunningExitWithCode1) {
  std::string missing = path("missing.gguf");
  RunResult r = run_bifurcate(str("inspect '", missing, "'"));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(contains(r.output, "bifurcate: error: ")) << r.output;
  EXPECT_TRUE(contains(r.output, missing)) << r.output;
}

}  // namespace
}  // namespace bifurcate
