#pragma once
// Slots are (key, model) pairs: providers limit each pair on its own. Acquire
// picks the eligible slot with the most headroom; a 429 cools one slot down
// without touching the others. Not thread-safe: its owner serialises calls.
#include <cstdint>
#include <string>
#include <vector>

#include "core/clock.h"

namespace shepherd {

struct KeySlot {
  uint32_t key = 0;    // index into keys()
  uint32_t model = 0;  // the caller's model index
  int limit = 1;       // max in flight
  int in_flight = 0;
  TimePoint cooldown_until{};
  uint64_t granted = 0;
};

struct PoolKey {
  std::string id;     // never the key's value
  uint32_t provider = 0;
};

class KeyPool {
 public:
  uint32_t add_key(std::string id, uint32_t provider);
  int add_slot(uint32_t key, uint32_t model, int concurrency);

  // A slot index with free capacity for `model`, or -1.
  int acquire(uint32_t model, TimePoint now);
  void release(int slot);
  void cool_down(int slot, TimePoint until);

  // When all of the model's slots are cooling: the earliest end; else `now`.
  TimePoint next_ready(uint32_t model, TimePoint now) const;
  int capacity(uint32_t model) const;  // sum of limits
  int in_flight(uint32_t model) const;

  const KeySlot& slot(int index) const { return slots_[static_cast<size_t>(index)]; }
  const std::vector<KeySlot>& slots() const { return slots_; }
  const PoolKey& key(uint32_t index) const { return keys_[index]; }

 private:
  std::vector<PoolKey> keys_;
  std::vector<KeySlot> slots_;
  std::vector<std::vector<int>> by_model_;
  std::vector<size_t> rotation_;  // spreads ties across keys
};

}  // namespace shepherd
