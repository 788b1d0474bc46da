// The key pool: limits per (key, model), the most headroom first, ties spread
// across keys, cooldowns that sideline one slot without touching the others.
#include "keys/key_pool.h"

#include <map>
#include <vector>

#include <gtest/gtest.h>

#include <ctime>

namespace shepherd {
namespace {

// A 429 with Retry-After: the way a slot comes to cool down.
void rate_limited(KeyPool& pool, int slot, double retry_after_s, TimePoint now) {
  SlotFeedback f;
  f.status = 429;
  f.rate_limited = true;
  f.retry_after_s = retry_after_s;
  pool.on_result(slot, f, 0, now);
}

using std::chrono::seconds;

TEST(KeyPool, KeysAndSlotsAreIndexed) {
  KeyPool pool;
  EXPECT_EQ(pool.add_key("k0", 0), 0u);
  EXPECT_EQ(pool.add_key("k1", 1), 1u);
  EXPECT_EQ(pool.key(1).id, "k1");
  EXPECT_EQ(pool.key(1).provider, 1u);
  EXPECT_EQ(pool.add_slot(0, 0, SlotLimits{2}), 0);
  EXPECT_EQ(pool.add_slot(1, 3, SlotLimits{5}), 1);  // model indices need not be dense
  EXPECT_EQ(pool.slot(1).key, 1u);
  EXPECT_EQ(pool.slot(1).model, 3u);
  EXPECT_EQ(pool.slot(1).limits.concurrency, 5);
  EXPECT_EQ(pool.slots().size(), 2u);
  EXPECT_EQ(pool.add_slot(0, 1, SlotLimits{0}), 2);
  EXPECT_EQ(pool.slot(2).limits.concurrency, 1);  // a limit below 1 still lets one through
}

TEST(KeyPool, LimitsHoldPerKeyAndModel) {
  KeyPool pool;
  uint32_t k0 = pool.add_key("k0", 0), k1 = pool.add_key("k1", 0);
  pool.add_slot(k0, 0, SlotLimits{2});
  pool.add_slot(k1, 0, SlotLimits{1});
  pool.add_slot(k0, 1, SlotLimits{1});
  TimePoint now = SteadyClock::now();

  EXPECT_EQ(pool.capacity(0), 3);
  EXPECT_EQ(pool.capacity(1), 1);
  std::vector<int> granted;
  for (int i = 0; i < 3; ++i) {
    int s = pool.acquire(0, now);
    ASSERT_GE(s, 0);
    EXPECT_EQ(pool.slot(s).model, 0u);
    granted.push_back(s);
  }
  EXPECT_EQ(pool.acquire(0, now), -1);  // model 0 is full on both keys
  EXPECT_EQ(pool.in_flight(0), 3);
  for (const auto& s : pool.slots()) EXPECT_LE(s.in_flight, s.limits.concurrency);

  // k0 is full for model 0, not for model 1.
  int m1 = pool.acquire(1, now);
  ASSERT_GE(m1, 0);
  EXPECT_EQ(pool.slot(m1).key, k0);
  EXPECT_EQ(pool.acquire(1, now), -1);
  EXPECT_EQ(pool.in_flight(1), 1);

  pool.release(granted[0]);
  EXPECT_EQ(pool.in_flight(0), 2);
  int again = pool.acquire(0, now);
  EXPECT_EQ(again, granted[0]);
  EXPECT_EQ(pool.acquire(0, now), -1);
}

TEST(KeyPool, UnknownModelAndExtraReleases) {
  KeyPool pool;
  pool.add_slot(pool.add_key("k", 0), 0, SlotLimits{1});
  TimePoint now = SteadyClock::now();
  EXPECT_EQ(pool.acquire(7, now), -1);
  EXPECT_EQ(pool.capacity(7), 0);
  EXPECT_EQ(pool.in_flight(7), 0);
  EXPECT_EQ(pool.next_ready(7, now), now);
  int s = pool.acquire(0, now);
  pool.release(s);
  pool.release(s);  // one too many: stays at zero
  EXPECT_EQ(pool.slot(s).in_flight, 0);
  EXPECT_EQ(pool.acquire(0, now), s);
  EXPECT_EQ(pool.acquire(0, now), -1);
}

TEST(KeyPool, AcquirePicksTheMostHeadroom) {
  KeyPool pool;
  int a = pool.add_slot(pool.add_key("a", 0), 0, SlotLimits{5});
  int b = pool.add_slot(pool.add_key("b", 0), 0, SlotLimits{3});
  TimePoint now = SteadyClock::now();
  // Each grant goes to a slot with at least as much room as the other.
  for (int i = 0; i < 8; ++i) {
    int room_a = 5 - pool.slot(a).in_flight;
    int room_b = 3 - pool.slot(b).in_flight;
    int got = pool.acquire(0, now);
    ASSERT_GE(got, 0);
    EXPECT_GE(got == a ? room_a : room_b, got == a ? room_b : room_a) << "grant " << i;
  }
  EXPECT_EQ(pool.slot(a).in_flight, 5);
  EXPECT_EQ(pool.slot(b).in_flight, 3);
  EXPECT_EQ(pool.acquire(0, now), -1);
}

TEST(KeyPool, TiesAreSpreadAcrossKeys) {
  KeyPool pool;
  std::vector<int> slots;
  for (const char* id : {"k0", "k1", "k2"}) slots.push_back(pool.add_slot(pool.add_key(id, 0), 0, SlotLimits{10}));
  TimePoint now = SteadyClock::now();
  std::map<int, int> used;
  for (int i = 0; i < 300; ++i) {
    int s = pool.acquire(0, now);
    ASSERT_GE(s, 0);
    ++used[s];
    pool.release(s);
  }
  for (int s : slots) {
    EXPECT_GE(used[s], 90) << "slot " << s;
    EXPECT_LE(used[s], 110) << "slot " << s;
    EXPECT_EQ(pool.slot(s).granted, static_cast<uint64_t>(used[s]));
  }
  EXPECT_EQ(pool.in_flight(0), 0);
}

TEST(KeyPool, CooldownSidelinesOneSlotUntilItsTime) {
  KeyPool pool;
  int cooled = pool.add_slot(pool.add_key("k0", 0), 0, SlotLimits{2});
  int other = pool.add_slot(pool.add_key("k1", 0), 0, SlotLimits{2});
  TimePoint now = SteadyClock::now();
  TimePoint until = now + seconds(30);
  rate_limited(pool, cooled, std::chrono::duration<double>(until - now).count(), now);

  // Only the other key serves, up to its limit, however often we ask.
  for (int i = 0; i < 10; ++i) {
    int s = pool.acquire(0, now);
    EXPECT_EQ(s, other);
    pool.release(s);
  }
  EXPECT_EQ(pool.acquire(0, now), other);
  EXPECT_EQ(pool.acquire(0, now), other);
  EXPECT_EQ(pool.acquire(0, now + seconds(29)), -1);  // other full, cooled still cooling

  // At its time the cooled slot serves again.
  EXPECT_EQ(pool.acquire(0, until), cooled);

  // A shorter cooldown never shortens a longer one.
  rate_limited(pool, other, 60, now);
  rate_limited(pool, other, 5, now);
  EXPECT_EQ(pool.slot(other).cooldown_until, now + seconds(60));
}

TEST(KeyPool, NextReady) {
  KeyPool pool;
  int a = pool.add_slot(pool.add_key("a", 0), 0, SlotLimits{1});
  int b = pool.add_slot(pool.add_key("b", 0), 0, SlotLimits{1});
  TimePoint now = SteadyClock::now();
  EXPECT_EQ(pool.next_ready(0, now), now);

  rate_limited(pool, a, 5, now);
  EXPECT_EQ(pool.next_ready(0, now), now);  // b is ready

  rate_limited(pool, b, 3, now);
  EXPECT_EQ(pool.next_ready(0, now), now + seconds(3));  // the earliest end
  EXPECT_EQ(pool.next_ready(0, now + seconds(3)), now + seconds(3));
  EXPECT_EQ(pool.next_ready(0, now + seconds(4)), now + seconds(4));  // b is back

  // Full slots are not cooling: the pool is ready, it just has no room.
  int s = pool.acquire(0, now + seconds(10));
  int t = pool.acquire(0, now + seconds(10));
  EXPECT_GE(s, 0);
  EXPECT_GE(t, 0);
  EXPECT_EQ(pool.next_ready(0, now + seconds(10)), now + seconds(10));
}

TEST(KeyPool, CapacityAndInFlight) {
  KeyPool pool;
  uint32_t k0 = pool.add_key("k0", 0), k1 = pool.add_key("k1", 1);
  pool.add_slot(k0, 0, SlotLimits{4});
  pool.add_slot(k1, 0, SlotLimits{6});
  pool.add_slot(k1, 1, SlotLimits{3});
  TimePoint now = SteadyClock::now();
  EXPECT_EQ(pool.capacity(0), 10);
  EXPECT_EQ(pool.capacity(1), 3);
  std::vector<int> held;
  for (int i = 0; i < 10; ++i) held.push_back(pool.acquire(0, now));
  EXPECT_EQ(pool.in_flight(0), 10);
  EXPECT_EQ(pool.in_flight(1), 0);
  EXPECT_EQ(pool.acquire(0, now), -1);
  for (int s : held) pool.release(s);
  EXPECT_EQ(pool.in_flight(0), 0);
  EXPECT_EQ(pool.capacity(0), 10);  // capacity does not move with use
}

}  // namespace
}  // namespace shepherd

