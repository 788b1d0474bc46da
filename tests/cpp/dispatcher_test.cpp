// The dispatcher: which task goes out next, on which slot, and when.
#include "engine/dispatcher.h"

#include <algorithm>
#include <set>
#include <vector>

#include <gtest/gtest.h>

namespace shepherd {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

// One key per model, `limit` in flight each.
KeyPool pool_for(uint32_t models, int limit, int keys = 1) {
  KeyPool pool;
  for (int k = 0; k < keys; ++k) {
    uint32_t key = pool.add_key("k" + std::to_string(k), 0);
    for (uint32_t m = 0; m < models; ++m) pool.add_slot(key, m, SlotLimits{limit});
  }
  return pool;
}

TaskRuntime task(const std::string& id, int32_t model) {
  TaskRuntime t;
  t.id = id;
  t.model = model;
  return t;
}

// What take_launches granted, read back from the tasks it returned.
struct Launch {
  uint32_t task;
  int slot;
  uint32_t model;
};

std::vector<Launch> take(Dispatcher& d, TimePoint now, size_t max) {
  std::vector<Launch> out;
  for (uint32_t i : d.take_launches(now, max)) out.push_back(Launch{i, d.task(i).slot, d.task(i).attempt_model});
  return out;
}

void rate_limited(Dispatcher& d, int slot, double retry_after_s, TimePoint now) {
  SlotFeedback f;
  f.status = 429;
  f.rate_limited = true;
  f.retry_after_s = retry_after_s;
  d.slot_result(slot, f, 0, now);
}

std::set<uint32_t> task_set(const std::vector<Launch>& launches) {
  std::set<uint32_t> out;
  for (const auto& l : launches) out.insert(l.task);
  return out;
}

TEST(Dispatcher, AFullModelDoesNotBlockAnother) {
  Dispatcher d(pool_for(2, 1), 0);
  uint32_t a0 = d.add_task(task("a0", 0));
  d.add_task(task("a1", 0));
  d.add_task(task("a2", 0));
  uint32_t b0 = d.add_task(task("b0", 1));
  uint32_t b1 = d.add_task(task("b1", 1));
  TimePoint now = SteadyClock::now();

  auto launches = take(d, now, 100);
  ASSERT_EQ(launches.size(), 2u);  // one slot per model
  EXPECT_EQ(task_set(launches), (std::set<uint32_t>{a0, b0}));
  for (const auto& l : launches) {
    EXPECT_EQ(l.model, static_cast<uint32_t>(d.task(l.task).model));
    EXPECT_EQ(d.pool().slot(l.slot).model, l.model);
    EXPECT_EQ(d.task(l.task).slot, l.slot);
    EXPECT_EQ(d.task(l.task).attempt_model, l.model);
  }
  EXPECT_TRUE(take(d, now, 100).empty());

  // Model 1 frees up while model 0 stays full: model 1's next task goes.
  const Launch& b = launches[0].task == b0 ? launches[0] : launches[1];
  d.release(b.slot);
  d.finish(b.task, TaskState::done);
  auto next = take(d, now, 100);
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(next[0].task, b1);
}

TEST(Dispatcher, LimitsAreRespected) {
  Dispatcher d(pool_for(1, 2, 2), 0);  // 2 keys x 2 in flight
  for (int i = 0; i < 10; ++i) d.add_task(task("t" + std::to_string(i), 0));
  TimePoint now = SteadyClock::now();
  auto launches = take(d, now, 100);
  EXPECT_EQ(launches.size(), 4u);
  for (const auto& s : d.pool().slots()) EXPECT_LE(s.in_flight, s.limits.concurrency);
  EXPECT_EQ(d.counters().in_flight, 4u);
  EXPECT_EQ(d.counters().waiting, 6u);
  EXPECT_TRUE(take(d, now, 100).empty());

  d.release(launches[0].slot);
  d.finish(launches[0].task, TaskState::done);
  auto one = take(d, now, 100);
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].slot, launches[0].slot);
}

