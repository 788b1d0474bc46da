#pragma once
// The one error type of shepherd: a stable UPPER_SNAKE code, a message, the
// stage it arose in, structured details and whether retrying may help.
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <string_view>

namespace shepherd {

enum class Stage { cli, config, validation, execution, storage, policy };

std::string_view to_string(Stage stage);

class Error : public std::runtime_error {
 public:
  Error(std::string code, std::string message, Stage stage,
        nlohmann::json details = nlohmann::json::object(), bool retryable = false);

  const std::string& code() const { return code_; }
  Stage stage() const { return stage_; }
  const nlohmann::json& details() const { return details_; }
  bool retryable() const { return retryable_; }

  // {"code","message","stage","details"} as the CLI prints it with --json.
  nlohmann::json to_json() const;

 private:
  std::string code_;
  Stage stage_;
  nlohmann::json details_;
  bool retryable_;
};

// Every code the host raises; the README's table lists the same set.
namespace codes {
inline constexpr const char* USAGE = "USAGE";
inline constexpr const char* SUITE_NOT_FOUND = "SUITE_NOT_FOUND";
inline constexpr const char* SUITE_SYNTAX = "SUITE_SYNTAX";
inline constexpr const char* SUITE_INVALID = "SUITE_INVALID";
inline constexpr const char* KEY_ENV_MISSING = "KEY_ENV_MISSING";
inline constexpr const char* SCENARIO_INVALID = "SCENARIO_INVALID";
inline constexpr const char* POLICY_LOAD_FAILED = "POLICY_LOAD_FAILED";
inline constexpr const char* POLICY_ERROR = "POLICY_ERROR";
inline constexpr const char* REQUEST_BUILD_FAILED = "REQUEST_BUILD_FAILED";
inline constexpr const char* STORE_LOCKED = "STORE_LOCKED";
inline constexpr const char* STORE_OPEN_FAILED = "STORE_OPEN_FAILED";
inline constexpr const char* STORE_SCHEMA_TOO_NEW = "STORE_SCHEMA_TOO_NEW";
inline constexpr const char* STORE_WRITE_FAILED = "STORE_WRITE_FAILED";
inline constexpr const char* STORE_LOST = "STORE_LOST";
inline constexpr const char* HTTP_INIT_FAILED = "HTTP_INIT_FAILED";
inline constexpr const char* MOCK_BIND_FAILED = "MOCK_BIND_FAILED";
inline constexpr const char* IO_ERROR = "IO_ERROR";
inline constexpr const char* SCRIPT_NOT_FOUND = "SCRIPT_NOT_FOUND";  // shepherd script FILE: no such file
inline constexpr const char* SCRIPT_SYNTAX = "SCRIPT_SYNTAX";        // a workflow that does not compile (file, line)
inline constexpr const char* SCRIPT_ERROR = "SCRIPT_ERROR";          // a workflow raised and nothing caught it
inline constexpr const char* INTERNAL = "INTERNAL";
// How a conversation (task(cell, llm)) ends when it does not return a result.
inline constexpr const char* TASK_ERROR = "TASK_ERROR";      // its Lua raised: message, file and line
inline constexpr const char* TASK_TIMEOUT = "TASK_TIMEOUT";  // past conversation.task_timeout_ms
inline constexpr const char* MAX_TURNS = "MAX_TURNS";        // asked for more than conversation.max_turns
inline constexpr const char* CHECK_FAILED = "CHECK_FAILED";  // returned nil, reason, or check refused it
inline constexpr const char* REQUEST_INVALID = "REQUEST_INVALID";  // llm:chat got a body that is not JSON
// Returned to Lua (nil, code, detail), never raised by the host.
inline constexpr const char* JSON_INVALID = "JSON_INVALID";
}  // namespace codes

}  // namespace shepherd
