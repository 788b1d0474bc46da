#pragma once
// `shepherd script FILE.lua [ARGS…]` and the packaged workflows (maintain,
// incomplete, …): a trusted Lua state — the whole standard library, the
// shepherd API and the workflow API (lua/api_workflow.cpp) — runs the file.
// SIGINT and SIGTERM are blocked for the script's life: shepherd.sleep and
// shepherd.stopping() (and a run the script starts) take them.
#include <string>
#include <vector>

namespace shepherd {

struct WorkflowOptions {
  std::vector<std::string> args;  // shepherd.args
  bool json = false;              // --json was given (shepherd.json_output)
};

// Runs the script file; its exit code: the number it returns, else 0.
// Throws Error: SCRIPT_NOT_FOUND, SCRIPT_SYNTAX (file, line; exit 2) and
// SCRIPT_ERROR (an uncaught runtime error, with its traceback; exit 1).
int run_workflow_file(const std::string& path, const WorkflowOptions& options);

// The same for a packaged workflow, lua/shepherd/workflows/<name>.lua.
int run_packaged_workflow(const std::string& name, const WorkflowOptions& options);

}  // namespace shepherd
