// The key pool: limits per (key, model), the most headroom first, ties spread
// across keys, cooldowns that sideline one slot without touching the others.
#include "keys/key_pool.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <map>
#include <queue>
#include <random>
#include <vector>

#include <gtest/gtest.h>

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
  for (int i = 0; i < 19; ++i) EXPECT_TRUE(pool.on_result(b, error, 0, now).empty());
  EXPECT_EQ(pool.slot(b).breaker.state(), CircuitBreaker::State::closed) << "19 calls: below min_calls";
  pool.acquire(0, now);
  auto opened = pool.on_result(b, error, 0, now);
  ASSERT_EQ(opened.size(), 1u) << "the slot's breaker; the endpoint's needs a second failing key";
  EXPECT_EQ(opened[0].kind, "breaker");
  EXPECT_EQ(opened[0].detail["scope"], "slot");
  EXPECT_EQ(opened[0].detail["state"], "open");
  EXPECT_EQ(opened[0].detail["calls"], 20);
  EXPECT_EQ(opened[0].detail["failure_rate"], 1.0);
  EXPECT_EQ(opened[0].detail["open_ms"], 5000);
  EXPECT_EQ(pool.endpoint(0).state(), CircuitBreaker::State::closed);
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

// Opens slot `a`'s breaker with min_calls failures.
void fail_until_open(KeyPool& pool, int a, TimePoint now) {
  SlotFeedback error;
  error.status = 500;
  for (int i = 0; i < pool.slot(a).breaker.options().min_calls; ++i) pool.on_result(a, error, 0, now);
  ASSERT_EQ(pool.slot(a).breaker.state(), CircuitBreaker::State::open);
}

TEST(KeyPool, ACancelledProbeGivesItsPlaceBack) {
  KeyPool pool;
  int a = pool.add_slot(pool.add_key("a", 0), 0, SlotLimits{8});
  TimePoint now = SteadyClock::now();
  fail_until_open(pool, a, now);
  TimePoint later = now + std::chrono::seconds(6);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(pool.acquire(0, later), a) << "half-open probe " << i;
  EXPECT_EQ(pool.acquire(0, later), -1);   // three probes, no more
  pool.release(a);                         // cancelled: no outcome
  EXPECT_EQ(pool.acquire(0, later), a) << "the probe's place came back";
  EXPECT_EQ(pool.acquire(0, later), -1);
}

}  // namespace
}  // namespace shepherd

