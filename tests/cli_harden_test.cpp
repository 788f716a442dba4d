// The built `bifurcate` program against the findings of issue #15: outputs
// that are not regular files, progress on terminals and pipes, failed writes
// to stdout and to bench's files, Ctrl-C in perplexity and bench, escaped
// file bytes, NaN logits, the messages of item 9, literal stop strings, and
// the built-in model after `cmake --install`.
#include <gtest/gtest.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <thread>

#include "cli_support.h"
#include "gguf/gguf_file.h"
#include "gguf/gguf_writer.h"
#include "model/model_shapes.h"
#include "model/random_model.h"

namespace bifurcate::cli_test {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

const std::string kStories = std::string(BIFURCATE_TESTDATA_DIR) + "/stories260K/stories260K.gguf";
const std::string kSpmVocab = std::string(BIFURCATE_TESTDATA_DIR) + "/vocab/ggml-vocab-llama-spm.gguf";

// In a forked child: becomes `bifurcate ARGS` (exit 127 if it cannot).
[[noreturn]] void exec_program(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  const std::string program = program_path();
  argv.push_back(const_cast<char*>(program.c_str()));
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  execv(program.c_str(), argv.data());
  _exit(127);
}

// A running `bifurcate` with its stdout and stderr read through pipes, so a
// test can wait for a line, send a signal, and collect the rest.
class Child {
 public:
  explicit Child(const std::vector<std::string>& args) {
    int out[2], err[2];
    if (pipe(out) != 0 || pipe(err) != 0) throw Error("pipe failed");
    pid_ = fork();
    if (pid_ == 0) {
      dup2(out[1], 1);
      dup2(err[1], 2);
      close(out[0]), close(out[1]), close(err[0]), close(err[1]);
      exec_program(args);
    }
    close(out[1]), close(err[1]);
    out_fd_ = out[0], err_fd_ = err[0];
  }
  ~Child() {
    if (pid_ > 0 && !reaped_) kill(pid_, SIGKILL), wait_exit();
    close(out_fd_), close(err_fd_);
  }

  // Reads until stderr holds `marker` (true) or `seconds` pass / the child exits (false).
  bool wait_for_stderr(std::string_view marker, double seconds) {
    const auto deadline = Clock::now() + std::chrono::duration<double>(seconds);
    while (!contains(err, marker)) {
      if (Clock::now() > deadline || !pump(100)) return contains(err, marker);
    }
    return true;
  }
  void interrupt() { kill(pid_, SIGINT); }
  // Reads everything, then returns the exit code (-signal when killed by one).
  int wait_exit() {
    while (pump(1000)) {
    }
    int status = 0;
    waitpid(pid_, &status, 0);
    reaped_ = true;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
  }

  std::string out, err;

 private:
  // One poll round; false when both pipes are at end of file.
  bool pump(int timeout_ms) {
    pollfd fds[2] = {{out_fd_, POLLIN, 0}, {err_fd_, POLLIN, 0}};
    if (out_open_ == false) fds[0].fd = -1;
    if (err_open_ == false) fds[1].fd = -1;
    if (!out_open_ && !err_open_) return false;
    if (poll(fds, 2, timeout_ms) <= 0) return true;
    char buffer[65536];
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      const ssize_t n = read(fds[i].fd, buffer, sizeof buffer);
      if (n <= 0) {
        (i == 0 ? out_open_ : err_open_) = false;
      } else {
        (i == 0 ? out : err).append(buffer, size_t(n));
      }
    }
    return out_open_ || err_open_;
  }

  pid_t pid_ = -1;
  int out_fd_ = -1, err_fd_ = -1;
  bool out_open_ = true, err_open_ = true, reaped_ = false;
};

// `bifurcate ARGS` on a pseudo-terminal (stdout and stderr both the
// terminal, as in an interactive shell): everything it wrote, and the exit code.
RunResult run_on_terminal(const std::vector<std::string>& args) {
  int master = -1;
  winsize size{24, 200, 0, 0};
  const pid_t pid = forkpty(&master, nullptr, nullptr, &size);
  if (pid < 0) throw Error("forkpty failed");
  if (pid == 0) {
    exec_program(args);
  }
  RunResult r{-1, "", ""};
  char buffer[4096];
  while (true) {
    const ssize_t n = read(master, buffer, sizeof buffer);
    if (n <= 0) break;  // EIO once the child has exited
    r.out.append(buffer, size_t(n));
  }
  close(master);
  int status = 0;
  waitpid(pid, &status, 0);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}


class CliHardenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(program_path()))
      GTEST_SKIP() << "the bifurcate program is not built in " << BIFURCATE_BINARY_DIR;
    if (!fs::exists(kStories) || !fs::exists(kSpmVocab)) GTEST_SKIP() << "test data missing: " << kStories;
    dir_ = fs::temp_directory_path() / str("bifurcate_cli_harden_", getpid(), "_",
                                           ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }
  std::string path(std::string_view name) const { return (dir_ / name).string(); }
  // A tiny random model (f32) with the llama-spm vocabulary, or none.
  std::string tiny_model(bool with_vocab = true) const {
    const std::string p = path(with_vocab ? "tiny-spm.gguf" : "tiny-novocab.gguf");
    if (!fs::exists(p)) {
      model::write_random_model(model::find_model_shape("tiny"), gguf::GgmlType::F32,
                                with_vocab ? kSpmVocab : "", 3, p);
    }
    return p;
  }
  std::string write_file(std::string_view name, std::string_view bytes) const {
    const std::string p = path(name);
    std::ofstream(p, std::ios::binary) << bytes;
    return p;
  }
  fs::path dir_;
};

// 1. make-model -o: a FIFO, a symlink and a directory are refused before any
// work, and left as they were; a stale "<out>.tmp" link is not written through.
TEST_F(CliHardenTest, MakeModelRefusesOutputsThatAreNotRegularFiles) {
  const std::string target = write_file("target.txt", "precious");
  const std::string link = path("link.gguf");
  fs::create_symlink(target, link);
  const std::string fifo = path("fifo.gguf");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  const struct {
    std::string output, kind;
  } cases[] = {{link, "a symbolic link"}, {fifo, "a FIFO"}, {dir_.string(), "a directory"}};
  for (const auto& c : cases) {
    const RunResult r = run_bifurcate(str("make-model --shape tiny -o '", c.output, "'"));
    EXPECT_EQ(r.exit_code, 1) << c.output << "\n" << r.err;
    EXPECT_TRUE(contains(r.err, str("is ", c.kind, "; refusing to replace it"))) << r.err;
  }
  EXPECT_TRUE(fs::is_symlink(link));
  EXPECT_TRUE(fs::is_fifo(fifo));
  EXPECT_EQ(fs::file_size(target), 8u);

  const std::string out = path("model.gguf");
  const std::string decoy = write_file("decoy.txt", "decoy");
  fs::create_symlink(decoy, out + ".tmp");  // the old temporary name
  const RunResult made = run_bifurcate(str("make-model --shape tiny -o '", out, "'"));
  ASSERT_EQ(made.exit_code, 0) << made.err;
  EXPECT_EQ(fs::file_size(decoy), 5u) << "the .tmp link was written through";
  EXPECT_NO_THROW(gguf::GgufFile::open(out));
}

// 3. Progress: never "\r" into a pipe; on a terminal the step counter shows
// without --stream and is absent while text streams to the same terminal.
TEST_F(CliHardenTest, ProgressLinesOnlyOnATerminalAndNeverOverStreamedText) {
  const RunResult piped = run_bifurcate("generate -n 24 -np 2 --stream -t 1");
  ASSERT_EQ(piped.exit_code, 0) << piped.err;
  EXPECT_FALSE(contains(piped.err, "\r")) << piped.err;
  const RunResult made = run_bifurcate(str("make-model --shape tiny -o '", path("m.gguf"), "'"));
  EXPECT_FALSE(contains(made.err, "\r")) << made.err;

  const RunResult plain = run_on_terminal({"generate", "-n", "24", "-np", "2", "-t", "1"});
  ASSERT_EQ(plain.exit_code, 0) << plain.out;
  EXPECT_TRUE(contains(plain.out, "\rdecoding: step")) << "the terminal test cannot see progress:\n"
                                                       << plain.out;
  const RunResult streamed = run_on_terminal({"generate", "-n", "24", "-np", "2", "-t", "1", "--stream"});
  ASSERT_EQ(streamed.exit_code, 0) << streamed.out;
  EXPECT_FALSE(contains(streamed.out, "decoding: step")) << streamed.out;
  EXPECT_TRUE(contains(streamed.out, "Once upon a time")) << streamed.out;
}

