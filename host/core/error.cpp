#include "core/error.h"

namespace shepherd {

std::string_view to_string(Stage stage) {
  switch (stage) {
    case Stage::cli: return "cli";
    case Stage::config: return "config";
    case Stage::validation: return "validation";
    case Stage::execution: return "execution";
    case Stage::storage: return "storage";
    case Stage::policy: return "policy";
  }
  return "execution";
}

Error::Error(std::string code, std::string message, Stage stage, nlohmann::json details,
             bool retryable)
    : std::runtime_error(message),
      code_(std::move(code)),
      stage_(stage),
      details_(std::move(details)),
      retryable_(retryable) {}

nlohmann::json Error::to_json() const {
  return {{"code", code_},
          {"message", what()},
          {"stage", std::string(to_string(stage_))},
          {"details", details_.is_null() ? nlohmann::json::object() : details_}};
}

}  // namespace shepherd
