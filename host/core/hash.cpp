#include "core/hash.h"

#include <cstdio>

namespace shepherd {

uint64_t stable_hash_step(uint64_t h, std::string_view data) {
  // FNV-1a ...
  for (unsigned char c : data) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h;
}

uint64_t stable_hash_finish(uint64_t h) {
  // ... then a murmur-style finalizer to spread nearby inputs apart.
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h;
}

uint64_t stable_hash64(std::string_view data) { return stable_hash_finish(stable_hash_step(kStableHashSeed, data)); }

std::string stable_hash_hex(std::string_view data) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(stable_hash64(data)));
  return buf;
}

}  // namespace shepherd
