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

// Texts from user code and providers (error messages, check reasons, class
// names) are stored and logged: none may be arbitrarily large.
inline constexpr size_t kMaxMessageBytes = 4096;

// `s` cut to at most `max_bytes` (never inside a UTF-8 sequence), with a note
// of how much was cut. A text that is cut is redacted first (core/redactor.h),
// so the cut never leaves a piece of a key behind.
std::string clip_text(std::string_view s, size_t max_bytes = kMaxMessageBytes);

}  // namespace shepherd
