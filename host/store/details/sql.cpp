#include "store/details/sql.h"

#include <sqlite3.h>

namespace shepherd::details {

Error storage_error(const char* code, const std::string& path, std::string_view operation,
                    const std::exception& cause) {
  nlohmann::json details = {{"path", path}};
  bool retryable = false;
  if (const auto* sqlite = dynamic_cast<const SQLite::Exception*>(&cause)) {
    details["sqlite_code"] = sqlite->getExtendedErrorCode();
    // Another process holding the database past busy_timeout is transient.
    const int primary = sqlite->getErrorCode();
    retryable = primary == SQLITE_BUSY || primary == SQLITE_LOCKED;
  }
  return Error(code, "store " + path + ": " + std::string(operation) + " failed: " + cause.what(),
               Stage::storage, std::move(details), retryable);
}

}  // namespace shepherd::details
