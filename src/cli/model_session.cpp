#include "cli/model_session.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "cli/args.h"
#include "cli/json_output.h"
#include "tokenizer/unicode.h"
#include "util/error.h"
#include "util/printable.h"

namespace bifurcate::cli {

std::string read_text_file(const std::string& path) {
  // POSIX calls rather than ifstream, for the OS's reason on failure.
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(str("cannot read text file '", path, "': ", std::strerror(errno)));
  struct stat st {};
  if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
    close(fd);
    throw Error(str("cannot read text file '", path, "': it is a directory"));
  }
  std::string text;
  char buffer[1 << 16];
  while (true) {
    const ssize_t n = read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int error = errno;
      close(fd);
      throw Error(str("error while reading text file '", path, "': ", std::strerror(error)));
    }
    if (n == 0) break;
    text.append(buffer, std::size_t(n));
  }
  close(fd);
  return text;
}

std::string input_text(const std::string& prompt, const std::string& file) {
  if (!file.empty()) {
    if (!prompt.empty()) throw UsageError("give the text with -p TEXT or --file FILE, not both");
    std::string text = read_text_file(file);
    require(!text.empty(), "text file '", file, "' is empty");
    return text;
  }
  require(!prompt.empty(), "the text is empty (give it with -p TEXT or --file FILE)");
  return prompt;
}

std::vector<int32_t> parse_token_ids(std::string_view text, std::string_view flag) {
  std::vector<int32_t> ids;
  auto is_separator = [](char c) { return c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  size_t i = 0;
  while (i < text.size()) {
    if (is_separator(text[i])) {
      ++i;
      continue;
    }
    size_t end = i;
    while (end < text.size() && !is_separator(text[end])) ++end;
    const std::string_view item = text.substr(i, end - i);
    int32_t id = 0;
    auto [stop, ec] = std::from_chars(item.data(), item.data() + item.size(), id);
    if (ec != std::errc() || stop != item.data() + item.size()) {
      throw UsageError(str(flag, ": '", item, "' is not a token id (a decimal integer)"));
    }
    ids.push_back(id);
    i = end;
  }
  if (ids.empty()) throw UsageError(str(flag, ": no token ids given"));
  return ids;
}

Json token_piece_json(const std::string& piece) {
  if (tokenizer::find_invalid_utf8(piece) == std::string::npos) return piece;
  Json bytes = Json::array();
  for (char c : piece) bytes.push_back(int(static_cast<unsigned char>(c)));
  return bytes;
}

double log_sum_exp(std::span<const float> row) {
  const double m = *std::max_element(row.begin(), row.end());
  double sum = 0;
  for (float x : row) sum += std::exp(double(x) - m);
  return m + std::log(sum);
}

void print_model_banner(const ModelInfo& info) {
  std::fprintf(stderr, "model: %s (%s%s, %d layers, dim %d, %d heads / %d KV heads, vocab %d, context %d)\n",
               printable(info.path).c_str(), printable(info.architecture).c_str(),
               info.name.empty() ? "" : str(" \"", printable(info.name), "\"").c_str(), info.n_layers, info.dim,
               info.n_heads, info.n_kv_heads, info.n_vocab, info.context_length);
  if (!info.has_vocabulary) {
    std::fprintf(stderr, "model: no vocabulary (made without --vocab): token ids only\n");
  }
}

}  // namespace bifurcate::cli
