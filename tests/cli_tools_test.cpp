// The built `bifurcate` program: make-model + inspect end to end, help, and
// exit code 2 with a message naming the problem for bad command lines.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "cli_support.h"
#include "gguf/gguf_file.h"
#include "util/error.h"

namespace bifurcate {
namespace {

namespace fs = std::filesystem;

using cli_test::contains;
using cli_test::program_path;
using cli_test::run_bifurcate;
using cli_test::RunResult;

class CliToolsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(program_path())) {
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

TEST_F(CliToolsTest, MakeModelThenInspect) {
  std::string file = path("tiny.gguf");
  RunResult made = run_bifurcate(str("make-model --shape tiny-qwen2 --dtype q8_0 --seed 9 -o '", file, "'"));
  ASSERT_EQ(made.exit_code, 0) << made.combined();
  ASSERT_TRUE(fs::exists(file));
  EXPECT_TRUE(contains(made.combined(), file)) << made.combined();
  EXPECT_TRUE(contains(made.combined(), str(fs::file_size(file), " bytes"))) << made.combined();
  EXPECT_FALSE(contains(made.err, "\r")) << "progress is for terminals only: " << made.err;

  RunResult shown = run_bifurcate(str("inspect '", file, "'"));
  ASSERT_EQ(shown.exit_code, 0) << shown.combined();
  EXPECT_TRUE(contains(shown.combined(), "GGUF version 3")) << shown.combined();
  // Every tensor and metadata key the file holds (read independently) is listed.
  gguf::GgufFile f = gguf::GgufFile::open(file);
  for (const auto& t : f.tensors()) {
    EXPECT_TRUE(contains(shown.combined(), t.name + " ")) << t.name;
  }
  for (const auto& [key, value] : f.metadata()) EXPECT_TRUE(contains(shown.combined(), key)) << key;
  EXPECT_TRUE(contains(shown.combined(), "blk.1.attn_k.bias")) << shown.combined();
  EXPECT_TRUE(contains(shown.combined(), "Q8_0")) << shown.combined();
  EXPECT_TRUE(contains(shown.combined(), "64 x 512")) << shown.combined();
  EXPECT_TRUE(contains(shown.combined(), "\"qwen2\"")) << shown.combined();
  uint64_t total_bytes = 0;
  for (const auto& t : f.tensors()) total_bytes += t.n_bytes;
  EXPECT_TRUE(contains(shown.combined(), str("total: ", f.tensors().size(), " tensors"))) << shown.combined();
  EXPECT_TRUE(contains(shown.combined(), str(total_bytes, " bytes of tensor data"))) << shown.combined();
}

TEST_F(CliToolsTest, InspectAbbreviatesVocabArrays) {
  const std::string vocab = BIFURCATE_TESTDATA_DIR "/vocab/ggml-vocab-llama-spm.gguf";
  if (!fs::exists(vocab)) GTEST_SKIP() << "missing test data " << vocab;
  RunResult shown = run_bifurcate(str("inspect --max-items 3 '", vocab, "'"));
  ASSERT_EQ(shown.exit_code, 0) << shown.combined();
  EXPECT_TRUE(contains(shown.combined(), "array<string>[32000]")) << shown.combined();
  EXPECT_TRUE(contains(shown.combined(), "tensors (0)")) << shown.combined();
  EXPECT_LT(shown.combined().size(), 20000u) << "arrays were not abbreviated";
}

TEST_F(CliToolsTest, HelpListsCommandsAndFlags) {
  RunResult top = run_bifurcate("--help");
  EXPECT_EQ(top.exit_code, 0);
  EXPECT_TRUE(contains(top.combined(), "make-model")) << top.combined();
  EXPECT_TRUE(contains(top.combined(), "inspect")) << top.combined();
  RunResult sub = run_bifurcate("make-model --help");
  EXPECT_EQ(sub.exit_code, 0);
  EXPECT_TRUE(contains(sub.combined(), "--shape")) << sub.combined();
  EXPECT_TRUE(contains(sub.combined(), "7b-gqa-2l")) << sub.combined();
  EXPECT_TRUE(contains(sub.combined(), "(default: \"f16\")")) << sub.combined();
  RunResult bare = run_bifurcate("");
  EXPECT_EQ(bare.exit_code, 2);
  EXPECT_TRUE(contains(bare.combined(), "usage:")) << bare.combined();
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
    EXPECT_EQ(r.exit_code, 2) << c.arguments << "\n" << r.combined();
    EXPECT_TRUE(contains(r.combined(), "bifurcate: error: ")) << r.combined();
    EXPECT_TRUE(contains(r.combined(), c.expected)) << c.arguments << "\n" << r.combined();
  }
  EXPECT_FALSE(fs::exists(out));
}

TEST_F(CliToolsTest, FailuresWhileRunningExitWithCode1) {
  std::string missing = path("missing.gguf");
  RunResult r = run_bifurcate(str("inspect '", missing, "'"));
  EXPECT_EQ(r.exit_code, 1) << r.combined();
  EXPECT_TRUE(contains(r.combined(), "bifurcate: error: ")) << r.combined();
  EXPECT_TRUE(contains(r.combined(), missing)) << r.combined();
}

}  // namespace
}  // namespace bifurcate
