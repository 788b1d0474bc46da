#pragma once
// One function per subcommand; each returns the process exit code.
#include <string>
#include <vector>

#include "engine/run_engine.h"

namespace shepherd::cli {

// Exit codes: documented in the README.
enum ExitCode : int {
  kExitOk = 0,         // every task done
  kExitInternal = 1,   // runtime failure (store, internal error)
  kExitUsage = 2,      // usage, configuration or suite error
  kExitStopped = kExitStoppedEarly,  // 3: stopped early: interrupted, budget, models exhausted
  kExitSomeFailed = 4, // every task reached a final state, but some failed
};

struct GlobalOptions {
  bool json = false;
  bool verbose = false;
  bool quiet = false;
};

struct RunArgs {
  std::string suite;
  std::string db;
  int workers = 1;
  bool retry_failed = false;
  std::vector<std::string> retry_classes;  // --retry-class CLASS[,CLASS…], repeatable
  bool rerun_stale = false;
  bool forget_exhausted = false;
  long grace_ms = 5000;
  bool no_progress = false;
  std::vector<std::string> where;  // dim=value[,value…], repeatable
  std::string results;  // --results FILE.jsonl: a line per finished task, appended
};
int cmd_run(const GlobalOptions& g, const RunArgs& a);

struct StatusArgs {
  std::string suite;
  std::string db;
  std::string by;  // "dim[,dim…]"
  std::vector<std::string> where;
};
int cmd_status(const GlobalOptions& g, const StatusArgs& a);

struct ExportArgs {
  std::string suite;
  std::string db;
  std::string format;  // jsonl | csv | openai-batch | files
  std::string out;     // empty: stdout
  bool transcripts = false;  // each conversation's messages too
  std::vector<std::string> where;
};
int cmd_export(const GlobalOptions& g, const ExportArgs& a);

struct ScriptArgs {
  std::string file;
  std::vector<std::string> args;  // shepherd.args
};
int cmd_script(const GlobalOptions& g, const ScriptArgs& a);

// The options every packaged maintenance workflow takes.
struct PackagedArgs {
  std::string suite;
  std::string db;
  std::string by;
  std::vector<std::string> where;
  bool dry_run = false;
  std::string completion_threshold;
  std::string failure_threshold;
  std::string script;  // retest: the shell script to write
  std::string every;   // monitor: the interval (30s, 15m, 1h)
  int rounds = 0;      // monitor: stop after this many rounds; 0: until a signal
  bool maintain = false;  // monitor: a maintenance round each time
  bool probe = false;     // doctor: one minimal request per (key, model)
};
// Runs lua/shepherd/workflows/<name>.lua as `shepherd script` would.
int cmd_packaged(const GlobalOptions& g, const std::string& name, const PackagedArgs& a);

// The cells status and export describe: the suite as it is now (with the
// hashes of the requests it builds now), only the --where slice.
std::vector<TaskSeed> cells_in_view(const Suite& suite, const std::vector<std::string>& where);

struct MockArgs {
  int port = 8089;
  std::string scenario;
};
int cmd_mock(const GlobalOptions& g, const MockArgs& a);

// The store of a suite: --db, else <suite dir>/<name>.db.
std::string default_db_path(const std::string& suite_dir, const std::string& suite_name, const std::string& db_flag);

}  // namespace shepherd::cli
