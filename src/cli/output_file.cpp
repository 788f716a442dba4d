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

void require_stdout_written() {
  errno = 0;
  std::cout.flush();
  const bool failed = !std::cout || std::fflush(stdout) != 0 || std::ferror(stdout) != 0;
  if (!failed) return;
  const int error = errno;
  std::cout.clear();
  std::clearerr(stdout);
  throw Error(str("cannot write to standard output: ", error != 0 ? std::strerror(error) : "write error"));
}

}  // namespace bifurcate::cli
