#pragma once
// `shepherd run`: plan the suite's tasks, send what is not yet done, judge
// every answer, and commit each attempt as it arrives.
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/dispatcher.h"
#include "suite/suite.h"

namespace shepherd {

// The exit code of a run stopped early (signal, models exhausted): the run
// itself leaves with it when a second signal cannot wait for the workers.
inline constexpr int kExitStoppedEarly = 3;

struct RunOptions {
  std::string db_path;
  int workers = 1;            // threads with a Lua state each
  bool retry_failed = false;  // failed tasks go back to pending first
  // Non-empty: only failed tasks whose last class is one of these go back to
  // pending first (the others stay failed with their class); takes the place
  // of retry_failed.
  std::vector<std::string> retry_classes;
  bool rerun_stale = false;   // done tasks whose request changed are sent again
  bool forget_exhausted = false;  // send to models whose quota ran out in earlier runs (engine/exhausted_memory.h)
  std::vector<std::string> where;  // "dim=value[,value…]": only this slice of the matrix (suite/where.h)
  nlohmann::json where_json;       // the same as a workflow's table {dim = value | {values}}, or null
  std::vector<std::string> only_tasks;  // non-empty: only these task ids (within the slice)
  long grace_ms = 5000;       // after SIGINT/SIGTERM: how long in-flight requests may finish
  bool live_progress = false;
  std::string results_path;   // non-empty: a JSON line per finished task is appended here (outputs/results_log.h)
};

struct RunReport {
  int64_t run_id = 0;
  DispatchCounters counters;
  double seconds = 0;
  bool interrupted = false;       // a signal stopped the run
  bool models_exhausted = false;  // no model left to switch to
  uint64_t blocked = 0;           // tasks left pending: no usable key for their model
  uint64_t stale = 0;             // done tasks whose suite now builds another request (kept)
  uint64_t stale_rerun = 0;       // ... sent again (--rerun-stale)
  uint64_t turns_sent = 0;        // conversations: turns sent in this run
  uint64_t turns_replayed = 0;    // ... and answered from the store instead

  std::string log_path;
  std::string db_path;
};

// Throws Error for what stops a run before or while it runs (store locked,
// policy load failure, store write failure).
RunReport run_suite(const Suite& suite, const RunOptions& options);

}  // namespace shepherd
