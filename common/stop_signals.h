#ifndef PARAGAN_COMMON_STOP_SIGNALS_H_
#define PARAGAN_COMMON_STOP_SIGNALS_H_

#include <pthread.h>
#include <signal.h>

namespace paragan {

// Blocks SIGTERM and SIGINT in the calling thread and returns that set. Call
// it first in main, before any thread starts: every thread inherits the mask,
// so only the thread that waits on the set (sigwaitinfo / sigtimedwait)
// receives a stop request, and no handler runs at a random point.
inline sigset_t BlockStopSignals() {
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  return stop_signals;
}

}  // namespace paragan

#endif  // PARAGAN_COMMON_STOP_SIGNALS_H_
