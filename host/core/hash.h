#pragma once
// Small, stable, non-cryptographic hashing: task ids and policy versions must
// not change between runs, builds or machines.
#include <cstdint>
#include <string>
#include <string_view>

namespace shepherd {

uint64_t stable_hash64(std::string_view data);

// 16 lowercase hex digits of stable_hash64.
std::string stable_hash_hex(std::string_view data);

}  // namespace shepherd
