#ifndef PARAGAN_COMMON_PROCESS_METRICS_H_
#define PARAGAN_COMMON_PROCESS_METRICS_H_

// Metrics every ParaGAN process exports beside its own:
// paragan_process_resident_memory_bytes and
// paragan_process_virtual_memory_bytes (read at scrape time).

#include <memory>

#include "prometheus/collectable.h"

namespace paragan {

// Memory of this process from /proc/self/statm, read on every scrape. Keep
// the pointer alive: Exposer::RegisterCollectable holds only a weak_ptr.
std::shared_ptr<prometheus::Collectable> MakeProcessCollectable();

}  // namespace paragan

#endif  // PARAGAN_COMMON_PROCESS_METRICS_H_
