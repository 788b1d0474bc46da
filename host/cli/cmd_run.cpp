#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <iostream>

#include "cli/commands.h"
#include "core/text.h"
#include "engine/progress.h"
#include "engine/run_engine.h"
#include "suite/suite.h"

namespace shepherd::cli {

std::string default_db_path(const std::string& suite_dir, const std::string& suite_name, const std::string& db_flag) {
  if (!db_flag.empty()) return std::filesystem::absolute(db_flag).lexically_normal().string();
  return (std::filesystem::path(suite_dir) / (suite_name + ".db")).string();
}

int cmd_run(const GlobalOptions& g, const RunArgs& a) {
  Suite suite = load_suite(a.suite);
  RunOptions options;
  options.db_path = default_db_path(suite.dir, suite.name, a.db);
  options.workers = a.workers;
  options.retry_failed = a.retry_failed;
  options.grace_ms = a.grace_ms;
  options.live_progress = !a.no_progress && !g.quiet && isatty(STDERR_FILENO);
  RunReport r = run_suite(suite, options);

  const auto& c = r.counters;
  uint64_t pending = c.total - c.done - c.failed;
  bool stopped = r.interrupted || r.models_exhausted || pending > 0;
  if (g.json) {
    nlohmann::json out = {{"status", stopped ? "stopped" : "ok"},
                          {"suite", suite.name},
                          {"run", r.run_id},
                          {"total", c.total},
                          {"done", c.done},
                          {"failed", c.failed},
                          {"pending", pending},
                          {"finished_this_run", c.done_now},
                          {"seconds", r.seconds},
                          {"interrupted", r.interrupted},
                          {"models_exhausted", r.models_exhausted},
                          {"store", r.db_path},
                          {"log", r.log_path}};
    std::cout << safe_dump(out) << std::endl;
  } else if (!g.quiet) {
    double rate = r.seconds > 0 ? static_cast<double>(c.done_now) / r.seconds : 0;
    std::fprintf(stderr, "%s: %llu tasks: %llu done, %llu failed, %llu pending; %llu finished in %.2f s (%.0f tasks/s)\n",
                 suite.name.c_str(), static_cast<unsigned long long>(c.total), static_cast<unsigned long long>(c.done),
                 static_cast<unsigned long long>(c.failed), static_cast<unsigned long long>(pending),
                 static_cast<unsigned long long>(c.done_now), r.seconds, rate);
    if (r.interrupted) std::fprintf(stderr, "stopped by a signal: run again to continue\n");
    if (r.models_exhausted) std::fprintf(stderr, "stopped: every model is exhausted; unfinished tasks stay pending\n");
    std::fprintf(stderr, "store %s\nlog   %s\n", r.db_path.c_str(), r.log_path.c_str());
  }
  return stopped ? kExitStopped : kExitOk;
}

}  // namespace shepherd::cli