namespace shepherd {
namespace {

TEST(KeyPool, SlowStartSendsOneThenFillsUpOnceAnAnswerCame) {
  KeyPool pool(/*slow_start=*/true);
  int a = pool.add_slot(pool.add_key("a", 0), 0, SlotLimits{8});
  int configured = pool.add_slot(pool.add_key("b", 0), 1, SlotLimits{8, 600, 0});
  TimePoint now = SteadyClock::now();
  EXPECT_EQ(pool.acquire(0, now), a);
  EXPECT_EQ(pool.acquire(0, now), -1) << "no limit known yet: one at a time";
  EXPECT_EQ(pool.acquire(1, now), configured) << "a configured rpm needs no probing";
  SlotFeedback ok;
  ok.status = 200;
  pool.on_result(a, ok, 0, now);
  for (int i = 0; i < 8; ++i) EXPECT_EQ(pool.acquire(0, now), a) << i;
}

TEST(KeyPool, A401DisablesTheKeyForTheRun) {
  KeyPool pool;
  uint32_t bad = pool.add_key("bad", 0);
  int s1 = pool.add_slot(bad, 0, SlotLimits{2});
  int s2 = pool.add_slot(bad, 1, SlotLimits{2});
  int good = pool.add_slot(pool.add_key("good", 0), 0, SlotLimits{2});
  TimePoint now = SteadyClock::now();
  SlotFeedback rejected;
  rejected.status = 401;
  rejected.auth_failed = true;
  auto events = pool.on_result(s1, rejected, 0, now);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, "key_disabled");
  EXPECT_EQ(events[0].detail["key"], "bad");
  EXPECT_EQ(pool.acquire(0, now), good);
  EXPECT_EQ(pool.acquire(1, now), -1) << "the key is out for every model";
  EXPECT_FALSE(pool.model_usable(1));
  EXPECT_TRUE(pool.model_usable(0));
  EXPECT_EQ(pool.usable_slots(0, -1, now), 1);
  (void)s2;
}

TEST(KeyPool, QuotaParksOneSlotAndBreakersOpenAfterFailures) {
  KeyPool pool;
  int a = pool.add_slot(pool.add_key("a", 0), 0, SlotLimits{4});
  int b = pool.add_slot(pool.add_key("b", 0), 0, SlotLimits{4});
  TimePoint now = SteadyClock::now();
  SlotFeedback quota;
  quota.status = 429;
  quota.quota_exhausted = true;
  EXPECT_EQ(pool.on_result(a, quota, 0, now)[0].kind, "quota_parked");
  for (int i = 0; i < 4; ++i) EXPECT_EQ(pool.acquire(0, now), b);
  EXPECT_EQ(pool.usable_slots(0, b, now), 0);

  SlotFeedback error;
  error.status = 503;
  std::vector<PoolEvent> events;
  for (int i = 0; i < 4; ++i) {
    auto e = pool.on_result(b, error, 0, now);
    events.insert(events.end(), e.begin(), e.end());
  }
  EXPECT_EQ(pool.slot(b).breaker.state(), CircuitBreaker::State::closed) << "four failures: still closed";
  pool.acquire(0, now);
  auto opened = pool.on_result(b, error, 0, now);
  ASSERT_FALSE(opened.empty());
  EXPECT_EQ(opened[0].kind, "breaker");
  EXPECT_EQ(opened[0].detail["state"], "open");
  EXPECT_EQ(pool.acquire(0, now), -1) << "open: nothing goes to b";
  EXPECT_GT(pool.next_ready(0, now), now);
}

TEST(KeyPool, ConfiguredRpmIsSpreadEvenly) {
  KeyPool pool;
  int a = pool.add_slot(pool.add_key("a", 0), 0, SlotLimits{100, 600, 0});  // 10/s, paced at 9.5/s
  TimePoint now = SteadyClock::now();
  int granted = 0;
  for (int ms = 0; ms < 10'000; ms += 10) {
    TimePoint t = now + std::chrono::milliseconds(ms);
    while (pool.acquire(0, t) == a) {
      ++granted;
      pool.release(a);
    }
  }
  EXPECT_GE(granted, 90);
  EXPECT_LE(granted, 97);
}

}  // namespace
}  // namespace shepherd

