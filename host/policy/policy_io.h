#pragma once
// What crosses into and out of the policies, as plain C++ data.
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace shepherd {

// The outcome of one attempt as classify() sees it. Pointers stay valid for
// the duration of the call only; body and headers are turned into Lua tables
// only if the policy reads them.
struct OutcomeView {
  long status = 0;
  std::string_view transport;  // empty when a complete response arrived
  const std::vector<std::pair<std::string, std::string>>* headers = nullptr;
  const nlohmann::json* body = nullptr;  // null when the body is not JSON
  std::string_view raw;
  double elapsed_ms = 0;
  std::string_view model_requested;
  std::string_view model_answered;  // empty: unknown
  std::string_view model_role;      // "dimension" | "resource"
  const std::string* content = nullptr;  // set when the body is a chat completion
  std::string_view finish_reason;
  std::string_view refusal;         // message.refusal: the model declined (content is then null)
  bool tool_calls = false;          // the answer calls tools
  std::string_view error_code;
  std::string_view error_message;
  const std::string* check = nullptr;  // the suite check's failure reason
};

struct HistoryEntry {
  std::string cls;
  long status = 0;
  std::string code;
};

struct DecideInput {
  std::string_view cls;
  int attempt = 1;  // in this run, the failed one included
  const nlohmann::json* cell = nullptr;
  std::string_view model;
  std::string_view model_role;
  const std::vector<HistoryEntry>* history = nullptr;
  long retry_after_ms = -1;  // -1: none given
  long status = 0;
  std::string_view error_code;
  int usable_keys = 0;  // other keys that may still serve this model
};

struct SwitchInput {
  std::string_view current;
  const std::vector<std::string>* candidates = nullptr;
  const std::vector<std::string>* exhausted = nullptr;
  std::string_view cls;
};

struct Decision {
  enum class Action { retry, fail, switch_model } action = Action::fail;
  long delay_ms = 0;
  std::string code;  // for fail; may be empty
};

std::string_view to_string(Decision::Action action);

}  // namespace shepherd
