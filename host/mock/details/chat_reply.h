#pragma once
// The bodies and headers the mock answers with, in OpenAI's shapes.
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "mock/details/mock_behavior.h"

namespace shepherd::details {

struct Reply {
  int status = 200;
  std::string body;  // JSON (or, for `malformed`, meant to look like it), or a canned body
  std::vector<std::pair<const char*, std::string>> headers;  // besides Content-Type
  const char* content_type = "application/json";  // static, or owned by the scenario
};

// One function call in an assistant message, as OpenAI writes it.
struct ToolCall {
  std::string id;         // "call_" and 16 hex digits
  std::string name;       // a function the request offered
  std::string arguments;  // JSON text
};

// What the mock answers a chat request with, before it is put in a body or a stream.
struct ChatAnswer {
  std::string content;  // "mock answer: " and the first 200 characters of the last message
  // Non-empty: the answer is these calls, "content" is null and the
  // finish_reason "tool_calls".
  std::vector<ToolCall> tool_calls;
  int64_t prompt_tokens = 0;      // a rough bytes/4 estimate
  int64_t completion_tokens = 0;  // the same for the content (or the calls)
};

const char* reason_phrase(int status);

// OpenAI's duration style for x-ratelimit-reset-*: "850ms", "1.5s", "2m3s".
std::string format_reset_duration(int64_t ms);

void add_rate_headers(Reply& reply, const RateHeaders& rate);

Reply error_reply(int status, std::string_view message, std::string_view type,
                  std::string_view code);
Reply bad_request_reply(std::string_view why);
Reply unauthorized_reply();  // never echoes the key
Reply rate_limited_reply(const RateHeaders& rate, std::string_view model);
Reply quota_reply();
Reply server_error_reply();
Reply not_found_reply();

// The rule's status, headers and body as given; Content-Type from its headers
// if there, else application/json. The reply points into the rule's strings.
Reply canned_reply(const CannedReply& rule);

// The text answer: a pure function of the messages.
ChatAnswer chat_answer(const nlohmann::json& messages);

// A chat.completion answering the last message; usage is a rough bytes/4 estimate.
std::string completion_body(uint64_t id, int64_t created, std::string_view model,
                            const nlohmann::json& messages);
std::string completion_body(uint64_t id, int64_t created, std::string_view model,
                            const ChatAnswer& answer);

// The "message" object of a completion: {"role":"assistant","content":…},
// with "tool_calls" (and content null) for a tool-calling answer.
void append_message(std::string& out, const ChatAnswer& answer);

// A rough token count for that many bytes (at least 1).
int64_t token_estimate(size_t bytes);

// Appends s as a JSON string literal; s must be valid UTF-8.
void append_json_string(std::string& out, std::string_view s);

// The first max_chars code points of s (never splits a UTF-8 sequence).
std::string_view utf8_prefix(std::string_view s, size_t max_chars);

}  // namespace shepherd::details
