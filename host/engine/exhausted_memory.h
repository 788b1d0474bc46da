#pragma once
// Quota exhaustion outlives the run that met it: a later run does not send to
// a (key, model) whose quota ran out before, until that provider's
// `quota_resets` time has passed — or forever when no reset time is known —
// unless `run --forget-exhausted` says the quota is back. Read from the
// store's `quota_parked` events (after the last `exhausted_forgotten`).
#include <string>
#include <vector>

#include "store/store.h"

namespace shepherd {

struct RememberedExhaustion {
  std::string key;     // the key's id
  std::string model;
  double until = 0;    // unix seconds; 0: no reset time known
  double since = 0;    // when it ran out
};

// The exhaustions still in force at `now` (unix seconds).
std::vector<RememberedExhaustion> remembered_exhaustion(Store& store, const std::string& suite, double now);

}  // namespace shepherd