namespace shepherd {
namespace {

TEST(KeyPool, ACancelledProbeGivesItsPlaceBack) {
  KeyPool pool;
  int a = pool.add_slot(pool.add_key("a", 0), 0, SlotLimits{4});
  TimePoint now = SteadyClock::now();
  SlotFeedback error;
  error.status = 500;
  for (int i = 0; i < 5; ++i) pool.on_result(a, error, 0, now);
  ASSERT_EQ(pool.slot(a).breaker.state(), CircuitBreaker::State::open);
  TimePoint later = now + std::chrono::seconds(6);
  EXPECT_EQ(pool.acquire(0, later), a);    // the half-open probe
  EXPECT_EQ(pool.acquire(0, later), -1);   // one probe at a time
  pool.release(a);                         // cancelled: no outcome
  EXPECT_EQ(pool.acquire(0, later), a) << "the probe's place came back";
}

}  // namespace
}  // namespace shepherd

namespace shepherd {
namespace {

TEST(KeyPool, AProbeAnsweredWithA429DoesNotWedgeTheBreaker) {
  KeyPool pool;
  int a = pool.add_slot(pool.add_key("a", 0), 0, SlotLimits{4});
  TimePoint now = SteadyClock::now();
  SlotFeedback error;
  error.status = 500;
  for (int i = 0; i < 5; ++i) pool.on_result(a, error, 0, now);
  TimePoint later = now + std::chrono::seconds(6);
  ASSERT_EQ(pool.acquire(0, later), a);  // the probe
  SlotFeedback limited;
  limited.status = 429;
  limited.rate_limited = true;
  limited.retry_after_s = 1;
  pool.on_result(a, limited, 0, later);
  EXPECT_EQ(pool.acquire(0, later + std::chrono::seconds(2)), a) << "after the cooldown, another probe may go";
}

TEST(KeyPool, HalfOpenIsAnEventToo) {
  KeyPool pool;
  int a = pool.add_slot(pool.add_key("a", 0), 0, SlotLimits{4});
  TimePoint now = SteadyClock::now();
  SlotFeedback error;
  error.status = 500;
  for (int i = 0; i < 5; ++i) pool.on_result(a, error, 0, now);
  TimePoint later = now + std::chrono::seconds(6);
  ASSERT_EQ(pool.acquire(0, later), a);
  SlotFeedback ok;
  ok.status = 200;
  auto events = pool.on_result(a, ok, 0, later);
  std::vector<std::string> states;
  for (const auto& e : events)
    if (e.kind == "breaker" && e.detail["scope"] == "slot") states.push_back(e.detail["state"]);
  EXPECT_EQ(states, (std::vector<std::string>{"half_open", "closed"}));
}

TEST(KeyPool, TokenBudgetsHoldBeforeRequestsAreBuilt) {
  KeyPool pool;
  // 6,000 tokens a minute: 95/s with a burst of three seconds' worth.
  int a = pool.add_slot(pool.add_key("a", 0), 0, SlotLimits{100, 0, 6000});
  TimePoint now = SteadyClock::now();
  int granted = 0;
  for (int ms = 0; ms < 10'000; ms += 10) {
    TimePoint t = now + std::chrono::milliseconds(ms);
    while (pool.acquire(0, t) == a) {
      ++granted;
      pool.reserve_tokens(a, 500, t);
      SlotFeedback ok;
      ok.status = 200;
      ok.tokens_used = 500;
      pool.on_result(a, ok, 500, t);
    }
  }
  // 10 s of 95 tokens/s at 500 a request: about 2, plus the first grants.
  EXPECT_LE(granted, 4);
  EXPECT_GE(granted, 1);
}

}  // namespace
}  // namespace shepherd

