#include "keys/key_pool.h"

namespace shepherd {

uint32_t KeyPool::add_key(std::string id, uint32_t provider) {
  keys_.push_back(PoolKey{std::move(id), provider});
  return static_cast<uint32_t>(keys_.size() - 1);
}

int KeyPool::add_slot(uint32_t key, uint32_t model, int concurrency) {
  KeySlot s;
  s.key = key;
  s.model = model;
  s.limit = concurrency < 1 ? 1 : concurrency;
  slots_.push_back(s);
  if (by_model_.size() <= model) {
    by_model_.resize(model + 1);
    rotation_.resize(model + 1, 0);
  }
  int index = static_cast<int>(slots_.size() - 1);
  by_model_[model].push_back(index);
  return index;
}

int KeyPool::acquire(uint32_t model, TimePoint now) {
  if (model >= by_model_.size()) return -1;
  const auto& candidates = by_model_[model];
  size_t n = candidates.size();
  int best = -1;
  int best_headroom = 0;
  size_t start = rotation_[model]++;
  for (size_t i = 0; i < n; ++i) {
    int index = candidates[(start + i) % n];
    const KeySlot& s = slots_[static_cast<size_t>(index)];
    if (s.cooldown_until > now) continue;
    int headroom = s.limit - s.in_flight;
    if (headroom > best_headroom) {
      best = index;
      best_headroom = headroom;
    }
  }
  if (best >= 0) {
    KeySlot& s = slots_[static_cast<size_t>(best)];
    ++s.in_flight;
    ++s.granted;
  }
  return best;
}

void KeyPool::release(int slot) {
  KeySlot& s = slots_[static_cast<size_t>(slot)];
  if (s.in_flight > 0) --s.in_flight;
}

void KeyPool::cool_down(int slot, TimePoint until) {
  KeySlot& s = slots_[static_cast<size_t>(slot)];
  if (until > s.cooldown_until) s.cooldown_until = until;
}

TimePoint KeyPool::next_ready(uint32_t model, TimePoint now) const {
  if (model >= by_model_.size()) return now;
  TimePoint earliest = TimePoint::max();
  for (int index : by_model_[model]) {
    const KeySlot& s = slots_[static_cast<size_t>(index)];
    if (s.cooldown_until <= now) return now;
    if (s.cooldown_until < earliest) earliest = s.cooldown_until;
  }
  return earliest == TimePoint::max() ? now : earliest;
}

int KeyPool::capacity(uint32_t model) const {
  int total = 0;
  if (model < by_model_.size())
    for (int index : by_model_[model]) total += slots_[static_cast<size_t>(index)].limit;
  return total;
}

int KeyPool::in_flight(uint32_t model) const {
  int total = 0;
  if (model < by_model_.size())
    for (int index : by_model_[model]) total += slots_[static_cast<size_t>(index)].in_flight;
  return total;
}

}  // namespace shepherd
