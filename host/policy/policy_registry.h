#pragma once
// The policies in force for a run. A reload publishes a whole new set; each
// worker notices the new generation between two decisions and rebuilds its
// own PolicySet from it. Thread-safe.
#include <atomic>
#include <memory>
#include <mutex>

#include "policy/policy_sources.h"

namespace shepherd {

class PolicyRegistry {
 public:
  explicit PolicyRegistry(PolicySources initial);

  std::shared_ptr<const PolicySources> current() const;
  uint64_t generation() const { return generation_.load(std::memory_order_acquire); }
  void publish(PolicySources next);

 private:
  mutable std::mutex mutex_;
  std::shared_ptr<const PolicySources> current_;
  std::atomic<uint64_t> generation_{1};
};

}  // namespace shepherd
