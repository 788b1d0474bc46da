// The circuit breaker on a virtual clock: it opens on a failure rate over a
// window of recent calls (never before min_calls, never on a mere streak),
// forgets outcomes older than window_ms, admits exactly `probes` calls while
// half-open and judges them together: closed again, or open for twice as long
// up to the cap.
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

// Reports `n` outcomes of one kind; true if the last one changed the state.
bool report(CircuitBreaker& b, bool failed, int n, TimePoint now) {
  bool changed = false;
  for (int i = 0; i < n; ++i) changed = failed ? b.on_failure(now) : b.on_success(now);
  return changed;
}

CircuitBreakerOptions small(int min_calls, double failure_rate, int window = 100) {
  CircuitBreakerOptions o;
  o.min_calls = min_calls;
  o.failure_rate = failure_rate;
  o.window = window;
  return o;
}

// Opens the breaker from closed by failing min_calls calls.
void open_it(CircuitBreaker& b, TimePoint now) {
  report(b, true, b.options().min_calls, now);
  ASSERT_EQ(b.state(), State::open);
}

TEST(CircuitBreaker, StateNames) {
  EXPECT_EQ(to_string(State::closed), "closed");
  EXPECT_EQ(to_string(State::open), "open");
  EXPECT_EQ(to_string(State::half_open), "half_open");
}

TEST(CircuitBreaker, DefaultsAreTheSuiteDefaults) {
  CircuitBreakerOptions o;
  EXPECT_EQ(o.failure_rate, 0.5);
  EXPECT_EQ(o.min_calls, 20);
  EXPECT_EQ(o.window, 100);
  EXPECT_EQ(o.window_ms, milliseconds(60000));
  EXPECT_EQ(o.open_ms, milliseconds(5000));
  EXPECT_EQ(o.max_open_ms, milliseconds(60000));
  EXPECT_EQ(o.probes, 3);
}

TEST(CircuitBreaker, NeverOpensBeforeMinCalls) {
  CircuitBreaker b;
  EXPECT_FALSE(report(b, true, 19, kStart));
  EXPECT_EQ(b.state(), State::closed) << "19 failures out of 19: not enough calls to judge";
  EXPECT_EQ(b.calls(), 19);
  EXPECT_EQ(b.failures(), 19);
  EXPECT_TRUE(b.on_failure(kStart));  // the 20th call
  EXPECT_EQ(b.state(), State::open);
  EXPECT_EQ(b.open_until(), kStart + seconds(5));
  EXPECT_FALSE(b.allows(kStart));
}

TEST(CircuitBreaker, AStreakAloneNeverOpensIt) {
  // Five, ten failures in a row among enough successes: the rate stays low.
  CircuitBreaker b;
  EXPECT_FALSE(report(b, false, 30, kStart));
  EXPECT_FALSE(report(b, true, 10, kStart));
  EXPECT_EQ(b.state(), State::closed);
  EXPECT_DOUBLE_EQ(b.failure_rate(), 0.25);
}

TEST(CircuitBreaker, OpensAtExactlyTheThreshold) {
  // 0.3 of 10 calls is 3 failures, although 0.3 * 10 is a hair above 3 in floating point.
  CircuitBreaker b(small(10, 0.3));
  report(b, false, 7, kStart);
  report(b, true, 2, kStart);
  EXPECT_EQ(b.state(), State::closed) << "9 calls: below min_calls";
  EXPECT_TRUE(b.on_failure(kStart));
  EXPECT_EQ(b.state(), State::open) << "3 of 10";

  // Just below: 2 of 10, then a success keeps it below.
  CircuitBreaker c(small(10, 0.3));
  report(c, false, 8, kStart);
  report(c, true, 2, kStart);
  EXPECT_FALSE(c.on_success(kStart));
  EXPECT_EQ(c.state(), State::closed);
}

