#include "cli/output_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>

#include "util/error.h"

namespace bifurcate::cli {

void require_writable_path(const std::string& path, std::string_view what) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  const bool created = fd >= 0;
  if (!created && errno == EEXIST) fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) throw Error(str(what, ": cannot write '", path, "': ", std::strerror(errno)));
  close(fd);
  if (created) unlink(path.c_str());
}

void write_output_file(const std::string& path, std::string_view content) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw Error(str("cannot write '", path, "': ", std::strerror(errno)));
  std::size_t done = 0;
  while (done < content.size()) {
    const ssize_t n = write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int error = n < 0 ? errno : EIO;
      close(fd);
      throw Error(str("writing '", path, "' failed after ", done, " of ", content.size(),
                      " bytes: ", std::strerror(error)));
    }
    done += std::size_t(n);
  }
  if (close(fd) != 0) throw Error(str("closing '", path, "' failed: ", std::strerror(errno)));
}

namespace {

// std::cout's buffer under guard_stdout: every write goes to stdio's stdout
// at once (no buffer of its own), and the first failure's errno is kept.
class StdoutBuffer : public std::streambuf {
 public:
  int first_error() const { return first_error_; }
  // Flushes stdout; false (and the errno kept) on failure.
  bool flush_stdout() {
    if (std::fflush(stdout) == 0) return true;
    record(errno);
    return false;
  }

 protected:
  int overflow(int c) override {
    if (c == traits_type::eof()) return 0;
    const char ch = char(c);
    return put(&ch, 1) ? c : traits_type::eof();
  }
  std::streamsize xsputn(const char* s, std::streamsize n) override { return put(s, std::size_t(n)) ? n : 0; }
  int sync() override { return flush_stdout() ? 0 : -1; }

 private:
  bool put(const char* s, std::size_t n) {
    if (std::fwrite(s, 1, n, stdout) == n) return true;
    record(errno);
    return false;
  }
  void record(int error) {
    if (first_error_ == 0) first_error_ = error != 0 ? error : EIO;
  }
  int first_error_ = 0;
};

StdoutBuffer* g_stdout_buffer = nullptr;

}  // namespace

void guard_stdout() {
  // Never destroyed: std::cout flushes through it during exit, after the
  // destructors of function-local statics would have run.
  if (g_stdout_buffer == nullptr) g_stdout_buffer = new StdoutBuffer();
  std::cout.rdbuf(g_stdout_buffer);
}

void require_stdout_written() {
  errno = 0;
  std::cout.flush();
  bool failed = !std::cout;
  int error = 0;
  if (g_stdout_buffer != nullptr) {
    failed |= !g_stdout_buffer->flush_stdout();
    error = g_stdout_buffer->first_error();
  } else if (std::fflush(stdout) != 0) {
    failed = true;
    error = errno;
  }
  failed |= std::ferror(stdout) != 0;  // a printf that failed
  if (!failed) return;
  if (error == 0) error = errno;
  std::cout.clear();
  std::clearerr(stdout);
  throw Error(str("cannot write to standard output: ", error != 0 ? std::strerror(error) : "write error"));
}

}  // namespace bifurcate::cli
