// Reads .pgt files (shard checkpoints) and says whether every float in them
// is finite: the chaos run's "no table holds NaN or Inf".
//   checkpoint_finite FILE...
// One line per file: "<file>: <arrays> arrays, <floats> floats, <n> not
// finite"; exit 0 when every file reads and holds only finite floats, 1
// otherwise (the unreadable or non-finite ones named).

#include <cmath>
#include <cstdint>
#include <cstring>
#include <iostream>
#include <string>

#include "common/tensor_io.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: checkpoint_finite FILE..." << std::endl;
    return 2;
  }
  bool ok = true;
  for (int i = 1; i < argc; ++i) {
    const std::string path = argv[i];
    auto arrays = paragan::ReadTensorFile(path);
    if (!arrays.ok()) {
      std::cout << path << ": unreadable: " << arrays.status() << std::endl;
      ok = false;
      continue;
    }
    int64_t floats = 0, bad = 0;
    std::string first_bad;
    for (const paragan::NamedArray& a : *arrays) {
      if (a.dtype != paragan::kDTypeFloat32) continue;
      const size_t n = a.bytes.size() / sizeof(float);
      for (size_t k = 0; k < n; ++k) {
        float v;
        std::memcpy(&v, a.bytes.data() + k * sizeof(float), sizeof(float));
        if (!std::isfinite(v)) {
          if (bad++ == 0) first_bad = a.name;
        }
      }
      floats += static_cast<int64_t>(n);
    }
    std::cout << path << ": " << arrays->size() << " arrays, " << floats
              << " floats, " << bad << " not finite"
              << (bad ? " (first in " + first_bad + ")" : "") << std::endl;
    if (bad > 0) ok = false;
  }
  return ok ? 0 : 1;
}
