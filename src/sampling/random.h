// Counter-based random numbers: draw `counter` of stream (seed, stream) is a
// pure function of those three numbers, so a sample's tokens do not depend on
// which other samples share its batch, on the thread count, or on the order
// in which samples are processed.
//
// The stream is the splitmix64 sequence (Steele, Lea, Flood 2014) whose state
// starts at a key hashed from (seed, stream): output `counter` is
// finalize(key + (counter + 1) * golden), exactly splitmix64's counter-th output.
#pragma once

#include <cstdint>

namespace bifurcate::sampling {

inline constexpr uint64_t kGoldenGamma = 0x9e3779b97f4a7c15ull;

// splitmix64's output function: a bijection on 64 bits with full avalanche.
constexpr uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

constexpr uint64_t stream_key(uint64_t seed, uint64_t stream) {
  return mix64(mix64(seed + kGoldenGamma) ^ (stream * kGoldenGamma + 0x632be59bd9b4e019ull));
}

constexpr uint64_t random_bits(uint64_t seed, uint64_t stream, uint64_t counter) {
  return mix64(stream_key(seed, stream) + (counter + 1) * kGoldenGamma);
}

// Uniform in [0, 1) with 53 random bits.
constexpr double random_uniform(uint64_t seed, uint64_t stream, uint64_t counter) {
  return static_cast<double>(random_bits(seed, stream, counter) >> 11) * 0x1.0p-53;
}

}  // namespace bifurcate::sampling
