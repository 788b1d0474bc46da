#include "mock/details/chat_reply.h"

#include <strings.h>

#include <algorithm>
#include <charconv>
#include <cstdio>

namespace shepherd::details {
namespace {

using nlohmann::json;

void append_int(std::string& out, int64_t v) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  (void)ec;
  out.append(buf, end);
}

// Seconds with at most three decimals and no trailing zeros: 1500 -> "1.5".
std::string seconds_text(int64_t ms) {
  std::string out = std::to_string(ms / 1000);
  if (int64_t frac = ms % 1000; frac != 0) {
    char buf[8];
    std::snprintf(buf, sizeof buf, ".%03d", static_cast<int>(frac));
    std::string f = buf;
    while (f.back() == '0') f.pop_back();
    out += f;
  }
  return out;
}

// Text of one message: a plain string, or the text parts of a content array.
std::string_view text_of(const json& message, std::string& scratch) {
  if (!message.is_object()) return {};
  auto it = message.find("content");
  if (it == message.end()) return {};
  if (it->is_string()) return it->get_ref<const std::string&>();
  if (!it->is_array()) return {};
  scratch.clear();
  for (const json& part : *it) {
    if (!part.is_object()) continue;
    auto text = part.find("text");
    if (text != part.end() && text->is_string()) scratch += text->get_ref<const std::string&>();
  }
  return scratch;
}

}  // namespace

int64_t token_estimate(size_t bytes) {
  return std::max<int64_t>(1, static_cast<int64_t>(bytes / 4));
}

const char* reason_phrase(int status) {
  switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Unknown";
  }
}

