#ifndef PARAGAN_TOOLS_FUZZ_FUZZ_TARGET_H_
#define PARAGAN_TOOLS_FUZZ_FUZZ_TARGET_H_

// What every fuzz target defines. The entry point is libFuzzer's; the seeds
// function builds valid inputs with the real encoders, so the committed seed
// corpus can be regenerated after a format change:
//   bazel run //<pkg>:<target>_test --
//   --write_seeds=$PWD/<pkg>/fuzz_corpus/<target>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace paragan {

std::vector<std::string> FuzzSeeds();

// Aborts with `what` when `condition` is false: a fuzz target's invariant
// (e.g. "what parsed re-serializes to the same bytes"), reported as a crash.
void FuzzCheck(bool condition, const char* what);

}  // namespace paragan

#endif  // PARAGAN_TOOLS_FUZZ_FUZZ_TARGET_H_