TEST(Dispatcher, TakeLaunchesHonoursMax) {
  Dispatcher d(pool_for(1, 10), 0);
  for (int i = 0; i < 5; ++i) d.add_task(task("t" + std::to_string(i), 0));
  TimePoint now = SteadyClock::now();
  auto first = take(d, now, 2);
  ASSERT_EQ(first.size(), 2u);
  EXPECT_EQ(first[0].task, 0u);  // in the order added
  EXPECT_EQ(first[1].task, 1u);
  EXPECT_EQ(take(d, now, 100).size(), 3u);
}

TEST(Dispatcher, RetryAtMakesATaskLaunchableOnlyWhenDue) {
  Dispatcher d(pool_for(1, 4), 0);
  uint32_t t = d.add_task(task("t", 0));
  TimePoint now = SteadyClock::now();
  auto first = take(d, now, 100);
  ASSERT_EQ(first.size(), 1u);
  d.release(first[0].slot);
  d.retry_at(t, now + milliseconds(500));
  EXPECT_EQ(d.counters().in_flight, 0u);
  EXPECT_EQ(d.counters().waiting, 1u);
  EXPECT_FALSE(d.idle());  // a retry is still to come

  EXPECT_TRUE(take(d, now, 100).empty());
  EXPECT_TRUE(take(d, now + milliseconds(499), 100).empty());
  auto due = take(d, now + milliseconds(500), 100);
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].task, t);
  EXPECT_EQ(d.counters().in_flight, 1u);
  EXPECT_EQ(d.counters().waiting, 0u);
}

TEST(Dispatcher, RetriesComeDueInTimeOrder) {
  Dispatcher d(pool_for(1, 4), 0);
  for (int i = 0; i < 3; ++i) d.add_task(task("t" + std::to_string(i), 0));
  TimePoint now = SteadyClock::now();
  auto launches = take(d, now, 100);
  ASSERT_EQ(launches.size(), 3u);
  for (const auto& l : launches) d.release(l.slot);
  d.retry_at(0, now + seconds(3));
  d.retry_at(1, now + seconds(1));
  d.retry_at(2, now + seconds(2));
  auto at2 = take(d, now + seconds(2), 100);
  EXPECT_EQ(task_set(at2), (std::set<uint32_t>{1, 2}));
  auto at3 = take(d, now + seconds(3), 100);
  EXPECT_EQ(task_set(at3), (std::set<uint32_t>{0}));
}

TEST(Dispatcher, BackToQueueGoesFirst) {
  Dispatcher d(pool_for(1, 1), 0);
  uint32_t a = d.add_task(task("a", 0));
  uint32_t b = d.add_task(task("b", 0));
  TimePoint now = SteadyClock::now();
  auto first = take(d, now, 100);
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0].task, a);
  d.release(first[0].slot);
  d.back_to_queue(a);  // e.g. cancelled before it was sent
  EXPECT_EQ(d.counters().in_flight, 0u);
  EXPECT_EQ(d.counters().waiting, 2u);
  auto again = take(d, now, 100);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].task, a);  // ahead of b, which waited behind it
  d.release(again[0].slot);
  d.finish(again[0].task, TaskState::done);
  auto then = take(d, now, 100);
  ASSERT_EQ(then.size(), 1u);
  EXPECT_EQ(then[0].task, b);
}

