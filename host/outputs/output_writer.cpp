#include "outputs/output_writer.h"

#include <filesystem>
#include <unordered_map>

#include <spdlog/spdlog.h>

#include "core/error.h"
#include "core/files.h"
#include "core/text.h"
#include "lua/call_limit.h"
#include "lua/lua_call.h"
#include "lua/lua_json.h"
#include "suite/matrix.h"

namespace fs = std::filesystem;

namespace shepherd {

namespace {

// Like the suite's request() and check(): real work is allowed, a hang is not.
constexpr std::chrono::milliseconds kOutputCallBudget{10'000};
constexpr size_t kOutputCallMemory = size_t{1} << 30;

// outputs[name] is on top of the stack, its arguments pushed after it.
bool call_output(lua_State* L, const char* name, int nargs, std::string& text, std::string& error) {
  LuaFailure failure;
  bool ok = false;
  {
    CallLimit limit(L, kOutputCallBudget);
    MemoryLimit memory(L, kOutputCallMemory);
    ok = protected_call(L, nargs, 1, failure);
  }
  if (!ok) {
    error = clip_text(std::string("outputs.") + name + " raised: " + failure.describe());
    return false;
  }
  if (lua_type(L, -1) != LUA_TSTRING) {
    error = std::string("outputs.") + name + " must return a string, got " + luaL_typename(L, -1);
    return false;
  }
  size_t n = 0;
  const char* s = lua_tolstring(L, -1, &n);
  text.assign(s, n);
  lua_pop(L, 1);
  return true;
}

void push_result(lua_State* L, const OutputResult& r) {
  lua_createtable(L, 0, 6);
  lua_pushlstring(L, r.task.data(), r.task.size());
  lua_setfield(L, -2, "task");
  lua_pushlstring(L, r.content.data(), r.content.size());
  lua_setfield(L, -2, "content");
  lua_pushlstring(L, r.model.data(), r.model.size());
  lua_setfield(L, -2, "model");
  lua_pushinteger(L, r.attempts);
  lua_setfield(L, -2, "attempts");
  if (r.latency_ms >= 0) {
    lua_pushnumber(L, r.latency_ms);
    lua_setfield(L, -2, "latency_ms");
  }
  if (!r.usage_json.empty()) {
    auto usage = nlohmann::json::parse(r.usage_json, nullptr, false);
    std::string ignored;
    if (!usage.is_discarded() && try_push_json(L, usage, ignored)) lua_setfield(L, -2, "usage");
  }
}

}  // namespace

bool render_output(SuiteRuntime& runtime, uint64_t ordinal, const OutputResult& result, OutputFile& out,
                   std::string& error) {
  lua_State* L = runtime.lua();
  StackGuard guard(L);
  runtime.push_function("outputs");
  if (!lua_istable(L, -1)) {
    error = "the suite has no outputs table";
    return false;
  }
  const int outputs = lua_gettop(L);
  std::string path;
  lua_pushliteral(L, "path");
  lua_rawget(L, outputs);
  runtime.push_cell(ordinal);
  if (!call_output(L, "path", 1, path, error)) return false;
  if (path.empty() || path.find('\0') != std::string::npos || path.back() == '/') {
    error = "outputs.path returned '" + clip_text(path) + "', which is not a file name";
    return false;
  }
  lua_pushliteral(L, "write");
  lua_rawget(L, outputs);
  if (lua_isfunction(L, -1)) {
    runtime.push_cell(ordinal);
    push_result(L, result);
    if (!call_output(L, "write", 2, out.text, error)) return false;
  } else {
    lua_pop(L, 1);
    out.text = result.content;
  }
  fs::path p(path);
  out.path = (p.is_absolute() ? p : fs::path(runtime.suite().dir) / p).lexically_normal().string();
  return true;
}

void write_output(const OutputFile& file) {
  fs::path parent = fs::path(file.path).parent_path();
  std::error_code ec;
  fs::create_directories(parent, ec);
  if (ec) {
    throw Error(codes::IO_ERROR, "cannot create " + parent.string() + ": " + ec.message(), Stage::execution,
                {{"path", file.path}});
  }
  write_file_atomically(file.path, file.text);
}

OutputResult output_result_of(const ExportRow& row) {
  return OutputResult{row.task, row.content, row.model, row.usage_json, row.attempts, row.latency_ms};
}

OutputCounts write_stored_outputs(Store& store, SuiteRuntime& runtime, bool only_missing) {
  const Suite& suite = runtime.suite();
  std::unordered_map<std::string, uint64_t> ordinals;
  {
    std::vector<TaskSeed> cells = plan_cells(suite);
    ordinals.reserve(cells.size());
    for (uint64_t i = 0; i < cells.size(); ++i) ordinals.emplace(std::move(cells[i].id), i);
  }
  OutputCounts counts;
  store.export_tasks(suite.name, [&](const ExportRow& row) {
    if (row.state != TaskState::done) return;
    auto it = ordinals.find(row.task);
    if (it == ordinals.end()) return;  // no longer a cell of the suite
    OutputFile file;
    std::string error;
    if (!render_output(runtime, it->second, output_result_of(row), file, error)) {
      spdlog::error("task {} ({}): no output: {}", runtime.matrix().label(it->second), row.task.substr(0, 12), error);
      ++counts.failed;
      return;
    }
    std::error_code ec;
    if (only_missing && fs::exists(file.path, ec)) {
      ++counts.skipped;
      return;
    }
    try {
      write_output(file);
      ++counts.written;
    } catch (const std::exception& e) {
      spdlog::error("task {} ({}): {}", runtime.matrix().label(it->second), row.task.substr(0, 12), e.what());
      ++counts.failed;
    }
  });
  return counts;
}

}  // namespace shepherd
