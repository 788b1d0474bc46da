#pragma once
// Small text helpers shared by the components.
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace shepherd {

bool is_valid_utf8(std::string_view s);

// JSON text that never throws: invalid UTF-8 from user code or a provider
// becomes U+FFFD instead of aborting the caller.
std::string safe_dump(const nlohmann::json& j);

std::string_view trim(std::string_view s);

}  // namespace shepherd
