// The key pool: limits per (key, model), the most headroom first, ties spread
// across keys, cooldowns that sideline one slot without touching the others.
#include "keys/key_pool.h"

#include <map>
#include <vector>

#include <gtest/gtest.h>

namespace shepherd {
namespace {

using std::chrono::seconds;

TEST(KeyPool, KeysAndSlotsAreIndexed) {
  KeyPool pool;
  EXPECT_EQ(pool.add_key("k0", 0), 0u);
  EXPECT_EQ(pool.add_key("k1", 1), 1u);
  EXPECT_EQ(pool.key(1).id, "k1");
  EXPECT_EQ(pool.key(1).provider, 1u);
  EXPECT_EQ(pool.add_slot(0, 0, 2), 0);
  EXPECT_EQ(pool.add_slot(1, 3, 5), 1);  // model indices need not be dense
  EXPECT_EQ(pool.slot(1).key, 1u);
  EXPECT_EQ(pool.slot(1).model, 3u);
  EXPECT_EQ(pool.slot(1).limit, 5);
  EXPECT_EQ(pool.slots().size(), 2u);
  EXPECT_EQ(pool.add_slot(0, 1, 0), 2);
  EXPECT_EQ(pool.slot(2).limit, 1);  // a limit below 1 still lets one through
}

TEST(KeyPool, LimitsHoldPerKeyAndModel) {
  KeyPool pool;
  uint32_t k0 = pool.add_key("k0", 0), k1 = pool.add_key("k1", 0);
  pool.add_slot(k0, 0, 2);
  pool.add_slot(k1, 0, 1);
  pool.add_slot(k0, 1, 1);
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
  for (const auto& s : pool.slots()) EXPECT_LE(s.in_flight, s.limit);

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
  pool.add_slot(pool.add_key("k", 0), 0, 1);
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
  int a = pool.add_slot(pool.add_key("a", 0), 0, 5);
  int b = pool.add_slot(pool.add_key("b", 0), 0, 4);
  TimePoint now = SteadyClock::now();

  // Hold b back for a moment so that a fills up to 3 in flight (headroom 2).
  pool.cool_down(b, now + seconds(1));
  for (int i = 0; i < 3; ++i) EXPECT_EQ(pool.acquire(0, now), a);
  TimePoint later = now + seconds(2);
  // Now b has headroom 4, a has 2: b wins whatever the rotation says.
  EXPECT_EQ(pool.acquire(0, later), b);  // b: 3 left
  EXPECT_EQ(pool.acquire(0, later), b);  // b: 2 left, a: 2 left
  EXPECT_EQ(pool.slot(a).in_flight, 3);
  EXPECT_EQ(pool.slot(b).in_flight, 2);
  // From here on the two alternate as their headroom stays level.
  std::map<int, int> used;
  for (int i = 0; i < 4; ++i) ++used[pool.acquire(0, later)];
  EXPECT_EQ(used[a], 2);
  EXPECT_EQ(used[b], 2);
  EXPECT_EQ(pool.acquire(0, later), -1);
}

TEST(KeyPool, TiesAreSpreadAcrossKeys) {
  KeyPool pool;
  std::vector<int> slots;
  for (const char* id : {"k0", "k1", "k2"}) slots.push_back(pool.add_slot(pool.add_key(id, 0), 0, 10));
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
  int cooled = pool.add_slot(pool.add_key("k0", 0), 0, 2);
  int other = pool.add_slot(pool.add_key("k1", 0), 0, 2);
  TimePoint now = SteadyClock::now();
  TimePoint until = now + seconds(30);
  pool.cool_down(cooled, until);

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
  pool.cool_down(other, now + seconds(60));
  pool.cool_down(other, now + seconds(5));
  EXPECT_EQ(pool.slot(other).cooldown_until, now + seconds(60));
}

TEST(KeyPool, NextReady) {
  KeyPool pool;
  int a = pool.add_slot(pool.add_key("a", 0), 0, 1);
  int b = pool.add_slot(pool.add_key("b", 0), 0, 1);
  TimePoint now = SteadyClock::now();
  EXPECT_EQ(pool.next_ready(0, now), now);

  pool.cool_down(a, now + seconds(5));
  EXPECT_EQ(pool.next_ready(0, now), now);  // b is ready

  pool.cool_down(b, now + seconds(3));
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
  pool.add_slot(k0, 0, 4);
  pool.add_slot(k1, 0, 6);
  pool.add_slot(k1, 1, 3);
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