// 4. A failed write to stdout exits non-zero with the OS's reason.
TEST_F(CliHardenTest, FullDiskOnStdoutIsAnErrorWithTheReason) {
  if (!fs::exists("/dev/full")) GTEST_SKIP() << "no /dev/full";
  // Small outputs fail at the final flush, a large one (~1 MB) on the way.
  const std::string large = str("inspect --max-items 100000 '", kSpmVocab, "'");
  for (const std::string& args :
       {std::string("generate -n 8 -np 2 --json -t 1"), std::string("tokenize -p 'Hello world'"),
        std::string("perplexity -p 'Once upon a time'"), std::string("--help"), std::string("--version"),
        large}) {
    const RunResult r = run_bifurcate(str(args, " >/dev/full"));
    EXPECT_EQ(r.exit_code, 1) << args << "\n" << r.err;
    EXPECT_TRUE(contains(r.err, "cannot write to standard output: No space left on device")) << args << "\n"
                                                                                             << r.err;
  }
}

// 4. bench checks --csv/--json/--plot paths before the sweep, and a file cut
// short is an error, never "written".
TEST_F(CliHardenTest, BenchOutputPathsCheckedFirstAndWritesChecked) {
  const std::string model = tiny_model(false);
  const std::string base = str("bench -m '", model, "' --npp 16 --ntg 2 --npl 1 --no-roofline -t 1");
  const RunResult missing_dir = run_bifurcate(str(base, " --no-plot --csv '", path("no/such/dir.csv"), "'"));
  EXPECT_EQ(missing_dir.exit_code, 1) << missing_dir.err;
  EXPECT_TRUE(contains(missing_dir.err, "--csv: cannot write")) << missing_dir.err;
  EXPECT_TRUE(contains(missing_dir.err, "No such file or directory")) << missing_dir.err;
  EXPECT_FALSE(contains(missing_dir.out, "| bifurcated")) << "the sweep ran before the path was checked";

  if (fs::exists("/dev/full")) {
    const RunResult full = run_bifurcate(str(base, " --no-plot --json /dev/full"));
    EXPECT_EQ(full.exit_code, 1) << full.err;
    EXPECT_TRUE(contains(full.err, "No space left on device")) << full.err;
    EXPECT_FALSE(contains(full.out, "json written")) << full.out;
  }
  const RunResult both = run_bifurcate(str(base, " --no-plot --plot '", path("p.svg"), "'"));
  EXPECT_EQ(both.exit_code, 2) << both.err;
  EXPECT_TRUE(contains(both.err, "--plot and --no-plot exclude each other")) << both.err;
}

// 6. Ctrl-C in perplexity: the windows finished are scored and reported.
TEST_F(CliHardenTest, InterruptedPerplexityReportsTheWindowsItFinished) {
  std::string text;
  while (text.size() < 400000)
    text += "Once upon a time, there was a little girl named Lily. She liked to play. ";
  const std::string file = write_file("long.txt", text);
  Child child({"perplexity", "-f", file, "-c", "32", "--stride", "16", "-t", "1"});
  ASSERT_TRUE(child.wait_for_stderr("[3/", 60)) << child.err;
  child.interrupt();
  EXPECT_EQ(child.wait_exit(), 130) << child.err;
  size_t done = 0, planned = 0;
  const size_t at = child.err.find("interrupted: reporting the ");
  ASSERT_NE(at, std::string::npos) << child.err;
  ASSERT_EQ(
      std::sscanf(child.err.c_str() + at, "interrupted: reporting the %zu of %zu windows", &done, &planned),
      2);
  EXPECT_GE(done, 3u);
  EXPECT_LT(done, planned);
  double ppl = 0, error = 0;
  long long scored = 0;
  ASSERT_EQ(
      std::sscanf(child.out.c_str(), "perplexity: %lf \xc2\xb1 %lf over %lld tokens", &ppl, &error, &scored),
      3)
      << child.out;
  // The first window scores ctx - 1 = 31 tokens, each later one its last 16.
  EXPECT_EQ(scored, 31 + 16 * (long long)(done - 1));
  EXPECT_TRUE(std::isfinite(ppl) && ppl > 1) << ppl;
}

