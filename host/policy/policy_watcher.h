#pragma once
// Hot reload: notices edits to the policy files in use (a cheap stat poll,
// ten times a second, on a thread of its own so that loading Lua never holds
// up the run's signal loop) or a forced reload (SIGHUP), loads the changed set
// into a scratch Lua state and checks it (functions present, selftest()
// passing) before publishing it. A set that fails is never published: the
// last good one stays in force.
#include <sys/types.h>

#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "policy/policy_registry.h"
#include "suite/suite.h"

namespace shepherd {

class PolicyWatcher {
 public:
  PolicyWatcher(PolicyRegistry& registry, const Suite& suite);
  ~PolicyWatcher();  // stops the thread
  PolicyWatcher(const PolicyWatcher&) = delete;
  PolicyWatcher& operator=(const PolicyWatcher&) = delete;

  struct Result {
    enum class Kind { unchanged, reloaded, rejected } kind = Kind::unchanged;
    std::string version;              // reloaded: the new version
    std::vector<std::string> changed;  // the policies whose text changed
    std::optional<Error> error;       // rejected: POLICY_LOAD_FAILED with file and line
  };

  // One check, on the caller's thread. The first compares the texts with
  // the set in force, so an edit made while the run was starting counts.
  Result poll(bool force = false);

  void start();             // poll on a thread of its own from now on
  void request_reload();    // SIGHUP: the next poll reloads even if nothing changed
  std::vector<Result> take_results();  // what the thread found since the last call

 private:
  void loop();

  struct Stamp {
    ino_t inode = 0;
    off_t size = -1;
    long long mtime_ns = -1;
    bool operator==(const Stamp&) const = default;
  };
  static Stamp stamp_of(const std::string& path);

  PolicyRegistry& registry_;
  const Suite& suite_;
  std::vector<std::pair<std::string, Stamp>> stamps_;  // path -> last seen
  std::string rejected_version_;  // don't report the same broken text twice in a row

  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
  bool force_ = false;
  std::vector<Result> results_;
  std::thread thread_;
};

}  // namespace shepherd
