#include "cli/commands.h"
#include "workflow/workflow_script.h"

namespace shepherd::cli {

int cmd_script(const GlobalOptions& g, const ScriptArgs& a) {
  WorkflowOptions options;
  options.args = a.args;
  options.json = g.json;
  return run_workflow_file(a.file, options);
}

int cmd_packaged(const GlobalOptions& g, const std::string& name, const PackagedArgs& a) {
  // The packaged workflows read --name=value options (lua/shepherd/args.lua).
  WorkflowOptions options;
  options.json = g.json;
  options.args.push_back(a.suite);
  if (!a.db.empty()) options.args.push_back("--db=" + a.db);
  if (!a.by.empty()) options.args.push_back("--by=" + a.by);
  for (const auto& w : a.where) options.args.push_back("--where=" + w);
  if (a.dry_run) options.args.push_back("--dry-run");
  if (!a.completion_threshold.empty()) options.args.push_back("--completion-threshold=" + a.completion_threshold);
  if (!a.failure_threshold.empty()) options.args.push_back("--failure-threshold=" + a.failure_threshold);
  if (!a.script.empty()) options.args.push_back("--script=" + a.script);
  if (!a.every.empty()) options.args.push_back("--every=" + a.every);
  if (a.rounds > 0) options.args.push_back("--rounds=" + std::to_string(a.rounds));
  if (a.maintain) options.args.push_back("--maintain");
  if (a.probe) options.args.push_back("--probe");
  if (g.json) options.args.push_back("--json");
  return run_packaged_workflow(name, options);
}

}  // namespace shepherd::cli