namespace shepherd {
namespace {

TEST(KeyPool, QuotaParksUntilTheStatedResetTime) {
  // quota_resets two minutes from now (UTC, to the minute).
  std::time_t wall = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&wall, &tm);
  int reset_minute = (tm.tm_hour * 60 + tm.tm_min + 2) % (24 * 60);
  double expected_s = 120 - tm.tm_sec;
  KeyPool pool;
  int a = pool.add_slot(pool.add_key("a", 0), 0, SlotLimits{4}, 0, reset_minute);
  TimePoint now = SteadyClock::now();
  SlotFeedback quota;
  quota.status = 403;
  quota.quota_exhausted = true;
  pool.on_result(a, quota, 0, now);
  double parked_s = std::chrono::duration<double>(pool.slot(a).parked_until - now).count();
  EXPECT_NEAR(parked_s, expected_s, 2.0);
  EXPECT_EQ(pool.acquire(0, now + std::chrono::seconds(30)), -1);
  EXPECT_TRUE(pool.model_usable(0)) << "parked, not out for the run";
  EXPECT_EQ(pool.acquire(0, pool.slot(a).parked_until + std::chrono::seconds(1)), a) << "back after the reset";
}

}  // namespace
}  // namespace shepherd

namespace shepherd {
namespace {

TEST(KeyPool, APreferredKeyIsWaitedForUnlessItCannotServe) {
  KeyPool pool;
  uint32_t k0 = pool.add_key("k0", 0);
  int a = pool.add_slot(k0, 0, SlotLimits{1});
  int b = pool.add_slot(pool.add_key("k1", 0), 0, SlotLimits{4});
  TimePoint now = SteadyClock::now();
  EXPECT_EQ(pool.acquire(0, now, static_cast<int>(k0)), a);
  EXPECT_EQ(pool.acquire(0, now, static_cast<int>(k0)), -1) << "busy: wait for it, don't spill";
  EXPECT_EQ(pool.acquire(0, now), b) << "no preference: any slot";
  SlotFeedback rejected;
  rejected.status = 401;
  rejected.auth_failed = true;
  pool.on_result(a, rejected, 0, now);
  EXPECT_EQ(pool.acquire(0, now, static_cast<int>(k0)), b) << "the preferred key can no longer serve: go elsewhere";
}

}  // namespace
}  // namespace shepherd