TEST(CircuitBreaker, ASuccessCanCompleteMinCalls) {
  // 19 failures then a success: 20 calls at 95 % opens it on the success.
  CircuitBreaker b;
  report(b, true, 19, kStart);
  EXPECT_TRUE(b.on_success(kStart));
  EXPECT_EQ(b.state(), State::open);
}

TEST(CircuitBreaker, OnlyTheLastWindowCallsCount) {
  // window 10: 4 failures, 6 successes (40 %); then each new failure pushes
  // an old outcome out. With every call kept it would open at the second new
  // failure (6 of 12); with the window it needs five of the last ten.
  CircuitBreaker b(small(10, 0.5, 10));
  report(b, true, 4, kStart);
  report(b, false, 6, kStart);
  for (int i = 0; i < 4; ++i) {
    EXPECT_FALSE(b.on_failure(kStart)) << i;
    EXPECT_EQ(b.calls(), 10);
    EXPECT_EQ(b.failures(), 4);  // a failure pushed out the oldest failure
  }
  EXPECT_TRUE(b.on_failure(kStart));  // the oldest success went: 5 of 10
  EXPECT_EQ(b.state(), State::open);
}

TEST(CircuitBreaker, OutcomesExpireAfterWindowMs) {
  CircuitBreakerOptions o = small(4, 0.5);
  o.window_ms = seconds(10);
  {
    CircuitBreaker b(o);
    report(b, true, 3, kStart);
    b.expire(kStart + milliseconds(9999));
    EXPECT_EQ(b.calls(), 3) << "still counts just before window_ms";
    EXPECT_TRUE(b.on_failure(kStart + milliseconds(9999)));
  }
  {
    CircuitBreaker b(o);
    report(b, true, 3, kStart);
    b.expire(kStart + seconds(10));
    EXPECT_EQ(b.calls(), 0) << "window_ms old: gone";
    EXPECT_FALSE(b.on_failure(kStart + seconds(10)));
    EXPECT_EQ(b.calls(), 1);
    EXPECT_EQ(b.state(), State::closed);
  }
  {
    // Expiry is per outcome: the oldest go first.
    CircuitBreaker b(o);
    report(b, true, 2, kStart);
    report(b, false, 1, kStart + seconds(5));
    b.expire(kStart + seconds(12));
    EXPECT_EQ(b.calls(), 1);
    EXPECT_EQ(b.failures(), 0);
  }
}

TEST(CircuitBreaker, OpenRefusesUntilTheWaitAndIgnoresLateAnswers) {
  CircuitBreaker b;
  open_it(b, kStart);
  EXPECT_FALSE(b.allows(kStart + milliseconds(4999)));
  EXPECT_EQ(b.state(), State::open);
  // Late answers of requests sent before it opened change nothing.
  EXPECT_FALSE(b.on_success(kStart + seconds(1)));
  EXPECT_FALSE(b.on_failure(kStart + seconds(1)));
  EXPECT_EQ(b.state(), State::open);
  EXPECT_EQ(b.open_until(), kStart + seconds(5));
  EXPECT_TRUE(b.allows(kStart + seconds(5)));
  EXPECT_EQ(b.state(), State::half_open);
}

TEST(CircuitBreaker, RefreshReportsTheMoveToHalfOpen) {
  CircuitBreaker b;
  open_it(b, kStart);
  EXPECT_FALSE(b.refresh(kStart + seconds(4)));
  EXPECT_TRUE(b.refresh(kStart + seconds(5)));
  EXPECT_EQ(b.state(), State::half_open);
  EXPECT_FALSE(b.refresh(kStart + seconds(6)));  // already moved
  EXPECT_FALSE(b.refresh(kStart));               // closed and half-open stay put
}

