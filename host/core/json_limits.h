#pragma once
// JSON from outside (providers, files, Lua) is parsed only within bounds:
// nlohmann's parser and serializer recurse per nesting level, so a body
// nested 100,000 deep would overflow the stack. Depth is checked first by a
// scan that does not recurse.
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace shepherd {

// Deep enough for any real request or answer (tool schemas nest a dozen levels).
inline constexpr int kMaxJsonDepth = 128;

// True when the brackets of `text` (outside strings) nest no deeper than
// `max_depth`. Does not validate the JSON.
bool json_depth_within(std::string_view text, int max_depth = kMaxJsonDepth);

// Parses `text`; a discarded value when it is not JSON or nests deeper than
// `max_depth` (then `why`, when given, says which).
nlohmann::json parse_json_bounded(std::string_view text, std::string* why = nullptr,
                                  int max_depth = kMaxJsonDepth);

}  // namespace shepherd
