// shepherd: run large batches of LLM API requests and keep them healthy.
#include <signal.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <ctime>
#include <iostream>

#include <spdlog/spdlog.h>

#include "cli/commands.h"
#include "core/text.h"
#include "core/error.h"
#include "core/logging.h"
#include "core/redactor.h"

using namespace shepherd;
using namespace shepherd::cli;

namespace {

int exit_code_for(const Error& e) {
  switch (e.stage()) {
    case Stage::cli:
    case Stage::config:
    case Stage::validation:
    case Stage::policy: return kExitUsage;
    case Stage::execution:
    case Stage::storage: return kExitInternal;
  }
  return kExitInternal;
}

std::string iso_now() {
  char buf[32];
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

int report(const GlobalOptions& g, const Error& e) {
  const int exit_code = exit_code_for(e);
  // An error may quote what a provider or a policy said: redacted like a log line.
  if (g.json) {
    // The same verdict as the process's exit status, as `run --json` gives it.
    nlohmann::json out = {
        {"status", "error"}, {"exit_code", exit_code}, {"error", e.to_json()}, {"timestamp", iso_now()}};
    std::cout << redacted(safe_dump(out)) << std::endl;
  } else {
    std::fprintf(stderr, "shepherd: error %s: %s\n", e.code().c_str(), redacted(e.what()).c_str());
  }
  return exit_code;
}

}  // namespace

int main(int argc, char** argv) {
  // First of all: SIGHUP asks `run` for a policy reload and must never end the
  // process, not even while it starts or after its loop has finished (then it
  // simply stays pending). Threads started later inherit the mask.
  sigset_t hangup;
  sigemptyset(&hangup);
  sigaddset(&hangup, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &hangup, nullptr);

  CLI::App app{"shepherd: run large batches of LLM API requests, durably and concurrently"};
  app.require_subcommand(1);
  app.set_version_flag("--version", SHEPHERD_VERSION_STRING);
  GlobalOptions g;
  app.add_flag("--json", g.json, "Print results and errors as JSON on stdout")->configurable(false);
  app.add_flag("-v,--verbose", g.verbose, "Log every attempt on stderr");
  app.add_flag("-q,--quiet", g.quiet, "Only errors on stderr");
  app.fallthrough();

  RunArgs run;
  auto* run_cmd = app.add_subcommand("run", "Run every task of SUITE not yet done (resumes by default)");
  run_cmd->add_option("suite", run.suite, "Suite file (Lua)")->required();
  run_cmd->add_option("--db", run.db, "Store path (default: <suite name>.db beside the suite)");
  run_cmd->add_option("--workers", run.workers, "Worker threads with a Lua state each")->check(CLI::Range(1, 64));
  auto* retry_failed =
      run_cmd->add_flag("--retry-failed", run.retry_failed, "Send failed tasks (of the slice) back to pending first");
  run_cmd
      ->add_option("--retry-class", run.retry_classes,
                   "Send back to pending first only the failed tasks (of the slice) whose last class is one of "
                   "CLASS[,CLASS…] (repeatable); the others stay failed")
      ->type_name("CLASS[,CLASS…]")
      ->allow_extra_args(false)  // one value per --retry-class: `--retry-class a b` is a usage error, not two classes
      ->excludes(retry_failed);
  run_cmd->add_flag("--forget-exhausted", run.forget_exhausted,
                    "Send to models whose quota ran out in an earlier run (their quota is back before its reset time)");
  run_cmd->add_flag("--rerun-stale", run.rerun_stale,
                    "Send done tasks again whose suite now builds a different request (old answers stay in history)");
  run_cmd->add_option("--grace-ms", run.grace_ms, "After SIGINT/SIGTERM, how long in-flight requests may finish")
      ->check(CLI::Range(0L, 3'600'000L));
  run_cmd->add_flag("--no-progress", run.no_progress, "No live progress line");
  const char* where_help = "Only this slice: DIM=VALUE[,VALUE…] (repeatable; globs allowed, e.g. prompt_type='flawed_*')";
  run_cmd->add_option("--where", run.where, where_help);
  run_cmd->add_option("--results", run.results,
                      "Append one JSON line per finished task to FILE as it finishes (the export's fields)")
      ->type_name("FILE.jsonl");

  StatusArgs status;
  auto* status_cmd = app.add_subcommand("status", "Completion and failures per group");
  status_cmd->add_option("suite", status.suite, "Suite file (Lua)")->required();
  status_cmd->add_option("--db", status.db, "Store path");
  status_cmd->add_option("--by", status.by, "Group by these dimensions: DIM[,DIM…]");
  status_cmd->add_option("--where", status.where, where_help);

  ExportArgs exp;
  auto* export_cmd = app.add_subcommand("export", "One record per task, as JSON lines or CSV");
  export_cmd->add_option("suite", exp.suite, "Suite file (Lua)")->required();
  export_cmd->add_option("--db", exp.db, "Store path");
  export_cmd
      ->add_option("--format", exp.format,
                   "jsonl, csv, openai-batch (Batch API output lines) or files (every done task's outputs file again)")
      ->required()
      ->check(CLI::IsMember({"jsonl", "csv", "openai-batch", "files"}));
  export_cmd->add_option("--out", exp.out, "Output file (default: stdout)");
  export_cmd->add_option("--where", exp.where, where_help);
  export_cmd->add_flag("--transcripts", exp.transcripts,
                       "Add each conversation's messages (task suites): the last request's and the last answer");

  ScriptArgs script;
  auto* script_cmd = app.add_subcommand("script", "Run a workflow script (trusted Lua with the workflow API)");
  script_cmd->add_option("file", script.file, "Workflow file (Lua)")->required();
  script_cmd->add_option("args", script.args, "Arguments for the script (shepherd.args)");
  script_cmd->prefix_command();  // everything after FILE belongs to the script

  // Every packaged workflow takes the suite, --db and (when it selects) --where.
  auto packaged = [&](const char* name, const char* help, PackagedArgs& a, bool selects) {
    auto* cmd = app.add_subcommand(name, help);
    cmd->add_option("suite", a.suite, "Suite file (Lua)")->required();
    cmd->add_option("--db", a.db, "Store path");
    if (selects) cmd->add_option("--where", a.where, where_help);
    return cmd;
  };

  PackagedArgs incomplete;
  auto* incomplete_cmd = packaged("incomplete", "Every task not done (a packaged workflow)", incomplete, true);
  incomplete_cmd->add_option("--by", incomplete.by, "Count per group of these dimensions: DIM[,DIM…]");

  PackagedArgs maintain;
  auto* maintain_cmd = packaged(
      "maintain", "Analyse groups, select re-tests by the retest policy, run them, write a report (a packaged workflow)",
      maintain, true);
  maintain_cmd->add_flag("--dry-run", maintain.dry_run, "Analyse and select only: send nothing, change nothing");
  maintain_cmd->add_option("--completion-threshold", maintain.completion_threshold,
                           "Re-test groups completed below this rate (0..1; default: the suite's maintain)");
  maintain_cmd->add_option("--failure-threshold", maintain.failure_threshold,
                           "Re-test groups failing above this rate (0..1)");

  PackagedArgs retest;
  auto* retest_cmd = packaged(
      "retest", "Write a shell script that re-tests the selected groups (a packaged workflow)", retest, true);
  retest_cmd->add_option("--script", retest.script, "The script to write")->required();
  retest_cmd->add_option("--completion-threshold", retest.completion_threshold, "As for maintain");
  retest_cmd->add_option("--failure-threshold", retest.failure_threshold, "As for maintain");

  PackagedArgs monitor;
  auto* monitor_cmd = packaged(
      "monitor", "Every interval: status, error statistics and trends, optionally maintain; a report per round",
      monitor, true);
  monitor_cmd->add_option("--every", monitor.every, "Interval: 30s, 15m, 1h (default 1h)");
  monitor_cmd->add_option("--rounds", monitor.rounds, "Stop after this many rounds (default: until SIGINT/SIGTERM)")
      ->check(CLI::Range(1, 1'000'000));
  monitor_cmd->add_flag("--maintain", monitor.maintain, "A maintenance round (as `maintain`) each time");

  PackagedArgs doctor;
  auto* doctor_cmd = packaged(
      "doctor", "Health check: suite, policies and selftests, key variables, store, disk, logs (a packaged workflow)",
      doctor, false);
  doctor_cmd->add_flag("--probe", doctor.probe,
                       "Also send one minimal request (max_tokens 1) per (key, model): costs tokens");

  MockArgs mock;
  auto* mock_cmd = app.add_subcommand("mock", "Serve the built-in OpenAI-compatible mock provider on 127.0.0.1");
  mock_cmd->add_option("--port", mock.port, "Port (0: any free port)")->check(CLI::Range(0, 65535));
  mock_cmd->add_option("--scenario", mock.scenario, "Scenario file (.json or .lua)");

  for (auto* sub : {run_cmd, status_cmd, export_cmd, mock_cmd, incomplete_cmd, maintain_cmd, retest_cmd, monitor_cmd,
                    doctor_cmd}) {
    sub->add_flag("--json", g.json, "Print results and errors as JSON on stdout");
  }

  // `shepherd [FLAGS] script FILE ARGS…`: what follows FILE is the script's,
  // word for word. Left to CLI11, --json and -v went to shepherd and any
  // other dashed word (--where=…, as lua/shepherd/args.lua reads them) was a
  // usage error; so the script's words are set aside before parsing.
  std::vector<std::string> script_words;
  {
    int i = 1;
    while (i < argc && argv[i][0] == '-') ++i;  // shepherd's own flags; none takes a value
    if (i < argc && std::string_view(argv[i]) == "script") {
      int file = i + 1;
      while (file < argc && argv[file][0] == '-') ++file;  // script --help
      if (file < argc) {
        script_words.assign(argv + file + 1, argv + argc);
        argc = file + 1;
      }
    }
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return report(g, Error(codes::USAGE, e.what(), Stage::cli));
  }

  init_logging(g.verbose, g.quiet);
  try {
    if (*run_cmd) return cmd_run(g, run);
    if (*status_cmd) return cmd_status(g, status);
    if (*export_cmd) return cmd_export(g, exp);
    if (*mock_cmd) return cmd_mock(g, mock);
    if (*script_cmd) {
      script.args = script_words;
      return cmd_script(g, script);
    }
    if (*incomplete_cmd) return cmd_packaged(g, "incomplete", incomplete);
    if (*maintain_cmd) return cmd_packaged(g, "maintain", maintain);
    if (*retest_cmd) return cmd_packaged(g, "retest", retest);
    if (*monitor_cmd) return cmd_packaged(g, "monitor", monitor);
    if (*doctor_cmd) return cmd_packaged(g, "doctor", doctor);
  } catch (const Error& e) {
    return report(g, e);
  } catch (const std::exception& e) {
    return report(g, Error(codes::INTERNAL, e.what(), Stage::execution));
  }
  return kExitInternal;
}
