// The library-level checks behind issue #15: corrupt metadata counts are
// refused before anything is sized by them, missing-tensor lists are capped,
// file bytes are escaped before they reach a message or a terminal, output
// writes report the OS's reason, and the flag parser reads 64-bit numbers
// with range checks, several names per flag and llama.cpp's multi-letter
// aliases.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "cli/args.h"
#include "cli/output_file.h"
#include "gguf/gguf_file.h"
#include "gguf/gguf_writer.h"
#include "model/model.h"
#include "model/model_config.h"
#include "model/model_shapes.h"
#include "model/random_model.h"
#include "util/printable.h"

namespace bifurcate {
namespace {

namespace fs = std::filesystem;

class TempDir : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / str("bifurcate_harden_unit_", getpid(), "_",
                                           ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(std::string_view name) const { return (dir_ / name).string(); }
  fs::path dir_;
};

// A copy of `source`'s metadata with `overrides` applied, holding the tensors `keep` selects plus `extra`.
struct ExtraTensor {
  std::string name;
  std::vector<uint64_t> dims;
};
void rewrite_model(const std::string& source, const std::string& out,
                   const std::vector<std::pair<std::string, gguf::Value>>& overrides,
                   const std::function<bool(const std::string&)>& keep,
                   const std::vector<ExtraTensor>& extra) {
  const gguf::GgufFile in = gguf::GgufFile::open(source);
  gguf::GgufWriter w;
  for (const auto& [key, value] : in.metadata()) {
    if (key == "general.alignment") continue;
    bool replaced = false;
    for (const auto& [k, v] : overrides) replaced |= (k == key);
    if (!replaced) w.set(key, value);
  }
  for (const auto& [k, v] : overrides) w.set(k, v);
  for (const gguf::TensorInfo& t : in.tensors()) {
    if (keep(t.name)) w.add_tensor(t.name, t.dims, t.type, std::span<const uint8_t>(t.data, t.n_bytes));
  }
  for (const ExtraTensor& t : extra) {
    std::vector<uint8_t> zeros(t.dims[0] * 4, 0);
    w.add_tensor(t.name, t.dims, gguf::GgmlType::F32, zeros);
  }
  w.write(out);
}

using CorruptModel = TempDir;

TEST_F(CorruptModel, HugeBlockCountIsRefusedBeforeAnythingIsAllocated) {
  const std::string tiny = path("tiny.gguf");
  model::write_random_model(model::find_model_shape("tiny"), gguf::GgmlType::F32, "", 1, tiny);
  const std::string bad = path("bad.gguf");
  rewrite_model(tiny, bad, {{"llama.block_count", gguf::Value::u32(1u << 30)}},
                [](const std::string&) { return true; }, {});
  const auto t0 = std::chrono::steady_clock::now();
  try {
    model::Model::load(bad);
    ADD_FAILURE() << "a block_count of 2^30 loaded";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("block_count' = 1073741824"), std::string::npos) << message;
    EXPECT_NE(message.find("needs at least 9663676416 tensors"), std::string::npos) << message;
    EXPECT_LT(message.size(), 400u) << message;
  }
  // Before the fix this took > 30 s and GBs; the check is a comparison.
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 5.0);
}

TEST_F(CorruptModel, MissingTensorListShowsTheFirstTenAndACount) {
  const std::string tiny = path("tiny.gguf");
  model::write_random_model(model::find_model_shape("tiny"), gguf::GgmlType::F32, "", 1, tiny);
  // block_count 3 with 30 unrelated tensors passes the count check; every
  // layer tensor (27) and output_norm are then missing: 28 problems.
  std::vector<ExtraTensor> filler;
  for (int i = 0; i < 30; ++i) filler.push_back({str("filler.", i), {4}});
  const std::string bad = path("missing.gguf");
  rewrite_model(
      tiny, bad, {{"llama.block_count", gguf::Value::u32(3)}},
      [](const std::string& name) { return name == "token_embd.weight"; }, filler);
  try {
    model::Model::load(bad);
    ADD_FAILURE() << "a model without its layers loaded";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("(28 problems)"), std::string::npos) << message;
    EXPECT_NE(message.find("... and 18 more"), std::string::npos) << message;
    size_t listed = 0;
    for (size_t at = message.find("\n  "); at != std::string::npos; at = message.find("\n  ", at + 1))
      ++listed;
    EXPECT_EQ(listed, 11u) << message;  // 10 problems + the "... and N more" line
  }
}