namespace shepherd {
namespace {

TEST(KeyPool, AProbeAnsweredWithA429DoesNotWedgeTheBreaker) {
  KeyPool pool;
  int a = pool.add_slot(pool.add_key("a", 0), 0, SlotLimits{4}, 0, std::nullopt, CircuitBreakerOptions{.probes = 1});
  TimePoint now = SteadyClock::now();
  fail_until_open(pool, a, now);
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
  fail_until_open(pool, a, now);
  TimePoint later = now + std::chrono::seconds(6);
  for (int i = 0; i < 3; ++i) ASSERT_EQ(pool.acquire(0, later), a);
  SlotFeedback ok;
  ok.status = 200;
  std::vector<std::string> states;
  for (int i = 0; i < 3; ++i)
    for (const auto& e : pool.on_result(a, ok, 0, later))
      if (e.kind == "breaker" && e.detail["scope"] == "slot") states.push_back(e.detail["state"]);
  EXPECT_EQ(states, (std::vector<std::string>{"half_open", "closed"})) << "closed once all three probes passed";
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

// Slot and endpoint breakers together: one bad key is its slots' problem; an
// endpoint stops only when two keys fail at once, and then lets `probes`
// requests at a time through. Virtual clock throughout.
namespace shepherd {
namespace {

using State = CircuitBreaker::State;
const TimePoint kT0 = TimePoint{} + std::chrono::hours(1);

SlotFeedback answer(long status) {
  SlotFeedback f;
  f.status = status;
  return f;
}

// Answers on `slot` without acquiring it first; returns the breaker events.
std::vector<PoolEvent> answer_n(KeyPool& pool, int slot, long status, int n, TimePoint now) {
  std::vector<PoolEvent> breaker_events;
  for (int i = 0; i < n; ++i)
    for (auto& e : pool.on_result(slot, answer(status), 0, now))
      if (e.kind == "breaker") breaker_events.push_back(std::move(e));
  return breaker_events;
}

int endpoint_events(const std::vector<PoolEvent>& events, const std::string& state) {
  int n = 0;
  for (const auto& e : events) n += e.detail["scope"] == "endpoint" && e.detail["state"] == state ? 1 : 0;
  return n;
}

TEST(KeyPoolEndpoint, OneBadKeyNeverOpensTheEndpoint) {
  KeyPool pool;
  uint32_t bad = pool.add_key("bad", 0), good = pool.add_key("good", 0);
  for (uint32_t m : {0u, 1u}) {
    pool.add_slot(bad, m, SlotLimits{4});
    pool.add_slot(good, m, SlotLimits{4});
  }
  std::vector<PoolEvent> events;
  int served_by_good = 0, most_failing_keys = 0;
  for (int i = 0; i < 2000; ++i) {
    TimePoint now = kT0 + std::chrono::milliseconds(50 * i);  // 100 s: the bad slots probe again and again
    int s = pool.acquire(static_cast<uint32_t>(i % 2), now);
    ASSERT_GE(s, 0) << "the good key always has room";
    bool is_bad = pool.slot(s).key == bad;
    served_by_good += is_bad ? 0 : 1;
    for (auto& e : pool.on_result(s, answer(is_bad ? 500 : 200), 0, now)) events.push_back(std::move(e));
    most_failing_keys = std::max(most_failing_keys, pool.endpoint(0).failing_keys());
  }
  EXPECT_EQ(endpoint_events(events, "open"), 0);
  EXPECT_EQ(pool.endpoint(0).state(), State::closed);
  EXPECT_EQ(most_failing_keys, 1) << "the bad key did fail, alone";
  for (const auto& s : pool.slots()) {
    if (s.key == bad) {
      EXPECT_NE(s.breaker.state(), State::closed) << "its own breakers keep it out";
    }
  }
  EXPECT_GT(served_by_good, 1900);
}

TEST(KeyPoolEndpoint, WithOneKeyTheEndpointNeverOpens) {
  KeyPool pool;
  uint32_t k = pool.add_key("only", 0);
  int a = pool.add_slot(k, 0, SlotLimits{4});
  int b = pool.add_slot(k, 1, SlotLimits{4});
  auto events = answer_n(pool, a, 500, 100, kT0);
  auto more = answer_n(pool, b, 503, 100, kT0);
  EXPECT_EQ(endpoint_events(events, "open") + endpoint_events(more, "open"), 0);
  EXPECT_EQ(pool.endpoint(0).state(), State::closed);
  EXPECT_EQ(pool.slot(a).breaker.state(), State::open);
}

// Two keys at endpoint 0, two models each; a third key at endpoint 1.
struct TwoKeys {
  KeyPool pool;
  uint32_t a = pool.add_key("a", 0), b = pool.add_key("b", 0), c = pool.add_key("c", 1);
  int a0 = pool.add_slot(a, 0, SlotLimits{8}), a1 = pool.add_slot(a, 1, SlotLimits{8});
  int b0 = pool.add_slot(b, 0, SlotLimits{8}), b1 = pool.add_slot(b, 1, SlotLimits{8});
  int c0 = pool.add_slot(c, 0, SlotLimits{8}, 1);

  // 20 failures per key at endpoint 0, 10 per slot: the slots' own breakers
  // (min_calls 20) stay closed, so whatever blocks them is the endpoint's.
  std::vector<PoolEvent> fail_both(TimePoint now) {
    std::vector<PoolEvent> events;
    for (int s : {a0, a1, b0}) {
      auto e = answer_n(pool, s, 500, 10, now);
      events.insert(events.end(), e.begin(), e.end());
    }
    EXPECT_EQ(pool.endpoint(0).state(), State::closed) << "key b has only 10 calls";
    EXPECT_EQ(pool.endpoint(0).failing_keys(), 1);
    auto e = answer_n(pool, b1, 500, 10, now);
    events.insert(events.end(), e.begin(), e.end());
    return events;
  }
};

TEST(KeyPoolEndpoint, TwoFailingKeysOpenIt) {
  TwoKeys t;
  auto events = t.fail_both(kT0);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].detail["scope"], "endpoint");
  EXPECT_EQ(events[0].detail["state"], "open");
  EXPECT_EQ(events[0].detail["endpoint"], 0);
  EXPECT_EQ(events[0].detail["calls"], 40);
  EXPECT_EQ(events[0].detail["open_ms"], 5000);
  for (int s : {t.a0, t.a1, t.b0, t.b1}) EXPECT_EQ(t.pool.slot(s).breaker.state(), State::closed);
  EXPECT_EQ(t.pool.acquire(1, kT0), -1) << "no slot at endpoint 0 gets a request";
  EXPECT_EQ(t.pool.acquire(0, kT0), t.c0) << "endpoint 1 is not affected";
  EXPECT_EQ(t.pool.acquire(0, kT0, static_cast<int>(t.a)), t.c0) << "a preferred key behind an open endpoint: elsewhere";
  EXPECT_EQ(t.pool.next_ready(1, kT0), kT0 + std::chrono::seconds(5));
}

TEST(KeyPoolEndpoint, KeysMustFailAtTheSameTime) {
  TwoKeys t;
  answer_n(t.pool, t.a0, 500, 20, kT0);
  // Key b fails a minute later: key a's failures have aged out of its window.
  TimePoint later = kT0 + std::chrono::seconds(60);
  auto events = answer_n(t.pool, t.b0, 500, 10, later);
  events = answer_n(t.pool, t.b1, 500, 10, later);
  EXPECT_EQ(endpoint_events(events, "open"), 0);
  EXPECT_EQ(t.pool.endpoint(0).state(), State::closed);
  EXPECT_EQ(t.pool.endpoint(0).failing_keys(), 1);
}

TEST(KeyPoolEndpoint, HalfOpenAdmitsAtMostProbesAcrossItsSlots) {
  TwoKeys t;
  t.fail_both(kT0);
  TimePoint t1 = kT0 + std::chrono::seconds(5);
  // Both models, four slots with room: three requests in all.
  std::vector<int> probes;
  for (int i = 0; i < 20; ++i) {
    int s = t.pool.acquire(static_cast<uint32_t>(i % 2), t1);
    if (s >= 0 && t.pool.slot(s).endpoint == 0) probes.push_back(s);
    if (s == t.c0) t.pool.release(s);
  }
  ASSERT_EQ(probes.size(), 3u);
  EXPECT_EQ(t.pool.endpoint(0).state(), State::half_open);
  EXPECT_EQ(t.pool.endpoint(0).probes_in_flight(), 3);

  // Three failing probes: open again, for twice as long.
  std::vector<PoolEvent> events;
  for (int s : probes) {
    auto e = answer_n(t.pool, s, 500, 1, t1);
    events.insert(events.end(), e.begin(), e.end());
  }
  ASSERT_EQ(endpoint_events(events, "open"), 1);
  EXPECT_EQ(t.pool.endpoint(0).open_until(), t1 + std::chrono::seconds(10));

  // One failure in three: closed, and judged afresh.
  TimePoint t2 = t1 + std::chrono::seconds(10);
  probes.clear();
  for (int i = 0; i < 20; ++i) {
    int s = t.pool.acquire(static_cast<uint32_t>(i % 2), t2);
    if (s >= 0 && t.pool.slot(s).endpoint == 0) probes.push_back(s);
    if (s == t.c0) t.pool.release(s);
  }
  ASSERT_EQ(probes.size(), 3u);
  answer_n(t.pool, probes[0], 500, 1, t2);
  answer_n(t.pool, probes[1], 200, 1, t2);
  events = answer_n(t.pool, probes[2], 200, 1, t2);
  EXPECT_EQ(endpoint_events(events, "closed"), 1);
  EXPECT_EQ(t.pool.endpoint(0).calls(), 0);
  EXPECT_EQ(t.pool.endpoint(0).failing_keys(), 0);
}

TEST(KeyPoolEndpoint, ConfiguredOptionsApply) {
  TwoKeys t;
  CircuitBreakerOptions o;
  o.min_calls = 4;
  o.open_ms = std::chrono::seconds(2);
  t.pool.configure_endpoint(0, o);
  EXPECT_EQ(t.pool.endpoint(0).keys(), 2) << "the keys stay registered";
  answer_n(t.pool, t.a0, 500, 4, kT0);
  auto events = answer_n(t.pool, t.b1, 500, 4, kT0);
  ASSERT_EQ(endpoint_events(events, "open"), 1);
  EXPECT_EQ(t.pool.endpoint(0).open_until(), kT0 + std::chrono::seconds(2));
  EXPECT_EQ(t.pool.slot(t.a0).breaker.state(), State::closed) << "slots keep their own (default) options";

  // A slot's own options come with add_slot.
  KeyPool pool;
  int s = pool.add_slot(pool.add_key("k", 0), 0, SlotLimits{4}, 0, std::nullopt, CircuitBreakerOptions{.min_calls = 3});
  answer_n(pool, s, 500, 3, kT0);
  EXPECT_EQ(pool.slot(s).breaker.state(), State::open);
}

TEST(KeyPoolEndpoint, EndpointSnapshot) {
  TwoKeys t;
  EXPECT_EQ(t.pool.endpoint_snapshot(kT0).size(), 2u);
  t.fail_both(kT0);
  answer_n(t.pool, t.c0, 200, 3, kT0);
  auto snap = t.pool.endpoint_snapshot(kT0 + std::chrono::seconds(2));
  ASSERT_EQ(snap.size(), 2u);
  EXPECT_EQ(snap[0]["endpoint"], 0);
  EXPECT_EQ(snap[0]["state"], "open");
  EXPECT_EQ(snap[0]["open_ms_left"], 3000);
  EXPECT_EQ(snap[0]["calls"], 40);
  EXPECT_EQ(snap[0]["failure_rate"], 1.0);
  EXPECT_EQ(snap[0]["failing_keys"], 2);
  EXPECT_EQ(snap[0]["keys"], 2);
  EXPECT_EQ(snap[1]["endpoint"], 1);
  EXPECT_EQ(snap[1]["state"], "closed");
  EXPECT_EQ(snap[1]["open_ms_left"], 0);
  EXPECT_EQ(snap[1]["calls"], 3);
  EXPECT_EQ(snap[1]["failure_rate"], 0.0);
  // Outcomes older than window_ms are no longer shown.
  EXPECT_EQ(t.pool.endpoint_snapshot(kT0 + std::chrono::seconds(61))[1]["calls"], 0);
  // Slot rows name their endpoint.
  auto slots = t.pool.snapshot(kT0, {"m0", "m1"});
  EXPECT_EQ(slots[static_cast<size_t>(t.c0)]["endpoint"], 1);
}

TEST(KeyPool, ForbiddenOrUnknownModelParksTheSlotForTheRun) {
  KeyPool pool;
  uint32_t a = pool.add_key("a", 0), b = pool.add_key("b", 0);
  int a0 = pool.add_slot(a, 0, SlotLimits{4});
  int a1 = pool.add_slot(a, 1, SlotLimits{4});
  int b0 = pool.add_slot(b, 0, SlotLimits{4});
  SlotFeedback forbidden = answer(403);
  forbidden.forbidden = true;
  auto events = pool.on_result(a0, forbidden, 0, kT0);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, "slot_parked");
  EXPECT_EQ(events[0].detail["reason"], "forbidden");
  EXPECT_EQ(events[0].detail["key"], "a");
  EXPECT_EQ(events[0].detail["status"], 403);
  EXPECT_EQ(pool.slot(a0).parked_until, TimePoint::max());
  EXPECT_TRUE(pool.on_result(a0, forbidden, 0, kT0).empty()) << "parked once";
  EXPECT_EQ(pool.acquire(0, kT0 + std::chrono::hours(5)), b0);
  EXPECT_EQ(pool.acquire(1, kT0), a1) << "the key may still use its other models";
  EXPECT_TRUE(pool.model_usable(0));
  EXPECT_EQ(pool.usable_slots(0, b0, kT0), 0);

  SlotFeedback unknown = answer(404);
  unknown.model_not_found = true;
  events = pool.on_result(b0, unknown, 0, kT0);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].detail["reason"], "model_not_found");
  EXPECT_FALSE(pool.model_usable(0)) << "every key tried: the retry storm ends";
  EXPECT_EQ(pool.acquire(0, kT0), -1);
  EXPECT_EQ(pool.snapshot(kT0, {})[static_cast<size_t>(b0)]["parked"], "end of run");
  EXPECT_EQ(pool.endpoint(0).calls(), 0) << "a 403 or 404 says nothing about the endpoint's health";

