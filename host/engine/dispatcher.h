#pragma once
// Which task goes out next, on which (key, model) slot, and when a retry is
// due. Ready tasks wait in one queue per model, so a busy model never holds
// back another; nothing is ever paced by sleeping. Thread-safe.
#include <cstdint>
#include <deque>
#include <mutex>
#include <queue>
#include <string>
#include <vector>

#include "core/clock.h"
#include "keys/key_pool.h"
#include "policy/policy_io.h"
#include "store/records.h"
#include "suite/request_body.h"

namespace shepherd {

// Where a task of this run is; the dispatcher moves it and keeps count.
enum class Place {
  to_start,  // a conversation not begun yet (starts queue)
  queued,    // ready to send (a ready queue)
  retrying,  // waiting for its retry to come due
  held,      // a worker has it: building, judging, or running its conversation's Lua
  wire,      // its request is in flight
  finished,  // done or failed in this run, or left for a later one
};

// One task of this run. While a worker holds it or its attempt is in
// flight, only the thread that handles it touches the task.
struct TaskRuntime {
  std::string id;
  uint64_t ordinal = 0;     // cell in the matrix
  int32_t model = -1;       // model index when the model is a dimension; -1: a resource
  int32_t preferred_key = -1;  // key_for's choice, or -1
  int attempts_total = 0;   // over all runs
  int attempts_run = 0;     // in this run
  std::vector<HistoryEntry> history;
  // The attempt in flight:
  int slot = -1;
  uint32_t attempt_model = 0;
  double sent_unix = 0;
  double tokens_reserved = 0;
  std::string request_hash;  // of the request this attempt sent
  Place place = Place::queued;
  // Conversations (a suite's task(cell, llm)):
  bool conversation = false;
  int owner = -1;            // the worker whose Lua state holds its coroutine
  int32_t conv_model = -1;   // the model every turn of this try goes to
  int conversation_no = 1;   // the try at it (llm.attempt), kept across runs
  int turn = 0;              // the turn waiting or in flight
  int turn_attempts = 0;     // ... and its attempts so far: retry.lua counts a turn's, not the task's
  RequestBody turn_request;  // ... and its body
  bool withdrawn = false;    // taken out of the queues for good (its deadline passed)
};


struct DispatchCounters {
  uint64_t total = 0;     // tasks in this run's plan
  uint64_t done = 0;      // including those done before this run
  uint64_t failed = 0;
  uint64_t in_flight = 0;
  uint64_t waiting = 0;   // ready or waiting for a retry
  uint64_t done_now = 0;  // finished by this run
  uint64_t open = 0;      // conversations begun and not finished
};

class Dispatcher {
 public:
  Dispatcher(KeyPool pool, uint32_t current_model);

  // Setup, before any thread runs.
  uint32_t add_task(TaskRuntime task);
  void count_finished_before(uint64_t done, uint64_t failed);

  // Retries that are due move to the ready queues; then every ready task
  // that can get a slot is granted one (at most `max`): the task's `slot`
  // and `attempt_model` are set, and its index returned.
  std::vector<uint32_t> take_launches(TimePoint now, size_t max);

  void retry_at(uint32_t task, TimePoint due);
  void back_to_queue(uint32_t task);  // e.g. cancelled: unsent work, no attempt
  void finish(uint32_t task, TaskState state);  // it ended (pending: left for a later run)

  // Conversations. take_starts hands `worker` up to `max` conversations to
  // begin (it becomes their owner). A held conversation's next turn joins
  // the ready queues with queue_turn — false when its model is exhausted:
  // the owner must close it and restart(). turn_answered: the answer is back
  // and the owner holds it again.
  std::vector<uint32_t> take_starts(int worker, size_t max);
  bool queue_turn(uint32_t task);
  void turn_answered(uint32_t task);
  void restart(uint32_t task);  // held -> begun again (a new try), by any worker
  // Conversations of `worker` whose queued turn found their model exhausted:
  // the owner closes each and calls restart().
  std::vector<uint32_t> take_restarts(int worker);
  // Out of the queues for good (its deadline passed): true when it was
  // waiting and is now held by the caller; false when it is on the wire or
  // already held (cancel the request instead).
  bool withdraw(uint32_t task);
  void release(int slot, double tokens_reserved = 0);  // no answer came (cancelled, never sent)
  // The answer reached the slot's pool: release, learn, and what changed.
  std::vector<PoolEvent> slot_result(int slot, const SlotFeedback& feedback, double tokens_reserved, TimePoint now);
  void reserve_tokens(int slot, double tokens, TimePoint now);
  int usable_slots(uint32_t model, int except_slot) const;
  nlohmann::json pool_snapshot(TimePoint now, const std::vector<std::string>& model_names);
  uint64_t blocked() const;  // tasks waiting for a model no key can serve any more
  void stop_dispatching();

  // Resource models only: `model` is used up and the task goes back to the
  // queue. True when the caller must choose the next model (it was the
  // current one and nobody is choosing yet): then switch_to() or
  // no_model_left() follows. Until then no resource task is sent.
  bool exhaust_model(uint32_t model, uint32_t task);
  void switch_to(uint32_t model);
  void no_model_left();  // dispatching stops; unfinished tasks stay pending
  bool models_exhausted() const;
  uint32_t current_model() const;
  std::vector<uint32_t> exhausted_models() const;

  bool stopping() const;
  bool idle() const;  // nothing in flight, and nothing left to send (or stopping)
  TimePoint next_wakeup(TimePoint now) const;  // the next due retry or cooldown end
  DispatchCounters counters() const;

  TaskRuntime& task(uint32_t index) { return tasks_[index]; }
  const KeyPool& pool() const { return pool_; }  // read under no lock: for setup/tests only

  // Before any thread runs: the model of resource tasks starts here.
  void set_current_model(uint32_t model) { current_model_ = model; }

 private:
  std::deque<uint32_t>& queue_for(const TaskRuntime& t);
  std::deque<uint32_t>& starts_for(const TaskRuntime& t);
  uint32_t model_of(const TaskRuntime& t) const;
  bool queue_blocked(const std::vector<std::deque<uint32_t>>& queues, size_t q) const;  // no usable key left
  bool resource_model_ready() const;
  void move(TaskRuntime& t, Place to);  // keeps the counters

  mutable std::mutex mutex_;
  KeyPool pool_;
  std::vector<TaskRuntime> tasks_;
  std::vector<std::deque<uint32_t>> ready_;  // [0]: resource tasks; [m + 1]: model m
  std::vector<std::deque<uint32_t>> starts_;  // conversations to begin, indexed the same way
  std::vector<std::vector<uint32_t>> restarts_;  // by owner
  uint64_t held_ = 0;
  struct Due {
    TimePoint at;
    uint32_t task;
    bool operator>(const Due& o) const { return at > o.at; }
  };
  std::priority_queue<Due, std::vector<Due>, std::greater<>> retries_;
  uint32_t current_model_ = 0;  // for tasks whose model is a resource
  std::vector<bool> exhausted_;
  bool switching_ = false;  // a worker is asking switch.lua for the next model
  bool models_exhausted_ = false;
  DispatchCounters counters_;
  bool stopping_ = false;
};

}  // namespace shepherd
