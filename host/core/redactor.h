#pragma once
// Secrets never leave the process: every text on its way to the store, a
// log, an export, an output file or an error message passes through the
// redactor, which replaces each API key's value -- raw, JSON-escaped (as
// nlohmann, Python's ensure_ascii and escaped-slash encoders write it) and
// percent-encoded -- by "[redacted]".
//
// One per process, set once when a run knows its keys, read by every thread
// (the log sink, the store writer, the error printer): hence a process-wide
// instance rather than one threaded through every call.
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace shepherd {

class Redactor {
 public:
  explicit Redactor(const std::vector<std::string>& secrets);

  // True when `text` was changed.
  bool scrub(std::string& text) const;
  bool empty() const { return patterns_.empty(); }

  // The process's redactor; install() replaces it (secrets shorter than 4
  // bytes are ignored: they would redact ordinary words).
  static void install(const std::vector<std::string>& secrets);
  static std::shared_ptr<const Redactor> current();

 private:
  std::vector<std::string> patterns_;  // longest first, so a longer form wins
};

// The process's redactor applied to `text` (a copy for convenience).
std::string redacted(std::string text);
void redact_in_place(std::string& text);

}  // namespace shepherd
