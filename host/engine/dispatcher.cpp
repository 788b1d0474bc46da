#include "engine/dispatcher.h"

#include <algorithm>

namespace shepherd {

namespace {
constexpr size_t kLookAhead = 256;

size_t queue_index(const TaskRuntime& t) { return t.model >= 0 ? static_cast<size_t>(t.model) + 1 : 0; }
}  // namespace

Dispatcher::Dispatcher(KeyPool pool, uint32_t current_model)
    : pool_(std::move(pool)), current_model_(current_model) {}

void Dispatcher::move(TaskRuntime& t, Place to) {
  auto count = [&](Place p) -> uint64_t& {
    switch (p) {
      case Place::to_start:
      case Place::queued:
      case Place::retrying:
        return counters_.waiting;
      case Place::held:
        return held_;
      case Place::wire:
        return counters_.in_flight;
      case Place::finished:
        break;
    }
    static uint64_t none = 0;
    return none;
  };
  if (t.place != Place::finished) --count(t.place);
  if (to != Place::finished) ++count(to);
  t.place = to;
}

uint32_t Dispatcher::add_task(TaskRuntime task) {
  uint32_t index = static_cast<uint32_t>(tasks_.size());
  tasks_.push_back(std::move(task));
  TaskRuntime& t = tasks_.back();
  t.place = Place::finished;  // counted from nothing
  if (t.conversation) {
    starts_for(t).push_back(index);
    move(t, Place::to_start);
  } else {
    queue_for(t).push_back(index);
    move(t, Place::queued);
  }
  ++counters_.total;
  return index;
}

void Dispatcher::count_finished_before(uint64_t done, uint64_t failed) {
  counters_.total += done + failed;
  counters_.done += done;
  counters_.failed += failed;
}

std::deque<uint32_t>& Dispatcher::queue_for(const TaskRuntime& t) {
  size_t index = queue_index(t);  // 0: resource tasks
  if (ready_.size() <= index) ready_.resize(index + 1);
  return ready_[index];
}

std::deque<uint32_t>& Dispatcher::starts_for(const TaskRuntime& t) {
  size_t index = queue_index(t);
  if (starts_.size() <= index) starts_.resize(index + 1);
  return starts_[index];
}

uint32_t Dispatcher::model_of(const TaskRuntime& t) const {
  if (t.conversation && t.conv_model >= 0) return static_cast<uint32_t>(t.conv_model);
  return t.model >= 0 ? static_cast<uint32_t>(t.model) : current_model_;
}

bool Dispatcher::resource_model_ready() const {
  return !switching_ && !(current_model_ < exhausted_.size() && exhausted_[current_model_]);
}

std::vector<uint32_t> Dispatcher::take_launches(TimePoint now, size_t max) {
  std::vector<uint32_t> out;
  std::lock_guard lock(mutex_);
  if (stopping_) return out;
  while (!retries_.empty() && retries_.top().at <= now) {
    uint32_t t = retries_.top().task;
    retries_.pop();
    if (tasks_[t].withdrawn) continue;
    queue_for(tasks_[t]).push_back(t);
    move(tasks_[t], Place::queued);
  }
  bool resource_ready = resource_model_ready();
  for (size_t q = 0; q < ready_.size(); ++q) {
    auto& queue = ready_[q];
    if (q == 0 && !resource_ready) continue;  // [0]: resource tasks wait for the next model
    // Tasks waiting for a preferred key that is busy are stepped over (a
    // bounded look-ahead), so they never hold back the tasks behind them.
    size_t look = 0;
    for (auto it = queue.begin(); it != queue.end() && out.size() < max && look < kLookAhead;) {
      TaskRuntime& t = tasks_[*it];
      if (t.withdrawn) {
        it = queue.erase(it);
        continue;
      }
      // A conversation's turns all go to the model it began with: when that
      // one is used up, the conversation begins again on the next.
      if (q == 0 && t.conversation && t.conv_model >= 0 && static_cast<uint32_t>(t.conv_model) != current_model_) {
        move(t, Place::held);
        if (restarts_.size() <= static_cast<size_t>(t.owner)) restarts_.resize(static_cast<size_t>(t.owner) + 1);
        restarts_[static_cast<size_t>(t.owner)].push_back(*it);
        it = queue.erase(it);
        continue;
      }
      uint32_t model = model_of(t);
      int slot = pool_.acquire(model, now, t.preferred_key);
      if (slot < 0) {
        if (t.preferred_key < 0) break;  // no slot for anyone without a preference
        ++it;
        ++look;
        continue;
      }
      t.slot = slot;
      t.attempt_model = model;
      move(t, Place::wire);
      out.push_back(*it);
      it = queue.erase(it);
    }
  }
  return out;
}

void Dispatcher::retry_at(uint32_t task, TimePoint due) {
  std::lock_guard lock(mutex_);
  retries_.push(Due{due, task});
  move(tasks_[task], Place::retrying);
}

void Dispatcher::back_to_queue(uint32_t task) {
  std::lock_guard lock(mutex_);
  queue_for(tasks_[task]).push_front(task);
  move(tasks_[task], Place::queued);
}

void Dispatcher::finish(uint32_t task, TaskState state) {
  std::lock_guard lock(mutex_);
  TaskRuntime& t = tasks_[task];
  if (t.place == Place::finished) return;
  move(t, Place::finished);
  if (t.conversation && t.owner >= 0) --counters_.open;
  t.owner = -1;
  if (state == TaskState::pending) return;  // left for a later run
  ++counters_.done_now;
  if (state == TaskState::done) ++counters_.done;
  if (state == TaskState::failed) ++counters_.failed;
}

std::vector<uint32_t> Dispatcher::take_starts(int worker, size_t max) {
  std::vector<uint32_t> out;
  std::lock_guard lock(mutex_);
  if (stopping_) return out;
  for (size_t q = 0; q < starts_.size() && out.size() < max; ++q) {
    if (q == 0 && !resource_model_ready()) continue;
    if (queue_blocked(starts_, q)) continue;
    auto& queue = starts_[q];
    while (!queue.empty() && out.size() < max) {
      TaskRuntime& t = tasks_[queue.front()];
      t.owner = worker;
      t.conv_model = static_cast<int32_t>(q == 0 ? current_model_ : q - 1);
      t.turn = 0;
      move(t, Place::held);
      ++counters_.open;
      out.push_back(queue.front());
      queue.pop_front();
    }
  }
  return out;
}

bool Dispatcher::queue_turn(uint32_t task) {
  std::lock_guard lock(mutex_);
  TaskRuntime& t = tasks_[task];
  if (t.model < 0 && t.conv_model >= 0 && static_cast<size_t>(t.conv_model) < exhausted_.size() &&
      exhausted_[static_cast<size_t>(t.conv_model)]) {
    return false;
  }
  queue_for(t).push_back(task);
  move(t, Place::queued);
  return true;
}

void Dispatcher::turn_answered(uint32_t task) {
  std::lock_guard lock(mutex_);
  move(tasks_[task], Place::held);
}

void Dispatcher::restart(uint32_t task) {
  std::lock_guard lock(mutex_);
  TaskRuntime& t = tasks_[task];
  if (t.owner >= 0) --counters_.open;
  t.owner = -1;
  t.conv_model = -1;
  starts_for(t).push_front(task);
  move(t, Place::to_start);
}

std::vector<uint32_t> Dispatcher::take_restarts(int worker) {
  std::lock_guard lock(mutex_);
  std::vector<uint32_t> out;
  if (static_cast<size_t>(worker) < restarts_.size()) out.swap(restarts_[static_cast<size_t>(worker)]);
  return out;
}

bool Dispatcher::withdraw(uint32_t task) {
  std::lock_guard lock(mutex_);
  TaskRuntime& t = tasks_[task];
  if (t.place != Place::queued && t.place != Place::retrying) return false;
  t.withdrawn = true;  // its queue entry is dropped when reached
  move(t, Place::held);
  return true;
}

void Dispatcher::release(int slot, double tokens_reserved) {
  std::lock_guard lock(mutex_);
  pool_.release(slot, tokens_reserved, SteadyClock::now());
}

std::vector<PoolEvent> Dispatcher::slot_result(int slot, const SlotFeedback& feedback, double tokens_reserved,
                                               TimePoint now) {
  std::lock_guard lock(mutex_);
  return pool_.on_result(slot, feedback, tokens_reserved, now);
}

void Dispatcher::reserve_tokens(int slot, double tokens, TimePoint now) {
  std::lock_guard lock(mutex_);
  pool_.reserve_tokens(slot, tokens, now);
}

int Dispatcher::usable_slots(uint32_t model, int except_slot) const {
  std::lock_guard lock(mutex_);
  return pool_.usable_slots(model, except_slot, SteadyClock::now());
}

nlohmann::json Dispatcher::pool_snapshot(TimePoint now, const std::vector<std::string>& model_names) {
  std::lock_guard lock(mutex_);
  return pool_.snapshot(now, model_names);
}

bool Dispatcher::queue_blocked(const std::vector<std::deque<uint32_t>>& queues, size_t q) const {
  if (queues[q].empty()) return false;
  return !pool_.model_usable(q == 0 ? current_model_ : static_cast<uint32_t>(q - 1));
}

uint64_t Dispatcher::blocked() const {
  std::lock_guard lock(mutex_);
  uint64_t n = 0;
  for (const auto* queues : {&ready_, &starts_})
    for (size_t q = 0; q < queues->size(); ++q)
      if (queue_blocked(*queues, q)) n += (*queues)[q].size();
  return n;
}

void Dispatcher::stop_dispatching() {
  std::lock_guard lock(mutex_);
  stopping_ = true;
}

bool Dispatcher::exhaust_model(uint32_t model, uint32_t task) {
  std::lock_guard lock(mutex_);
  if (exhausted_.size() <= model) exhausted_.resize(model + 1, false);
  exhausted_[model] = true;
  TaskRuntime& t = tasks_[task];
  if (t.conversation) {
    // Its turns so far came from the exhausted model: it begins again.
    if (t.owner >= 0) --counters_.open;
    t.owner = -1;
    t.conv_model = -1;
    starts_for(t).push_front(task);
    move(t, Place::to_start);
  } else {
    queue_for(t).push_front(task);
    move(t, Place::queued);
  }
  if (model != current_model_ || switching_ || models_exhausted_) return false;
  switching_ = true;
  return true;
}

void Dispatcher::switch_to(uint32_t model) {
  std::lock_guard lock(mutex_);
  current_model_ = model;
  switching_ = false;
}

void Dispatcher::no_model_left() {
  std::lock_guard lock(mutex_);
  switching_ = false;
  models_exhausted_ = true;
  stopping_ = true;
}

std::vector<uint32_t> Dispatcher::exhausted_models() const {
  std::lock_guard lock(mutex_);
  std::vector<uint32_t> out;
  for (uint32_t m = 0; m < exhausted_.size(); ++m)
    if (exhausted_[m]) out.push_back(m);
  return out;
}

bool Dispatcher::models_exhausted() const {
  std::lock_guard lock(mutex_);
  return models_exhausted_;
}

uint32_t Dispatcher::current_model() const {
  std::lock_guard lock(mutex_);
  return current_model_;
}

bool Dispatcher::stopping() const {
  std::lock_guard lock(mutex_);
  return stopping_;
}

bool Dispatcher::idle() const {
  std::lock_guard lock(mutex_);
  if (counters_.in_flight > 0 || held_ > 0) return false;
  if (stopping_ || counters_.waiting == 0) return true;
  // What still waits can only wait for a model no key can serve: the run is
  // over, and those tasks stay pending for a later run.
  if (!retries_.empty() || switching_) return false;
  for (const auto* queues : {&ready_, &starts_})
    for (size_t q = 0; q < queues->size(); ++q)
      if (!(*queues)[q].empty() && !queue_blocked(*queues, q)) return false;
  return true;
}

TimePoint Dispatcher::next_wakeup(TimePoint now) const {
  std::lock_guard lock(mutex_);
  TimePoint next = TimePoint::max();
  if (!retries_.empty()) next = std::min(next, retries_.top().at);
  for (size_t m = 0; m < ready_.size(); ++m) {
    if (ready_[m].empty()) continue;
    uint32_t model = model_of(tasks_[ready_[m].front()]);
    TimePoint ready_at = pool_.next_ready(model, now);
    if (ready_at > now) next = std::min(next, ready_at);
  }
  return next;
}

DispatchCounters Dispatcher::counters() const {
  std::lock_guard lock(mutex_);
  return counters_;
}

}  // namespace shepherd
