#ifndef PARAGAN_COMMON_MALLOC_TUNING_H_
#define PARAGAN_COMMON_MALLOC_TUNING_H_

namespace paragan {

// Keeps tensor-sized allocations (up to 32 MiB) in glibc's heap and freed
// memory in the process, instead of mmap-ing and unmapping them each time.
// Pulls, pushes and snapshots allocate and free tens of MB per step; fresh
// mmap-ed pages cost a page fault and a zeroing each, which made a pull
// snapshot 4x slower than its memcpy. Call once at the start of main.
// Returns false when glibc refused a setting (other C libraries: no-op).
bool KeepLargeAllocationsInHeap();

}  // namespace paragan

#endif  // PARAGAN_COMMON_MALLOC_TUNING_H_
