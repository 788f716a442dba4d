// Cancels generations whose client went away, ran past the request timeout,
// or were told to stop (drain). One thread polls the sockets of every
// generation in flight every 50 ms and sets their cancel flag, which the
// engine reads between decode steps.
//
// Why a socket lookup: a handler blocks in Engine::generate while the
// client may hang up, and cpp-httplib 0.11 hands handlers no socket and
// notices a dead peer only when it next writes. The socket is found from the
// request's address pair (find_connection_socket); it stays open, owned by
// the handler's thread, until the handler's response is written.
#pragma once

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace bifurcate::server {

// The connected socket whose local and peer ports (and peer address) match,
// or -1. Scans this process's descriptors (/proc/self/fd).
int find_connection_socket(int local_port, const std::string& remote_addr, int remote_port);

// Shuts down (both directions) every connected socket of this process on
// `local_port`: idle keep-alive connections end at once instead of after
// their timeout, so a drained server exits promptly.
void shutdown_connections(int local_port);

// True when the peer closed or reset the connection (data waiting to be
// read, such as a pipelined request, does not count).
bool peer_closed(int fd);

// One generation's cancel flag, registered with the watch while it exists.
struct Generation {
  std::atomic<bool> cancel{false};
  std::atomic<bool> disconnected{false};  // why it was cancelled (for the access log)
  int fd = -1;                            // -1: not watched for disconnects
  double deadline = 0;                    // now_seconds() after which it is cancelled; 0: none
};

class ConnectionWatch {
 public:
  ConnectionWatch();
  ~ConnectionWatch();
  ConnectionWatch(const ConnectionWatch&) = delete;
  ConnectionWatch& operator=(const ConnectionWatch&) = delete;

  void add(Generation* generation);
  void remove(Generation* generation);
  void cancel_all();  // drain: every generation in flight stops after its current step
  int size() const;

 private:
  void loop();

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::vector<Generation*> generations_;
  bool stop_ = false;
  std::thread thread_;
};

// Registers a generation for its scope.
class WatchedGeneration {
 public:
  WatchedGeneration(ConnectionWatch& watch, Generation& generation) : watch_(watch), generation_(generation) {
    watch_.add(&generation_);
  }
  ~WatchedGeneration() { watch_.remove(&generation_); }
  WatchedGeneration(const WatchedGeneration&) = delete;
  WatchedGeneration& operator=(const WatchedGeneration&) = delete;

 private:
  ConnectionWatch& watch_;
  Generation& generation_;
};

}  // namespace bifurcate::server
