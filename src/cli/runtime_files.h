// Files the program reads at run time that are not given on the command
// line: the built-in stories260K model (commands without -m) and the
// llama-spm vocabulary (bench's default model). The build copies them to
// build/share/bifurcate/ and `cmake --install` to <prefix>/share/bifurcate/,
// so they are found from the program's own location, not from the source
// folder it was built in.
#pragma once

#include <string>
#include <string_view>

namespace bifurcate::cli {

inline constexpr const char* kBuiltInModelFile = "stories260K.gguf";
inline constexpr const char* kBenchVocabFile = "ggml-vocab-llama-spm.gguf";

// The directory holding the running program ("" if /proc/self/exe is unreadable).
std::string program_directory();

// <program dir>/share/bifurcate/NAME (a build tree) or
// <program dir>/../share/bifurcate/NAME (an installed prefix), whichever
// exists first; Error listing both places when neither does.
std::string find_runtime_file(std::string_view name);

}  // namespace bifurcate::cli
