#ifndef PARAGAN_COMMON_LOG_LIMIT_H_
#define PARAGAN_COMMON_LOG_LIMIT_H_

// Log lines about what a stranger or a misbehaving client does (a refused
// token, a connection over a limit) must not let it flood the log.

#include <cstdint>

namespace paragan {

// Whether the n-th (1-based) occurrence of an event gets a log line: the
// first ten, then every thousandth: enough to see who, not a flood.
inline bool ShouldLogOccurrence(int64_t n) { return n <= 10 || n % 1000 == 0; }

}  // namespace paragan

#endif  // PARAGAN_COMMON_LOG_LIMIT_H_
