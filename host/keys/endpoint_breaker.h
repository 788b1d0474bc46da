#pragma once
// The breaker in front of one endpoint (a provider's base URL). It must stop
// traffic when the endpoint is down, not when one key is: a key without
// credit or with a broken deployment fails every call, and its (key, model)
// slot breakers already take it out. So the endpoint judges each key by its
// own window (over all that key's slots here) and opens only when at least
// two keys meet the open condition at the same moment; with one key it never
// opens. Once open it behaves as a CircuitBreaker: after the wait, `probes`
// requests in total (across all its slots) decide whether it closes.
//
// At 30 % random failures two keys must both stray to >= 50 % at the same
// moment: 0.1-0.2 % of runs of ~430 calls per key (key_pool_test's
// simulation). At 100 % failures it opens once each of two keys has about
// min_calls answers, and then lets `probes` requests through per period.
#include <cstdint>
#include <vector>

#include "keys/circuit_breaker.h"
#include "keys/details/outcome_window.h"

namespace shepherd {

class EndpointBreaker {
 public:
  using State = CircuitBreaker::State;

  explicit EndpointBreaker(CircuitBreakerOptions options = {});

  // A key that sends here (setup time; a key already known gets its index
  // back). Outcomes are reported with this index.
  int add_key(uint32_t key);
  int keys() const { return static_cast<int>(keys_.size()); }
  uint32_t key_at(int index) const { return keys_[static_cast<size_t>(index)]; }

  // As CircuitBreaker's: admission, the open -> half-open move, probe places.
  bool allows(TimePoint now) { return gate_.allows(now); }
  bool refresh(TimePoint now) { return gate_.refresh(now); }
  void on_admitted() { gate_.on_admitted(); }
  void on_abandoned() { gate_.on_abandoned(); }

  // An outcome of a request sent with key `key_index`; true when the state changed.
  bool on_success(int key_index, TimePoint now) { return on_outcome(key_index, false, now); }
  bool on_failure(int key_index, TimePoint now) { return on_outcome(key_index, true, now); }
  void expire(TimePoint now);

  State state() const { return gate_.state(); }
  TimePoint open_until() const { return gate_.open_until(); }
  Millis wait() const { return gate_.wait(); }
  int probes_in_flight() const { return gate_.probes_in_flight(); }
  // Over all keys' windows, for the status view.
  int calls() const;
  double failure_rate() const;
  // Keys whose window meets the open condition now (two open the endpoint).
  int failing_keys() const;
  const CircuitBreakerOptions& options() const { return gate_.options(); }

 private:
  bool on_outcome(int key_index, bool failed, TimePoint now);

  // The state machine (Trigger::owner): the per-key windows trip it by the two-key rule.
  CircuitBreaker gate_;
  std::vector<uint32_t> keys_;
  std::vector<details::OutcomeWindow> windows_;  // by key index
};

}  // namespace shepherd