TEST(CircuitBreaker, HalfOpenAdmitsExactlyTheProbesAndJudgesThemTogether) {
  CircuitBreaker b;
  open_it(b, kStart);
  TimePoint t = kStart + seconds(5);
  int admitted = 0;
  for (int i = 0; i < 10; ++i) admitted += admit(b, t) ? 1 : 0;
  EXPECT_EQ(admitted, 3);
  EXPECT_EQ(b.probes_in_flight(), 3);
  EXPECT_FALSE(b.allows(t + seconds(30))) << "no more until the probes are judged";
  // One failure, one success: undecided until the third reports.
  EXPECT_FALSE(b.on_failure(t));
  EXPECT_FALSE(b.on_success(t));
  EXPECT_EQ(b.state(), State::half_open);
  EXPECT_EQ(b.probes_in_flight(), 1);
  EXPECT_FALSE(b.allows(t)) << "reported probes do not free places";
  EXPECT_TRUE(b.on_success(t));  // 1 of 3 failed: below one half
  EXPECT_EQ(b.state(), State::closed);
  EXPECT_EQ(b.calls(), 0) << "closed again with a clean window";
  EXPECT_EQ(b.probes_in_flight(), 0);
  EXPECT_TRUE(b.allows(t));
}

TEST(CircuitBreaker, ReopensWithTheWaitDoubledUpToTheCap) {
  CircuitBreaker b;
  TimePoint t = kStart;
  open_it(b, t);
  ASSERT_EQ(b.open_until(), t + seconds(5));
  // Probes failing at the threshold or above re-open it: 10, 20, 40, then 60 s.
  for (int wait : {10, 20, 40, 60, 60}) {
    t = b.open_until();
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(admit(b, t));
    EXPECT_FALSE(b.on_failure(t));
    EXPECT_FALSE(b.on_success(t));
    EXPECT_TRUE(b.on_failure(t));  // 2 of 3
    EXPECT_EQ(b.state(), State::open);
    EXPECT_EQ(b.open_until(), t + seconds(wait));
    EXPECT_EQ(b.wait(), seconds(wait));
    EXPECT_FALSE(b.allows(t));
  }
  // Probes that pass close it; the wait goes back to 5 s with the first
  // success while closed, not before.
  t = b.open_until();
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(admit(b, t));
  report(b, false, 3, t);
  EXPECT_EQ(b.state(), State::closed);
  EXPECT_EQ(b.wait(), seconds(60));
  EXPECT_FALSE(b.on_success(t));
  EXPECT_EQ(b.wait(), seconds(5));
  report(b, true, 20, t);
  EXPECT_EQ(b.state(), State::open);
  EXPECT_EQ(b.open_until(), t + seconds(5));
}

TEST(CircuitBreaker, TrippingAgainBeforeAnySuccessKeepsTheLongerWait) {
  CircuitBreaker b(small(2, 0.5));
  TimePoint t = kStart;
  open_it(b, t);
  t = b.open_until();
  for (int i = 0; i < 3; ++i) admit(b, t);
  report(b, true, 3, t);
  ASSERT_EQ(b.wait(), seconds(10));
  t = b.open_until();
  for (int i = 0; i < 3; ++i) admit(b, t);
  // 1 of 3 failing closes it, but no success came after the close yet.
  report(b, true, 1, t);
  report(b, false, 2, t);
  ASSERT_EQ(b.state(), State::closed);
  report(b, true, 2, t);
  EXPECT_EQ(b.state(), State::open);
  EXPECT_EQ(b.open_until(), t + seconds(10));
}

TEST(CircuitBreaker, AnAbandonedProbeGivesItsPlaceBack) {
  CircuitBreaker b;
  open_it(b, kStart);
  TimePoint t = kStart + seconds(5);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(admit(b, t));
  EXPECT_FALSE(b.allows(t));
  b.on_abandoned();  // cancelled, or answered a 429
  EXPECT_EQ(b.probes_in_flight(), 2);
  EXPECT_TRUE(admit(b, t));
  EXPECT_FALSE(b.allows(t));
  // A reported probe cannot be abandoned too.
  report(b, false, 3, t);
  EXPECT_EQ(b.state(), State::closed);
  b.on_abandoned();
  EXPECT_EQ(b.probes_in_flight(), 0);
}