TEST_F(CorruptModel, FileBytesInErrorMessagesAreEscapedNotCut) {
  const std::string tiny = path("tiny.gguf");
  model::write_random_model(model::find_model_shape("tiny"), gguf::GgmlType::F32, "", 1, tiny);
  const std::string bad = path("arch.gguf");
  rewrite_model(tiny, bad,
                {{"general.architecture", gguf::Value::string(std::string("ll\x1b[2Jama\0tail", 14))}},
                [](const std::string&) { return true; }, {});
  try {
    model::Model::load(bad);
    ADD_FAILURE() << "an unknown architecture loaded";
  } catch (const Error& e) {
    const std::string message = e.what();  // what() is a C string: a raw NUL would end it
    EXPECT_NE(message.find("'ll\\x1b[2Jama\\x00tail'"), std::string::npos) << message;
    EXPECT_NE(message.find("(supported: llama, qwen2)"), std::string::npos) << message;
    EXPECT_EQ(message.find('\x1b'), std::string::npos);
  }
}

TEST(Printable, EscapesControlBytesAndInvalidUtf8AndKeepsText) {
  EXPECT_EQ(printable("plain text"), "plain text");
  EXPECT_EQ(printable("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"),
            "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
  EXPECT_EQ(printable(std::string("a\0b", 3)), "a\\x00b");
  EXPECT_EQ(printable("\x1b[31mred"), "\\x1b[31mred");
  EXPECT_EQ(printable("tab\tnl\ncr\r\x7f"), "tab\\x09nl\\x0acr\\x0d\\x7f");
  EXPECT_EQ(printable("back\\slash"), "back\\\\slash");
  EXPECT_EQ(printable("\xff\xc3"), "\\xff\\xc3");           // stray and truncated bytes
  EXPECT_EQ(printable("\xc0\xaf"), "\\xc0\\xaf");           // overlong '/'
  EXPECT_EQ(printable("\xed\xa0\x80"), "\\xed\\xa0\\x80");  // a UTF-16 surrogate
  EXPECT_EQ(printable_message("line\n  next\\x1b \x1b"), "line\n  next\\x1b \\x1b");
}

TEST(OutputFile, WriteFailureNamesThePathAndTheOsReason) {
  if (!fs::exists("/dev/full")) GTEST_SKIP() << "no /dev/full";
  try {
    cli::write_output_file("/dev/full", std::string(100000, 'x'));
    ADD_FAILURE() << "writing /dev/full succeeded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'/dev/full'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("No space left on device"), std::string::npos) << e.what();
  }
}

using OutputPath = TempDir;

TEST_F(OutputPath, WritabilityIsCheckedWithoutLeavingOrTruncatingFiles) {
  const std::string fresh = path("fresh.csv");
  cli::require_writable_path(fresh, "--csv");
  EXPECT_FALSE(fs::exists(fresh)) << "the check must not leave a file behind";
  const std::string existing = path("existing.csv");
  std::ofstream(existing) << "keep me";
  cli::require_writable_path(existing, "--csv");
  EXPECT_EQ(fs::file_size(existing), 7u) << "the check must not truncate";
  try {
    cli::require_writable_path(path("no-such-dir/out.csv"), "--csv");
    ADD_FAILURE() << "a path in a missing directory passed";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--csv: cannot write"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("No such file or directory"), std::string::npos) << e.what();
  }
}

TEST_F(OutputPath, GgufWriterNeverReplacesANonRegularFile) {
  const std::string target = path("real.gguf");
  std::ofstream(target) << "original";
  const std::string link = path("link.gguf");
  fs::create_symlink(target, link);
  const std::string fifo = path("fifo.gguf");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  gguf::GgufWriter w;
  w.set("general.architecture", gguf::Value::string("llama"));
  for (const std::string& p : {link, fifo, dir_.string()}) {
    EXPECT_THROW(w.write(p), Error) << p;
  }
  EXPECT_TRUE(fs::is_symlink(link));
  EXPECT_TRUE(fs::is_fifo(fifo));
  EXPECT_EQ(fs::file_size(target), 8u) << "the link's target was written through";
  // A regular file is replaced, and nothing but it is left in the directory.
  w.write(target);
  EXPECT_GT(fs::file_size(target), 8u);
  size_t entries = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir_)) ++entries;
  EXPECT_EQ(entries, 3u) << "a temporary file was left behind";
}

// ------------------------------------------------------------ flag parser

struct LlamaArgs {
  int64_t n_predict = 64;
  int64_t samples = 4;
  int64_t seed = 42;
  double top_p = 0.95;
  std::string gpu_layers;
  std::vector<std::string> stop;
  std::string prompt = "default";

  template <class Visitor>
  void for_each(Visitor& v) {
    v(n_predict, "n-predict|predict|max-tokens", 'n', "tokens",
      cli::IntRange{-1, std::numeric_limits<int32_t>::max()});
    v(samples, "samples|parallel", "np", "samples", cli::IntRange{1, 65536});
    v(seed, "seed", 's', "seed", cli::IntRange{-1, std::numeric_limits<int64_t>::max()});
    v(top_p, "top-p", '\0', "nucleus", cli::RealRange{0, 1, true});
    v(gpu_layers, "n-gpu-layers|gpu-layers", "ngl", "ignored");
    v(stop, "stop", '\0', "stop strings");
    v(prompt, "prompt", 'p', "prompt");
    v.moved("-j", "use -t/--threads");
  }
};

