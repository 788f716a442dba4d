// Command-line flags declared once per command. An argument struct lists its
// flags in one `for_each(visitor)`; the same declaration drives parsing and
// `--help` (after gemma.cpp's ArgsBase::ForEach):
//
//   struct InspectArgs {
//     std::string path;
//     uint64_t max_items = 8;                       // the initial value is the default
//     template <class Visitor> void for_each(Visitor& v) {
//       v.positional(path, "FILE", "GGUF file to inspect");
//       v(max_items, "max-items", 'n', "array items shown per metadata value");
//     }
//   };
//   InspectArgs args;
//   FlagParser parser = make_flag_parser(args, "inspect", "Print a GGUF file's metadata and tensors.");
//   if (parser.parse(argc, argv) == ParseResult::kShowHelp) { std::cout << parser.help(); return 0; }
//
// Syntax: --name VALUE, --name=VALUE, -a VALUE (a = the short alias); bool
// flags take no value (--name) or an explicit one (--name=false); "--" ends
// the flags. Mistakes throw UsageError naming the flag; main exits with 2.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "util/error.h"

namespace bifurcate::cli {

// A mistake in the command line itself (unknown flag, missing or malformed
// value, missing argument), as opposed to a failure while running it.
class UsageError : public Error {
 public:
  using Error::Error;
};

enum class Need { kOptional, kRequired };
enum class ParseResult { kRun, kShowHelp };

class FlagParser {
 public:
  // `command` is the subcommand name ("make-model"), used in messages and usage.
  FlagParser(std::string_view command, std::string_view summary);

  // Visitor calls, one per flag; `alias` is a short name or '\0' for none.
  // The variable's value at declaration time is the default shown by help().
  void operator()(std::string& value, std::string_view name, char alias, std::string_view help,
                  Need need = Need::kOptional);
  void operator()(int64_t& value, std::string_view name, char alias, std::string_view help,
                  Need need = Need::kOptional);
  void operator()(uint64_t& value, std::string_view name, char alias, std::string_view help,
                  Need need = Need::kOptional);
  void operator()(double& value, std::string_view name, char alias, std::string_view help,
                  Need need = Need::kOptional);
  void operator()(bool& value, std::string_view name, char alias, std::string_view help);
  // A required positional argument; positionals are filled in declaration order.
  void positional(std::string& value, std::string_view name, std::string_view help);
  // One or more trailing positional arguments (`detokenize 1 2 3`), after
  // every single positional; at most one list per command.
  void positional_list(std::vector<std::string>& values, std::string_view name, std::string_view help);

  // Parses argv[1..argc) (argv[0] is the command name) into the declared
  // variables. Returns kShowHelp, leaving values partly set, if -h/--help
  // appears; throws UsageError on any mistake.
  ParseResult parse(int argc, const char* const* argv);

  // Usage line, summary, positionals and flags with their defaults.
  std::string help() const;

 private:
  using Target = std::variant<std::string*, int64_t*, uint64_t*, double*, bool*>;
  struct Flag {
    std::string name;
    char alias;
    std::string help;
    Need need;
    Target target;
    std::string default_text;
    bool seen = false;
  };
  struct Positional {
    std::string name;
    std::string help;
    std::string* target;
  };

  void add_flag(std::string_view name, char alias, std::string_view help, Need need, Target target,
                std::string default_text);
  Flag* find_flag(std::string_view spelled);
  void assign(Flag& flag, std::string_view spelled, std::string_view text);
  std::string see_help() const;

  std::string command_;
  std::string summary_;
  std::vector<Flag> flags_;
  std::vector<Positional> positionals_;
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

}  // namespace bifurcate::cli