TEST(Dispatcher, FinishCounters) {
  Dispatcher d(pool_for(1, 10), 0);
  d.count_finished_before(5, 2);
  for (int i = 0; i < 3; ++i) d.add_task(task("t" + std::to_string(i), 0));
  DispatchCounters c = d.counters();
  EXPECT_EQ(c.total, 10u);
  EXPECT_EQ(c.done, 5u);
  EXPECT_EQ(c.failed, 2u);
  EXPECT_EQ(c.waiting, 3u);
  EXPECT_EQ(c.in_flight, 0u);
  EXPECT_EQ(c.done_now, 0u);

  TimePoint now = SteadyClock::now();
  auto launches = take(d, now, 100);
  ASSERT_EQ(launches.size(), 3u);
  EXPECT_FALSE(d.idle());
  d.finish(launches[0].task, TaskState::done);
  d.finish(launches[1].task, TaskState::failed);
  d.finish(launches[2].task, TaskState::pending);  // left for a later run
  for (const auto& l : launches) d.release(l.slot);
  c = d.counters();
  EXPECT_EQ(c.total, 10u);
  EXPECT_EQ(c.done, 6u);
  EXPECT_EQ(c.failed, 3u);
  EXPECT_EQ(c.in_flight, 0u);
  EXPECT_EQ(c.waiting, 0u);
  EXPECT_EQ(c.done_now, 2u);
  EXPECT_TRUE(d.idle());
}

TEST(Dispatcher, StopDispatching) {
  Dispatcher d(pool_for(1, 1), 0);
  d.add_task(task("a", 0));
  d.add_task(task("b", 0));
  TimePoint now = SteadyClock::now();
  auto first = take(d, now, 100);
  ASSERT_EQ(first.size(), 1u);
  d.stop_dispatching();
  EXPECT_TRUE(d.stopping());
  EXPECT_FALSE(d.idle());  // one still in flight
  d.release(first[0].slot);
  EXPECT_TRUE(take(d, now, 100).empty());  // b waits, with a free slot
  d.finish(first[0].task, TaskState::done);
  EXPECT_TRUE(d.idle());  // nothing in flight; b stays pending
  EXPECT_EQ(d.counters().waiting, 1u);

  // Due retries are not launched either.
  Dispatcher r(pool_for(1, 1), 0);
  uint32_t t = r.add_task(task("t", 0));
  auto l = take(r, now, 100);
  ASSERT_EQ(l.size(), 1u);
  r.release(l[0].slot);
  r.retry_at(t, now);
  r.stop_dispatching();
  EXPECT_TRUE(take(r, now + seconds(1), 100).empty());
  EXPECT_TRUE(r.idle());
}

TEST(Dispatcher, ExhaustModelHandsTheChoiceToOneCallerThenSwitches) {
  Dispatcher d(pool_for(3, 1), 0);
  uint32_t a = d.add_task(task("a", -1));
  uint32_t b = d.add_task(task("b", -1));
  TimePoint now = SteadyClock::now();
  EXPECT_EQ(d.current_model(), 0u);

  auto first = take(d, now, 100);
  ASSERT_EQ(first.size(), 1u);  // model 0 has one slot
  EXPECT_EQ(first[0].task, a);
  EXPECT_EQ(first[0].model, 0u);
  d.release(first[0].slot);
  EXPECT_TRUE(d.exhaust_model(0, a));  // this caller chooses the next model
  EXPECT_TRUE(take(d, now, 100).empty()) << "no resource task goes out while the next model is chosen";
  EXPECT_EQ(d.counters().in_flight, 0u);
  EXPECT_EQ(d.counters().waiting, 2u);
  d.switch_to(1);
  EXPECT_EQ(d.current_model(), 1u);
  EXPECT_FALSE(d.models_exhausted());

  auto second = take(d, now, 100);
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(second[0].task, a);  // back at the front of the queue
  EXPECT_EQ(second[0].model, 1u);
  EXPECT_EQ(d.task(a).attempt_model, 1u);
  d.release(second[0].slot);
  EXPECT_TRUE(d.exhaust_model(1, a));
  EXPECT_EQ(d.exhausted_models(), (std::vector<uint32_t>{0, 1}));
  d.no_model_left();
  EXPECT_TRUE(d.models_exhausted());
  EXPECT_TRUE(d.stopping());
  EXPECT_TRUE(take(d, now, 100).empty());
  EXPECT_TRUE(d.idle());
  EXPECT_EQ(d.counters().waiting, 2u);  // a and b stay pending
  (void)b;
}

