#include "keys/circuit_breaker.h"

#include <algorithm>

namespace shepherd {

namespace {

CircuitBreakerOptions checked(CircuitBreakerOptions o) {
  o.failure_threshold = std::max(o.failure_threshold, 1);
  o.half_open_probes = std::max(o.half_open_probes, 1);
  o.open_wait = std::max(o.open_wait, Millis(0));
  o.max_open_wait = std::max(o.max_open_wait, o.open_wait);
  return o;
}

}  // namespace

CircuitBreaker::CircuitBreaker(CircuitBreakerOptions options)
    : options_(checked(options)), wait_(options_.open_wait) {}

void CircuitBreaker::open(TimePoint now) {
  state_ = State::open;
  open_until_ = now + wait_;
  probes_ = 0;
  failures_ = 0;
}

bool CircuitBreaker::refresh(TimePoint now) {
  if (state_ != State::open || now < open_until_) return false;
  state_ = State::half_open;
  probes_ = 0;
  return true;
}

bool CircuitBreaker::allows(TimePoint now) {
  refresh(now);
  switch (state_) {
    case State::closed: return true;
    case State::open: return false;
    case State::half_open: return probes_ < options_.half_open_probes;
  }
  return false;
}

void CircuitBreaker::on_admitted() {
  if (state_ == State::half_open) ++probes_;
}

void CircuitBreaker::on_abandoned() {
  if (state_ == State::half_open && probes_ > 0) --probes_;
}

bool CircuitBreaker::on_success(TimePoint) {
  switch (state_) {
    case State::closed:
      failures_ = 0;
      return false;
    case State::open:
      return false;
    case State::half_open:
      state_ = State::closed;
      failures_ = 0;
      probes_ = 0;
      wait_ = options_.open_wait;
      return true;
  }
  return false;
}

bool CircuitBreaker::on_failure(TimePoint now) {
  switch (state_) {
    case State::closed:
      if (++failures_ < options_.failure_threshold) return false;
      open(now);
      return true;
    case State::open:
      return false;
    case State::half_open:
      // The slot is still failing: wait longer before the next probe.
      wait_ = std::min(wait_ * 2, options_.max_open_wait);
      open(now);
      return true;
  }
  return false;
}

std::string_view to_string(CircuitBreaker::State state) {
  switch (state) {
    case CircuitBreaker::State::closed: return "closed";
    case CircuitBreaker::State::open: return "open";
    case CircuitBreaker::State::half_open: return "half_open";
  }
  return "unknown";
}

}  // namespace shepherd
