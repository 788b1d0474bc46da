#pragma once
// A circuit breaker per slot: after a run of failures the slot stops taking
// requests for a while, then lets a few probes through and closes again only
// if one succeeds. A dead key or a failing model then costs a handful of
// requests instead of the whole batch's retries.
//
//   closed --(failure_threshold consecutive failures)--> open
//   open   --(open wait over; seen by allows/refresh)--> half_open
//   half_open --(a probe succeeds)--> closed   (the wait goes back to open_wait)
//   half_open --(a probe fails)-----> open     (the wait doubles, up to max_open_wait)
//
// What counts as a failure is the owner's call (server errors, timeouts);
// 429s belong to the RateController. Plain and single-threaded: its owner
// serialises calls and passes the time in. No call allocates.
#include <string_view>

#include "core/clock.h"

namespace shepherd {

struct CircuitBreakerOptions {
  int failure_threshold = 5;     // consecutive failures that open it (>= 1)
  Millis open_wait{5000};        // the first opening's length
  Millis max_open_wait{60000};   // doubling stops here
  int half_open_probes = 1;      // requests in flight while half-open (>= 1)
};

class CircuitBreaker {
 public:
  enum class State { closed, open, half_open };

  explicit CircuitBreaker(CircuitBreakerOptions options = {});

  // Whether a request may go out now; turns open into half-open once the wait
  // is over. A request that goes out must be reported with on_admitted().
  bool allows(TimePoint now);
  // The open -> half-open move alone; true when it happened, so the owner can
  // record the event without asking for admission.
  bool refresh(TimePoint now);
  // A request went out: while half-open it is a probe and takes a place.
  void on_admitted();
  // A probe that will report neither success nor failure (cancelled, shut
  // down) gives its place back, or half-open would wait for it forever.
  void on_abandoned();

  // Outcomes of admitted requests; each returns true when the state changed.
  // While open they are answers to requests sent before it opened and change
  // nothing.
  bool on_success(TimePoint now);
  bool on_failure(TimePoint now);

  State state() const { return state_; }
  TimePoint open_until() const { return open_until_; }  // meaningful while open
  Millis wait() const { return wait_; }  // the current or last opening's length
  int consecutive_failures() const { return failures_; }
  int probes_in_flight() const { return probes_; }

 private:
  void open(TimePoint now);

  CircuitBreakerOptions options_;
  State state_ = State::closed;
  int failures_ = 0;
  int probes_ = 0;
  Millis wait_;
  TimePoint open_until_{};
};

std::string_view to_string(CircuitBreaker::State state);

}  // namespace shepherd
