// The subcommands of the `bifurcate` program. Each `run` gets the arguments
// after the program name (argv[0] is the command name itself), returns the
// exit code, and throws UsageError (exit 2) or Error (exit 1); only main()
// turns exceptions into messages and exit codes.
#pragma once

#include <string_view>

namespace bifurcate::cli {

struct Command {
  std::string_view name;
  std::string_view summary;
  int (*run)(int argc, char** argv);
};

int run_make_model(int argc, char** argv);  // cmd_make_model.cpp
int run_inspect(int argc, char** argv);     // cmd_inspect.cpp
int run_generate(int argc, char** argv);    // cmd_generate.cpp
int run_tokenize(int argc, char** argv);    // cmd_tokenize.cpp
int run_detokenize(int argc, char** argv);  // cmd_tokenize.cpp
int run_logits(int argc, char** argv);      // cmd_logits.cpp
int run_perplexity(int argc, char** argv);  // cmd_perplexity.cpp
int run_bench(int argc, char** argv);       // cmd_bench.cpp
int run_serve(int argc, char** argv);       // cmd_serve.cpp
int run_chat_template(int argc, char** argv);  // cmd_chat_template.cpp
int run_bench_serve(int argc, char** argv); // cmd_bench_serve.cpp

}  // namespace bifurcate::cli
