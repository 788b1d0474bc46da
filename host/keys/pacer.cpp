#include "keys/pacer.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace shepherd {

namespace {

// Rounding in level + rate * dt must not make try_take refuse at the instant
// ready_at promised; a millionth of a request or a token is no overdraft.
constexpr double kSlack = 1e-6;

// A debt at a tiny rate can mean a wait of centuries; TimePoint would overflow.
constexpr double kMaxWaitSeconds = 1e8;

double seconds_between(TimePoint from, TimePoint to) {
  return std::chrono::duration<double>(to - from).count();
}

// NaN and negatives count as nothing.
double amount(double n) { return n > 0 ? n : 0; }

}  // namespace

void Pacer::set_rate(double per_second, double burst, TimePoint now) {
  if (!(per_second > 0)) {
    rate_ = 0;
    return;
  }
  double new_burst = burst >= 1 ? burst : 1;  // below one token nothing could go
  if (unlimited()) {
    level_ = 1;
  } else {
    refill(now);  // what was earned at the old rate stays earned
  }
  rate_ = per_second;
  burst_ = new_burst;
  level_ = std::min(level_, burst_);
  stamp_ = std::max(stamp_, now);
}

double Pacer::level(TimePoint now) const {
  if (unlimited()) return burst_;
  if (now <= stamp_) return level_;
  return std::min(burst_, level_ + rate_ * seconds_between(stamp_, now));
}

void Pacer::refill(TimePoint now) {
  // A caller's `now` may lag a previous one by a little; time never runs back.
  if (now <= stamp_) return;
  level_ = level(now);
  stamp_ = now;
}

double Pacer::needed(double n) const { return std::min(amount(n), burst_); }

bool Pacer::try_take(TimePoint now, double n) {
  if (unlimited()) return true;
  refill(now);
  double need = needed(n);
  if (level_ + kSlack * std::max(1.0, need) < need) return false;
  level_ -= amount(n);
  return true;
}

TimePoint Pacer::ready_at(TimePoint now, double n) const {
  if (unlimited()) return now;
  double need = needed(n);
  double have = level(now);
  if (have + kSlack * std::max(1.0, need) >= need) return now;
  double wait_ns = std::min((need - have) / rate_, kMaxWaitSeconds) * 1e9;
  // Waiting is measured from the later of now and the last update, as level()
  // does. Rounded up so the promised instant has the tokens, but not for the
  // last bits of a floating-point error: 100 ms stays 100 ms.
  auto ticks = static_cast<int64_t>(std::ceil(wait_ns - 1e-3));
  return std::max(now, stamp_) + std::chrono::nanoseconds(ticks);
}

void Pacer::give_back(double n, TimePoint now) {
  if (unlimited()) return;
  refill(now);
  level_ = std::min(burst_, level_ + amount(n));
}

void Pacer::charge(double n, TimePoint now) {
  if (unlimited()) return;
  refill(now);
  level_ -= amount(n);
}

}  // namespace shepherd
