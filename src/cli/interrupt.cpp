#include "cli/interrupt.h"

#include <csignal>

namespace bifurcate::cli {
namespace {

std::atomic<bool> g_interrupted{false};
static_assert(std::atomic<bool>::is_always_lock_free, "the flag is set from a signal handler");

extern "C" void on_interrupt(int) {
  g_interrupted.store(true);
  std::signal(SIGINT, SIG_DFL);  // a second Ctrl-C kills at once
}

}  // namespace

InterruptScope::InterruptScope() {
  g_interrupted.store(false);
  std::signal(SIGINT, on_interrupt);
}

InterruptScope::~InterruptScope() { std::signal(SIGINT, SIG_DFL); }

const std::atomic<bool>& InterruptScope::flag() { return g_interrupted; }

}  // namespace bifurcate::cli
