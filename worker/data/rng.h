#ifndef PARAGAN_WORKER_DATA_RNG_H_
#define PARAGAN_WORKER_DATA_RNG_H_

// Small, fully specified generators for reproducible data pipelines: the same
// seed gives the same stream on every platform and standard library (unlike
// std::shuffle or the std:: distributions).

#include <cstdint>

namespace paragan::data {

// One SplitMix64 step (Steele, Lea & Flood 2014): advances *state and returns
// the next 64-bit output.
inline uint64_t SplitMix64Step(uint64_t* state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Stateless hash of two words (for per-index randomness).
inline uint64_t HashCombine(uint64_t a, uint64_t b) {
  uint64_t s = a;
  const uint64_t h = SplitMix64Step(&s);
  s = h ^ b;
  return SplitMix64Step(&s);
}

class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}

  uint64_t Next() { return SplitMix64Step(&state_); }

  // Uniform in [0, n) without modulo bias; n > 0.
  uint64_t Bounded(uint64_t n) {
    const uint64_t threshold = (0 - n) % n;  // 2^64 mod n
    for (;;) {
      const uint64_t r = Next();
      if (r >= threshold) return r % n;
    }
  }

  // Uniform in [0, 1) with 53 random bits.
  double Uniform() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }

 private:
  uint64_t state_;
};

}  // namespace paragan::data

#endif  // PARAGAN_WORKER_DATA_RNG_H_