// 6. Ctrl-C in bench: the rows with whole rounds are printed and written.
TEST_F(CliHardenTest, InterruptedBenchPrintsAndWritesItsFinishedRows) {
  const std::string model = tiny_model(false);
  const std::string csv = path("rows.csv");
  Child child({"bench", "-m", model, "--npp", "16,32", "--ntg", "20", "--npl", "1,2", "--repeat", "10000",
               "--no-roofline", "--no-plot", "-t", "1", "--csv", csv});
  ASSERT_TRUE(child.wait_for_stderr("row PP=32 B=1 bifurcated: 1 leaves forked", 120)) << child.err;
  child.interrupt();
  EXPECT_EQ(child.wait_exit(), 130) << child.err;
  EXPECT_TRUE(contains(child.err, "interrupted: reporting the")) << child.err;
  EXPECT_TRUE(contains(child.out, "csv written to")) << child.out;
  std::ifstream in(csv);
  std::string header, line;
  ASSERT_TRUE(std::getline(in, header));
  size_t rows = 0;
  while (std::getline(in, line)) ++rows;
  // Every PP=16 row finished at least pass 0 before PP=32's first row began.
  EXPECT_GE(rows, 4u) << child.out;
  EXPECT_TRUE(contains(child.out, "| bifurcated |")) << child.out;
}

// 7. general.name and tensor names from a file reach the terminal escaped.
TEST_F(CliHardenTest, FileBytesAreEscapedOnTheTerminal) {
  const gguf::GgufFile in = gguf::GgufFile::open(tiny_model(false));
  gguf::GgufWriter w;
  for (const auto& [key, value] : in.metadata()) {
    if (key != "general.alignment" && key != "general.name") w.set(key, value);
  }
  w.set("general.name", gguf::Value::string("evil\x1b]0;owned\x07name"));
  for (const gguf::TensorInfo& t : in.tensors()) {
    w.add_tensor(t.name, t.dims, t.type, std::span<const uint8_t>(t.data, t.n_bytes));
  }
  w.add_tensor(std::string("odd\x1b[2J\0name", 12), {4}, gguf::GgmlType::F32, std::vector<uint8_t>(16, 0));
  const std::string file = path("evil.gguf");
  w.write(file);

  const RunResult shown = run_bifurcate(str("inspect '", file, "'"));
  ASSERT_EQ(shown.exit_code, 0) << shown.err;
  EXPECT_FALSE(contains(shown.out, "\x1b")) << "raw ESC on the terminal";
  EXPECT_TRUE(contains(shown.out, "odd\\x1b[2J\\x00name")) << shown.out;
  const RunResult bench =
      run_bifurcate(str("bench -m '", file, "' --npp 8 --ntg 1 --npl 1 --no-roofline --no-plot -t 1"));
  ASSERT_EQ(bench.exit_code, 0) << bench.err;
  EXPECT_FALSE(contains(bench.out + bench.err, "\x1b")) << bench.out;
  EXPECT_TRUE(contains(bench.out, "evil\\x1b]0;owned\\x07name")) << bench.out;
}

