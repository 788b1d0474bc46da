#include "keys/details/outcome_window.h"

#include <algorithm>

namespace shepherd::details {

OutcomeWindow::OutcomeWindow(int capacity, Millis max_age)
    : ring_(static_cast<size_t>(std::max(capacity, 1))), max_age_(max_age) {}

void OutcomeWindow::add(bool failed, TimePoint now) {
  expire(now);
  if (size_ == static_cast<int>(ring_.size())) {
    // Full: the oldest call makes room.
    if (ring_[oldest_].failed) --failures_;
    oldest_ = (oldest_ + 1) % ring_.size();
    --size_;
  }
  ring_[(oldest_ + static_cast<size_t>(size_)) % ring_.size()] = Outcome{now, failed};
  ++size_;
  if (failed) ++failures_;
}

void OutcomeWindow::expire(TimePoint now) {
  while (size_ > 0 && now - ring_[oldest_].at >= max_age_) {
    if (ring_[oldest_].failed) --failures_;
    oldest_ = (oldest_ + 1) % ring_.size();
    --size_;
  }
}

void OutcomeWindow::clear() {
  oldest_ = 0;
  size_ = 0;
  failures_ = 0;
}

bool OutcomeWindow::meets(int min_calls, double failure_rate) const {
  return size_ > 0 && size_ >= min_calls && failures_ >= failure_rate * size_ - 1e-9;
}

}  // namespace shepherd::details
