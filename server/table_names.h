#ifndef PARAGAN_SERVER_TABLE_NAMES_H_
#define PARAGAN_SERVER_TABLE_NAMES_H_

// Names of the parameter servers' tables, shared by the servers and their
// clients (workers, the launcher, the export tools).

namespace paragan {

inline constexpr char kGeneratorTable[] = "G";
inline constexpr char kDiscriminatorTable[] = "D";
// Read-only view of the G table: the exponential moving average of G's
// trainable tensors (and G's current buffers). Pull only.
inline constexpr char kGeneratorEmaTable[] = "G_ema";

}  // namespace paragan

#endif  // PARAGAN_SERVER_TABLE_NAMES_H_
