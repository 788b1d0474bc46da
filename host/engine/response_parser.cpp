#include "engine/response_parser.h"

#include <algorithm>
#include <cmath>
#include <ctime>

namespace shepherd {

namespace {

std::string string_or_empty(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end()) return {};
  if (it->is_string()) return it->get<std::string>();
  if (it->is_number_integer()) return std::to_string(it->get<int64_t>());
  return {};
}

int64_t int_or(const nlohmann::json& j, const char* key, int64_t fallback) {
  auto it = j.find(key);
  return it != j.end() && it->is_number() ? it->get<int64_t>() : fallback;
}

}  // namespace

namespace {
constexpr double kMaxRetryAfterMs = 86'400'000;  // a day: beyond is noise, and would overflow clocks

long clamp_ms(double ms) { return static_cast<long>(std::ceil(std::min(ms, kMaxRetryAfterMs))); }
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

ParsedResponse parse_response(const HttpResponse& response) {
  ParsedResponse out;
  out.retry_after_ms = parse_retry_after_ms(response);
  if (response.transport != Transport::none || response.body.empty()) {
    out.body = nlohmann::json(nlohmann::json::value_t::discarded);
    return out;
  }
  out.body = nlohmann::json::parse(response.body, nullptr, false);
  const auto& b = out.body;
  if (!b.is_object()) return out;

  out.model = string_or_empty(b, "model");
  if (auto e = b.find("error"); e != b.end()) {
    if (e->is_object()) {
      out.error_code = string_or_empty(*e, "code");
      if (out.error_code.empty()) out.error_code = string_or_empty(*e, "type");
      out.error_message = string_or_empty(*e, "message");
    } else if (e->is_string()) {
      out.error_message = e->get<std::string>();
    }
  }
  if (auto u = b.find("usage"); u != b.end() && u->is_object()) {
    out.prompt_tokens = int_or(*u, "prompt_tokens", -1);
    out.completion_tokens = int_or(*u, "completion_tokens", -1);
    out.usage_json = u->dump();
  }
  auto choices = b.find("choices");
  if (choices == b.end() || !choices->is_array() || choices->empty()) return out;
  const auto& first = (*choices)[0];
  if (!first.is_object()) return out;
  out.finish_reason = string_or_empty(first, "finish_reason");
  auto message = first.find("message");
  if (message == first.end() || !message->is_object()) return out;
  auto content = message->find("content");
  if (content == message->end()) return out;
  if (content->is_string()) {
    out.content = content->get<std::string>();
    out.is_completion = true;
  } else if (content->is_null() && message->contains("tool_calls")) {
    out.is_completion = true;  // a tool call answers with no text
  }
  return out;
}

}  // namespace shepherd
