#pragma once
// Reads what the policies need out of a chat-completion answer, parsing the
// body once; classify() gets these cheap fields and the parsed body lazily.
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "http/http_types.h"

namespace shepherd {

struct ParsedResponse {
  nlohmann::json body;            // discarded when the body is not JSON
  bool is_completion = false;     // choices[0].message with a string (or null) content
  std::string content;
  std::string model;              // the answer's "model"
  std::string finish_reason;
  int64_t prompt_tokens = -1;
  int64_t completion_tokens = -1;
  std::string usage_json;         // the usage object as sent, or empty
  std::string error_code;         // error.code, else error.type
  std::string error_message;
  long retry_after_ms = -1;       // retry-after-ms, else Retry-After (seconds or HTTP date)
};

ParsedResponse parse_response(const HttpResponse& response);

// Retry-After: delta-seconds or an HTTP date; -1 when absent or unreadable.
long parse_retry_after_ms(const HttpResponse& response);

}  // namespace shepherd