TEST(CircuitBreaker, AnswersBeyondTheProbesLetOutAreIgnored) {
  // Half-open with one probe out: answers of requests sent before it opened
  // can fill at most the places that were let out.
  CircuitBreaker b;
  open_it(b, kStart);
  TimePoint t = kStart + seconds(5);
  ASSERT_TRUE(admit(b, t));
  EXPECT_FALSE(b.on_failure(t));
  EXPECT_FALSE(b.on_failure(t));
  EXPECT_FALSE(b.on_failure(t));
  EXPECT_EQ(b.state(), State::half_open);
  EXPECT_EQ(b.probes_in_flight(), 0);
  EXPECT_TRUE(admit(b, t));
  EXPECT_TRUE(admit(b, t));
  EXPECT_FALSE(admit(b, t));
}

TEST(CircuitBreaker, ClosedIgnoresAdmissionCounting) {
  CircuitBreaker b;
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(admit(b, kStart));
  EXPECT_EQ(b.probes_in_flight(), 0);
  b.on_abandoned();
  EXPECT_EQ(b.probes_in_flight(), 0);
}

TEST(CircuitBreaker, AnOwnerTriggeredBreakerOpensOnlyWhenTripped) {
  CircuitBreaker b({}, CircuitBreaker::Trigger::owner);
  report(b, true, 200, kStart);
  EXPECT_EQ(b.state(), State::closed);
  EXPECT_EQ(b.calls(), 0) << "keeps no window of its own";
  EXPECT_TRUE(b.trip(kStart));
  EXPECT_FALSE(b.trip(kStart)) << "already open";
  EXPECT_EQ(b.open_until(), kStart + seconds(5));
  // After the wait it probes and judges like any breaker.
  TimePoint t = b.open_until();
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(admit(b, t));
  report(b, true, 3, t);
  EXPECT_EQ(b.state(), State::open);
  EXPECT_EQ(b.wait(), seconds(10));
  t = b.open_until();
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(admit(b, t));
  report(b, false, 3, t);
  EXPECT_EQ(b.state(), State::closed);
  EXPECT_FALSE(b.on_success(t));
  EXPECT_EQ(b.wait(), seconds(5)) << "a success while closed resets the wait";
}

TEST(CircuitBreaker, NonsenseOptionsAreMadeSafe) {
  CircuitBreakerOptions o;
  o.failure_rate = 0;  // would open without a failure
  o.min_calls = 500;   // more than the window: could never open
  o.window = 0;
  o.window_ms = milliseconds(-5);
  o.probes = 0;
  o.open_ms = seconds(2);
  o.max_open_ms = seconds(1);
  CircuitBreakerOptions c = checked(o);
  EXPECT_GT(c.failure_rate, 0);
  EXPECT_EQ(c.window, 1);
  EXPECT_EQ(c.min_calls, 1);
  EXPECT_EQ(c.window_ms, milliseconds(1));
  EXPECT_EQ(c.probes, 1);
  EXPECT_EQ(c.max_open_ms, seconds(2)) << "the cap is never below the first wait";
  EXPECT_EQ(checked(CircuitBreakerOptions{.failure_rate = 7}).failure_rate, 1.0);

  CircuitBreaker b(o);
  EXPECT_FALSE(b.on_success(kStart)) << "no failure, no opening";
  EXPECT_TRUE(b.on_failure(kStart));
  EXPECT_EQ(b.open_until(), kStart + seconds(2));
  TimePoint t = b.open_until();
  EXPECT_TRUE(admit(b, t));  // at least one probe
  EXPECT_FALSE(b.allows(t));
  EXPECT_TRUE(b.on_failure(t));
  EXPECT_EQ(b.open_until(), t + seconds(2));
}

}  // namespace
}  // namespace shepherd
