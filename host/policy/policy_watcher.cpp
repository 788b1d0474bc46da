#include "policy/policy_watcher.h"

#include <sys/stat.h>

#include <utility>

#include "lua/api.h"
#include "lua/lua_state.h"
#include "policy/policy_set.h"

namespace shepherd {

PolicyWatcher::PolicyWatcher(PolicyRegistry& registry, const Suite& suite) : registry_(registry), suite_(suite) {
  // Unknown stamps: the first poll rereads the files and compares the texts.
  for (const PolicySource* src : registry_.current()->all())
    if (!src->path.empty()) stamps_.emplace_back(src->path, Stamp{});
}

PolicyWatcher::~PolicyWatcher() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void PolicyWatcher::start() { thread_ = std::thread([this] { loop(); }); }

void PolicyWatcher::request_reload() {
  {
    std::lock_guard lock(mutex_);
    force_ = true;
  }
  wake_.notify_all();
}

std::vector<PolicyWatcher::Result> PolicyWatcher::take_results() {
  std::lock_guard lock(mutex_);
  return std::exchange(results_, {});
}

void PolicyWatcher::loop() {
  std::unique_lock lock(mutex_);
  while (!stop_) {
    bool force = std::exchange(force_, false);
    lock.unlock();
    Result r = poll(force);
    lock.lock();
    if (r.kind != Result::Kind::unchanged) results_.push_back(std::move(r));
    wake_.wait_for(lock, std::chrono::milliseconds(100), [&] { return stop_ || force_; });
  }
}

PolicyWatcher::Stamp PolicyWatcher::stamp_of(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return {};
  return {st.st_ino, st.st_size, static_cast<long long>(st.st_mtim.tv_sec) * 1'000'000'000LL + st.st_mtim.tv_nsec};
}

PolicyWatcher::Result PolicyWatcher::poll(bool force) {
  bool touched = force;
  for (auto& [path, seen] : stamps_) {
    Stamp now = stamp_of(path);
    if (now != seen) {
      seen = now;
      touched = true;
    }
  }
  Result result;
  if (!touched) return result;

  auto current = registry_.current();
  PolicySources next;
  try {
    next = current->reread();
  } catch (const Error& e) {
    // Mid-save (a file briefly missing): the next poll sees the finished file.
    result.kind = Result::Kind::rejected;
    result.error = Error(codes::POLICY_LOAD_FAILED, e.what(), Stage::policy, e.details());
    return result;
  }
  if (next.version == current->version) {  // touched, not changed (or changed back)
    rejected_version_.clear();
    return result;
  }
  for (const PolicySource* src : next.all()) {
    const PolicySource* old = current->find(src->kind);
    if (old->hash != src->hash) result.changed.push_back(src->kind);
  }
  if (next.version == rejected_version_ && !force) return result;
  try {
    // A scratch state: nothing of a broken set ever reaches a worker.
    LuaState scratch;
    register_shepherd_api(scratch);
    PolicySet check(scratch, next, suite_.retry, suite_.maintain);
  } catch (const Error& e) {
    rejected_version_ = next.version;
    result.kind = Result::Kind::rejected;
    result.error = e;
    return result;
  }
  rejected_version_.clear();
  result.kind = Result::Kind::reloaded;
  result.version = next.version;
  registry_.publish(std::move(next));
  return result;
}

}  // namespace shepherd
