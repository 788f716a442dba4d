#include "util/memory_info.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

namespace bifurcate {

std::size_t available_memory_bytes() {
  int fd = ::open("/proc/meminfo", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char text[4096];
  const ssize_t n = ::read(fd, text, sizeof text - 1);
  ::close(fd);
  if (n <= 0) return 0;
  text[n] = '\0';
  const char* line = std::strstr(text, "MemAvailable:");
  return line == nullptr ? 0 : std::size_t(std::strtoull(line + 13, nullptr, 10)) * 1024;
}

std::size_t default_kv_budget_bytes() {
  constexpr std::size_t kFloor = std::size_t(64) << 20;
  const std::size_t half = available_memory_bytes() / 2;
  return half > kFloor ? half : kFloor;
}

}  // namespace bifurcate
