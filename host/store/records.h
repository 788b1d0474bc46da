#pragma once
// Plain rows that cross from the engine to the store.
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

namespace shepherd {

enum class TaskState { pending, done, failed };
std::string_view to_string(TaskState s);
TaskState task_state_from(std::string_view s);  // throws Error on an unknown name

struct TaskSeed {
  TaskSeed() = default;
  TaskSeed(std::string task_id, std::string dims, std::string hash = {})
      : id(std::move(task_id)), dims_json(std::move(dims)), request_hash(std::move(hash)) {}

  std::string id;         // stable task id
  std::string dims_json;  // canonical JSON object of the cell (sorted keys)
  std::string request_hash;  // of the request the suite builds now; empty when unknown
};

struct StoredTask {
  std::string id;
  TaskState state = TaskState::pending;
  int attempts = 0;  // over all runs
  std::string request_hash;  // of the request its latest attempt sent; empty when unknown
  int conversation = 1;      // the try at its conversation a run continues (task suites)
};

struct RunInfo {
  std::string suite;       // suite name
  std::string suite_path;  // absolute path of the suite file
  std::string host;        // hostname
  int pid = 0;
  std::string config_hash;     // hash of the suite file's text
  std::string policy_version;  // hash of the policy sources in use
};

// One finished attempt and the state its task moves to, committed together.
struct AttemptRecord {
  std::string task_id;
  int64_t run_id = 0;
  int n = 0;                     // attempt number of this task over all runs (1-based)
  std::string key_id;            // the key's id, never its value
  std::string endpoint;          // base URL
  std::string model_requested;
  std::string model_answered;    // empty when unknown
  long http_status = 0;
  std::string transport;         // "" or a Transport name
  std::string cls;               // classify's class
  std::string decision;          // "done", "retry", "fail", ...
  std::string error_code;        // empty on success
  std::string error_message;
  std::string policy_version;
  double latency_ms = 0;
  int64_t prompt_tokens = -1;    // -1 = unknown
  int64_t completion_tokens = -1;
  double started_at = 0;         // unix seconds
  double ended_at = 0;
  std::string response;          // raw response body (possibly truncated)
  std::string request_hash;      // what was sent (suite_runtime.h); empty when nothing was
  long delay_ms = -1;            // the retry delay decided, -1 when not a retry
  int turn = 0;                  // the conversation's turn this attempt sent; 0: a single-request task
  int conversation = 0;          // which try at the conversation (turns only)

  // The task after this attempt.
  TaskState task_state = TaskState::pending;
  int task_attempts = 0;         // == n
  std::string content;           // final assistant text when done
  std::string usage_json;        // the answer's usage object as JSON, or empty
};

// How a conversation ended (task suites): its turns are attempts of their
// own, committed as they are answered; this closes the task.
struct TaskResultRecord {
  std::string task_id;
  int64_t run_id = 0;
  TaskState state = TaskState::failed;  // done or failed
  std::string content;        // the result: text, or the JSON text of a table
  std::string error_code;     // failed only
  std::string error_message;
  std::string cls;            // for last_class: "ok", the failed turn's class, or the code in lower case
  std::string model;          // the model every turn came from, empty when none answered
  std::string usage_json;     // the turns' tokens summed, or empty
  double latency_ms = -1;     // the turns' latencies summed, -1 when none
  std::string request_hash;   // of the first turn's request: stale conversations are found by it
  int turns = 0;              // turns answered
  int conversation = 0;
  std::string transcript;     // JSON array: the last request's messages and the last answer
};

// An answered turn of a conversation, as stored: what a resumed
// conversation replays instead of sending it again.
struct RecordedTurn {
  int turn = 0;
  int n = 0;  // the attempt's number: a later answer to a turn supersedes an earlier one
  std::string request_hash;
  std::string model_requested;
  std::string model_answered;
  std::string response;  // the chat completion
  double latency_ms = 0;
  int64_t prompt_tokens = -1;
  int64_t completion_tokens = -1;
};

// A task state change without an attempt (e.g. sent back to pending).
struct TaskStateRecord {
  std::string task_id;
  TaskState state = TaskState::pending;
  std::string error_code;
  std::string error_message;
};

struct EventRecord {
  int64_t run_id = 0;
  double at = 0;            // unix seconds
  std::string kind;         // e.g. "model_exhausted"
  std::string detail_json;  // JSON object
};

}  // namespace shepherd
