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
// A text cut short (a body over its size limit, a stream that stalled) may end
// inside a key: a trailing piece this long of a key's beginning is redacted too.
constexpr size_t kMinTrailingPiece = 6;

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
    // The spelled-out search below finds a printable ASCII secret in every
    // form; the exact forms are for the others (\uXXXX of a code point).
    if (std::all_of(secret.begin(), secret.end(), [](char c) { return c >= 0x20 && c < 0x7f; })) continue;
    std::string escaped = nlohmann::json(secret).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    escaped = escaped.substr(1, escaped.size() - 2);
    for (std::string form : {secret, escaped, replace_all(escaped, "/", "\\/"), escape_all(secret, false),
                             escape_all(secret, true), replace_all(escape_all(secret, false), "/", "\\/"),
                             percent_encoded(secret)}) {
      if (std::find(patterns_.begin(), patterns_.end(), form) == patterns_.end()) patterns_.push_back(std::move(form));
    }
  }
  std::sort(patterns_.begin(), patterns_.end(), [](const auto& a, const auto& b) { return a.size() > b.size(); });
  for (const auto& secret : secrets) {
    if (secret.size() < kMinSecretBytes) continue;
    secrets_.push_back(secret);
    starts_[static_cast<unsigned char>(secret[0])] = true;
  }
  std::sort(secrets_.begin(), secrets_.end(), [](const auto& a, const auto& b) { return a.size() > b.size(); });
  // Indexed by a piece's last byte, so a text that ends otherwise costs one lookup.
  for (size_t i = 0; i < secrets_.size(); ++i)
    for (size_t n = secrets_[i].size() - 1; n >= kMinTrailingPiece; --n)
      trailing_[static_cast<unsigned char>(secrets_[i][n - 1])].emplace_back(i, n);
  for (auto& pieces : trailing_)
    std::stable_sort(pieces.begin(), pieces.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  starts_[static_cast<unsigned char>('\\')] = true;
  starts_[static_cast<unsigned char>('%')] = true;
}

namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// How many bytes of text[pos…] spell the byte `want`: the byte itself, a JSON
// escape of it (\u0073 in any case of hex, \/ \" \\) or a percent escape
// (%2F, %2f); 0 when they do not. Escapes first, so that a secret holding
// '\\' or '%' still matches its escaped form.
size_t spelled(std::string_view text, size_t pos, unsigned char want) {
  const char c = text[pos];
  if (c == '\\' && pos + 1 < text.size()) {
    const char d = text[pos + 1];
    if (d == 'u' && pos + 5 < text.size() && want < 0x80) {
      int cp = 0;
      for (size_t i = pos + 2; i < pos + 6; ++i) {
        const int h = hex_value(text[i]);
        if (h < 0) { cp = -1; break; }
        cp = cp * 16 + h;
      }
      if (cp == want) return 6;
    } else if ((d == '/' || d == '"' || d == '\\') && static_cast<unsigned char>(d) == want) {
      return 2;
    }
  } else if (c == '%' && pos + 2 < text.size()) {
    const int hi = hex_value(text[pos + 1]);
    const int lo = hex_value(text[pos + 2]);
    if (hi >= 0 && lo >= 0 && hi * 16 + lo == want) return 3;
  }
  return static_cast<unsigned char>(c) == want ? 1 : 0;
}

// The end of `secret` spelled from text[pos] on, character by character in
// any mix of the forms above; npos when it is not there.
size_t spelled_end(std::string_view text, size_t pos, std::string_view secret) {
  for (unsigned char want : secret) {
    if (pos >= text.size()) return std::string_view::npos;
    const size_t n = spelled(text, pos, want);
    if (n == 0) return std::string_view::npos;
    pos += n;
  }
  return pos;
}

}  // namespace

bool Redactor::scrub(std::string& text) const {
  bool changed = false;
  // The exact forms of secrets that are not printable ASCII.
  for (const auto& p : patterns_) {
    if (text.size() < p.size()) continue;
    for (size_t at = text.find(p); at != std::string::npos; at = text.find(p, at + kReplacement.size())) {
      text.replace(at, p.size(), kReplacement);
      changed = true;
    }
  }
  // Then each character raw, \u-escaped or percent-encoded, in any mix,
  // which no list of forms covers ("\u0073k-…", every character escaped, %2f).
  if (!secrets_.empty()) {
    for (size_t pos = 0; pos < text.size(); ++pos) {
      if (!starts_[static_cast<unsigned char>(text[pos])]) continue;
      for (const auto& secret : secrets_) {
        const size_t end = spelled_end(text, pos, secret);
        if (end == std::string_view::npos) continue;
        text.replace(pos, end - pos, kReplacement);
        pos += kReplacement.size() - 1;
        changed = true;
        break;
      }
    }
  }
  if (!text.empty()) {
    for (const auto& [secret, n] : trailing_[static_cast<unsigned char>(text.back())]) {
      if (n > text.size() || text.compare(text.size() - n, n, secrets_[secret], 0, n) != 0) continue;
      text.replace(text.size() - n, n, kReplacement);
      changed = true;
      break;
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
