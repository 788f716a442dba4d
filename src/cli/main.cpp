// `bifurcate <command> [flags]`: dispatches to the commands of commands.h and
// is the one place where errors become messages and exit codes:
// 0 success, 1 failure while running (a failed write to stdout included),
// 2 bad command line, 130 stopped by Ctrl-C after printing what was done.
#include <exception>
#include <iomanip>
#include <iostream>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/output_file.h"
#include "util/printable.h"

namespace bifurcate::cli {
namespace {

// Add a command here: {name, one-line summary, run function}.
constexpr Command kCommands[] = {
    {"generate", "many continuations of one prompt, decoded together and ranked", run_generate},
    {"bench", "decode-step latency vs samples and context, bifurcated vs replicated, with a roofline", run_bench},
    {"serve", "an OpenAI-compatible HTTP server (completions, chat, models, metrics)", run_serve},
    {"bench-serve", "many concurrent requests sharing prompts: the prefix tree vs replicated, TTFT/ITL/throughput", run_bench_serve},
    {"make-model", "write a GGUF model file with random weights of a named shape", run_make_model},
    {"inspect", "print a GGUF file's metadata and tensor table", run_inspect},
    {"tokenize", "print the token ids of a text (JSON: with pieces)", run_tokenize},
    {"detokenize", "print the text of token ids", run_detokenize},
    {"logits", "top-K logits and log-probs of a prompt as JSON; check forked decoding", run_logits},
    {"perplexity", "perplexity over a text file in sliding windows", run_perplexity},
    {"chat-template", "render a chat template for conversations, as transformers' apply_chat_template", run_chat_template},
};

void print_usage(std::ostream& out) {
  out << "usage: bifurcate <command> [flags]\n\ncommands:\n";
  for (const Command& c : kCommands) out << "  " << std::left << std::setw(14) << c.name << c.summary << '\n';
  out << "\nRun 'bifurcate <command> --help' for a command's flags, 'bifurcate --version' for the version.\n";
}

int dispatch(int argc, char** argv) {
  if (argc < 2) {
    print_usage(std::cerr);
    return 2;
  }
  std::string_view name = argv[1];
  if (name == "--help" || name == "-h" || name == "help") {
    print_usage(std::cout);
    return 0;
  }
  if (name == "--version" || name == "version") throw ShowVersion();
  for (const Command& c : kCommands) {
    if (c.name == name) return c.run(argc - 1, argv + 1);
  }
  throw UsageError(str("unknown command '", name, "' (see 'bifurcate --help')"));
}

}  // namespace
}  // namespace bifurcate::cli

int main(int argc, char** argv) {
  using bifurcate::printable_message;
  // Messages may quote bytes from files (names, metadata): escaped, so an
  // ESC in a model file cannot drive the terminal.
  bifurcate::cli::guard_stdout();
  try {
    int code = 0;
    try {
      code = bifurcate::cli::dispatch(argc, argv);
    } catch (const bifurcate::cli::ShowVersion&) {
      std::cout << bifurcate::cli::version_text() << '\n';
    }
    bifurcate::cli::require_stdout_written();  // "exit 0" must mean the output arrived
    return code;
  } catch (const bifurcate::cli::UsageError& e) {
    std::cerr << "bifurcate: error: " << printable_message(e.what()) << '\n';
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "bifurcate: error: " << printable_message(e.what()) << '\n';
    return 1;
  }
}
