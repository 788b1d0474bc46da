#pragma once
// The policy files a run uses: the packaged defaults, or the suite's
// overrides, read once so every worker state loads the same text.
#include <string>

#include "suite/suite.h"

namespace shepherd {

struct PolicySource {
  std::string kind;        // "classify", "retry"
  std::string chunk_name;  // a path, or "<embedded>/policies/…"
  std::string text;
  std::string hash;        // version: content hash
};

struct PolicySources {
  PolicySource classify;
  PolicySource retry;
  std::string version;  // one hash over every policy in use

  static PolicySources for_suite(const Suite& suite);
};

}  // namespace shepherd
