#pragma once
// Reads what the policies need out of a chat-completion answer, parsing the
// body once (depth-checked: nothing a provider sends can crash the parse);
// classify() gets these cheap fields and the parsed body lazily.
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "http/http_types.h"

namespace shepherd {

struct ParsedResponse {
  nlohmann::json body;            // discarded when the body is not (acceptable) JSON
  std::string parse_error;        // why the body was refused ("nested deeper than …"), or empty
  // choices[0].message carries an answer: text content (a string, or a list
  // of text parts), or tool calls with no text (content null, "" or absent).
  bool is_completion = false;
  bool has_tool_calls = false;
  std::string content;
  std::string refusal;            // message.refusal (OpenAI structured outputs), or empty
  std::string model;              // the answer's "model"
  std::string finish_reason;
  int64_t prompt_tokens = -1;
  int64_t completion_tokens = -1;
  std::string usage_json;         // the usage object as sent, or empty
  // The provider's error, whatever its shape: {"error": {code|type|status, message}},
  // {"error": "text"}, [{"error": …}] (Gemini), {"code", "message"} (DashScope),
  // {"detail": …} or {"message": …} (Mistral).
  std::string error_code;         // error.code if text, else error.type, else error.status, else a numeric code
  std::string error_message;
  long retry_after_ms = -1;       // retry-after-ms, else Retry-After (seconds or HTTP date)
};

ParsedResponse parse_response(const HttpResponse& response);

// A response whose body must not be read as an answer (a broken stream):
// only the headers count; `parse_error` says why.
ParsedResponse parse_response_failure(const HttpResponse& response, const std::string& why);

// Retry-After: delta-seconds or an HTTP date; -1 when absent or unreadable.
long parse_retry_after_ms(const HttpResponse& response);

}  // namespace shepherd
