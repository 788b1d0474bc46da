#pragma once
// Hot reload: notices edits to the policy files in use (a cheap stat poll,
// called a few times a second) or a forced reload (SIGHUP), loads the changed
// set into a scratch Lua state and checks it (functions present, selftest()
// passing) before publishing it. A set that fails is never published: the
// last good one stays in force.
#include <optional>
#include <string>
#include <sys/types.h>
#include <vector>

#include "core/error.h"
#include "policy/policy_registry.h"
#include "suite/suite.h"

namespace shepherd {

class PolicyWatcher {
 public:
  PolicyWatcher(PolicyRegistry& registry, const Suite& suite);

  struct Result {
    enum class Kind { unchanged, reloaded, rejected } kind = Kind::unchanged;
    std::string version;              // reloaded: the new version
    std::vector<std::string> changed;  // the policies whose text changed
    std::optional<Error> error;       // rejected: POLICY_LOAD_FAILED with file and line
  };

  Result poll(bool force = false);

 private:
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
  std::string rejected_version_;  // don't report the same broken text twice
};

}  // namespace shepherd
