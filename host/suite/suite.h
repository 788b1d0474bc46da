#pragma once
// A validated suite: what to run, against which providers, with which limits.
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "lua/lua_state.h"

namespace shepherd {

// Limits hold per (key, model). A field left unset at one level falls back:
// the key's, then the model's (limits.per_model), then the provider's.
struct LimitsOverride {
  std::optional<int> concurrency;
  std::optional<double> rpm;
  std::optional<double> tpm;
};

struct KeySpec {
  std::string id;   // shown everywhere
  std::string env;  // the variable holding the value
  std::string value;  // the secret: only ever placed in a request header
  LimitsOverride limits;
};

// A stall is silence once the answer has begun: with streaming that is
// found in seconds, while "thinking" before the first byte has its own,
// longer, limit.
struct Timeouts {
  long connect_ms = 10'000;
  long first_byte_ms = 300'000;  // to the first byte of the answer's body; 0 = none
  long stall_ms = 60'000;        // between bytes once the body has begun; 0 = none
  long total_ms = 600'000;
};

// The circuit breakers of a provider's (key, model) slots and of its
// endpoint: open at `failure_rate` of the last `window` calls (within
// `window_ms`) once there are `min_calls`; half-open after `open_ms`
// (doubling up to `max_open_ms`) with `probes` calls.
struct BreakerSpec {
  double failure_rate = 0.5;
  int min_calls = 20;
  int window = 100;
  long window_ms = 60'000;
  long open_ms = 5'000;
  long max_open_ms = 60'000;
  int probes = 3;
};

struct Limits {
  int concurrency = 8;  // in flight per (key, model)
  double rpm = 0;       // requests per minute; 0: not configured (learned from the provider's headers)
  double tpm = 0;       // tokens per minute; 0: not configured
};

struct ProviderSpec {
  std::string name;
  std::string kind;  // "openai" or "azure"
  std::string base_url;  // without trailing '/'
  std::vector<KeySpec> keys;
  std::vector<std::string> models;
  Limits limits;
  std::map<std::string, LimitsOverride> model_limits;  // limits.per_model
  Timeouts timeouts;
  BreakerSpec breaker;
  // Answers stream (server-sent events, assembled by the host) unless the
  // provider is told otherwise; include_usage asks for the usage chunk.
  bool stream = true;
  bool stream_usage = true;
  size_t max_response_bytes = 8u << 20;
  std::vector<std::string> headers;  // extra "Name: value" headers
  // Azure: each model is a deployment of its own, addressed by name.
  std::map<std::string, std::string> deployments;  // model -> deployment
  std::string api_version;
  // A (key, model) out of quota rests until this time of day (minutes after
  // 00:00 UTC), or for the rest of the run when unset.
  std::optional<int> quota_reset_minute_utc;

  Limits limits_for(const KeySpec& key, const std::string& model) const;
  std::string url_for(const std::string& model) const;  // where chat completions go
  std::string auth_header(const KeySpec& key) const;
};

struct Dimension {
  std::string name;
  std::vector<nlohmann::json> values;  // in file order
  // What a cell's task id hashes for each value instead of the value itself
  // (a file's path, a record's id field); empty: the values themselves.
  std::vector<nlohmann::json> identities;
  // Where the values come from when the host read them (shepherd.jsonl/csv):
  // the descriptor's canonical JSON; empty: the suite lists them itself.
  std::string input;
  int source_line = 0;  // where the suite names it: logs show a cell's values in the file's order
};

struct RetryConfig {
  int max_retries = 3;
  long base_delay_ms = 1000;
  double backoff_multiplier = 2.0;
  long max_delay_ms = 60'000;
  bool jitter = true;
  bool retry_on_timeout = true;
  bool retry_on_api_error = true;
  bool retry_on_format_error = false;
  int poison_after = 5;  // the same error this many times in a row fails the task as POISONED