  // Quota wins over forbidden: it comes back at its reset time.
  SlotFeedback quota = answer(403);
  quota.quota_exhausted = true;
  quota.forbidden = true;
  events = pool.on_result(a1, quota, 0, kT0);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, "quota_parked");
}

// ---------------------------------------------------------------------------
// Whole runs on a virtual clock: `tasks` tasks spread over the models, every
// failed attempt re-queued at once, each slot `concurrency` in flight, answers
// after a uniform latency, each failing with probability `failure_p`.

struct SimConfig {
  int keys = 2;
  int models = 3;
  int tasks = 600;
  int concurrency = 8;
  double failure_p = 0.3;
  int min_latency_ms = 80;
  int max_latency_ms = 120;
  Millis give_up{600'000};  // virtual time
  CircuitBreakerOptions breaker;  // for the slots and the endpoint
};

struct SimResult {
  double seconds = 0;
  int attempts = 0;
  int done = 0;
  int slot_opens = 0;      // from closed, or again after failed probes
  int endpoint_opens = 0;
  int answered_at_first_endpoint_open = -1;
  std::vector<int> endpoint_probes;  // requests sent to the endpoint in each half-open period
};

SimResult simulate(const SimConfig& c, uint64_t seed) {
  std::mt19937_64 rng(seed);  // its output is fixed by the standard, unlike the distributions'
  auto uniform = [&] { return static_cast<double>(rng() >> 11) * 0x1.0p-53; };
  KeyPool pool;
  for (int k = 0; k < c.keys; ++k) {
    uint32_t key = pool.add_key("k" + std::to_string(k), 0);
    for (int m = 0; m < c.models; ++m)
      pool.add_slot(key, static_cast<uint32_t>(m), SlotLimits{c.concurrency}, 0, std::nullopt, c.breaker);
  }
  pool.configure_endpoint(0, c.breaker);
  std::vector<int> pending(static_cast<size_t>(c.models), c.tasks / c.models);
  using Answer = std::pair<TimePoint, int>;  // when, which slot
  std::priority_queue<Answer, std::vector<Answer>, std::greater<>> in_flight;
  SimResult r;
  int answered = 0;
  TimePoint now = kT0;
  while (r.done < c.tasks && now - kT0 < c.give_up) {
    for (int m = 0; m < c.models; ++m) {
      while (pending[static_cast<size_t>(m)] > 0) {
        int s = pool.acquire(static_cast<uint32_t>(m), now);
        if (s < 0) break;
        --pending[static_cast<size_t>(m)];
        ++r.attempts;
        if (pool.endpoint(0).state() == State::half_open && !r.endpoint_probes.empty()) ++r.endpoint_probes.back();
        int latency = c.min_latency_ms + static_cast<int>(uniform() * (c.max_latency_ms - c.min_latency_ms));
        in_flight.push({now + std::chrono::milliseconds(latency), s});
      }
    }
    // The next thing to happen: an answer, or a breaker's wait running out.
    TimePoint next = in_flight.empty() ? TimePoint::max() : in_flight.top().first;
    for (int m = 0; m < c.models; ++m) {
      TimePoint ready = pool.next_ready(static_cast<uint32_t>(m), now);
      if (pending[static_cast<size_t>(m)] > 0 && ready > now) next = std::min(next, ready);
    }
    if (next == TimePoint::max()) break;
    now = next;
    while (!in_flight.empty() && in_flight.top().first <= now) {
      int s = in_flight.top().second;
      in_flight.pop();
      bool failed = uniform() < c.failure_p;
      ++answered;
      for (const auto& e : pool.on_result(s, answer(failed ? 500 : 200), 0, now)) {
        if (e.kind != "breaker" || e.detail["state"] != "open") continue;
        if (e.detail["scope"] == "slot") {
          ++r.slot_opens;
        } else {
          if (r.endpoint_opens++ == 0) r.answered_at_first_endpoint_open = answered;
          r.endpoint_probes.push_back(0);
        }
      }
      if (failed) ++pending[pool.slot(s).model];
      else ++r.done;
    }
  }
  r.seconds = std::chrono::duration<double>(now - kT0).count();
  return r;
}

// The run from the issue: 600 tasks, 2 keys x 3 models, 8 in flight each,
// 30 % random 500s, 80-120 ms. With the old "five in a row" breakers it took
// 25.9 s instead of 1.6 s: the endpoint breaker stopped everything. Measured
// with the default options over 2,000 seeds (DISABLED_FalseOpenRates below;
// ~145 answers per slot, ~430 per key):
//   endpoint breaker opens in 0.1 % of runs (two keys must stray at once);
//   a slot breaker opens in 6.6 % of slot-runs, so a third of runs see one of
//   their six slots out for 5 s (the other key carries that model): mean
//   2.60 s against 2.08 s with no breakers, 1.5 % of runs over 5 s.
// Nearly all slot openings come as the window first reaches min_calls:
// P(>= 10 of 20 fail) is 4.8 % at 30 %, while 50 of a full window of 100 is
// a 1e-5 event. min_calls 40 gives 1.0 % of slot-runs (mean 2.15 s), 50 gives 0.4 %.
TEST(KeyPoolSimulation, ThirtyPercentFailuresRarelyOpenABreaker) {
  SimConfig c;
  constexpr int kRuns = 300;
  int slot_opens = 0, endpoint_opens = 0, runs_with_slot_open = 0, slow_runs = 0;
  double total_seconds = 0;
  for (int seed = 1; seed <= kRuns; ++seed) {
    SimResult r = simulate(c, static_cast<uint64_t>(seed));
    ASSERT_EQ(r.done, c.tasks) << "seed " << seed;
    slot_opens += r.slot_opens;
    endpoint_opens += r.endpoint_opens;
    runs_with_slot_open += r.slot_opens > 0 ? 1 : 0;
    slow_runs += r.seconds > 5 ? 1 : 0;
    total_seconds += r.seconds;
  }
  double slot_rate = static_cast<double>(slot_opens) / (kRuns * c.keys * c.models);
  std::printf("30%% failures, %d runs: slot opens per slot-run %.4f, runs with a slot open %.3f, "
              "endpoint opens per run %.4f, mean %.2f s, runs over 5 s %d\n",
              kRuns, slot_rate, static_cast<double>(runs_with_slot_open) / kRuns,
              static_cast<double>(endpoint_opens) / kRuns, total_seconds / kRuns, slow_runs);
  EXPECT_LE(endpoint_opens, 2) << "the endpoint breaker almost never opens";
  EXPECT_LT(slot_rate, 0.10);
  EXPECT_LT(total_seconds / kRuns, 3.0) << "no crawl";
}

// A dead endpoint: it opens once each key has about min_calls answers, and
// from then on at most `probes` requests reach it per open period.
TEST(KeyPoolSimulation, ADeadEndpointOpensFastAndIsOnlyProbed) {
  SimConfig c;
  c.failure_p = 1.0;
  c.give_up = std::chrono::minutes(5);
  SimResult r = simulate(c, 7);
  ASSERT_GE(r.endpoint_opens, 1);
  // When the second key has its 20th answer, the first may have a few more.
  EXPECT_GE(r.answered_at_first_endpoint_open, 2 * 20);
  EXPECT_LE(r.answered_at_first_endpoint_open, 2 * 20 + 10);
  // 5, 10, 20, 40, 60, 60, ... s: about eight periods in five minutes.
  EXPECT_GE(r.endpoint_opens, 7);
  for (size_t i = 0; i < r.endpoint_probes.size(); ++i) EXPECT_LE(r.endpoint_probes[i], 3) << "period " << i;
  int probes = 0;
  for (int n : r.endpoint_probes) probes += n;
  std::printf("100%% failures: endpoint opened after %d answers, %d periods, %d probes in %.0f s, %d attempts\n",
              r.answered_at_first_endpoint_open, r.endpoint_opens, probes, r.seconds, r.attempts);
  // Everything sent after the first opening went out as a probe.
  EXPECT_LE(r.attempts, c.keys * c.models * c.concurrency + r.answered_at_first_endpoint_open + probes);
}

// The figures quoted above: --gtest_also_run_disabled_tests, SIM_RUNS=N.
TEST(KeyPoolSimulation, DISABLED_FalseOpenRates) {
  const char* env = std::getenv("SIM_RUNS");
  int runs = env ? std::atoi(env) : 2000;
  struct Variant {
    const char* name;
    int min_calls;
    double failure_rate;
  };
  for (Variant v : {Variant{"defaults", 20, 0.5}, Variant{"no breakers", 100, 1.0}, Variant{"min_calls 30", 30, 0.5},
                    Variant{"min_calls 40", 40, 0.5}, Variant{"min_calls 50", 50, 0.5}}) {
    SimConfig c;
    c.breaker.min_calls = v.min_calls;
    c.breaker.failure_rate = v.failure_rate;
    int slot_opens = 0, with_slot = 0, with_endpoint = 0, over5 = 0;
    double total = 0, worst = 0;
    for (int seed = 1; seed <= runs; ++seed) {
      SimResult r = simulate(c, static_cast<uint64_t>(seed) * 7919);
      slot_opens += r.slot_opens;
      with_slot += r.slot_opens > 0 ? 1 : 0;
      with_endpoint += r.endpoint_opens > 0 ? 1 : 0;
      over5 += r.seconds > 5 ? 1 : 0;
      total += r.seconds;
      worst = std::max(worst, r.seconds);
    }
    std::printf("%-12s slot opens per slot-run %.4f, runs with a slot open %.3f, with the endpoint open %.4f, "
                "mean %.2f s, worst %.1f s, over 5 s %.4f\n",
                v.name, static_cast<double>(slot_opens) / (runs * c.keys * c.models),
                static_cast<double>(with_slot) / runs, static_cast<double>(with_endpoint) / runs, total / runs, worst,
                static_cast<double>(over5) / runs);
  }
}

}  // namespace
}  // namespace shepherd
