#include "core/redactor.h"

#include <algorithm>
#include <cctype>
#include <mutex>
#include <cstdio>
#include <cstring>

#include <nlohmann/json.hpp>

namespace shepherd {

namespace {

constexpr std::string_view kReplacement = "[redacted]";
constexpr size_t kMinSecretBytes = 4;

struct Installed {
  std::mutex mutex;
  std::shared_ptr<const Redactor> redactor = std::make_shared<Redactor>(std::vector<std::string>{});
};

Installed& installed() {
  static Installed instance;
  return instance;
}

// JSON string body (no quotes) with every non-ASCII code point and every
// character outside [A-Za-z0-9] that an encoder may escape written as \uXXXX.
std::string escape_all(std::string_view s, bool upper_hex) {
  std::string out;
  // Decode UTF-8 by hand: invalid sequences are left as they are.
  for (size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    uint32_t cp = c;
    size_t n = 1;
    if (c >= 0xF0 && i + 3 < s.size()) {
      cp = ((c & 0x07u) << 18) | ((s[i + 1] & 0x3Fu) << 12) | ((s[i + 2] & 0x3Fu) << 6) | (s[i + 3] & 0x3Fu);
      n = 4;
    } else if (c >= 0xE0 && i + 2 < s.size()) {
      cp = ((c & 0x0Fu) << 12) | ((s[i + 1] & 0x3Fu) << 6) | (s[i + 2] & 0x3Fu);
      n = 3;
    } else if (c >= 0xC0 && i + 1 < s.size()) {
      cp = ((c & 0x1Fu) << 6) | (s[i + 1] & 0x3Fu);
      n = 2;
    }
    char buf[16];
    auto put = [&](uint32_t unit) {
      std::snprintf(buf, sizeof buf, upper_hex ? "\\u%04X" : "\\u%04x", unit);
      out += buf;
    };
    if (cp >= 0x10000) {
      uint32_t v = cp - 0x10000;
      put(0xD800 + (v >> 10));
      put(0xDC00 + (v & 0x3FF));
    } else if (cp >= 0x80 || c == '"' || c == '\\' || c < 0x20) {
      put(cp);
    } else {
      out += static_cast<char>(c);
    }
    i += n;
  }
  return out;
}

std::string percent_encoded(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", c);
      out += buf;
    }
  }
  return out;
}

std::string replace_all(std::string s, std::string_view from, std::string_view to) {
  for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) s.replace(at, from.size(), to);
  return s;
}

}  // namespace

Redactor::Redactor(const std::vector<std::string>& secrets) {
  for (const auto& secret : secrets) {
    if (secret.size() < kMinSecretBytes) continue;
    std::string escaped = nlohmann::json(secret).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    escaped = escaped.substr(1, escaped.size() - 2);
    for (std::string form : {secret, escaped, replace_all(escaped, "/", "\\/"), escape_all(secret, false),
                             escape_all(secret, true), replace_all(escape_all(secret, false), "/", "\\/"),
                             percent_encoded(secret)}) {
      if (std::find(patterns_.begin(), patterns_.end(), form) == patterns_.end()) patterns_.push_back(std::move(form));
    }
  }
  std::sort(patterns_.begin(), patterns_.end(), [](const auto& a, const auto& b) { return a.size() > b.size(); });
}

bool Redactor::scrub(std::string& text) const {
  bool changed = false;
  for (const auto& p : patterns_) {
    if (text.size() < p.size()) continue;
    for (size_t at = text.find(p); at != std::string::npos; at = text.find(p, at + kReplacement.size())) {
      text.replace(at, p.size(), kReplacement);
      changed = true;
    }
  }
  return changed;
}

void Redactor::install(const std::vector<std::string>& secrets) {
  auto fresh = std::make_shared<const Redactor>(secrets);
  std::lock_guard lock(installed().mutex);
  installed().redactor = std::move(fresh);
}

std::shared_ptr<const Redactor> Redactor::current() {
  std::lock_guard lock(installed().mutex);
  return installed().redactor;
}

void redact_in_place(std::string& text) {
  auto r = Redactor::current();
  if (!r->empty()) r->scrub(text);
}

std::string redacted(std::string text) {
  redact_in_place(text);
  return text;
}

}  // namespace shepherd
