// The circuit breaker: closed -> open after a run of failures, half-open
// probes after the wait, closed on a probe's success, open again (for twice as
// long, up to the cap) on a probe's failure.
#include "keys/circuit_breaker.h"

#include <gtest/gtest.h>

namespace shepherd {
namespace {

using State = CircuitBreaker::State;
using std::chrono::milliseconds;
using std::chrono::seconds;

const TimePoint kStart = TimePoint{} + std::chrono::hours(1);

// Admits a request if allowed, as an owner would.
bool admit(CircuitBreaker& b, TimePoint now) {
  if (!b.allows(now)) return false;
  b.on_admitted();
  return true;
}

TEST(CircuitBreaker, StateNames) {
  EXPECT_EQ(to_string(State::closed), "closed");
  EXPECT_EQ(to_string(State::open), "open");
  EXPECT_EQ(to_string(State::half_open), "half_open");
}

TEST(CircuitBreaker, OpensAfterConsecutiveFailuresOnly) {
  CircuitBreaker b;
  TimePoint t = kStart;
  EXPECT_EQ(b.state(), State::closed);
  for (int i = 0; i < 4; ++i) EXPECT_FALSE(b.on_failure(t));
  EXPECT_EQ(b.consecutive_failures(), 4);
  EXPECT_FALSE(b.on_success(t));  // a success breaks the run
  EXPECT_EQ(b.consecutive_failures(), 0);
  for (int i = 0; i < 4; ++i) EXPECT_FALSE(b.on_failure(t));
  EXPECT_TRUE(admit(b, t));
  EXPECT_TRUE(b.on_failure(t));  // the fifth in a row: the state changed
  EXPECT_EQ(b.state(), State::open);
  EXPECT_EQ(b.open_until(), t + seconds(5));
  EXPECT_FALSE(b.allows(t));
}

TEST(CircuitBreaker, OpenRefusesUntilTheWaitThenProbes) {
  CircuitBreaker b;
  for (int i = 0; i < 5; ++i) b.on_failure(kStart);
  ASSERT_EQ(b.state(), State::open);
  EXPECT_FALSE(b.allows(kStart + milliseconds(4999)));
  EXPECT_EQ(b.state(), State::open);
  // Late answers of requests sent before it opened change nothing.
  EXPECT_FALSE(b.on_success(kStart + seconds(1)));
  EXPECT_FALSE(b.on_failure(kStart + seconds(1)));
  EXPECT_EQ(b.state(), State::open);
  EXPECT_EQ(b.open_until(), kStart + seconds(5));

  TimePoint t = kStart + seconds(5);
  EXPECT_TRUE(admit(b, t));  // the one probe
  EXPECT_EQ(b.state(), State::half_open);
  EXPECT_EQ(b.probes_in_flight(), 1);
  EXPECT_FALSE(b.allows(t));  // one probe at a time
  EXPECT_FALSE(b.allows(t + seconds(30)));
  EXPECT_TRUE(b.on_success(t + seconds(1)));
  EXPECT_EQ(b.state(), State::closed);
  EXPECT_TRUE(b.allows(t + seconds(1)));
  EXPECT_EQ(b.probes_in_flight(), 0);
}

TEST(CircuitBreaker, RefreshReportsTheMoveToHalfOpen) {
  CircuitBreaker b;
  for (int i = 0; i < 5; ++i) b.on_failure(kStart);
  EXPECT_FALSE(b.refresh(kStart + seconds(4)));
  EXPECT_TRUE(b.refresh(kStart + seconds(5)));
  EXPECT_EQ(b.state(), State::half_open);
  EXPECT_FALSE(b.refresh(kStart + seconds(6)));  // already moved
  EXPECT_FALSE(b.refresh(kStart));               // closed and half-open stay put
}

TEST(CircuitBreaker, ReopeningDoublesTheWaitUpToTheCap) {
  CircuitBreaker b;
  TimePoint t = kStart;
  for (int i = 0; i < 5; ++i) b.on_failure(t);
  ASSERT_EQ(b.open_until(), t + seconds(5));
  // Each failed probe reopens for twice as long: 10, 20, 40, then 60 s.
  for (int wait : {10, 20, 40, 60, 60}) {
    t = b.open_until();
    ASSERT_TRUE(admit(b, t));
    ASSERT_EQ(b.state(), State::half_open);
    EXPECT_TRUE(b.on_failure(t));
    EXPECT_EQ(b.state(), State::open);
    EXPECT_EQ(b.open_until(), t + seconds(wait));
    EXPECT_EQ(b.wait(), seconds(wait));
  }
  // A probe's success closes it and the next opening is back to 5 s.
  t = b.open_until();
  ASSERT_TRUE(admit(b, t));
  EXPECT_TRUE(b.on_success(t));
  EXPECT_EQ(b.wait(), seconds(5));
  for (int i = 0; i < 5; ++i) b.on_failure(t);
  EXPECT_EQ(b.open_until(), t + seconds(5));
}

TEST(CircuitBreaker, HalfOpenAdmitsTheConfiguredNumberOfProbes) {
  CircuitBreakerOptions o;
  o.failure_threshold = 2;
  o.open_wait = seconds(1);
  o.max_open_wait = seconds(3);
  o.half_open_probes = 3;
  CircuitBreaker b(o);
  TimePoint t = kStart;
  EXPECT_FALSE(b.on_failure(t));
  EXPECT_TRUE(b.on_failure(t));
  t += seconds(1);
  int admitted = 0;
  for (int i = 0; i < 10; ++i) admitted += admit(b, t) ? 1 : 0;
  EXPECT_EQ(admitted, 3);
  EXPECT_EQ(b.probes_in_flight(), 3);
  // A probe cancelled without an outcome frees its place.
  b.on_abandoned();
  EXPECT_EQ(b.probes_in_flight(), 2);
  EXPECT_TRUE(admit(b, t));
  EXPECT_FALSE(b.allows(t));
  // One failing probe reopens at once (2 s, then the 3 s cap).
  EXPECT_TRUE(b.on_failure(t));
  EXPECT_EQ(b.open_until(), t + seconds(2));
  EXPECT_EQ(b.probes_in_flight(), 0);
  // The other probes' late answers land while open and change nothing.
  EXPECT_FALSE(b.on_success(t));
  EXPECT_EQ(b.state(), State::open);
  t = b.open_until();
  ASSERT_TRUE(admit(b, t));
  EXPECT_TRUE(b.on_failure(t));
  EXPECT_EQ(b.open_until(), t + seconds(3));
}

TEST(CircuitBreaker, ClosedIgnoresAdmissionCounting) {
  CircuitBreaker b;
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(admit(b, kStart));
  EXPECT_EQ(b.probes_in_flight(), 0);
  b.on_abandoned();
  EXPECT_EQ(b.probes_in_flight(), 0);
}

TEST(CircuitBreaker, NonsenseOptionsAreMadeSafe) {
  CircuitBreakerOptions o;
  o.failure_threshold = 0;
  o.half_open_probes = 0;
  o.open_wait = seconds(2);
  o.max_open_wait = seconds(1);
  CircuitBreaker b(o);
  EXPECT_TRUE(b.on_failure(kStart));  // a threshold of 0 acts as 1
  EXPECT_EQ(b.open_until(), kStart + seconds(2));
  TimePoint t = b.open_until();
  EXPECT_TRUE(admit(b, t));  // at least one probe
  EXPECT_FALSE(b.allows(t));
  EXPECT_TRUE(b.on_failure(t));
  EXPECT_EQ(b.open_until(), t + seconds(2));  // the cap is never below the first wait
}

}  // namespace
}  // namespace shepherd
