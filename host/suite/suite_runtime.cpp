#include "suite/suite_runtime.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"
#include "core/hash.h"
#include "core/text.h"
#include "inputs/record_reader.h"
#include "lua/api.h"
#include "lua/api_llm.h"
#include "lua/call_limit.h"
#include "lua/lua_call.h"
#include "lua/lua_json.h"

namespace shepherd {

namespace {

// The suite's own request() and check() may do real work (read a file, score
// an answer), but one stuck forever must not hold a worker forever.
constexpr std::chrono::milliseconds kSuiteCallBudget{10'000};
constexpr size_t kSuiteCallMemory = size_t{1} << 30;

}  // namespace

SuiteRuntime::SuiteRuntime(const Suite& suite, const Matrix& matrix) : suite_(suite), matrix_(matrix) {
  register_shepherd_api(lua_);
  push_suite_table(lua_, suite.path, suite.dir, suite.source);
  suite_ref_ = luaL_ref(lua_, LUA_REGISTRYINDEX);
  verify_matrix();
}

SuiteRuntime::~SuiteRuntime() { luaL_unref(lua_, LUA_REGISTRYINDEX, suite_ref_); }

void SuiteRuntime::push_function(const char* name) {
  // Raw access: a suite table with a raising __index must not reach the host.
  lua_rawgeti(lua_, LUA_REGISTRYINDEX, suite_ref_);
  lua_pushstring(lua_, name);
  lua_rawget(lua_, -2);
  lua_remove(lua_, -2);
}

void SuiteRuntime::verify_matrix() {
  // Cells are read from this state's own copy of the matrix by index: it must
  // be the very matrix the tasks were planned from.
  if (!suite_.batch_file.empty()) return;  // no matrix in Lua: the host read the file once
  StackGuard guard(lua_);
  push_function("matrix");
  for (const auto& dim : matrix_.dims()) {
    lua_pushlstring(lua_, dim.name.data(), dim.name.size());
    lua_rawget(lua_, -2);
    nlohmann::json values;
    std::string error;
    bool same = false;
    if (!dim.input.empty()) {
      // Read by the host once: the same descriptor is the same matrix.
      same = input_descriptor(lua_, lua_gettop(lua_), values) && values.dump() == dim.input;
    } else {
      same = lua_istable(lua_, -1) && try_to_json(lua_, lua_gettop(lua_), values, error) && values.is_array() &&
             values.size() == dim.values.size() && std::equal(dim.values.begin(), dim.values.end(), values.begin());
    }
    if (!same) {
      throw Error(codes::SUITE_INVALID,
                  suite_.path + ": matrix." + dim.name +
                      " differs between two loads of the suite (is it built from random numbers, the time or pairs() order?)",
                  Stage::config, {{"file", suite_.path}, {"field", "matrix." + dim.name}});
    }
    lua_pop(lua_, 1);
  }
}

void SuiteRuntime::push_cell(uint64_t ordinal) {
  // The cell's values come from this state's own copy of the matrix, so
  // table values reach request() as tables.
  const auto& dims = matrix_.dims();
  auto idx = matrix_.value_indices(ordinal);
  lua_createtable(lua_, 0, static_cast<int>(dims.size()));
  push_function("matrix");
  for (size_t i = 0; i < dims.size(); ++i) {
    if (!dims[i].input.empty()) {
      // Records the host read: this cell's one record becomes a table now.
      push_json(lua_, dims[i].values[idx[i]]);
      lua_setfield(lua_, -3, dims[i].name.c_str());
      continue;
    }
    lua_pushlstring(lua_, dims[i].name.data(), dims[i].name.size());
    lua_rawget(lua_, -2);
    lua_rawgeti(lua_, -1, static_cast<int>(idx[i]) + 1);
    lua_setfield(lua_, -4, dims[i].name.c_str());
    lua_pop(lua_, 1);
  }
  lua_pop(lua_, 1);
}

std::string SuiteRuntime::first_model(uint64_t ordinal) const {
  if (!suite_.model_is_dimension) return suite_.models.empty() ? std::string() : suite_.models.front();
  if (!suite_.batch_file.empty()) return suite_.models[static_cast<size_t>(suite_.batch_models[ordinal])];
  const auto& dims = matrix_.dims();
  auto idx = matrix_.value_indices(ordinal);
  for (size_t d = 0; d < dims.size(); ++d)
    if (dims[d].name == "model") return dims[d].values[idx[d]].get<std::string>();
  return {};
}

bool SuiteRuntime::first_turn_body(uint64_t ordinal, nlohmann::json& body, std::string& error) {
  StackGuard guard(lua_);
  lua_State* co = lua_newthread(lua_);  // anchored on the stack until the guard pops it
  push_function("task");
  push_cell(ordinal);
  push_llm(lua_, co, LlmInit{task_id_for(suite_.name, matrix_, ordinal), 1, first_model(ordinal)});
  lua_xmove(lua_, co, 3);
  int status = 0;
  {
    CallLimit limit(lua_, kSuiteCallBudget);
    MemoryLimit memory(lua_, kSuiteCallMemory);
    status = lua_resume(co, 2);
  }
  if (status == LUA_YIELD && is_chat_yield(co, lua_gettop(co))) {
    if (!try_to_json(co, lua_gettop(co), body, error, "llm:chat body") || !body.is_object()) {
      error = clip_text("task(cell, llm): the first llm:chat body is not a JSON object" +
                        (error.empty() ? std::string() : ": " + error));
      return false;
    }
    return true;
  }
  if (status == 0 || status == LUA_YIELD) {
    error = "task(cell, llm) ended before its first llm:chat";
  } else {
    const char* msg = lua_tostring(co, -1);
    error = clip_text(std::string("task(cell, llm) raised: ") + (msg ? msg : "(an error object)"));
  }
  return false;
}

bool SuiteRuntime::request_body(uint64_t ordinal, nlohmann::json& body, std::string& error) {
  if (suite_.has_task) return first_turn_body(ordinal, body, error);
  if (!suite_.batch_file.empty()) {
    // The line is the request, as the Batch API would send it.
    body = batch_request_body(matrix_.dims()[0].values[ordinal], suite_.batch_file_format);
    return true;
  }
  StackGuard guard(lua_);
  push_function("request");
  push_cell(ordinal);
  LuaFailure failure;
  {
    CallLimit limit(lua_, kSuiteCallBudget);
    MemoryLimit memory(lua_, kSuiteCallMemory);
    if (!protected_call(lua_, 1, 1, failure)) {
      error = clip_text("request(cell) raised: " + failure.describe());
      return false;
    }
  }
  if (!lua_istable(lua_, -1)) {
    error = std::string("request(cell) must return a table, got ") + luaL_typename(lua_, -1);
    return false;
  }
  if (!try_to_json(lua_, lua_gettop(lua_), body, error, "request")) {
    error = clip_text("request(cell) returned a table that is not JSON: " + error);
    return false;
  }
  if (!body.is_object()) {
    error = "request(cell) must return a table of fields";
    return false;
  }
  return true;
}

int SuiteRuntime::preferred_key(uint64_t ordinal, const std::vector<std::string>& key_ids) {
  StackGuard guard(lua_);
  push_function("key_for");
  if (!lua_isfunction(lua_, -1)) return -1;
  push_cell(ordinal);
  lua_createtable(lua_, static_cast<int>(key_ids.size()), 0);
  for (size_t i = 0; i < key_ids.size(); ++i) {
    lua_pushstring(lua_, key_ids[i].c_str());
    lua_rawseti(lua_, -2, static_cast<int>(i) + 1);
  }
  LuaFailure failure;
  bool ok = false;
  {
    CallLimit limit(lua_, kSuiteCallBudget);
    MemoryLimit memory(lua_, kSuiteCallMemory);
    ok = protected_call(lua_, 2, 1, failure);
  }
  if (!ok) {
    throw Error(codes::SUITE_INVALID, clip_text("key_for(cell, keys) raised: " + failure.describe()), Stage::config,
                {{"file", failure.file}, {"line", failure.line}, {"field", "key_for"}});
  }
  if (lua_isnil(lua_, -1)) return -1;
  const char* id = lua_type(lua_, -1) == LUA_TSTRING ? lua_tostring(lua_, -1) : nullptr;
  auto it = id ? std::find(key_ids.begin(), key_ids.end(), id) : key_ids.end();
  if (it == key_ids.end()) {
    std::string got = id ? std::string("'") + id + "'" : std::string("a ") + luaL_typename(lua_, -1);
    throw Error(codes::SUITE_INVALID,
                clip_text("key_for(cell, keys) returned " + got + ", which is not a key id of the suite"),
                Stage::config, {{"field", "key_for"}});
  }
  return static_cast<int>(it - key_ids.begin());
}

bool SuiteRuntime::check(uint64_t ordinal, const CheckInput& in, std::string& reason) {
  StackGuard guard(lua_);
  push_function("check");
  push_cell(ordinal);
  lua_createtable(lua_, 0, 4);
  lua_pushlstring(lua_, in.content.data(), in.content.size());
  lua_setfield(lua_, -2, "content");
  lua_pushlstring(lua_, in.model.data(), in.model.size());
  lua_setfield(lua_, -2, "model");
  lua_pushlstring(lua_, in.finish_reason.data(), in.finish_reason.size());
  lua_setfield(lua_, -2, "finish_reason");
  if (!in.usage_json.empty()) {
    auto usage = nlohmann::json::parse(in.usage_json.begin(), in.usage_json.end(), nullptr, false);
    if (!usage.is_discarded()) {
      push_json(lua_, usage);
      lua_setfield(lua_, -2, "usage");
    }
  }
  return call_check(reason);
}

bool SuiteRuntime::check_result(uint64_t ordinal, int index, std::string& reason) {
  if (index < 0) index = lua_gettop(lua_) + index + 1;
  const int top = lua_gettop(lua_) - 1;  // the result goes
  push_function("check");
  push_cell(ordinal);
  lua_pushvalue(lua_, index);
  lua_remove(lua_, index);
  bool ok = call_check(reason);
  lua_settop(lua_, top);
  return ok;
}

bool SuiteRuntime::call_check(std::string& reason) {
  LuaFailure failure;
  bool ok = false;
  {
    CallLimit limit(lua_, kSuiteCallBudget);
    MemoryLimit memory(lua_, kSuiteCallMemory);
    ok = protected_call(lua_, 2, 2, failure);
  }
  if (!ok) {
    reason = clip_text("check raised: " + failure.describe());
    return false;
  }
  if (lua_toboolean(lua_, -2)) return true;
  reason = lua_type(lua_, -1) == LUA_TSTRING ? clip_text(lua_tostring(lua_, -1)) : "check returned false";
  return false;
}

std::string request_hash(const nlohmann::json& body) {
  if (!body.is_object() || !body.contains("model")) return stable_hash_hex(safe_dump(body));
  nlohmann::json copy = body;
  copy.erase("model");
  return stable_hash_hex(safe_dump(copy));
}

void fill_request_hashes(const Suite& suite, std::vector<TaskSeed>& cells, const Where& where) {
  Matrix matrix(suite);
  SuiteRuntime runtime(suite, matrix);
  nlohmann::json body;
  std::string error;
  for (uint64_t i = 0; i < cells.size() && i < matrix.size(); ++i) {
    if (!where.matches(matrix, i)) continue;
    cells[i].request_hash = runtime.request_body(i, body, error) ? request_hash(body) : std::string();
  }
}

std::vector<TaskSeed> cells_in_view(const Suite& suite, const Where& where) {
  std::vector<TaskSeed> cells = plan_cells(suite);
  fill_request_hashes(suite, cells, where);
  if (where.all()) return cells;
  Matrix matrix(suite);
  std::vector<TaskSeed> slice;
  for (uint64_t i = 0; i < cells.size(); ++i)
    if (where.matches(matrix, i)) slice.push_back(std::move(cells[i]));
  return slice;
}

}  // namespace shepherd