// 8. NaN logits: perplexity errors as generate does, instead of "-nan", exit 0.
TEST_F(CliHardenTest, NanLogitsAreAnErrorInPerplexityAndGenerate) {
  const std::string file = path("nan.gguf");
  fs::copy_file(tiny_model(true), file);
  {
    const gguf::GgufFile f = gguf::GgufFile::open(file);
    const gguf::TensorInfo& norm = f.tensor("output_norm.weight");
    ASSERT_EQ(norm.type, gguf::GgmlType::F32);
    std::fstream out(file, std::ios::in | std::ios::out | std::ios::binary);
    out.seekp(std::streamoff(f.data_offset() + norm.offset));
    const float nan = std::nanf("");
    for (uint64_t i = 0; i < norm.n_elements(); ++i)
      out.write(reinterpret_cast<const char*>(&nan), sizeof nan);
  }
  const RunResult ppl = run_bifurcate(str("perplexity -m '", file, "' -p 'Once upon a time there was'"));
  EXPECT_EQ(ppl.exit_code, 1) << ppl.out << ppl.err;
  EXPECT_TRUE(contains(ppl.err, "not finite")) << ppl.err;
  EXPECT_FALSE(contains(ppl.out, "nan")) << ppl.out;
  const RunResult gen = run_bifurcate(str("generate -m '", file, "' -n 4"));
  EXPECT_EQ(gen.exit_code, 1) << gen.err;
  EXPECT_TRUE(contains(gen.err, "is nan")) << gen.err;
}

// 9. The messages: usage errors name the flag and exit 2; runtime failures
// carry the OS reason; hints where the user can do something.
TEST_F(CliHardenTest, MessagesNameTheFlagAndTheReason) {
  const std::string prompt_file = write_file("prompt.txt", "Once upon a time");
  const std::string no_vocab = tiny_model(false);
  struct Case {
    std::string args;
    int exit_code;
    std::string message;
  };
  const Case cases[] = {
      {"generate --top-p 2", 2, "flag --top-p: 2 is out of range (0, 1]"},
      {"generate --best-of 2 -np 3", 2, "flag --best-of: 2 must be >= --samples (3)"},
      {"generate --temp -1", 2, "flag --temp: -1 is out of range"},
      {"generate -n 4294967297", 2, "flag -n: 4294967297 is out of range"},
      {"generate --samples 4294967297", 2, "flag --samples: 4294967297 is out of range"},
      {"generate --seed -2", 2, "flag --seed: -2 is out of range"},
      {"generate -j 2", 2, "-t/--threads"},
      {str("generate -f '", prompt_file, "' -p 'other'"), 2, "not both"},
      {str("generate -f '", dir_.string(), "'"), 1, "it is a directory"},
      {str("generate -f '", path("absent.txt"), "'"), 1, "absent.txt': No such file or directory"},
      {str("perplexity -f '", path("absent.txt"), "'"), 1, "No such file or directory"},
      {str("generate -m '", no_vocab, "'"), 1, "has no vocabulary"},
      {str("generate -m '", no_vocab, "'"), 1, "--vocab"},
      {str("tokenize -m '", no_vocab, "' -p hi"), 1, "has no vocabulary"},
      {str("make-model --shape tiny -t f32 -o '", path("x.gguf"), "'"), 2, "--dtype"},
      {str("make-model -s tiny -o '", path("x.gguf"), "'"), 2, "flag -s: 'tiny' is not an integer"},
  };
  for (const Case& c : cases) {
    const RunResult r = run_bifurcate(c.args);
    EXPECT_EQ(r.exit_code, c.exit_code) << c.args << "\n" << r.err;
    EXPECT_TRUE(contains(r.err, c.message)) << c.args << "\nwanted: " << c.message << "\ngot: " << r.err;
  }
  // logits --tokens needs no tokenizer.
  const RunResult ids = run_bifurcate(str("logits -m '", no_vocab, "' --tokens 1,2,3 --top 3"));
  ASSERT_EQ(ids.exit_code, 0) << ids.err;
  EXPECT_EQ(parse_json(ids.out)["positions"][0]["top"].size(), 3u);
  // -t above the hardware threads warns; -ngl is accepted with a note.
  const RunResult many = run_bifurcate("generate -n 2 -np 1 -t 64 -ngl 99");
  EXPECT_EQ(many.exit_code, 0) << many.err;
  if (std::thread::hardware_concurrency() < 64) {
    EXPECT_TRUE(contains(many.err, "warning: --threads 64")) << many.err;
  }
  EXPECT_TRUE(contains(many.err, "note: --n-gpu-layers 99 ignored: this engine runs on the CPU")) << many.err;
  // No rates from zero decode steps; no ± from one token.
  const RunResult one = run_bifurcate("generate -n 1 -np 2");
  EXPECT_EQ(one.exit_code, 0) << one.err;
  EXPECT_TRUE(contains(one.err, "no decode steps")) << one.err;
  EXPECT_FALSE(contains(one.err, "t/s total")) << one.err;
  const RunResult single = run_bifurcate("perplexity -p 'Once'");
  EXPECT_EQ(single.exit_code, 0) << single.err;
  EXPECT_TRUE(contains(single.out, "over 1 token (no uncertainty")) << single.out;
  // -s -1 picks a seed and prints it; passing it back repeats the run.
  const RunResult random = run_bifurcate("generate -n 6 -np 1 -s -1 --json");
  ASSERT_EQ(random.exit_code, 0) << random.err;
  unsigned long long seed = 0;
  const size_t at = random.err.find("seed: ");
  ASSERT_NE(at, std::string::npos) << random.err;
  ASSERT_EQ(std::sscanf(random.err.c_str() + at, "seed: %llu (random", &seed), 1) << random.err;
  const RunResult again = run_bifurcate(str("generate -n 6 -np 1 --json -s ", seed));
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(parse_json(again.out)["samples"][0]["text"].get<std::string>(),
            parse_json(random.out)["samples"][0]["text"].get<std::string>());
}

