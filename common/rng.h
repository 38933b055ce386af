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

}  // namespace paragan

#endif  // PARAGAN_COMMON_RNG_H_
