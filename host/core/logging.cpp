#include "core/logging.h"

#include <unistd.h>

#include <ctime>
#include <filesystem>

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

namespace shepherd {

void init_logging(bool verbose, bool quiet) {
  auto console = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  console->set_level(verbose ? spdlog::level::debug : quiet ? spdlog::level::err : spdlog::level::warn);
  console->set_pattern("%^%l%$: %v");
  auto logger = std::make_shared<spdlog::logger>("shepherd", console);
  logger->set_level(spdlog::level::debug);
  logger->flush_on(spdlog::level::warn);
  spdlog::set_default_logger(logger);
  spdlog::set_error_handler([](const std::string&) {});  // never throw into callers
}

std::string open_run_log(const std::string& dir, const std::string& suite, long long run_id) {
  std::filesystem::create_directories(dir);
  char stamp[32];
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tm);
  std::string path = dir + "/" + suite + "-" + stamp + "-run" + std::to_string(run_id) + ".log";
  // truncate=false: even a clash of name would append, never overwrite.
  auto file = std::make_shared<spdlog::sinks::basic_file_sink_mt>(path, false);
  file->set_level(spdlog::level::info);
  file->set_pattern("%Y-%m-%dT%H:%M:%S.%e %l %v");
  spdlog::default_logger()->sinks().push_back(file);
  spdlog::flush_every(std::chrono::seconds(1));
  return path;
}

}  // namespace shepherd
