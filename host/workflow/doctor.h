#pragma once
// `shepherd doctor`: is this suite ready to run? Each check is reported, none
// throws: the suite validates; each policy loads and its selftest() passes;
// every key's variable is set; the store opens, its schema is current and
// PRAGMA integrity_check is ok; there is disk space beside the store and the
// log directory is writable; with `probe`, one minimal chat request per
// (key, model) slot says whether that key and model answer. Plain C++: the
// workflow API (lua/api_workflow.cpp) hands the checks to Lua, and the
// packaged lua/shepherd/workflows/doctor.lua prints them.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "suite/suite.h"

namespace shepherd {

struct DoctorCheck {
  std::string name;    // "suite", "policy retry", "key mock/k0", "store", "probe mock/k0/m-a", …
  bool ok = true;
  std::string detail;  // one line; never a key's value
  bool warning = false;  // ok, but worth a look (low disk space, an old schema the next run migrates)
  nlohmann::json data;   // machine-readable facts (probe: status, class, latency_ms, …), or null

  // {name, ok, detail[, warning][, data]}
  nlohmann::json to_json() const;
};

struct DoctorOptions {
  std::string db_path;  // the store; empty: <suite dir>/<suite name>.db
  bool probe = false;   // one request per (key, model): costs tokens
  // Free space beside the store: a warning under the first, a failure under the second.
  uint64_t warn_free_bytes = uint64_t{1} << 30;
  uint64_t min_free_bytes = uint64_t{100} << 20;
  // A probe waits at most this long, whatever the provider's total_ms (600 s by
  // default, meant for long answers, not for a one-token ping).
  long probe_timeout_ms = 60'000;
  // Polled while probes are in flight: true cancels them (SIGINT/SIGTERM).
  std::function<bool()> stopping;
};

// The checks of a loaded suite (loaded with or without key values: the
// variables are read here).
std::vector<DoctorCheck> run_doctor(const Suite& suite, const DoctorOptions& options);

struct DoctorReport {
  std::string suite;  // the suite's name, or the path given when it does not load
  std::string db;     // the store checked, or empty when unknown
  std::vector<DoctorCheck> checks;
};

// Loads the suite first: a suite that does not load is the failed "suite"
// check (plus the store checks when options.db_path names the store), not an
// exception.
DoctorReport doctor_suite(const std::string& suite_path, const DoctorOptions& options);

}  // namespace shepherd