std::string parse_error(std::vector<std::string> words) {
  words.insert(words.begin(), "demo");
  std::vector<const char*> argv;
  for (const auto& w : words) argv.push_back(w.c_str());
  LlamaArgs args;
  cli::FlagParser parser = cli::make_flag_parser(args, "demo", "");
  try {
    parser.parse(int(argv.size()), argv.data());
  } catch (const cli::UsageError& e) {
    return e.what();
  }
  return "";
}

TEST(FlagParserLlama, EveryNameAndMultiLetterAliasReachesTheSameFlag) {
  for (const char* spelled : {"-n", "--n-predict", "--predict", "--max-tokens"}) {
    LlamaArgs args;
    cli::FlagParser parser = cli::make_flag_parser(args, "demo", "");
    const char* argv[] = {"demo", spelled, "128", "-np", "3", "-ngl", "99"};
    ASSERT_EQ(parser.parse(7, argv), cli::ParseResult::kRun) << spelled;
    EXPECT_EQ(args.n_predict, 128) << spelled;
    EXPECT_EQ(args.samples, 3);
    EXPECT_EQ(args.gpu_layers, "99");
    EXPECT_TRUE(parser.given("n-predict"));
    EXPECT_FALSE(parser.given("prompt"));
  }
  LlamaArgs args;
  cli::FlagParser parser = cli::make_flag_parser(args, "demo", "");
  const char* argv[] = {"demo", "--parallel", "5", "-p", "", "--stop", "|", "--stop=a|b"};
  ASSERT_EQ(parser.parse(8, argv), cli::ParseResult::kRun);
  EXPECT_EQ(args.samples, 5);
  EXPECT_TRUE(parser.given("prompt")) << "-p '' is given, though empty";
  EXPECT_EQ(args.stop, (std::vector<std::string>{"|", "a|b"})) << "repeatable, each value whole";
  const std::string help = parser.help();
  EXPECT_NE(help.find("-n, --n-predict INT"), std::string::npos) << help;
  EXPECT_NE(help.find("(also --predict, --max-tokens)"), std::string::npos) << help;
  EXPECT_NE(help.find("-np, --samples INT"), std::string::npos) << help;
  EXPECT_NE(help.find("[-1, 2147483647]"), std::string::npos) << help;
  EXPECT_NE(help.find("--version"), std::string::npos) << help;
}

TEST(FlagParserLlama, NumbersAreSixtyFourBitAndRangeChecked) {
  // 4294967297 = 2^32 + 1 was read as 1 when cut to 32 bits.
  EXPECT_NE(parse_error({"-n", "4294967297"}).find("flag -n: 4294967297 is out of range [-1, 2147483647]"),
            std::string::npos)
      << parse_error({"-n", "4294967297"});
  EXPECT_NE(parse_error({"--max-tokens", "4294967300"}).find("flag --max-tokens: 4294967300 is out of range"),
            std::string::npos);
  EXPECT_NE(parse_error({"-np", "0"}).find("flag -np: 0 is out of range [1, 65536]"), std::string::npos);
  EXPECT_NE(parse_error({"-s", "99999999999999999999"}).find("is out of range (64-bit)"), std::string::npos);
  EXPECT_NE(parse_error({"-s", "-2"}).find("flag -s: -2 is out of range >= -1"), std::string::npos)
      << parse_error({"-s", "-2"});
  EXPECT_EQ(parse_error({"-s", "-1"}), "");
  EXPECT_EQ(parse_error({"-s", "9223372036854775807"}), "");
  EXPECT_NE(parse_error({"--top-p", "0"}).find("flag --top-p: 0 is out of range (0, 1]"), std::string::npos);
  EXPECT_NE(parse_error({"--top-p", "nan"}).find("out of range"), std::string::npos);
  EXPECT_EQ(parse_error({"--top-p", "1"}), "");
  EXPECT_NE(parse_error({"-j", "2"}).find("flag -j is not a flag of 'demo': use -t/--threads"),
            std::string::npos);
  EXPECT_NE(parse_error({"-n", "1", "--predict", "2"}).find("given more than once"), std::string::npos);
}

TEST(FlagParserLlama, VersionIsAnsweredByEveryCommand) {
  LlamaArgs args;
  cli::FlagParser parser = cli::make_flag_parser(args, "demo", "");
  const char* argv[] = {"demo", "-n", "3", "--version"};
  EXPECT_THROW(parser.parse(4, argv), cli::ShowVersion);
  EXPECT_NE(cli::version_text().find("bifurcate "), std::string::npos);
}

}  // namespace
}  // namespace bifurcate
