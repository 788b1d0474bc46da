#include "keys/circuit_breaker.h"

#include <algorithm>

namespace shepherd {

CircuitBreakerOptions checked(CircuitBreakerOptions o) {
  // A rate of 0 would open a breaker that never saw a failure; NaN compares false to everything.
  if (!(o.failure_rate > 0)) o.failure_rate = 0.01;
  o.failure_rate = std::min(o.failure_rate, 1.0);
  o.window = std::max(o.window, 1);
  o.min_calls = std::clamp(o.min_calls, 1, o.window);  // above the window it could never open
  o.window_ms = std::max(o.window_ms, Millis(1));
  o.open_ms = std::max(o.open_ms, Millis(0));
  o.max_open_ms = std::max(o.max_open_ms, o.open_ms);
  o.probes = std::max(o.probes, 1);
  return o;
}

CircuitBreaker::CircuitBreaker(CircuitBreakerOptions options, Trigger trigger)
    : options_(checked(options)),
      trigger_(trigger),
      window_(trigger == Trigger::window ? options_.window : 1, options_.window_ms),
      wait_(options_.open_ms) {}

void CircuitBreaker::open(TimePoint now) {
  state_ = State::open;
  open_until_ = now + wait_;
  probes_admitted_ = probe_successes_ = probe_failures_ = 0;
}

bool CircuitBreaker::trip(TimePoint now) {
  if (state_ != State::closed) return false;
  open(now);
  return true;
}

bool CircuitBreaker::refresh(TimePoint now) {
  if (state_ != State::open || now < open_until_) return false;
  state_ = State::half_open;
  probes_admitted_ = probe_successes_ = probe_failures_ = 0;
  return true;
}

bool CircuitBreaker::allows(TimePoint now) {
  refresh(now);
  switch (state_) {
    case State::closed: return true;
    case State::open: return false;
    case State::half_open: return probes_admitted_ < options_.probes;
  }
  return false;
}

void CircuitBreaker::on_admitted() {
  if (state_ == State::half_open) ++probes_admitted_;
}

void CircuitBreaker::on_abandoned() {
  if (state_ == State::half_open && probes_admitted_ > probes_reported()) --probes_admitted_;
}

bool CircuitBreaker::on_success(TimePoint now) { return on_outcome(false, now); }

bool CircuitBreaker::on_failure(TimePoint now) { return on_outcome(true, now); }

bool CircuitBreaker::on_outcome(bool failed, TimePoint now) {
  switch (state_) {
    case State::closed:
      if (!failed) wait_ = options_.open_ms;  // the recovery holds
      if (trigger_ == Trigger::owner) return false;
      window_.add(failed, now);
      if (!window_.meets(options_.min_calls, options_.failure_rate)) return false;
      open(now);
      return true;
    case State::open:
      return false;
    case State::half_open:
      // An answer beyond the probes let out belongs to a request sent before
      // the breaker opened: the probes alone decide.
      if (probes_reported() >= probes_admitted_) return false;
      ++(failed ? probe_failures_ : probe_successes_);
      return judge_probes(now);
  }
  return false;
}

bool CircuitBreaker::judge_probes(TimePoint now) {
  if (probes_reported() < options_.probes) return false;
  double rate = static_cast<double>(probe_failures_) / probes_reported();
  if (rate < options_.failure_rate - 1e-9) {
    // Healthy again: judge afresh, not by the failures that opened it. The
    // wait stays until a success while closed shows the recovery holds.
    state_ = State::closed;
    window_.clear();
    probes_admitted_ = probe_successes_ = probe_failures_ = 0;
    return true;
  }
  // Still failing: wait longer before the next probes.
  wait_ = std::min(wait_ * 2, options_.max_open_ms);
  open(now);
  return true;
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
