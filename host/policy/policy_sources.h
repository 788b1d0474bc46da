#pragma once
// The policy files a run uses: the packaged defaults, or the suite's
// overrides, read once so every worker state loads the same text.
#include <string>
#include <vector>

#include "suite/suite.h"

namespace shepherd {

struct PolicySource {
  std::string kind;        // "classify", "retry", "switch", "retest"
  std::string chunk_name;  // a path, or "<embedded>/policies/…"
  std::string path;        // the file on disk, watched for changes; empty when embedded
  std::string text;
  std::string hash;        // version: content hash
};

struct PolicySources {
  PolicySource classify;
  PolicySource retry;
  PolicySource switch_model;
  PolicySource retest;
  std::string version;  // one hash over every policy in use

  static PolicySources for_suite(const Suite& suite);

  // Re-reads every policy file on disk; the embedded ones stay as they are.
  PolicySources reread() const;

  PolicySource* find(const std::string& kind);
  const PolicySource* find(const std::string& kind) const;
  std::vector<const PolicySource*> all() const;
  void update_version();
};

}  // namespace shepherd
