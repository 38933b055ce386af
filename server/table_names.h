#ifndef PARAGAN_SERVER_TABLE_NAMES_H_
#define PARAGAN_SERVER_TABLE_NAMES_H_

// Names of the parameter servers' tables and which a worker role pushes,
// shared by the servers and their clients (workers, the launcher, tools).

#include <string>

#include "proto/paragan.pb.h"

namespace paragan {

inline constexpr char kGeneratorTable[] = "G";
inline constexpr char kDiscriminatorTable[] = "D";
// Read-only view of the G table: the exponential moving average of G's
// trainable tensors (and G's current buffers). Pull only.
inline constexpr char kGeneratorEmaTable[] = "G_ema";

// Whether a worker of `role` pushes `table` (registers to push it).
inline bool RolePushes(v1::WorkerRole role, const std::string& table) {
  switch (role) {
    case v1::BOTH:
      return true;
    case v1::G_ONLY:
      return table == kGeneratorTable;
    case v1::D_ONLY:
      return table == kDiscriminatorTable;
    default:
      return false;
  }
}

}  // namespace paragan

#endif  // PARAGAN_SERVER_TABLE_NAMES_H_
