#ifndef PARAGAN_COMMON_RNG_H_
#define PARAGAN_COMMON_RNG_H_

#include <cmath>
#include <cstdint>

namespace paragan {

// PCG32 (O'Neill 2014): small, fast, and its whole state is two integers, so
// checkpoints can save it and resume the exact same stream. Deliberately not
// std:: distributions, whose output differs between standard libraries.
class Rng {
 public:
  struct State {
    uint64_t state;
    uint64_t inc;
  };

  explicit Rng(uint64_t seed, uint64_t stream = 54) {
    state_ = 0;
    inc_ = (stream << 1u) | 1u;
    NextU32();
    state_ += seed;
    NextU32();
  }

  uint32_t NextU32() {
    const uint64_t old = state_;
    state_ = old * 6364136223846793005ULL + inc_;
    const uint32_t xorshifted =
        static_cast<uint32_t>(((old >> 18u) ^ old) >> 27u);
    const uint32_t rot = static_cast<uint32_t>(old >> 59u);
    return (xorshifted >> rot) | (xorshifted << ((-rot) & 31));
  }
  // Uniform in [0, 1) with 24 random bits.
  float Uniform() { return (NextU32() >> 8) * (1.0f / 16777216.0f); }
  // Uniform integer in [0, n).
  uint32_t Below(uint32_t n) {
    return static_cast<uint32_t>((uint64_t{NextU32()} * n) >> 32);
  }
  // Standard normal (Box-Muller; one value per call keeps the state simple).
  float Normal() {
    const double u1 = (NextU32() + 1.0) / 4294967297.0;
    const double u2 = NextU32() / 4294967296.0;
    return static_cast<float>(std::sqrt(-2.0 * std::log(u1)) *
                              std::cos(6.283185307179586 * u2));
  }

  State state() const { return {state_, inc_}; }
  void set_state(const State& s) {
    state_ = s.state;
    inc_ = s.inc;
  }

 private:
  uint64_t state_, inc_;
};

// SplitMix64 (Steele, Lea & Flood 2014), for the data pipeline's orders and
// synthetic sets: fully specified, so the same seed gives the same stream on
// every platform and standard library (unlike std::shuffle).
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

}  // namespace paragan

#endif  // PARAGAN_COMMON_RNG_H_
