#pragma once
// A suite and its store as a workflow script sees them: status by any
// dimensions, task and attempt queries, events, reset, a slice run and
// export — computed by the host, run by the same engine and under the
// same lock as the commands.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/run_engine.h"
#include "store/store.h"
#include "suite/suite.h"

namespace shepherd {

struct SliceRun {
  nlohmann::json where;  // {dim = value | {values}} or null
  std::vector<std::string> tasks;
  bool retry_failed = false;
  bool forget_exhausted = false;  // as run --forget-exhausted
  std::vector<std::string> retry_classes;  // non-empty: only failed tasks of these last classes (RunOptions)
  bool progress = false;
};

// The retest policy (the suite's, or the packaged one) over status groups
// (with last_maintained_at), under `config`: [{group, priority, reason, tasks}].
// Throws Error(POLICY_ERROR) when the policy fails.
nlohmann::json select_retest_groups(const Suite& suite, const nlohmann::json& groups, const MaintainConfig& config);

// Status groups with what maintenance needs: "group", "failures" and
// "last_maintained_at" beside the store's fields.
void add_maintenance_fields(Store& store, const std::string& suite, nlohmann::json& groups);

class SuiteView {
 public:
  // Loads and validates the suite (key values are read only when it runs).
  // Throws Error like load_suite.
  SuiteView(const std::string& suite_path, const std::string& db_path);

  const Suite& suite() const { return suite_; }
  // {name, path, db, models, model_is_dimension, dims = {name = values}, maintain, retry}
  nlohmann::json info() const;
  const std::string& db_path() const { return db_path_; }
  bool store_exists() const;
  // Throws Error(USAGE) when `where` names an unknown dimension or value.
  void check_where(const nlohmann::json& where) const;

  // Groups as `status --json` gives them, plus "group" (the key) and
  // "failures" (by class). `where` selects; an unknown dimension or value
  // throws Error(USAGE).
  nlohmann::json status(const std::vector<std::string>& by, const nlohmann::json& where);
  // Tasks in view whose state is one of `states` ("pending", "done", "failed",
  // "stale"; none: all), in matrix order; the sink returns false to stop.
  void tasks(const std::vector<std::string>& states, const nlohmann::json& where, int64_t limit,
             const std::function<bool(const nlohmann::json&)>& sink);
  nlohmann::json attempts(const std::string& task_id);
  nlohmann::json events(const std::string& kind, double since);
  // Tasks in `state` (and last class in `classes`, when given) back to pending.
  int reset(const nlohmann::json& where, const std::string& state, const std::vector<std::string>& classes);
  // Runs that slice to its end in this process. Throws Error (STORE_LOCKED, KEY_ENV_MISSING, …).
  RunReport run(const SliceRun& slice);
  void export_to(const std::string& format, const std::string& out_path, const nlohmann::json& where,
                 bool transcripts);
  // The suite's retest policy (packaged or its override) over status
  // groups by `by` (default {"model"}), with the suite's `maintain` under
  // `overrides`: [{group, priority, reason, tasks}] (tasks: unfinished in the group).
  nlohmann::json select_retest(const nlohmann::json& overrides, const std::vector<std::string>& by,
                               const nlohmann::json& where);
  // Failed attempts in the last `window_s` seconds per class and per code,
  // with a trend (the window's second half against its first):
  // {window_s, since, total, by_class = {[cls] = {count, first_half, second_half, trend}}, by_code = {…}}.
  nlohmann::json errors(double window_s);
  // The suite's alert rules over the store's failed attempts now: each rule
  // with `count` matches in its window that has not fired within that window
  // fires — an "alert" event, a log line, and the webhook's POST. Returns
  // [{rule, count, at, text, webhook = {status | error}}].
  nlohmann::json check_alerts();
  // Whether the retry policy would send a task of this last class again.
  bool would_retry(const std::string& cls);
  // Notes that `group` was maintained now (the retest cooldown counts from it).
  void mark_maintained(const nlohmann::json& group);

 private:
  void check_dims(const std::vector<std::string>& by) const;

  Suite suite_;
  std::string db_path_;
};

}  // namespace shepherd
