// Ctrl-C for the commands that run long (generate, perplexity, logits,
// bench): while an InterruptScope lives, the first SIGINT only raises a flag
// the command polls between units of work (a decode step, a window, a row's
// round), so it can stop and print or write what it has finished; the
// second SIGINT kills the process as usual.
#pragma once

#include <atomic>

namespace bifurcate::cli {

// The exit code of a command stopped by Ctrl-C after printing what it had
// (128 + SIGINT, as a shell reports a process killed by it).
inline constexpr int kInterruptedExitCode = 130;

class InterruptScope {
 public:
  InterruptScope();   // clears the flag and installs the handler
  ~InterruptScope();  // restores the default action
  InterruptScope(const InterruptScope&) = delete;
  InterruptScope& operator=(const InterruptScope&) = delete;

  bool raised() const { return flag().load(); }
  // For GenerationCallbacks::cancel and SweepHooks::cancel.
  static const std::atomic<bool>& flag();
};

}  // namespace bifurcate::cli
