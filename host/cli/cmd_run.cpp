#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "cli/commands.h"
#include "core/error.h"
#include "core/text.h"
#include "engine/progress.h"
#include "engine/run_engine.h"
#include "suite/matrix.h"
#include "suite/suite.h"
#include "suite/suite_runtime.h"
#include "suite/where.h"

namespace shepherd::cli {

std::string default_db_path(const std::string& suite_dir, const std::string& suite_name, const std::string& db_flag) {
  if (!db_flag.empty()) return std::filesystem::absolute(db_flag).lexically_normal().string();
  return (std::filesystem::path(suite_dir) / (suite_name + ".db")).string();
}

std::vector<TaskSeed> cells_in_view(const Suite& suite, const std::vector<std::string>& where) {
  return shepherd::cells_in_view(suite, Where::parse(Matrix(suite), where));
}

namespace {

// --retry-class values, each "CLASS[,CLASS…]": the classes named, in order,
// once each. An empty name (`--retry-class ''`, `a,,b`) is a usage error: a
// flag that names no class would retry nothing and say nothing. So is a name
// that begins with '-': CLI11 gives the next word to an option missing its
// value, and `--retry-class --json` would otherwise run, retrying nothing.
std::vector<std::string> retry_classes(const std::vector<std::string>& given) {
  std::vector<std::string> out;
  for (const auto& value : given) {
    size_t start = 0;
    while (true) {
      size_t comma = value.find(',', start);
      std::string name = value.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      if (name.empty() || name[0] == '-') {
        throw Error(codes::USAGE, "--retry-class needs class names, CLASS[,CLASS…], not '" + value + "'", Stage::cli,
                    {{"option", "--retry-class"}, {"value", value}});
      }
      if (std::find(out.begin(), out.end(), name) == out.end()) out.push_back(name);
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
  }
  return out;
}

}  // namespace

int cmd_run(const GlobalOptions& g, const RunArgs& a) {
  RunOptions options;
  options.retry_classes = retry_classes(a.retry_classes);
  Suite suite = load_suite(a.suite);
  options.db_path = default_db_path(suite.dir, suite.name, a.db);
  options.workers = a.workers;
  options.retry_failed = a.retry_failed;
  options.forget_exhausted = a.forget_exhausted;
  options.rerun_stale = a.rerun_stale;
  // A mistyped slice is refused before the store, its lock or a run log is touched.
  Where::parse(Matrix(suite), a.where);
  options.where = a.where;
  options.grace_ms = a.grace_ms;
  if (!a.results.empty()) options.results_path = std::filesystem::absolute(a.results).lexically_normal().string();
  options.live_progress = !a.no_progress && !g.quiet && isatty(STDERR_FILENO);
  RunReport r = run_suite(suite, options);

  const auto& c = r.counters;
  uint64_t pending = c.total - c.done - c.failed;
  // The verdict: exit code and --json status say the same thing.
  bool stopped = r.interrupted || r.models_exhausted || pending > 0;
  int exit_code = stopped ? kExitStopped : c.failed > 0 ? kExitSomeFailed : kExitOk;
  const char* verdict = stopped ? "stopped" : c.failed > 0 ? "failed" : "ok";
  if (g.json) {
    nlohmann::json out = {{"status", verdict},
                          {"exit_code", exit_code},
                          {"suite", suite.name},
                          {"run", r.run_id},
                          {"total", c.total},
                          {"done", c.done},
                          {"failed", c.failed},
                          {"pending", pending},
                          {"finished_this_run", c.done_now},
                          {"stale", r.stale},
                          {"stale_rerun", r.stale_rerun},
                          {"seconds", r.seconds},
                          {"turns_sent", r.turns_sent},
                          {"turns_replayed", r.turns_replayed},
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
    if (suite.has_task)
      std::fprintf(stderr, "conversations: %llu turns sent, %llu answered from the store\n",
                   static_cast<unsigned long long>(r.turns_sent), static_cast<unsigned long long>(r.turns_replayed));
    if (r.stale > 0)
      std::fprintf(stderr, "%llu done tasks are stale (kept): `run --rerun-stale` sends them again\n",
                   static_cast<unsigned long long>(r.stale));
    if (r.interrupted) std::fprintf(stderr, "stopped by a signal: run again to continue\n");
    if (r.models_exhausted) std::fprintf(stderr, "stopped: every model is exhausted; unfinished tasks stay pending\n");
    if (exit_code == kExitSomeFailed)
      std::fprintf(stderr,
                   "%llu tasks failed: see `shepherd status`; `run --retry-failed` sends them again, "
                   "`run --retry-class CLASS` those of a class\n",
                   static_cast<unsigned long long>(c.failed));
    std::fprintf(stderr, "store %s\nlog   %s\n", r.db_path.c_str(), r.log_path.c_str());
  }
  return exit_code;
}

}  // namespace shepherd::cli