// -n is tokens to predict (llama.cpp), --samples/-np the continuations.
TEST_F(CliHardenTest, DashNIsTokensToPredictAndSamplesAreSeparate) {
  const Json doc = parse_json(run_bifurcate("generate -n 5 -np 3 --ignore-eos --json -t 1").out);
  ASSERT_EQ(doc["samples"].size(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(doc["samples"][i]["n_tokens"].get<int64_t>(), 5);
  const Json all = parse_json(run_bifurcate("generate -n -1 -np 1 --ignore-eos --json -t 1").out);
  // -1: until the context (512) is full; the prompt holds 5 tokens.
  EXPECT_EQ(all["samples"][0]["n_tokens"].get<int64_t>() + all["stats"]["prompt_tokens"].get<int64_t>(), 512);
}

// 10. --stop takes its value whole ('|' is a character) and repeats.
TEST_F(CliHardenTest, StopStringsAreLiteralAndRepeatable) {
  const std::string base = "generate -np 1 -n 40 --temp 0 --json -t 1";
  const Json free_run = parse_json(run_bifurcate(base).out);
  const std::string text = free_run["samples"][0]["text"].get<std::string>();
  ASSERT_TRUE(contains(text, ",")) << text;
  const Json comma = parse_json(run_bifurcate(base + " --stop ,").out);
  EXPECT_EQ(comma["samples"][0]["text"].get<std::string>(), text.substr(0, text.find(',')));
  EXPECT_EQ(comma["samples"][0]["finish_reason"].get<std::string>(), "stop");
  // ",|" used to be split into "," and ""; now it is one string that never occurs.
  const Json literal = parse_json(run_bifurcate(base + " --stop ',|'").out);
  EXPECT_EQ(literal["samples"][0]["text"].get<std::string>(), text);
  const Json two = parse_json(run_bifurcate(base + " --stop '|' --stop ,").out);
  EXPECT_EQ(two["samples"][0]["text"].get<std::string>(), text.substr(0, text.find(',')));
}

// 10. The built-in model is installed beside the program and found from there.
TEST_F(CliHardenTest, InstalledProgramFindsItsBuiltInModel) {
  const std::string prefix = path("prefix");
  const RunResult install =
      run_shell(str("cmake --install '", BIFURCATE_BINARY_DIR, "' --prefix '", prefix, "'"));
  ASSERT_EQ(install.exit_code, 0) << install.out << install.err;
  const std::string installed = prefix + "/bin/bifurcate";
  ASSERT_TRUE(fs::exists(installed));
  ASSERT_TRUE(fs::exists(prefix + "/share/bifurcate/stories260K.gguf"));
  ASSERT_TRUE(fs::exists(prefix + "/share/bifurcate/ggml-vocab-llama-spm.gguf"));
  const RunResult r = run_shell(str("cd / && '", installed, "' generate -n 4 -np 1"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(contains(r.err, str("model: ", prefix, "/share/bifurcate/stories260K.gguf"))) << r.err;
}

}  // namespace
}  // namespace bifurcate::cli_test
