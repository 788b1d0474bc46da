#pragma once
// What every worker of one run reads and never changes.
#include <string>
#include <vector>

#include "policy/policy_registry.h"
#include "suite/matrix.h"
#include "suite/suite.h"

namespace shepherd {

struct KeyBinding {  // by key-pool key index
  const ProviderSpec* provider = nullptr;
  std::string key_id;
  std::string auth_header;  // "Authorization: Bearer …" or "api-key: …": the only place a key's value lives
};

struct SlotBinding {  // by key-pool slot index
  uint32_t key = 0;
  std::string url;  // where this (key, model) sends: Azure has a URL per deployment
};

struct RunContext {
  const Suite* suite = nullptr;
  const Matrix* matrix = nullptr;
  PolicyRegistry* policies = nullptr;  // the set in force; replaced by hot reloads
  std::vector<KeyBinding> keys;
  std::vector<SlotBinding> slots;
  std::vector<std::string> models;  // model index -> name
  int64_t run_id = 0;
};

}  // namespace shepherd
