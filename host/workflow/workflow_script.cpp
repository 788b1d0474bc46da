#include "workflow/workflow_script.h"

#include <signal.h>

#include <filesystem>

#include "core/error.h"
#include "core/process.h"
#include "core/resources.h"
#include "core/text.h"
#include "lua/api.h"
#include "lua/api_workflow.h"
#include "lua/lua_call.h"
#include "lua/sandbox.h"

namespace shepherd {

namespace fs = std::filesystem;

namespace {

int run_chunk(const std::string& text, const std::string& chunk_name, const std::string& dir,
              const WorkflowOptions& options) {
  // Taken by shepherd.sleep, shepherd.stopping() and runs, never by default
  // action: a workflow stops between its steps, its store intact.
  sigset_t signals = termination_signals();
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  LuaState L;
  register_shepherd_api(L);
  install_packaged_loader(L);
  lua_getglobal(L, "package");
  lua_pushstring(L, (dir + "/?.lua;" + dir + "/?/init.lua").c_str());
  lua_setfield(L, -2, "path");
  lua_pop(L, 1);
  register_workflow_api(L, options.args, options.json);

  LuaFailure failure;
  if (!load_chunk(L, text, chunk_name, failure)) {
    throw Error(codes::SCRIPT_SYNTAX, failure.describe(), Stage::config,
                {{"file", failure.file.empty() ? chunk_name : failure.file}, {"line", failure.line}});
  }
  if (!protected_call(L, 0, 1, failure)) {
    // The traceback starts with the message itself.
    throw Error(codes::SCRIPT_ERROR, failure.traceback.empty() ? failure.describe() : failure.traceback,
                Stage::execution,
                {{"file", failure.file}, {"line", failure.line}});
  }
  int code = lua_isnumber(L, -1) ? static_cast<int>(lua_tointeger(L, -1)) : 0;
  return code < 0 || code > 255 ? 1 : code;
}

}  // namespace

int run_workflow_file(const std::string& path, const WorkflowOptions& options) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) {
    throw Error(codes::SCRIPT_NOT_FOUND, "workflow script not found: " + path, Stage::config, {{"file", path}});
  }
  std::string full = fs::absolute(path).lexically_normal().string();
  return run_chunk(read_file(full), full, fs::path(full).parent_path().string(), options);
}

int run_packaged_workflow(const std::string& name, const WorkflowOptions& options) {
  Resource r = load_resource("lua/shepherd/workflows/" + name + ".lua");
  return run_chunk(r.content, r.name, fs::path(r.name).parent_path().string(), options);
}

}  // namespace shepherd
