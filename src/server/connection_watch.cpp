#include "server/connection_watch.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>

#include "util/timer.h"

namespace bifurcate::server {
namespace {

// Port and printable address of a socket address (IPv4 or IPv6).
bool describe(const sockaddr_storage& a, int& port, std::string& addr) {
  char text[INET6_ADDRSTRLEN] = {};
  if (a.ss_family == AF_INET) {
    const auto& v4 = reinterpret_cast<const sockaddr_in&>(a);
    port = ntohs(v4.sin_port);
    inet_ntop(AF_INET, &v4.sin_addr, text, sizeof text);
  } else if (a.ss_family == AF_INET6) {
    const auto& v6 = reinterpret_cast<const sockaddr_in6&>(a);
    port = ntohs(v6.sin6_port);
    inet_ntop(AF_INET6, &v6.sin6_addr, text, sizeof text);
  } else {
    return false;
  }
  addr = text;
  return true;
}

// Calls `visit(fd, local port, peer address, peer port)` for every connected
// socket of this process until it returns true; returns that fd or -1.
template <class Visit>
int find_socket(Visit visit) {
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return -1;
  int found = -1;
  while (const dirent* entry = readdir(dir)) {
    char* end = nullptr;
    const long fd = std::strtol(entry->d_name, &end, 10);
    if (end == entry->d_name || *end != '\0' || fd == dirfd(dir)) continue;
    sockaddr_storage peer{}, local{};
    socklen_t peer_len = sizeof peer, local_len = sizeof local;
    if (getpeername(int(fd), reinterpret_cast<sockaddr*>(&peer), &peer_len) != 0) continue;
    if (getsockname(int(fd), reinterpret_cast<sockaddr*>(&local), &local_len) != 0) continue;
    int peer_port = -1, own_port = -1;
    std::string peer_addr, own_addr;
    if (!describe(peer, peer_port, peer_addr) || !describe(local, own_port, own_addr)) continue;
    if (visit(int(fd), own_port, peer_addr, peer_port)) {
      found = int(fd);
      break;
    }
  }
  closedir(dir);
  return found;
}

}  // namespace

int find_connection_socket(int local_port, const std::string& remote_addr, int remote_port) {
  return find_socket([&](int, int own_port, const std::string& peer_addr, int peer_port) {
    return own_port == local_port && peer_port == remote_port && peer_addr == remote_addr;
  });
}

void shutdown_connections(int local_port) {
  find_socket([&](int fd, int own_port, const std::string&, int) {
    if (own_port == local_port) ::shutdown(fd, SHUT_RDWR);
    return false;
  });
}

bool peer_closed(int fd) {
  pollfd p{fd, short(POLLIN | POLLRDHUP), 0};
  if (poll(&p, 1, 0) <= 0) return false;
  if (p.revents & (POLLHUP | POLLERR | POLLNVAL | POLLRDHUP)) return true;
  if (p.revents & POLLIN) {
    char byte;
    return recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
  }
  return false;
}

ConnectionWatch::ConnectionWatch() : thread_([this] { loop(); }) {}

ConnectionWatch::~ConnectionWatch() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void ConnectionWatch::add(Generation* g) {
  std::lock_guard lock(mutex_);
  generations_.push_back(g);
}

void ConnectionWatch::remove(Generation* g) {
  std::lock_guard lock(mutex_);
  generations_.erase(std::remove(generations_.begin(), generations_.end(), g), generations_.end());
}

void ConnectionWatch::cancel_all() {
  std::lock_guard lock(mutex_);
  for (Generation* g : generations_) g->cancel.store(true);
}

int ConnectionWatch::size() const {
  std::lock_guard lock(mutex_);
  return int(generations_.size());
}

void ConnectionWatch::loop() {
  std::unique_lock lock(mutex_);
  while (!stop_) {
    wake_.wait_for(lock, std::chrono::milliseconds(50));
    const double now = now_seconds();
    for (Generation* g : generations_) {
      if (g->cancel.load()) continue;
      if (g->deadline > 0 && now > g->deadline) g->cancel.store(true);
      if (g->fd >= 0 && peer_closed(g->fd)) {
        g->disconnected.store(true);
        g->cancel.store(true);
      }
    }
  }
}

}  // namespace bifurcate::server
