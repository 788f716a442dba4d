// Command-line flags declared once per command. An argument struct lists its
// flags in one `for_each(visitor)`; the same declaration drives parsing and
// `--help` (after gemma.cpp's ArgsBase::ForEach):
//
//   struct InspectArgs {
//     std::string path;
//     uint64_t max_items = 8;                       // the initial value is the default
//     template <class Visitor> void for_each(Visitor& v) {
//       v.positional(path, "FILE", "GGUF file to inspect");
//       v(max_items, "max-items", '\0', "array items shown per metadata value");
//     }
//   };
//   InspectArgs args;
//   FlagParser parser = make_flag_parser(args, "inspect", "Print a GGUF file's metadata and tensors.");
//   if (parser.parse(argc, argv) == ParseResult::kShowHelp) { std::cout << parser.help(); return 0; }
//
// A flag has one canonical long name and may have more ("n-predict|predict"),
// and a short alias of one letter ('n') or several ("np", as llama.cpp's
// -np/-ngl). Syntax: --name VALUE, --name=VALUE, -a VALUE; bool flags take
// no value (--name) or an explicit one (--name=false); "--" ends the flags.
// Integer flags are parsed as 64-bit and checked against their IntRange, so
// nothing is silently cut to 32 bits. Mistakes throw UsageError naming the
// flag as it was typed; main exits with 2. `--version` throws ShowVersion.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "util/error.h"

namespace bifurcate::cli {

// A mistake in the command line itself (unknown flag, missing or malformed
// value, value out of range, flags that exclude each other), as opposed to a
// failure while running it.
class UsageError : public Error {
 public:
  using Error::Error;
};

// Thrown by FlagParser::parse for --version, so every command answers it
// without code of its own; main prints the version and exits 0.
class ShowVersion : public std::exception {
 public:
  const char* what() const noexcept override { return "--version"; }
};

enum class Need { kOptional, kRequired };
enum class ParseResult { kRun, kShowHelp };

// The short spelling of a flag: none ('\0' or ""), one letter ('m') or
// several letters ("ngl"); written with one dash.
struct Alias {
  Alias(char letter)
      : text(letter == '\0' ? std::string() : std::string(1, letter)) {}  // NOLINT: implicit by design
  Alias(const char* letters) : text(letters) {}                           // NOLINT
  std::string text;
};

// Accepted values of an integer flag, both ends included.
struct IntRange {
  int64_t min = std::numeric_limits<int64_t>::min();
  int64_t max = std::numeric_limits<int64_t>::max();
};

// Accepted values of a number flag: [min, max], or (min, max] when
// min_exclusive. NaN is never accepted.
struct RealRange {
  double min = -std::numeric_limits<double>::infinity();
  double max = std::numeric_limits<double>::infinity();
  bool min_exclusive = false;
};

class FlagParser {
 public:
  // `command` is the subcommand name ("make-model"), used in messages and usage.
  FlagParser(std::string_view command, std::string_view summary);

  // Visitor calls, one per flag. `names` is the long name, or several
  // separated by '|' (the first is the one help and messages use). The
  // variable's value at declaration time is the default shown by help().
  void operator()(std::string& value, std::string_view names, Alias alias, std::string_view help,
                  Need need = Need::kOptional);
  void operator()(int64_t& value, std::string_view names, Alias alias, std::string_view help,
                  Need need = Need::kOptional);
  void operator()(int64_t& value, std::string_view names, Alias alias, std::string_view help, IntRange range);
  void operator()(uint64_t& value, std::string_view names, Alias alias, std::string_view help,
                  Need need = Need::kOptional);
  void operator()(double& value, std::string_view names, Alias alias, std::string_view help,
                  Need need = Need::kOptional);
  void operator()(double& value, std::string_view names, Alias alias, std::string_view help, RealRange range);
  void operator()(bool& value, std::string_view names, Alias alias, std::string_view help);
  // A flag that may be given several times; each occurrence appends one value.
  void operator()(std::vector<std::string>& values, std::string_view names, Alias alias,
                  std::string_view help);
  // A required positional argument; positionals are filled in declaration order.
  void positional(std::string& value, std::string_view name, std::string_view help);
  // One or more trailing positional arguments (`detokenize 1 2 3`), after
  // every single positional; at most one list per command.
  void positional_list(std::vector<std::string>& values, std::string_view name, std::string_view help);
  // A spelling this command no longer accepts (`-j` after it became
  // -t/--threads): using it is a UsageError that says what to use instead.
  void moved(std::string_view spelled, std::string_view use_instead);

  // Parses argv[1..argc) (argv[0] is the command name) into the declared
  // variables. Returns kShowHelp, leaving values partly set, if -h/--help
  // appears; throws ShowVersion for --version and UsageError on any mistake.
  ParseResult parse(int argc, const char* const* argv);

  // Whether the flag with this canonical name appeared on the command line
  // (to tell "-p ''" from no -p, or to refuse flags that exclude each other).
  bool given(std::string_view name) const;

  // Usage line, summary, positionals and flags with their defaults.
  std::string help() const;

 private:
  using Target = std::variant<std::string*, int64_t*, uint64_t*, double*, bool*, std::vector<std::string>*>;
  using Range = std::variant<std::monostate, IntRange, RealRange>;
  struct Flag {
    std::vector<std::string> names;  // long names; names[0] is canonical
    std::string alias;               // short spelling without the dash, or ""
    std::string help;
    Need need;
    Target target;
    Range range;
    std::string default_text;
    bool seen = false;
  };
  struct Positional {
    std::string name;
    std::string help;
    std::string* target;
  };

  void add_flag(std::string_view names, const Alias& alias, std::string_view help, Need need, Target target,
                Range range, std::string default_text);
  Flag* find_flag(std::string_view spelled);
  void assign(Flag& flag, std::string_view spelled, std::string_view text);
  std::string see_help() const;

  std::string command_;
  std::string summary_;
  std::vector<Flag> flags_;
  std::vector<Positional> positionals_;
  std::vector<std::pair<std::string, std::string>> moved_;  // spelling, what to use instead
  std::vector<std::string>* positional_list_ = nullptr;
  std::string positional_list_name_;
  std::string positional_list_help_;
};

// Builds a parser from `args.for_each`; the parser writes into `args`, so
// `args` must outlive it.
template <class Args>
FlagParser make_flag_parser(Args& args, std::string_view command, std::string_view summary) {
  FlagParser parser(command, summary);
  args.for_each(parser);
  return parser;
}

// The program's version line ("bifurcate 0.3.0 (CPU inference engine, ...)").
std::string version_text();

}  // namespace bifurcate::cli
