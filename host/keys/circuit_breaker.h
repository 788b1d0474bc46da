#pragma once
// A circuit breaker that opens on a failure *rate*, not on a streak
// (resilience4j's semantics). A streak of five happens by chance when a third
// of the answers are 503s; a rate of one half over twenty calls or more
// rarely does (see key_pool_test's simulation for the figures).
//
//   closed    --(window holds >= min_calls and failures/calls >= failure_rate)--> open
//   open      --(open wait over; seen by allows/refresh)--> half_open
//   half_open --(all `probes` reported, their failure rate < failure_rate)--> closed (window cleared)
//   half_open --(all `probes` reported, otherwise)--> open (the wait doubles, up to max_open_ms)
//
// A success while closed sets the wait back to open_ms. What counts as a
// failure is the owner's call (server errors, timeouts); 429s belong to the
// RateController. Plain and single-threaded: its owner serialises calls and
// passes the time in, so it runs as well on a virtual clock. Only the
// constructor allocates.
#include <string_view>

#include "core/clock.h"
#include "keys/details/outcome_window.h"

namespace shepherd {

// Set per provider by the suite: breaker = { failure_rate = 0.5, min_calls = 20, … }.
struct CircuitBreakerOptions {
  double failure_rate = 0.5;     // opens at failures/calls >= this, in (0, 1]
  int min_calls = 20;            // ... once the window holds at least this many calls
  int window = 100;              // the last this many calls count
  Millis window_ms{60000};       // and of those only the ones younger than this
  Millis open_ms{5000};          // the first opening's length
  Millis max_open_ms{60000};     // doubling stops here
  int probes = 3;                // calls admitted while half-open, judged together
};

class CircuitBreaker {
 public:
  enum class State { closed, open, half_open };
  // What opens it while closed: its own window, or only its owner's trip()
  // (the endpoint breaker, which judges by per-key windows of its own).
  enum class Trigger { window, owner };

  explicit CircuitBreaker(CircuitBreakerOptions options = {}, Trigger trigger = Trigger::window);

  // Whether a request may go out now; turns open into half-open once the wait
  // is over. A request that goes out must be reported with on_admitted().
  bool allows(TimePoint now);
  // The open -> half-open move alone; true when it happened, so the owner can
  // record the event without asking for admission.
  bool refresh(TimePoint now);
  // A request went out: while half-open it is a probe and takes a place.
  void on_admitted();
  // A probe that will report neither success nor failure (cancelled, or an
  // answer that says nothing about health) gives its place back, or half-open
  // would wait for it forever.
  void on_abandoned();

  // Outcomes of admitted requests; each returns true when the state changed.
  // While open they are answers to requests sent before it opened and change
  // nothing.
  bool on_success(TimePoint now);
  bool on_failure(TimePoint now);
  // Opens a closed breaker now whatever its window says; the way a
  // Trigger::owner breaker opens. True when it opened.
  bool trip(TimePoint now);
  // Lets outcomes older than window_ms go, so calls() and failure_rate() are current.
  void expire(TimePoint now) { window_.expire(now); }

  State state() const { return state_; }
  TimePoint open_until() const { return open_until_; }  // meaningful while open
  Millis wait() const { return wait_; }  // the current or next opening's length
  int calls() const { return window_.calls(); }  // in the closed window
  int failures() const { return window_.failures(); }
  double failure_rate() const { return window_.failure_rate(); }
  int probes_in_flight() const { return probes_admitted_ - probes_reported(); }
  const CircuitBreakerOptions& options() const { return options_; }

 private:
  int probes_reported() const { return probe_successes_ + probe_failures_; }
  bool on_outcome(bool failed, TimePoint now);
  bool judge_probes(TimePoint now);
  void open(TimePoint now);

  CircuitBreakerOptions options_;
  Trigger trigger_;
  details::OutcomeWindow window_;  // empty under Trigger::owner
  State state_ = State::closed;
  Millis wait_;
  TimePoint open_until_{};
  // Half-open only: probes let out, and their answers so far.
  int probes_admitted_ = 0;
  int probe_successes_ = 0;
  int probe_failures_ = 0;
};

std::string_view to_string(CircuitBreaker::State state);

// The options made safe: at least one call, probe and millisecond everywhere,
// min_calls within the window, a rate in (0, 1], a cap no shorter than the first wait.
CircuitBreakerOptions checked(CircuitBreakerOptions options);

}  // namespace shepherd
