// The pacer: requests spread evenly at the set rate, never a minute's worth at
// once; token budgets reserved up front and reconciled with the real usage.
#include "keys/pacer.h"

#include <algorithm>
#include <vector>

#include <gtest/gtest.h>

namespace shepherd {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

const TimePoint kStart = TimePoint{} + std::chrono::hours(1);

// Takes as many as a limited pacer allows at `now`.
int drain(Pacer& p, TimePoint now) {
  int taken = 0;
  while (taken < 1000 && p.try_take(now)) ++taken;
  return taken;
}

TEST(Pacer, DefaultIsUnlimited) {
  Pacer p;
  EXPECT_TRUE(p.unlimited());
  EXPECT_EQ(p.rate(), 0);
  for (int i = 0; i < 10000; ++i) ASSERT_TRUE(p.try_take(kStart));
  EXPECT_TRUE(p.try_take(kStart, 1e9));
  EXPECT_EQ(p.ready_at(kStart, 1e9), kStart);
  p.charge(1e9, kStart);  // nothing to pay off when nothing is counted
  EXPECT_TRUE(p.try_take(kStart));
}

TEST(Pacer, ZeroOrNegativeRateIsUnlimited) {
  Pacer p;
  p.set_rate(10, 2, kStart);
  EXPECT_FALSE(p.unlimited());
  p.set_rate(0, 2, kStart);
  EXPECT_TRUE(p.unlimited());
  p.set_rate(-5, 2, kStart);
  EXPECT_TRUE(p.unlimited());
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(p.try_take(kStart));
}

TEST(Pacer, StartsWithOneTokenNotAFullBucket) {
  Pacer p;
  p.set_rate(10, 5, kStart);
  EXPECT_EQ(drain(p, kStart), 1);
  // Left idle, the bucket fills to the burst and no further.
  EXPECT_EQ(drain(p, kStart + seconds(60)), 5);
}

TEST(Pacer, SpreadsSixHundredPerMinuteEvenly) {
  Pacer p;
  p.set_rate(600.0 / 60, 2, kStart);
  // A greedy caller asking every millisecond for five minutes.
  std::vector<TimePoint> sent;
  TimePoint end = kStart + seconds(300);
  for (TimePoint t = kStart; t < end; t += milliseconds(1)) {
    int n = drain(p, t);
    ASSERT_LE(n, 2) << "more than the burst at once";
    for (int i = 0; i < n; ++i) sent.push_back(t);
  }
  // 10/s over the stretch: the token it started with and one per 100 ms.
  EXPECT_EQ(sent.size(), 3000u);
  // Any one-second window holds at most 10 + burst, and once running the gap
  // between requests is the 100 ms of one token.
  size_t lo = 0;
  for (size_t hi = 0; hi < sent.size(); ++hi) {
    while (sent[hi] - sent[lo] >= seconds(1)) ++lo;
    ASSERT_LE(hi - lo + 1, 12u);
  }
  for (size_t i = 2; i < sent.size(); ++i) ASSERT_EQ(sent[i] - sent[i - 1], milliseconds(100));
  // A minute's worth is never released at once, even after a long idle spell.
  EXPECT_EQ(drain(p, end + seconds(600)), 2);
}

TEST(Pacer, ReadyAtIsWhenTheTokensAreThere) {
  Pacer p;
  p.set_rate(10, 2, kStart);
  EXPECT_EQ(p.ready_at(kStart), kStart);  // the first token is there
  ASSERT_TRUE(p.try_take(kStart));
  TimePoint ready = p.ready_at(kStart);
  EXPECT_EQ(ready, kStart + milliseconds(100));
  EXPECT_FALSE(p.try_take(ready - milliseconds(1)));
  EXPECT_EQ(p.ready_at(ready - milliseconds(1)), ready);  // asking later changes nothing
  EXPECT_TRUE(p.try_take(ready));
  // Two at once: a full bucket.
  EXPECT_EQ(p.ready_at(ready, 2), ready + milliseconds(200));
  // More than the bucket holds goes once it is full.
  EXPECT_EQ(p.ready_at(ready, 50), ready + milliseconds(200));
}

TEST(Pacer, ReadyAtNeverPromisesTooEarlyAtOddRates) {
  // Rates whose token interval is not a whole number of nanoseconds.
  for (double rate : {3.0, 7.0, 1.0 / 3, 123.456, 9999.0}) {
    Pacer p;
    TimePoint t = kStart;
    p.set_rate(rate, 1, t);
    for (int i = 0; i < 500; ++i) {
      ASSERT_TRUE(p.try_take(t)) << "rate " << rate << " request " << i;
      TimePoint next = p.ready_at(t);
      ASSERT_GT(next, t);
      t = next;
    }
  }
}

TEST(Pacer, RateChangeKeepsEarnedTokensCappedAtTheNewBurst) {
  Pacer p;
  p.set_rate(10, 4, kStart);
  ASSERT_TRUE(p.try_take(kStart));  // level 0
  // 150 ms at 10/s earned 1.5 tokens; they stay when the rate changes.
  p.set_rate(1, 4, kStart + milliseconds(150));
  EXPECT_NEAR(p.level(kStart + milliseconds(150)), 1.5, 1e-9);
  EXPECT_NEAR(p.level(kStart + milliseconds(650)), 2.0, 1e-9);  // now at 1/s
  // A smaller burst caps what was saved.
  TimePoint t = kStart + seconds(10);
  EXPECT_NEAR(p.level(t), 4, 1e-9);
  p.set_rate(1, 2, t);
  EXPECT_NEAR(p.level(t), 2, 1e-9);
  EXPECT_EQ(p.rate(), 1);
  EXPECT_EQ(p.burst(), 2);
  // Unlimited and back starts again from one token.
  p.set_rate(0, 2, t);
  p.set_rate(1, 2, t);
  EXPECT_EQ(drain(p, t), 1);
}

TEST(Pacer, TokenBudgetReservesThenReconciles) {
  // 60,000 tokens a minute: 1,000 a second, bursts of up to 4,000.
  Pacer p;
  p.set_rate(60000.0 / 60, 4000, kStart);
  TimePoint t = kStart + seconds(10);  // the bucket is full
  ASSERT_NEAR(p.level(t), 4000, 1e-9);

  // Reserve the estimate; the answer used less: the rest comes back.
  ASSERT_TRUE(p.try_take(t, 3000));
  EXPECT_FALSE(p.try_take(t, 3000));
  p.give_back(2000, t);  // used 1000
  EXPECT_NEAR(p.level(t), 3000, 1e-9);
  // A refund never overfills the bucket.
  p.give_back(10000, t);
  EXPECT_NEAR(p.level(t), 4000, 1e-9);

  // The answer used more than estimated: the extra is charged and the level
  // goes negative, so the next request waits until the debt is paid.
  ASSERT_TRUE(p.try_take(t, 3000));
  p.charge(2500, t);
  EXPECT_NEAR(p.level(t), -1500, 1e-9);
  EXPECT_FALSE(p.try_take(t, 1));
  EXPECT_EQ(p.ready_at(t, 500), t + seconds(2));
  EXPECT_FALSE(p.try_take(t + milliseconds(1999), 500));
  EXPECT_TRUE(p.try_take(t + seconds(2), 500));
}

TEST(Pacer, NegativeLevelMakesLaterRequestsWait) {
  Pacer p;
  p.set_rate(2, 2, kStart);
  ASSERT_TRUE(p.try_take(kStart));
  p.charge(3, kStart);  // three requests' worth owed
  EXPECT_NEAR(p.level(kStart), -3, 1e-9);
  EXPECT_EQ(p.ready_at(kStart), kStart + seconds(2));
  int taken = 0;
  TimePoint first = TimePoint::max();
  for (TimePoint t = kStart; t < kStart + seconds(5); t += milliseconds(1)) {
    if (p.try_take(t)) {
      ++taken;
      first = std::min(first, t);
    }
  }
  EXPECT_EQ(first, kStart + seconds(2));
  // From 2 s to 5 s at 2/s: 1 + 6 requests (the last lands on 5 s, excluded).
  EXPECT_EQ(taken, 6);
}

TEST(Pacer, OversizedRequestWaitsForAFullBucketThenOwes) {
  Pacer p;
  p.set_rate(100, 1000, kStart);  // 100 tokens/s, burst 1,000
  TimePoint full = p.ready_at(kStart, 5000);
  EXPECT_EQ(full, kStart + std::chrono::nanoseconds(9'990'000'000));  // 999 tokens to earn
  EXPECT_FALSE(p.try_take(full - milliseconds(1), 5000));
  ASSERT_TRUE(p.try_take(full, 5000));
  EXPECT_NEAR(p.level(full), -4000, 1e-6);
  // The average holds: the next 100 tokens are there 41 s later.
  EXPECT_EQ(p.ready_at(full, 100), full + seconds(41));
}

TEST(Pacer, TimeThatRunsBackIsIgnored) {
  Pacer p;
  p.set_rate(10, 2, kStart);
  ASSERT_TRUE(p.try_take(kStart + seconds(1)));
  ASSERT_TRUE(p.try_take(kStart + seconds(1)));
  // An earlier `now` from a caller neither refills nor breaks the level.
  EXPECT_FALSE(p.try_take(kStart));
  EXPECT_EQ(p.ready_at(kStart), kStart + seconds(1) + milliseconds(100));
  EXPECT_TRUE(p.try_take(kStart + seconds(1) + milliseconds(100)));
}

}  // namespace
}  // namespace shepherd
