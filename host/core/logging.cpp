#include "core/logging.h"

#include <pthread.h>
#include <unistd.h>

#include <ctime>
#include <algorithm>
#include <filesystem>

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "core/process.h"
#include "core/redactor.h"

namespace shepherd {

namespace {

// Every line passes the redactor before any sink writes it: a key's value in
// a message (a provider echo, a policy's shepherd.log text) never reaches a log.
class RedactingSink : public spdlog::sinks::sink {
 public:
  explicit RedactingSink(std::shared_ptr<spdlog::sinks::sink> inner) : inner_(std::move(inner)) {}

  void log(const spdlog::details::log_msg& msg) override {
    std::string text(msg.payload.data(), msg.payload.size());
    redact_in_place(text);
    spdlog::details::log_msg copy = msg;
    copy.payload = spdlog::string_view_t(text.data(), text.size());
    inner_->log(copy);
  }
  void flush() override { inner_->flush(); }
  void set_pattern(const std::string& pattern) override { inner_->set_pattern(pattern); }
  void set_formatter(std::unique_ptr<spdlog::formatter> formatter) override {
    inner_->set_formatter(std::move(formatter));
  }

 private:
  std::shared_ptr<spdlog::sinks::sink> inner_;
};

std::shared_ptr<spdlog::sinks::sink> redacting(std::shared_ptr<spdlog::sinks::sink> inner) {
  auto sink = std::make_shared<RedactingSink>(inner);
  sink->set_level(inner->level());
  return sink;
}

}  // namespace

void init_logging(bool verbose, bool quiet) {
  auto console = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  console->set_level(verbose ? spdlog::level::debug : quiet ? spdlog::level::err : spdlog::level::warn);
  console->set_pattern("%^%l%$: %v");
  auto logger = std::make_shared<spdlog::logger>("shepherd", redacting(console));
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
  // One run log at a time: a workflow that runs several slices writes each
  // run's lines to that run's file only.
  static std::shared_ptr<spdlog::sinks::sink> current;
  auto& sinks = spdlog::default_logger()->sinks();
  if (current) sinks.erase(std::remove(sinks.begin(), sinks.end(), current), sinks.end());
  current = redacting(file);
  sinks.push_back(current);
  // spdlog flushes from a thread of its own, which inherits this thread's
  // mask. It must never take SIGINT or SIGTERM: only the run's loop handles
  // them, and a signal delivered to this thread (whenever the loop is not
  // waiting, e.g. a second Ctrl-C right after the first) would end the
  // process with the default action.
  sigset_t termination = termination_signals();
  sigset_t before;
  pthread_sigmask(SIG_BLOCK, &termination, &before);
  spdlog::flush_every(std::chrono::seconds(1));
  pthread_sigmask(SIG_SETMASK, &before, nullptr);
  return path;
}

}  // namespace shepherd