  nlohmann::json to_json() const;
};

// The bounds of a conversation (a suite's task(cell, llm)). max_open: how
// many conversations may be open at once; 0 picks twice the slots' total
// concurrency (a turn waits for a slot while its neighbours think).
struct ConversationSpec {
  int max_turns = 20;
  long task_timeout_ms = 1'800'000;
  int max_open = 0;
};

// When a group of tasks deserves a re-test (retest.lua reads this).
struct MaintainConfig {
  double minimum_completion_rate = 0.8;
  double maximum_failure_rate = 0.3;
  std::vector<std::string> priority_models;
  std::vector<std::string> skip_models;
  double cooldown_hours = 2;
  int batch_size = 5;
  std::vector<std::string> group_by = {"model"};  // how maintain groups tasks (dims)

  nlohmann::json to_json() const;
};

// An alert: `count` failed attempts matching the class and/or code within
// `window_s` seconds; it fires at most once per window.
struct AlertRule {
  std::string name;   // given, or made from the match ("server_error x10/300s")
  std::string cls;    // match the attempt's class ...
  std::string code;   // ... and/or its error code; empty: any
  double window_s = 300;
  int count = 1;

  bool matches(const std::string& attempt_class, const std::string& attempt_code) const;
  nlohmann::json to_json() const;
};

struct AlertSpec {
  std::vector<AlertRule> rules;
  std::string webhook;  // POSTed {"text", "alert"} when a rule fires; empty: none
};

// The policy kinds, in the order they are loaded.
inline constexpr const char* kPolicyKinds[] = {"classify", "retry", "switch", "retest"};

struct PolicyPaths {
  std::map<std::string, std::string> overrides;  // "classify" -> absolute path
};

struct Suite {
  std::string name;
  std::string path;    // absolute path of the suite file
  std::string dir;     // its directory: the suite's own files resolve here
  std::string source;  // the file's text
  std::vector<ProviderSpec> providers;
  std::vector<Dimension> dims;  // sorted by name: the order never depends on the file
  bool model_is_dimension = false;
  // batch_file = "requests.jsonl": one task per line of an OpenAI Batch API
  // input file (or, batch_file_format = "cookbook", of plain request bodies).
  // The matrix is then the one dimension `request` (each line); each task's
  // model is its body's and must answer (a dimension, never switched).
  std::string batch_file;             // absolute path; empty: the matrix makes the tasks
  std::string batch_file_format;      // "openai" or "cookbook"
  std::vector<int32_t> batch_models;  // per task (= line): its model's index in `models`
  std::vector<std::string> models;  // every model used: the matrix's or the resource list
  bool has_task = false;  // task(cell, llm): a conversation per task instead of request(cell)
  ConversationSpec conversation;
  bool has_check = false;
  bool has_key_for = false;  // key_for(cell, keys): a preferred key per task
  // outputs = { path = function(cell), write = function(cell, result) }: one
  // file per done task (host/outputs/). write is optional.
  bool has_outputs = false;
  bool has_output_write = false;
  RetryConfig retry;
  MaintainConfig maintain;
  AlertSpec alerts;
  PolicyPaths policies;
  std::string config_hash;  // of `source`
};

struct SuiteLoadOptions {
  bool resolve_keys = true;  // read key values from the environment (run needs them)
};

// Loads and validates once. Throws Error: SUITE_NOT_FOUND, SUITE_SYNTAX,
// SUITE_INVALID (details: file, line, field), KEY_ENV_MISSING.
Suite load_suite(const std::string& path, const SuiteLoadOptions& options = {});

// A suite's name names its store and log files; any other text field
// (ids, models, URLs, headers) stays below this.
inline constexpr size_t kMaxSuiteNameBytes = 100;
inline constexpr size_t kMaxFieldBytes = 8192;

// Loading a suite (its top-level code) may take this long and this much memory.
inline constexpr std::chrono::milliseconds kSuiteLoadBudget{10'000};
inline constexpr size_t kSuiteLoadMemory = size_t{2} << 30;

// Runs `source` as a suite chunk in L and leaves the returned table on the stack.
// Used by load_suite and by every worker's Lua state. Throws like load_suite.
// Its functions run without the JIT, so a CallLimit can stop them.
void push_suite_table(lua_State* L, const std::string& path, const std::string& dir,
                      const std::string& source);

// Whether the table at `index` is a dimension read by the host
// (shepherd.jsonl/csv); `out` gets its descriptor {kind, path, id}.
bool input_descriptor(lua_State* L, int index, nlohmann::json& out);

}  // namespace shepherd
