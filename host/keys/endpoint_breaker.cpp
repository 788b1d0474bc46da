#include "keys/endpoint_breaker.h"

#include <algorithm>

namespace shepherd {

EndpointBreaker::EndpointBreaker(CircuitBreakerOptions options)
    : gate_(options, CircuitBreaker::Trigger::owner) {}

int EndpointBreaker::add_key(uint32_t key) {
  auto it = std::find(keys_.begin(), keys_.end(), key);
  if (it != keys_.end()) return static_cast<int>(it - keys_.begin());
  keys_.push_back(key);
  windows_.emplace_back(options().window, options().window_ms);
  return static_cast<int>(keys_.size() - 1);
}

bool EndpointBreaker::on_outcome(int key_index, bool failed, TimePoint now) {
  if (key_index < 0 || key_index >= keys()) return false;
  bool was_closed = gate_.state() == State::closed;
  // The gate judges probes while half-open and resets its wait on a success while closed.
  bool changed = failed ? gate_.on_failure(now) : gate_.on_success(now);
  if (!was_closed) {
    // Closed again after its probes: judge afresh, as a slot breaker does.
    if (changed && gate_.state() == State::closed)
      for (auto& w : windows_) w.clear();
    return changed;
  }
  auto& window = windows_[static_cast<size_t>(key_index)];
  window.add(failed, now);
  if (!window.meets(options().min_calls, options().failure_rate)) return false;
  // This key fails; the endpoint does when another one does too, as of now.
  expire(now);
  return failing_keys() >= 2 && gate_.trip(now);
}

void EndpointBreaker::expire(TimePoint now) {
  gate_.expire(now);
  for (auto& w : windows_) w.expire(now);
}

int EndpointBreaker::calls() const {
  int n = 0;
  for (const auto& w : windows_) n += w.calls();
  return n;
}

double EndpointBreaker::failure_rate() const {
  int n = 0, failed = 0;
  for (const auto& w : windows_) {
    n += w.calls();
    failed += w.failures();
  }
  return n > 0 ? static_cast<double>(failed) / n : 0.0;
}

int EndpointBreaker::failing_keys() const {
  int n = 0;
  for (const auto& w : windows_) n += w.meets(options().min_calls, options().failure_rate) ? 1 : 0;
  return n;
}

}  // namespace shepherd
