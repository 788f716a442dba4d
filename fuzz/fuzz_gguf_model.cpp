// Fuzz target: GGUF parsing and model binding, along the paths a file takes
// in the program. The input is a whole GGUF file. It is written to an
// in-memory file (memfd) and opened by path, as the commands open files:
//   1. GgufFile::open, every metadata value shown and every tensor's size
//      summed (what `inspect` does), then Tokenizer::from_gguf (what
//      `tokenize`/`detokenize` and the engine do) and a short text encoded
//      and decoded with whatever vocabulary the file holds;
//   2. model::Model::load (what the engine does): configuration, then every
//      weight bound by name and shape.
// A bifurcate::Error is the expected answer to a bad file. Anything else —
// another exception (std::bad_alloc, std::length_error, ...), a crash, a
// sanitizer report, a leak — is a finding.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "gguf/gguf_file.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace {

using namespace bifurcate;

// One memfd for the whole run, rewritten per input: no disk I/O and no
// temporary files left behind when the fuzzer is killed.
const std::string& write_input(const uint8_t* data, std::size_t size) {
  static const int fd = [] {
    const int created = ::memfd_create("fuzz_gguf_model", MFD_CLOEXEC);
    if (created < 0) {
      std::perror("memfd_create");
      std::abort();
    }
    return created;
  }();
  static const std::string path = "/proc/self/fd/" + std::to_string(fd);
  if (::ftruncate(fd, 0) != 0) std::abort();
  std::size_t done = 0;
  while (done < size) {
    const ssize_t n = ::pwrite(fd, data + done, size - done, off_t(done));
    if (n <= 0) std::abort();
    done += std::size_t(n);
  }
  return path;
}

// Fails the run (libFuzzer reports the abort as a crash) when an invariant
// the code documents does not hold.
void check(bool condition, const char* what) {
  if (!condition) {
    std::fprintf(stderr, "fuzz_gguf_model: invariant violated: %s\n", what);
    std::abort();
  }
}

void exercise_tokenizer(const tokenizer::Tokenizer& tok) {
  // Mixed text: ASCII, a space run, a multi-byte character, a newline and
  // texts that are special tokens in common vocabularies.
  static const std::string kText = "Hello  world!\n\xC3\xA9t\xC3\xA9 42 <s></s><|endoftext|>";
  for (const bool parse_special : {false, true}) {
    const std::vector<int32_t> ids = tok.encode(kText, /*add_bos=*/true, parse_special);
    for (const int32_t id : ids) check(id >= 0 && id < tok.n_vocab(), "encode returned an id outside the vocabulary");
    (void)tok.decode(ids);
  }
  // Every token's piece, up to a bound that keeps one input fast.
  const int32_t n = std::min<int32_t>(tok.n_vocab(), 512);
  std::vector<int32_t> all(static_cast<std::size_t>(n));
  for (int32_t i = 0; i < n; ++i) all[std::size_t(i)] = i;
  (void)tok.decode(all);
}

void parse_and_tokenize(const std::string& path) {
  const gguf::GgufFile file = gguf::GgufFile::open(path);
  std::size_t shown = 0;
  for (const auto& [key, value] : file.metadata()) shown += key.size() + value.to_display_string(8).size();
  uint64_t bytes = 0;
  for (const gguf::TensorInfo& t : file.tensors()) {
    check(t.data != nullptr || t.n_bytes == 0, "a tensor with bytes has no data pointer");
    check(t.offset + t.n_bytes <= file.file_size() - file.data_offset(), "a tensor extends past the file");
    bytes += t.n_bytes + t.n_elements() + t.n_rows();
    (void)gguf::ggml_type_traits(t.type).name;
  }
  (void)shown;
  (void)bytes;
  try {
    exercise_tokenizer(tokenizer::Tokenizer::from_gguf(file));
  } catch (const Error&) {
    // No vocabulary, or a bad one: reported, and the file's other uses go on.
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  const std::string& path = write_input(data, size);
  try {
    parse_and_tokenize(path);
  } catch (const Error&) {
  }
  try {
    const std::unique_ptr<model::Model> m = model::Model::load(path);
    const model::ModelConfig& c = m->config();
    check(int(m->weights().layers.size()) == c.n_layers, "bound layer count differs from block_count");
    check(m->weights().token_embedding.rows == c.n_vocab, "embedding rows differ from n_vocab");
  } catch (const Error&) {
  }
  return 0;
}
