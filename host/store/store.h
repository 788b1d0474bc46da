#pragma once
// The single source of truth: one SQLite file (WAL). Schema carries a version
// in `meta` and is migrated forward on open. Queries for status and export
// live here; the hot write path is the Writer's.
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "store/records.h"

namespace SQLite {
class Database;
class Statement;
}

namespace shepherd {

struct TaskScanRow {
  std::string_view id;
  TaskState state = TaskState::pending;
  std::string_view last_class;    // empty: none
  int attempts = 0;
  int turns = 0;
  double updated_at = 0;
  std::string_view request_hash;  // empty: unknown
  bool same_suite_version = false;  // its request came from a run of this very suite text
};

struct ExportRow {
  std::string task;
  std::string dims_json;
  TaskState state = TaskState::pending;
  std::string model;          // model that answered the final attempt, empty if none
  std::string content;        // final assistant text, empty if none
  int attempts = 0;
  std::string error_code;     // empty: no error
  std::string error_message;
  double latency_ms = -1;     // -1: none
  std::string usage_json;     // empty: none
  bool stale = false;         // done, but the suite now builds another request
  int turns = 0;              // conversations: turns answered in its latest try
  std::string transcript;     // its messages as JSON (asked for), or empty
};

class Store {
 public:
  static constexpr int kSchemaVersion = 4;
  enum class Mode { read_write, read_only };

  // read_write creates the file and migrates; read_only requires an existing
  // store (Error STORE_OPEN_FAILED otherwise). A store whose schema is newer
  // than this binary's is refused (STORE_SCHEMA_TOO_NEW).
  Store(const std::string& path, Mode mode);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  int schema_version() const;

  int64_t begin_run(const RunInfo& info);
  void finish_run(int64_t run_id, const std::string& outcome, const nlohmann::json& summary);

  // INSERT OR IGNORE every seed as `pending`, in one transaction.
  void ensure_tasks(const std::string& suite, const std::vector<TaskSeed>& seeds);
  std::vector<StoredTask> load_tasks(const std::string& suite);
  int reset_failed(const std::string& suite);  // failed -> pending; returns how many
  int reset_failed(const std::string& suite, const std::vector<std::string>& ids);  // ... of these only
  // These tasks go back to pending, their answer cleared (attempts stay as
  // history); returns how many.
  int reset_to_pending(const std::vector<std::string>& ids);
  // Suite names other than `suite` that hold tasks in this store, with counts.
  std::vector<std::pair<std::string, int64_t>> other_suites(const std::string& suite);

  // From now on status() and export_tasks() see exactly these tasks: the
  // cells of the suite as it is now. Cells removed from it are left out (their
  // results stay stored); cells not stored yet count as pending; a done task
  // whose request_hash differs from its cell's is stale.
  void limit_to(const std::vector<TaskSeed>& cells);

  // Every stored task of the suite, in no particular order, with what
  // status needs. The views are valid during the call only.
  void scan_tasks(const std::string& suite, const std::string& config_hash,
                  const std::function<void(const TaskScanRow&)>& sink);
  // Tasks with model_mismatch attempts (an answer from another model than
  // the one asked), with how many.
  std::map<std::string, int64_t> model_mismatches(const std::string& suite);
  // {error = {code, message} | null, model, latency_ms} of a stored task, or null.
  nlohmann::json task_detail(const std::string& id);

  // `transcripts`: read each conversation's transcript too.
  void export_tasks(const std::string& suite, const std::function<void(const ExportRow&)>& sink,
                    bool transcripts = false);

  // The tasks in view, in matrix order, with `state` ("" any; "pending",
  // "done", "failed", or "stale"), at most `limit` (-1: all); each as
  // {id, cell, state, attempts, class, error = {code, message} | null, model,
  // latency_ms, updated_at, stale, turns}. The sink returns false to stop.
  void list_tasks(const std::string& suite, const std::string& state, int64_t limit,
                  const std::function<bool(const nlohmann::json&)>& sink);

  // Every attempt of a task, oldest first, every column by name.
  nlohmann::json attempts(const std::string& task_id);

  // The task's latest attempt with its raw response (`export --format
  // openai-batch`); n = 0 when it has none.
  struct LastAttempt {
    int n = 0;
    int64_t run = 0;
    long http_status = 0;
    std::string response;
  };
  LastAttempt last_attempt(const std::string& task_id);

  // Tasks in view in `state` (and whose last class is one of `classes`,
  // when given) go back to pending, their history kept; returns how many.
  int reset_matching(const std::string& suite, const std::string& state, const std::vector<std::string>& classes);

  // Failed attempts of the suite that ended in [since, now], per class and
  // code, each split at `mid`: [{class, code, count, first_half, second_half}].
  nlohmann::json error_stats(const std::string& suite, double since, double mid);

  // When the alert rule `name` of the suite last fired (events of kind
  // "alert", from runs or monitor), or 0.
  double last_alert_at(const std::string& suite, const std::string& name);
  void record_alert(const std::string& detail_json, double at);  // an event without a run

  // `shepherd maintain` notes each group it maintained (the retest cooldown
  // counts from there) and reads them back: group key (JSON text) -> unix seconds.
  void record_maintenance(const std::string& suite, const nlohmann::json& group, double at);
  std::map<std::string, double> maintained_at(const std::string& suite);

  // Attempts per policy version, oldest version first:
  // [{"version","attempts","decisions":{decision:n},"classes":{class:n}}].
  nlohmann::json policy_versions(const std::string& suite);

  // The detail of the newest event of `kind` in the suite's newest run that has one, or null.
  nlohmann::json latest_event(const std::string& suite, const std::string& kind);

  // The suite's run events, oldest first, as {"run","at","kind","detail"};
  // only those of `kinds` when given.
  nlohmann::json events(const std::string& suite, const std::vector<std::string>& kinds = {});
  void record_event(int64_t run, const std::string& kind, const std::string& detail_json);

  bool integrity_ok();
  SQLite::Database& db();

  // When each failed attempt of the suite (counted as error_stats() counts
  // them) with this class and code (empty: any) ended, for those that ended
  // in [since, until], oldest first: an alert rule's window as the store
  // holds it, for a run to start counting from.
  std::vector<double> failed_attempt_times(const std::string& suite, const std::string& cls, const std::string& code,
                                           double since, double until);

 private:
  std::unique_ptr<SQLite::Database> db_;
  std::unique_ptr<SQLite::Statement> task_detail_;  // after db_: finalized before it closes
  // The FROM clause status() and export_tasks() read, with ?1 = the suite.
  std::string task_source() const;
  bool scoped_ = false;
};

}  // namespace shepherd
