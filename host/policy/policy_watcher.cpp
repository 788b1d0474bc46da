#include "policy/policy_watcher.h"

#include <sys/stat.h>

#include "lua/api.h"
#include "lua/lua_state.h"
#include "policy/policy_set.h"

namespace shepherd {

PolicyWatcher::PolicyWatcher(PolicyRegistry& registry, const Suite& suite) : registry_(registry), suite_(suite) {
  for (const PolicySource* src : registry_.current()->all())
    if (!src->path.empty()) stamps_.emplace_back(src->path, stamp_of(src->path));
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
  if (next.version == current->version) return result;  // touched, not changed
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
  result.kind = Result::Kind::reloaded;
  result.version = next.version;
  registry_.publish(std::move(next));
  return result;
}

}  // namespace shepherd
