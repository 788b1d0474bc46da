#include "engine/response_parser.h"

#include <algorithm>
#include <cmath>
#include <ctime>

#include "core/json_limits.h"
#include "core/text.h"

namespace shepherd {

namespace {

using nlohmann::json;

constexpr double kMaxRetryAfterMs = 86'400'000;  // a day: beyond is noise, and would overflow clocks

long clamp_ms(double ms) { return static_cast<long>(std::ceil(std::min(ms, kMaxRetryAfterMs))); }

const json* member(const json& j, const char* key) {
  if (!j.is_object()) return nullptr;
  auto it = j.find(key);
  return it == j.end() ? nullptr : &*it;
}

std::string text_of(const json* j) {
  if (j == nullptr) return {};
  if (j->is_string()) return j->get<std::string>();
  return {};
}

// A count, or -1 when there is none that makes sense; providers send floats,
// strings, negative numbers and 1e300 too. Counts stay below 2^53, so the
// engine may add two of them without overflow.
int64_t count_or(const json& j, const char* key) {
  constexpr int64_t kMaxCount = int64_t{1} << 53;
  const json* v = member(j, key);
  if (v == nullptr) return -1;
  if (v->is_number_unsigned()) return v->get<uint64_t>() < static_cast<uint64_t>(kMaxCount) ? v->get<int64_t>() : -1;
  if (v->is_number_integer()) return v->get<int64_t>() >= 0 && v->get<int64_t>() < kMaxCount ? v->get<int64_t>() : -1;
  if (v->is_number_float()) {
    double d = v->get<double>();
    return std::isfinite(d) && d >= 0 && d < static_cast<double>(kMaxCount) ? static_cast<int64_t>(d) : -1;
  }
  return -1;
}

// Error message text: a string, or (Mistral's 422) an object, kept as JSON.
std::string message_of(const json* m) {
  if (m == nullptr || m->is_null()) return {};
  if (m->is_string()) return m->get<std::string>();
  return clip_text(safe_dump(*m));
}

void read_error(const json& b, ParsedResponse& out) {
  const json* holder = &b;
  // Gemini's OpenAI-compatible endpoint wraps its error in a list.
  if (b.is_array() && !b.empty() && member(b[0], "error")) holder = &b[0];
  if (!holder->is_object()) return;
  if (const json* e = member(*holder, "error")) {
    if (e->is_object()) {
      const json* code = member(*e, "code");
      for (std::string candidate : {text_of(code), text_of(member(*e, "type")), text_of(member(*e, "status"))}) {
        if (!candidate.empty()) {
          out.error_code = std::move(candidate);
          break;
        }
      }
      if (out.error_code.empty() && code && code->is_number_integer()) out.error_code = std::to_string(code->get<int64_t>());
      out.error_message = message_of(member(*e, "message"));
    } else if (e->is_string()) {
      out.error_message = e->get<std::string>();
    }
    return;
  }
  // DashScope's native shape, {"code": "...", "message": "..."}, and other
  // bare envelopes: only when the body is not an answer.
  if (member(*holder, "choices")) return;
  out.error_code = text_of(member(*holder, "code"));
  out.error_message = message_of(member(*holder, "message"));
  if (out.error_message.empty()) out.error_message = message_of(member(*holder, "detail"));
}

// Text content: a string, or a list of parts whose text parts are joined.
bool read_content(const json& content, std::string& out) {
  if (content.is_string()) {
    out = content.get<std::string>();
    return true;
  }
  if (!content.is_array()) return false;
  bool any = false;
  for (const auto& part : content) {
    if (part.is_string()) {
      out += part.get<std::string>();
      any = true;
    } else if (const json* text = member(part, "text"); text && text->is_string()) {
      out += text->get<std::string>();
      any = true;
    }
  }
  return any || content.empty();
}

// Anthropic's Messages API: {"type": "message", "content": [blocks],
// "stop_reason", "usage": {input_tokens, output_tokens}}. Text blocks are the
// content; tool_use blocks are tool calls; thinking blocks are not the answer.
void read_anthropic_message(const json& b, ParsedResponse& out) {
  const json* blocks = member(b, "content");
  if (blocks == nullptr || !blocks->is_array()) return;
  for (const auto& block : *blocks) {
    std::string type = text_of(member(block, "type"));
    if (type == "text") out.content += text_of(member(block, "text"));
    if (type == "tool_use") out.has_tool_calls = true;
  }
  out.is_completion = true;
  std::string stop = text_of(member(b, "stop_reason"));
  if (stop == "end_turn" || stop == "stop_sequence") out.finish_reason = "stop";
  else if (stop == "tool_use") out.finish_reason = "tool_calls";
  else if (stop == "max_tokens") out.finish_reason = "length";
  else if (stop == "refusal") out.finish_reason = "content_filter";
  else out.finish_reason = stop;
  if (const json* u = member(b, "usage"); u && u->is_object()) {
    out.prompt_tokens = count_or(*u, "input_tokens");
    out.completion_tokens = count_or(*u, "output_tokens");
  }
}

}  // namespace

long parse_retry_after_ms(const HttpResponse& r) {
  auto ms = r.header("retry-after-ms");
  if (!ms.empty()) {
    char* end = nullptr;
    std::string s(ms);
    double v = std::strtod(s.c_str(), &end);
    if (end != s.c_str() && v >= 0 && std::isfinite(v)) return clamp_ms(v);
  }
  auto ra = r.header("retry-after");
  if (ra.empty()) return -1;
  std::string s(ra);
  char* end = nullptr;
  double seconds = std::strtod(s.c_str(), &end);
  if (end != s.c_str() && *end == '\0' && seconds >= 0 && std::isfinite(seconds)) {
    return clamp_ms(seconds * 1000);
  }
  std::tm tm{};
  if (strptime(s.c_str(), "%a, %d %b %Y %H:%M:%S", &tm) != nullptr) {
    double delta = std::difftime(timegm(&tm), std::time(nullptr));
    return delta > 0 ? clamp_ms(delta * 1000) : 0;
  }
  return -1;
}

ParsedResponse parse_response_failure(const HttpResponse& response, const std::string& why) {
  ParsedResponse out;
  out.retry_after_ms = parse_retry_after_ms(response);
  out.body = json(json::value_t::discarded);
  out.parse_error = why;
  return out;
}

ParsedResponse parse_response(const HttpResponse& response) {
  ParsedResponse out;
  out.retry_after_ms = parse_retry_after_ms(response);
  if (response.transport != Transport::none || response.body.empty()) {
    out.body = json(json::value_t::discarded);
    return out;
  }
  out.body = parse_json_bounded(response.body, &out.parse_error);
  const json& b = out.body;
  if (b.is_discarded()) return out;
  read_error(b, out);
  if (!b.is_object()) return out;

  out.model = text_of(member(b, "model"));
  if (const json* u = member(b, "usage"); u && u->is_object()) {
    out.prompt_tokens = count_or(*u, "prompt_tokens");
    out.completion_tokens = count_or(*u, "completion_tokens");
    out.usage_json = safe_dump(*u);
  }
  if (text_of(member(b, "type")) == "message" && member(b, "choices") == nullptr) {
    read_anthropic_message(b, out);
    return out;
  }
  const json* choices = member(b, "choices");
  if (choices == nullptr || !choices->is_array() || choices->empty()) return out;
  const json& first = (*choices)[0];
  out.finish_reason = text_of(member(first, "finish_reason"));
  const json* message = member(first, "message");
  if (message == nullptr || !message->is_object()) return out;
  out.refusal = text_of(member(*message, "refusal"));
  const json* calls = member(*message, "tool_calls");
  out.has_tool_calls = calls && calls->is_array() && !calls->empty();
  const json* content = member(*message, "content");
  if (content && read_content(*content, out.content)) {
    out.is_completion = true;
  } else if ((content == nullptr || content->is_null()) && out.has_tool_calls) {
    // A tool call answers with no text: content null, or no content key at
    // all (Gemini's OpenAI-compatible endpoint).
    out.is_completion = true;
  }
  return out;
}

}  // namespace shepherd
