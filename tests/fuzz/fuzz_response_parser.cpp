// What the engine does with whatever a provider might send: read_response
// (an event stream assembled, then parse_response). The input is
//   byte 0     the status (mostly real ones; see kStatuses)
//   byte 1     the transport outcome (mostly a complete response)
//   headers    "name: value" lines up to a blank line, when the input has one
//   the rest   the body
// A parsed body is also pushed into Lua, as classify() receives it.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/json_limits.h"
#include "core/text.h"
#include "engine/response_parser.h"
#include "engine/response_reader.h"
#include "fuzz_check.h"
#include "lua/lua_json.h"
#include "lua/lua_state.h"

namespace {

using shepherd::HttpResponse;
using shepherd::Transport;

constexpr long kStatuses[] = {200, 200, 200, 200, 400, 401, 402, 403, 404, 408, 413, 422, 429, 429,
                              500, 502, 503, 504, 529, 0,   201, 204, 301, 418, 499, 599, 100, 999};

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
  return out;
}

HttpResponse response_from(std::string_view in) {
  HttpResponse r;
  if (in.size() < 2) {
    r.status = 200;
    r.body = std::string(in);
    return r;
  }
  uint8_t s = static_cast<uint8_t>(in[0]);
  r.status = s < 2 * std::size(kStatuses) ? kStatuses[s % std::size(kStatuses)] : s * 4;
  uint8_t t = static_cast<uint8_t>(in[1]);
  r.transport = t < 248 ? Transport::none : static_cast<Transport>(t - 248);
  in.remove_prefix(2);
  if (auto end = in.find("\n\n"); end != std::string_view::npos) {
    std::string_view head = in.substr(0, end);
    in.remove_prefix(end + 2);
    while (!head.empty()) {
      auto nl = head.find('\n');
      std::string_view line = head.substr(0, nl);
      head.remove_prefix(nl == std::string_view::npos ? head.size() : nl + 1);
      auto colon = line.find(':');
      if (colon == std::string_view::npos) continue;
      r.headers.emplace_back(lower(shepherd::trim(line.substr(0, colon))),
                             std::string(shepherd::trim(line.substr(colon + 1))));
    }
  }
  r.body = std::string(in);
  return r;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static shepherd::LuaState lua;
  HttpResponse response = response_from(std::string_view(reinterpret_cast<const char*>(data), size));
  std::string stream_error;
  shepherd::ParsedResponse parsed = shepherd::read_response(response, 1u << 20, stream_error);
  FUZZ_CHECK(stream_error.empty() || (!parsed.is_completion && !parsed.parse_error.empty()),
             "a broken stream read as an answer: %s", stream_error.c_str());

  FUZZ_CHECK(parsed.retry_after_ms >= -1 && parsed.retry_after_ms <= 86'400'000, "retry_after_ms %ld",
             parsed.retry_after_ms);
  FUZZ_CHECK(!parsed.is_completion || parsed.body.is_object(), "a completion without an object body");
  // Token counts feed the key pool's budgets (task_worker adds them): a count
  // below 2^53, or -1 (unknown).
  constexpr int64_t kMaxCount = int64_t{1} << 53;
  FUZZ_CHECK(parsed.prompt_tokens >= -1 && parsed.completion_tokens >= -1 && parsed.prompt_tokens < kMaxCount &&
                 parsed.completion_tokens < kMaxCount,
             "token counts %lld %lld",
             static_cast<long long>(parsed.prompt_tokens), static_cast<long long>(parsed.completion_tokens));
  // These reach the store and the logs as JSON text: invalid UTF-8 would make every dump throw.
  for (const std::string* field : {&parsed.content, &parsed.model, &parsed.finish_reason, &parsed.error_code,
                                   &parsed.error_message, &parsed.usage_json, &parsed.refusal}) {
    FUZZ_CHECK(shepherd::is_valid_utf8(*field), "a field is not valid UTF-8: %zu bytes", field->size());
  }
  if (!parsed.usage_json.empty()) {
    // task_worker hands usage to the suite's check(): it must parse back, within bounds.
    auto usage = shepherd::parse_json_bounded(parsed.usage_json);
    FUZZ_CHECK(usage.is_object(), "usage_json is not a JSON object: %.200s", parsed.usage_json.c_str());
  }
  if (!parsed.body.is_discarded()) {
    int top = lua_gettop(lua);
    std::string error;
    FUZZ_CHECK(shepherd::try_push_json(lua, parsed.body, error), "the parsed body does not go into Lua: %s",
               error.c_str());
    lua_settop(lua, top);
  }
  static unsigned runs = 0;
  if (++runs % 1024 == 0) lua_gc(lua, LUA_GCCOLLECT, 0);
  return 0;
}
