#pragma once
// Secrets never leave the process: every text on its way to the store, a
// log, an export, an output file or an error message passes through the
// redactor, which replaces each API key's value by "[redacted]": raw,
// JSON-escaped (as nlohmann, Python's ensure_ascii and escaped-slash encoders
// write it, or any character as \uXXXX, as a provider may), percent-encoded
// (either case of hex), any mix of those, and a key's beginning that ends a
// text cut short.
//
// One per process, set once when a run knows its keys, read by every thread
// (the log sink, the store writer, the error printer): hence a process-wide
// instance rather than one threaded through every call.
#include <array>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace shepherd {

class Redactor {
 public:
  explicit Redactor(const std::vector<std::string>& secrets);

  // True when `text` was changed.
  bool scrub(std::string& text) const;
  bool empty() const { return secrets_.empty(); }

  // The process's redactor; install() replaces it (secrets shorter than 4
  // bytes are ignored: they would redact ordinary words).
  static void install(const std::vector<std::string>& secrets);
  static std::shared_ptr<const Redactor> current();

 private:
  std::vector<std::string> patterns_;  // exact forms, longest first, so a longer form wins
  std::vector<std::string> secrets_;   // the values, longest first
  std::array<bool, 256> starts_{};     // bytes that may begin a spelled secret
  // By last byte: (secret, length) of the key beginnings a cut text may end
  // with, longest first.
  std::array<std::vector<std::pair<size_t, size_t>>, 256> trailing_;
};

// The process's redactor applied to `text` (a copy for convenience).
std::string redacted(std::string text);
void redact_in_place(std::string& text);

}  // namespace shepherd
