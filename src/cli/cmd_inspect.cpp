// `bifurcate inspect`: prints a GGUF file's header, metadata and tensor table.
#include <algorithm>
#include <iomanip>
#include <iostream>

#include "cli/args.h"
#include "cli/commands.h"
#include "gguf/gguf_file.h"
#include "util/printable.h"

namespace bifurcate::cli {
namespace {

struct InspectArgs {
  std::string path;
  uint64_t max_items = 8;

  template <class Visitor>
  void for_each(Visitor& v) {
    v.positional(path, "FILE", "GGUF file to inspect");
    v(max_items, "max-items", 'n', "array elements shown per metadata value");
  }
};

// Keys, tensor names and string values are the file's bytes: printed escaped
// (util/printable.h), so a NUL or an ESC in a file cannot reach the terminal.

// "string", or "array<string>[32000]" for arrays (nested: "array<array>[n]").
std::string describe_type(const gguf::Value& value) {
  if (value.type() != gguf::ValueType::Array) return std::string(gguf::value_type_name(value.type()));
  return str("array<", gguf::value_type_name(value.array_type()), ">[", value.as_array().size(), "]");
}

std::string join_dims(const std::vector<uint64_t>& dims) {
  std::string text;
  for (uint64_t d : dims) text += str(text.empty() ? "" : " x ", d);
  return text;
}

void print_metadata(const gguf::GgufFile& file, std::size_t max_items, std::ostream& out) {
  out << "metadata (" << file.metadata().size() << " keys):\n";
  std::size_t key_width = 0;
  for (const auto& [key, value] : file.metadata()) key_width = std::max(key_width, printable(key).size());
  for (const auto& [key, value] : file.metadata()) {
    out << "  " << std::left << std::setw(int(key_width)) << printable(key) << "  " << std::setw(22) << describe_type(value)
        << "  " << value.to_display_string(max_items) << '\n';
  }
}

void print_tensors(const gguf::GgufFile& file, std::ostream& out) {
  const auto& tensors = file.tensors();
  std::size_t name_width = 4;
  for (const auto& t : tensors) name_width = std::max(name_width, printable(t.name).size());
  out << "tensors (" << tensors.size() << "):\n";
  out << "  " << std::left << std::setw(int(name_width)) << "name" << "  " << std::setw(6) << "type"
      << std::setw(20) << "dims" << std::right << std::setw(14) << "bytes" << std::setw(14) << "offset" << '\n';
  uint64_t total_bytes = 0, total_elements = 0;
  for (const auto& t : tensors) {
    out << "  " << std::left << std::setw(int(name_width)) << printable(t.name) << "  " << std::setw(6)
        << gguf::ggml_type_traits(t.type).name << std::setw(20) << join_dims(t.dims) << std::right
        << std::setw(14) << t.n_bytes << std::setw(14) << t.offset << '\n';
    total_bytes += t.n_bytes;
    total_elements += t.n_elements();
  }
  out << "total: " << tensors.size() << " tensors, " << total_elements << " elements, " << total_bytes
      << " bytes of tensor data\n";
}

}  // namespace

int run_inspect(int argc, char** argv) {
  InspectArgs args;
  FlagParser parser = make_flag_parser(args, "inspect", "Print a GGUF file's metadata and tensor table.");
  if (parser.parse(argc, argv) == ParseResult::kShowHelp) {
    std::cout << parser.help();
    return 0;
  }
  gguf::GgufFile file = gguf::GgufFile::open(args.path);
  std::cout << printable(file.path()) << ": GGUF version " << file.version() << ", alignment " << file.alignment() << ", "
            << file.file_size() << " bytes, data section at " << file.data_offset() << '\n';
  print_metadata(file, args.max_items, std::cout);
  print_tensors(file, std::cout);
  return 0;
}

}  // namespace bifurcate::cli
