#pragma once
// A validated suite: what to run, against which providers, with which limits.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "lua/lua_state.h"

namespace shepherd {

struct KeySpec {
  std::string id;   // shown everywhere
  std::string env;  // the variable holding the value
  std::string value;  // the secret: only ever placed in a request header
};

struct Timeouts {
  long connect_ms = 10'000;
  long total_ms = 600'000;
  long stall_ms = 0;  // 0 = no stall limit
};

struct Limits {
  int concurrency = 8;  // in flight per (key, model)
};

struct ProviderSpec {
  std::string name;
  std::string kind;  // "openai"
  std::string base_url;  // without trailing '/'
  std::vector<KeySpec> keys;
  std::vector<std::string> models;
  Limits limits;
  Timeouts timeouts;
  size_t max_response_bytes = 8u << 20;
  std::vector<std::string> headers;  // extra "Name: value" headers
};

struct Dimension {
  std::string name;
  std::vector<nlohmann::json> values;  // in file order
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

// When a group of tasks deserves a re-test (retest.lua reads this).
struct MaintainConfig {
  double minimum_completion_rate = 0.8;
  double maximum_failure_rate = 0.3;
  std::vector<std::string> priority_models;
  std::vector<std::string> skip_models;
  double cooldown_hours = 2;
  int batch_size = 5;

  nlohmann::json to_json() const;
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
  std::vector<std::string> models;  // every model used: the matrix's or the resource list
  bool has_check = false;
  RetryConfig retry;
  MaintainConfig maintain;
  PolicyPaths policies;
  std::string config_hash;  // of `source`
};

struct SuiteLoadOptions {
  bool resolve_keys = true;  // read key values from the environment (run needs them)
};

// Loads and validates once. Throws Error: SUITE_NOT_FOUND, SUITE_SYNTAX,
// SUITE_INVALID (details: file, line, field), KEY_ENV_MISSING.
Suite load_suite(const std::string& path, const SuiteLoadOptions& options = {});

// Runs `source` as a suite chunk in L and leaves the returned table on the stack.
// Used by load_suite and by every worker's Lua state. Throws like load_suite.
// `interruptible`: its functions run without the JIT, so a CallLimit can stop them.
void push_suite_table(lua_State* L, const std::string& path, const std::string& dir,
                      const std::string& source, bool interruptible = false);

}  // namespace shepherd
