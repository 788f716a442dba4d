#include "cli/runtime_files.h"

#include <filesystem>

#include "util/error.h"

namespace bifurcate::cli {
namespace fs = std::filesystem;

std::string program_directory() {
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string() : exe.parent_path().string();
}

std::string find_runtime_file(std::string_view name) {
  const fs::path dir = program_directory();
  const fs::path candidates[] = {dir / "share" / "bifurcate" / name,
                                 (dir / ".." / "share" / "bifurcate" / name).lexically_normal()};
  std::error_code ec;
  for (const fs::path& p : candidates) {
    if (fs::is_regular_file(p, ec)) return p.string();
  }
  throw Error(str("the built-in file ", name, " is missing: looked for ", candidates[0].string(), " and ",
                  candidates[1].string(),
                  " (the build copies it from the test data; `cmake --install` "
                  "installs it beside the program)"));
}

}  // namespace bifurcate::cli
