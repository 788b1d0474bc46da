#pragma once
// Small, stable, non-cryptographic hashing: task ids and policy versions must
// not change between runs, builds or machines.
#include <cstdint>
#include <string>
#include <string_view>

namespace shepherd {

uint64_t stable_hash64(std::string_view data);

// stable_hash64 in steps, for many texts that share prefixes:
// stable_hash_finish(stable_hash_step(stable_hash_step(kStableHashSeed, a), b))
// == stable_hash64(a + b).
inline constexpr uint64_t kStableHashSeed = 0xcbf29ce484222325ULL;
uint64_t stable_hash_step(uint64_t state, std::string_view data);
uint64_t stable_hash_finish(uint64_t state);

// 16 lowercase hex digits of stable_hash64.
std::string stable_hash_hex(std::string_view data);

}  // namespace shepherd
