#pragma once
// The recent outcomes a circuit breaker judges by: the last `capacity` calls
// that are younger than `max_age`, with running counts so that a check costs
// nothing. The ring is allocated once, at construction; adding never allocates.
#include <cstddef>
#include <vector>

#include "core/clock.h"

namespace shepherd::details {

class OutcomeWindow {
 public:
  OutcomeWindow(int capacity, Millis max_age);

  // Drops what has aged out, then records; when full, the oldest call drops out.
  void add(bool failed, TimePoint now);
  // Drops outcomes that are max_age old or older. Outcomes are expected in
  // time order (the owner's clock is monotonic).
  void expire(TimePoint now);
  void clear();

  int calls() const { return size_; }
  int failures() const { return failures_; }
  double failure_rate() const { return size_ > 0 ? static_cast<double>(failures_) / size_ : 0.0; }
  // The open condition: enough calls to judge by, and a rate at or above the
  // threshold (with a little slack, so 3 of 10 meets 0.3 despite rounding).
  bool meets(int min_calls, double failure_rate) const;

 private:
  struct Outcome {
    TimePoint at;
    bool failed = false;
  };

  std::vector<Outcome> ring_;
  Millis max_age_;
  size_t oldest_ = 0;
  int size_ = 0;
  int failures_ = 0;
};

}  // namespace shepherd::details