TEST(Dispatcher, OnlyOneCallerChoosesAndStaleExhaustionsDoNot) {
  Dispatcher d(pool_for(3, 2), 0);
  uint32_t a = d.add_task(task("a", -1));
  uint32_t b = d.add_task(task("b", -1));
  TimePoint now = SteadyClock::now();
  auto both = take(d, now, 100);
  ASSERT_EQ(both.size(), 2u);
  for (const auto& l : both) d.release(l.slot);
  EXPECT_TRUE(d.exhaust_model(0, a));
  EXPECT_FALSE(d.exhaust_model(0, b)) << "the second answer from model 0 does not choose again";
  d.switch_to(2);
  // An answer from a model already left behind changes nothing.
  auto next = take(d, now, 100);
  ASSERT_EQ(next.size(), 2u);
  d.release(next[0].slot);
  EXPECT_FALSE(d.exhaust_model(0, next[0].task));
  EXPECT_EQ(d.current_model(), 2u);
}

TEST(Dispatcher, DimensionTasksKeepTheirModel) {
  Dispatcher d(pool_for(2, 1), 0);
  uint32_t dim = d.add_task(task("dim", 1));
  uint32_t res = d.add_task(task("res", -1));
  TimePoint now = SteadyClock::now();
  auto launches = take(d, now, 100);
  ASSERT_EQ(launches.size(), 2u);
  for (const auto& l : launches) {
    if (l.task == dim) {
      EXPECT_EQ(l.model, 1u);
    } else {
      EXPECT_EQ(l.task, res);
      EXPECT_EQ(l.model, 0u);
    }
  }
}

TEST(Dispatcher, NextWakeup) {
  TimePoint now = SteadyClock::now();
  Dispatcher d(pool_for(1, 1), 0);
  EXPECT_EQ(d.next_wakeup(now), TimePoint::max());  // nothing to wait for

  uint32_t t = d.add_task(task("t", 0));
  EXPECT_EQ(d.next_wakeup(now), TimePoint::max());  // ready now: no timer needed
  auto l = take(d, now, 100);
  ASSERT_EQ(l.size(), 1u);
  d.release(l[0].slot);
  d.retry_at(t, now + milliseconds(700));
  EXPECT_EQ(d.next_wakeup(now), now + milliseconds(700));

  // All slots cooling, a task ready: wake when the first cooldown ends.
  Dispatcher c(pool_for(1, 1, 2), 0);  // two keys
  c.add_task(task("x", 0));
  rate_limited(c, 0, 4, now);
  rate_limited(c, 1, 2, now);
  EXPECT_TRUE(take(c, now, 100).empty());
  EXPECT_EQ(c.next_wakeup(now), now + seconds(2));
  // A retry due earlier than that wins.
  uint32_t y = c.add_task(task("y", 0));
  (void)y;
  EXPECT_EQ(c.next_wakeup(now), now + seconds(2));
  auto later = take(c, now + seconds(2), 100);
  ASSERT_EQ(later.size(), 1u);
  c.release(later[0].slot);
  c.retry_at(later[0].task, now + seconds(1) + seconds(2));
  rate_limited(c, 0, 10, now);
  rate_limited(c, 1, 10, now);
  EXPECT_EQ(c.next_wakeup(now + seconds(2)), now + seconds(3));

  // Full but not cooling: the next completion wakes the loop, not a timer.
  Dispatcher f(pool_for(1, 1), 0);
  f.add_task(task("p", 0));
  f.add_task(task("q", 0));
  ASSERT_EQ(take(f, now, 100).size(), 1u);
  EXPECT_EQ(f.next_wakeup(now), TimePoint::max());
}

}  // namespace
}  // namespace shepherd
