#include "policy/policy_registry.h"

namespace shepherd {

PolicyRegistry::PolicyRegistry(PolicySources initial)
    : current_(std::make_shared<const PolicySources>(std::move(initial))) {}

std::shared_ptr<const PolicySources> PolicyRegistry::current() const {
  std::lock_guard lock(mutex_);
  return current_;
}

void PolicyRegistry::publish(PolicySources next) {
  auto fresh = std::make_shared<const PolicySources>(std::move(next));
  {
    std::lock_guard lock(mutex_);
    current_ = std::move(fresh);
  }
  generation_.fetch_add(1, std::memory_order_acq_rel);
}

}  // namespace shepherd
