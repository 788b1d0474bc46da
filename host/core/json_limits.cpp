#include "core/json_limits.h"

namespace shepherd {

bool json_depth_within(std::string_view text, int max_depth) {
  int depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
      continue;
    }
    switch (c) {
      case '"': in_string = true; break;
      case '[':
      case '{':
        if (++depth > max_depth) return false;
        break;
      case ']':
      case '}':
        --depth;
        break;
      default: break;
    }
  }
  return true;
}

nlohmann::json parse_json_bounded(std::string_view text, std::string* why, int max_depth) {
  if (!json_depth_within(text, max_depth)) {
    if (why) *why = "JSON nested deeper than " + std::to_string(max_depth) + " levels";
    return nlohmann::json(nlohmann::json::value_t::discarded);
  }
  auto value = nlohmann::json::parse(text.begin(), text.end(), nullptr, false);
  if (value.is_discarded() && why) *why = "not valid JSON";
  return value;
}

}  // namespace shepherd
