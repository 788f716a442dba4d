// Fuzz target: the command-line parser (cli/args.h) and the engine flags'
// validation (cli/engine_flags.h).
//
// Input layout: byte 0 picks the declaration (below); the rest is the
// argument list, split at NUL bytes (at most 64 arguments), after a fixed
// argv[0]. A cli::UsageError (or another bifurcate::Error) is the expected
// answer to a bad command line; anything else is a finding.
//
// The commands' own argument structs live inside their cmd_*.cpp files, so
// the declarations here are: one flag of every kind the parser supports
// (string, signed, unsigned, number, bool; optional and required; single
// positionals and a trailing list) — the parser's whole surface — and the
// real EngineFlags shared by generate, logits and perplexity, followed by
// EngineFlags::options(), their validation.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "cli/args.h"
#include "cli/engine_flags.h"
#include "util/error.h"

namespace {

using namespace bifurcate;
using cli::FlagParser;
using cli::Need;
using cli::ParseResult;

// Every kind of declaration, with short aliases like the real commands'.
struct EveryKindArgs {
  std::string input;
  std::string output;
  std::vector<std::string> rest;
  std::string text = "default text";
  std::string required_text;
  int64_t count = -1;
  uint64_t seed = 42;
  uint64_t required_n = 0;
  double scale = 0.5;
  bool flag = false;
  bool other_flag = true;

  template <class Visitor>
  void for_each(Visitor& v) {
    v.positional(input, "INPUT", "first positional");
    v.positional(output, "OUTPUT", "second positional");
    v.positional_list(rest, "REST", "trailing arguments");
    v(text, "text", 'p', "a string");
    v(required_text, "required-text", 'o', "a required string", Need::kRequired);
    v(count, "count", 'n', "a signed integer");
    v(seed, "seed", 's', "an unsigned integer");
    v(required_n, "required-n", '\0', "a required unsigned integer", Need::kRequired);
    v(scale, "scale", '\0', "a number");
    v(flag, "flag", 'f', "a bool");
    v(other_flag, "other-flag", '\0', "a bool that defaults to true");
  }
};

// The real engine flags, as generate/logits/perplexity declare them, plus
// one positional list like detokenize's.
struct EngineArgs {
  cli::EngineFlags engine;
  std::vector<std::string> ids;

  template <class Visitor>
  void for_each(Visitor& v) {
    engine.for_each(v);
    v.positional_list(ids, "ID", "trailing arguments");
  }
};

template <class Args>
void parse(const std::vector<const char*>& argv) {
  Args args;
  FlagParser parser = cli::make_flag_parser(args, "fuzz", "the command-line fuzz target");
  const std::string help = parser.help();
  if (help.empty()) std::abort();
  try {
    if (parser.parse(int(argv.size()), argv.data()) == ParseResult::kShowHelp) return;
    if constexpr (requires { args.engine; }) {
      (void)args.engine.options();
    }
  } catch (const Error&) {
    // UsageError (a subclass) for command-line mistakes.
  } catch (const cli::ShowVersion&) {
    // --version: the program prints its version (not an Error: not a mistake).
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const uint8_t which = data[0];
  // Split the rest at NULs; std::string keeps each argument NUL-terminated.
  std::vector<std::string> words(1, "fuzz");
  std::string current;
  for (std::size_t i = 1; i < size && words.size() <= 64; ++i) {
    if (data[i] == '\0') {
      words.push_back(std::move(current));
      current.clear();
    } else {
      current += char(data[i]);
    }
  }
  if (words.size() <= 64) words.push_back(std::move(current));
  std::vector<const char*> argv;
  for (const std::string& w : words) argv.push_back(w.c_str());

  if (which % 2 == 0) {
    parse<EveryKindArgs>(argv);
  } else {
    parse<EngineArgs>(argv);
  }
  return 0;
}