std::string format_reset_duration(int64_t ms) {
  ms = std::max<int64_t>(0, ms);
  if (ms < 1000) return std::to_string(ms) + "ms";
  if (ms < 60'000) return seconds_text(ms) + "s";
  return std::to_string(ms / 60'000) + "m" + seconds_text(ms % 60'000) + "s";
}

void add_rate_headers(Reply& reply, const RateHeaders& rate) {
  reply.headers.emplace_back("x-ratelimit-limit-requests", std::to_string(rate.limit));
  reply.headers.emplace_back("x-ratelimit-remaining-requests", std::to_string(rate.remaining));
  reply.headers.emplace_back("x-ratelimit-reset-requests", format_reset_duration(rate.reset_ms));
}

Reply error_reply(int status, std::string_view message, std::string_view type,
                  std::string_view code) {
  Reply r;
  r.status = status;
  r.body.reserve(128 + message.size());
  r.body += R"({"error":{"message":)";
  append_json_string(r.body, message);
  r.body += R"(,"type":)";
  append_json_string(r.body, type);
  r.body += R"(,"param":null,"code":)";
  if (code.empty())
    r.body += "null";
  else
    append_json_string(r.body, code);
  r.body += "}}";
  return r;
}

Reply bad_request_reply(std::string_view why) {
  return error_reply(400, why, "invalid_request_error", "");
}

Reply unauthorized_reply() {
  return error_reply(401, "Incorrect API key provided.", "invalid_request_error",
                     "invalid_api_key");
}

Reply rate_limited_reply(const RateHeaders& rate, std::string_view model) {
  const std::string wait = format_reset_duration(rate.reset_ms);
  std::string message = "Rate limit reached for ";
  message.append(model).append(" on requests: Limit ").append(std::to_string(rate.limit));
  message.append(". Please try again in ").append(wait).append(".");
  Reply r = error_reply(429, message, "requests", "rate_limit_exceeded");
  const int64_t seconds = std::max<int64_t>(1, (rate.reset_ms + 999) / 1000);
  r.headers.emplace_back("Retry-After", std::to_string(seconds));
  r.headers.emplace_back("retry-after-ms", std::to_string(rate.reset_ms));
  add_rate_headers(r, rate);
  return r;
}

Reply quota_reply() {
  return error_reply(403,
                     "You exceeded your current quota, please check your plan and billing "
                     "details.",
                     "insufficient_quota", "insufficient_quota");
}

Reply server_error_reply() {
  return error_reply(500,
                     "The server had an error while processing your request. Sorry about that!",
                     "server_error", "");
}

Reply not_found_reply() { return error_reply(404, "Not found.", "invalid_request_error", ""); }

Reply canned_reply(const CannedReply& rule) {
  Reply r;
  r.status = rule.status;
  r.body = rule.body;
  for (const auto& [name, value] : rule.headers) {
    if (strcasecmp(name.c_str(), "Content-Type") == 0)
      r.content_type = value.c_str();
    else
      r.headers.emplace_back(name.c_str(), value);
  }
  if (rule.content_length) {
    // evhttp keeps a Content-Length it is given; closing afterwards keeps the
    // lie from corrupting the next response on the same connection.
    r.headers.emplace_back("Content-Length", std::to_string(*rule.content_length));
    r.headers.emplace_back("Connection", "close");
  }
  return r;
}

ChatAnswer chat_answer(const json& messages) {
  std::string scratch;
  std::string_view last;
  size_t prompt_bytes = 0;
  if (messages.is_array()) {
    for (const json& m : messages) prompt_bytes += text_of(m, scratch).size();
    if (!messages.empty()) last = text_of(messages.back(), scratch);
  }
  static constexpr std::string_view prefix = "mock answer: ";
  ChatAnswer answer;
  const std::string_view echoed = utf8_prefix(last, 200);
  answer.content.reserve(prefix.size() + echoed.size());
  answer.content.append(prefix).append(echoed);
  answer.prompt_tokens = token_estimate(prompt_bytes);
  answer.completion_tokens = token_estimate(answer.content.size());
  return answer;
}

std::string completion_body(uint64_t id, int64_t created, std::string_view model,
                            const json& messages) {
  return completion_body(id, created, model, chat_answer(messages));
}

std::string completion_body(uint64_t id, int64_t created, std::string_view model,
                            const ChatAnswer& answer) {
  std::string out;
  out.reserve(320 + model.size() + answer.content.size());
  out += R"({"id":"chatcmpl-mock-)";
  append_int(out, static_cast<int64_t>(id));
  out += R"(","object":"chat.completion","created":)";
  append_int(out, created);
  out += R"(,"model":)";
  append_json_string(out, model);
  out += R"(,"choices":[{"index":0,"message":)";
  append_message(out, answer);
  out += answer.tool_calls.empty() ? R"(,"finish_reason":"stop"}],"usage":{"prompt_tokens":)"
                                   : R"(,"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":)";
  append_int(out, answer.prompt_tokens);
  out += R"(,"completion_tokens":)";
  append_int(out, answer.completion_tokens);
  out += R"(,"total_tokens":)";
  append_int(out, answer.prompt_tokens + answer.completion_tokens);
  out += "}}";
  return out;
}

void append_message(std::string& out, const ChatAnswer& answer) {
  out += R"({"role":"assistant","content":)";
  if (answer.tool_calls.empty()) {
    append_json_string(out, answer.content);
    out += '}';
    return;
  }
  out += R"(null,"tool_calls":[)";
  for (size_t i = 0; i < answer.tool_calls.size(); ++i) {
    const ToolCall& call = answer.tool_calls[i];
    if (i > 0) out += ',';
    out += R"({"id":)";
    append_json_string(out, call.id);
    out += R"(,"type":"function","function":{"name":)";
    append_json_string(out, call.name);
    out += R"(,"arguments":)";
    append_json_string(out, call.arguments);
    out += "}}";
  }
  out += "]}";
}

void append_json_string(std::string& out, std::string_view s) {
  static constexpr char hex[] = "0123456789abcdef";
  out += '"';
  size_t run = 0;  // start of the pending run of bytes that need no escaping
  for (size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out.append(s.data() + run, i - run);
    run = i + 1;
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        out += "\\u00";
        out += hex[c >> 4];
        out += hex[c & 0xf];
    }
  }
  out.append(s.data() + run, s.size() - run);
  out += '"';
}

std::string_view utf8_prefix(std::string_view s, size_t max_chars) {
  size_t chars = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if ((static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) continue;  // continuation byte
    if (chars == max_chars) return s.substr(0, i);
    ++chars;
  }
  return s;
}

}  // namespace shepherd::details
