#include "policy/policy_set.h"

#include <algorithm>
#include <tuple>

#include "core/error.h"
#include "core/redactor.h"
#include "core/text.h"
#include "lua/call_limit.h"
#include "lua/lua_json.h"
#include "lua/sandbox.h"

namespace shepherd {

std::string_view to_string(Decision::Action action) {
  switch (action) {
    case Decision::Action::retry: return "retry";
    case Decision::Action::fail: return "fail";
    case Decision::Action::switch_model: return "switch_model";
  }
  return "fail";
}

// The outcome being classified, reachable from the lazy __index only while
// classify() runs.
struct PolicySet::LazyBox {
  const OutcomeView* current = nullptr;
  const void* table = nullptr;  // the outcome table of this call: a kept older one reads nil
};

namespace {

constexpr size_t kRawLimit = 4096;
// A policy call takes about a microsecond: one that runs this long is stuck.
constexpr std::chrono::milliseconds kCallBudget{250};
// Loading a file (and its selftest) may do more.
constexpr std::chrono::milliseconds kLoadBudget{2000};
constexpr long kMaxDelayMs = 86'400'000;  // a day: longer is a policy bug, and overflows clocks
// A call gets limited_call's 64 MiB (a decision is a few small tables; more is
// runaway, such as string.rep of gigabytes); loading a file and its selftest may take more.
constexpr size_t kLoadMemory = size_t{256} << 20;
// Class names and codes are stored with every attempt and grouped on.
constexpr size_t kMaxNameBytes = 1024;

// A class name or a code: short printable UTF-8 text, so that what a policy
// returns can be stored, grouped and printed as it is.
bool valid_name(lua_State* L, int index) {
  if (lua_type(L, index) != LUA_TSTRING) return false;
  size_t len = 0;
  const char* s = lua_tolstring(L, index, &len);
  if (len == 0 || len > kMaxNameBytes || !is_valid_utf8(std::string_view(s, len))) return false;
  for (size_t i = 0; i < len; ++i)
    if (static_cast<unsigned char>(s[i]) < 0x20) return false;
  return true;
}

void set_string(lua_State* L, const char* field, std::string_view value) {
  if (value.empty()) return;
  lua_pushlstring(L, value.data(), value.size());
  lua_setfield(L, -2, field);
}

// __index(outcome, key): builds `body` and `headers` on first access.
int outcome_index(lua_State* L) {
  auto* box = static_cast<PolicySet::LazyBox*>(lua_touserdata(L, lua_upvalueindex(1)));
  const char* key = lua_tostring(L, 2);
  if (box->current == nullptr || key == nullptr || lua_topointer(L, 1) != box->table) return 0;
  const OutcomeView& o = *box->current;
  if (std::string_view(key) == "body") {
    if (o.body == nullptr || o.body->is_discarded()) return 0;
    push_json(L, *o.body);
  } else if (std::string_view(key) == "headers") {
    lua_createtable(L, 0, o.headers ? static_cast<int>(o.headers->size()) : 0);
    if (o.headers) {
      for (const auto& [name, value] : *o.headers) {
        lua_pushlstring(L, value.data(), value.size());
        lua_setfield(L, -2, name.c_str());
      }
    }
  } else {
    return 0;
  }
  lua_pushvalue(L, 2);
  lua_pushvalue(L, -2);
  lua_rawset(L, 1);  // cache on the table: the next read costs nothing
  return 1;
}

}  // namespace

PolicySet::PolicySet(lua_State* L, const PolicySources& sources, const RetryConfig& retry,
                     const MaintainConfig& maintain)
    : L_(L), version_(sources.version), retry_config_(retry.to_json()), maintain_config_(maintain.to_json()) {
  try {
    classify_ref_ = load_module(sources.classify, "classify");
    retry_ref_ = load_module(sources.retry, "decide");
    switch_ref_ = load_module(sources.switch_model, "next_model");
    retest_ref_ = load_module(sources.retest, "select");
  } catch (...) {
    release();  // the destructor will not run
    throw;
  }


  lua_newtable(L_);  // metatable for outcome tables
  box_ = static_cast<LazyBox*>(lua_newuserdata(L_, sizeof(LazyBox)));
  new (box_) LazyBox();
  lua_pushcclosure(L_, outcome_index, 1);
  lua_setfield(L_, -2, "__index");
  outcome_meta_ref_ = luaL_ref(L_, LUA_REGISTRYINDEX);
}

PolicySet::~PolicySet() { release(); }

void PolicySet::release() {
  for (int* ref : {&classify_ref_, &retry_ref_, &switch_ref_, &retest_ref_, &outcome_meta_ref_}) {
    luaL_unref(L_, LUA_REGISTRYINDEX, *ref);
    *ref = LUA_NOREF;
  }
}

int PolicySet::load_module(const PolicySource& src, const char* function) {
  StackGuard guard(L_);
  LuaFailure failure;
  auto fail = [&](const std::string& why, int line) -> Error {
    std::string where = src.chunk_name + (line > 0 ? ":" + std::to_string(line) : "");
    return Error(codes::POLICY_LOAD_FAILED, where + ": " + why, Stage::policy,
                 {{"file", src.chunk_name}, {"line", line}, {"policy", src.kind}});
  };
  if (!load_chunk(L_, src.text, src.chunk_name, failure)) throw fail(failure.message, failure.line);
  make_interruptible(L_, -1);  // compiled traces would skip the time limit's hook
  push_sandbox_env(L_);
  lua_setfenv(L_, -2);
  if (!limited_call(0, 1, failure, kLoadBudget, kLoadMemory)) throw fail(failure.message, failure.line);
  if (!lua_istable(L_, -1)) {
    throw fail(std::string("a policy must return a table of functions, got ") + luaL_typename(L_, -1), 0);
  }
  lua_getfield(L_, -1, function);
  if (!lua_isfunction(L_, -1)) {
    throw fail(std::string("the returned table has no function '") + function + "'", 0);
  }
  lua_pop(L_, 1);
  // Metadata is optional, but when present it has the right shape.
  for (auto [field, type, what] : {std::tuple{"name", LUA_TSTRING, "a string"},
                                   std::tuple{"schema", LUA_TTABLE, "a table"},
                                   std::tuple{"selftest", LUA_TFUNCTION, "a function"}}) {
    lua_getfield(L_, -1, field);
    bool ok = lua_isnil(L_, -1) || lua_type(L_, -1) == type;
    lua_pop(L_, 1);
    if (!ok) throw fail(std::string("'") + field + "' must be " + what, 0);
  }
  lua_getfield(L_, -1, "version");
  bool version_ok = lua_isnil(L_, -1) || lua_type(L_, -1) == LUA_TSTRING || lua_type(L_, -1) == LUA_TNUMBER;
  lua_pop(L_, 1);
  if (!version_ok) throw fail("'version' must be a string or a number", 0);
  lua_getfield(L_, -1, "selftest");
  if (lua_isfunction(L_, -1)) {
    if (!limited_call(0, 0, failure, kLoadBudget, kLoadMemory)) {
      throw fail("selftest() failed: " + failure.message, failure.line);
    }
  } else {
    lua_pop(L_, 1);
  }
  return luaL_ref(L_, LUA_REGISTRYINDEX);
}

bool PolicySet::limited_call(int nargs, int nresults, LuaFailure& failure, std::chrono::milliseconds budget,
                             size_t memory) {
  CallLimit limit(L_, budget);
  MemoryLimit bytes(L_, memory);
  return protected_call(L_, nargs, nresults, failure);
}

bool PolicySet::classify(const OutcomeView& o, std::string& cls, LuaFailure& failure) {
  StackGuard guard(L_);
  lua_rawgeti(L_, LUA_REGISTRYINDEX, classify_ref_);
  lua_getfield(L_, -1, "classify");

  lua_createtable(L_, 0, 16);
  lua_pushnumber(L_, static_cast<double>(o.status));
  lua_setfield(L_, -2, "status");
  set_string(L_, "transport", o.transport);
  if (o.raw.size() <= kRawLimit) {
    set_string(L_, "raw", o.raw);
  } else {
    // A key across the cut would reach the policy as a piece no redactor
    // knows, and the policy may repeat it: redact around the cut first.
    std::string head(o.raw.substr(0, kRawLimit + 1024));
    redact_in_place(head);
    set_string(L_, "raw", std::string_view(head).substr(0, std::min(head.size(), kRawLimit)));
  }
  lua_pushnumber(L_, o.elapsed_ms);
  lua_setfield(L_, -2, "elapsed_ms");
  set_string(L_, "model_requested", o.model_requested);
  set_string(L_, "model_answered", o.model_answered);
  set_string(L_, "model_role", o.model_role);
  if (o.content) {
    lua_pushlstring(L_, o.content->data(), o.content->size());
    lua_setfield(L_, -2, "content");
  }
  set_string(L_, "finish_reason", o.finish_reason);
  set_string(L_, "refusal", o.refusal);
  if (o.tool_calls) {
    lua_pushboolean(L_, 1);
    lua_setfield(L_, -2, "tool_calls");
  }
  set_string(L_, "error_code", o.error_code);
  set_string(L_, "error_message", o.error_message);
  if (o.check) {
    lua_pushlstring(L_, o.check->data(), o.check->size());
    lua_setfield(L_, -2, "check");
  }
  lua_rawgeti(L_, LUA_REGISTRYINDEX, outcome_meta_ref_);
  lua_setmetatable(L_, -2);

  box_->current = &o;
  box_->table = lua_topointer(L_, -1);
  bool ok = limited_call(1, 1, failure, kCallBudget);
  box_->current = nullptr;
  box_->table = nullptr;
  if (!ok) return false;
  if (!valid_name(L_, -1)) {
    failure = LuaFailure{std::string("classify must return a class name (printable text of at most ") +
                             std::to_string(kMaxNameBytes) + " bytes), got " +
                             (lua_type(L_, -1) == LUA_TSTRING ? "'" + clip_text(lua_tostring(L_, -1), 80) + "'"
                                                              : std::string("a ") + luaL_typename(L_, -1)),
                         "", 0, ""};
    return false;
  }
  cls = lua_tostring(L_, -1);
  return true;
}

bool PolicySet::decide(const DecideInput& in, Decision& decision, LuaFailure& failure) {
  StackGuard guard(L_);
  lua_rawgeti(L_, LUA_REGISTRYINDEX, retry_ref_);
  lua_getfield(L_, -1, "decide");

  lua_createtable(L_, 0, 12);
  set_string(L_, "class", in.cls);
  lua_pushnumber(L_, in.attempt);
  lua_setfield(L_, -2, "attempt");
  if (in.cell) {
    push_json(L_, *in.cell);
    lua_setfield(L_, -2, "task");
  }
  set_string(L_, "model", in.model);
  set_string(L_, "model_role", in.model_role);
  push_json(L_, retry_config_);
  lua_setfield(L_, -2, "config");
  lua_createtable(L_, in.history ? static_cast<int>(in.history->size()) : 0, 0);
  if (in.history) {
    int i = 1;
    for (const auto& h : *in.history) {
      lua_createtable(L_, 0, 3);
      set_string(L_, "class", h.cls);
      lua_pushnumber(L_, static_cast<double>(h.status));
      lua_setfield(L_, -2, "status");
      set_string(L_, "code", h.code);
      lua_rawseti(L_, -2, i++);
    }
  }
  lua_setfield(L_, -2, "history");
  if (in.retry_after_ms >= 0) {
    lua_pushnumber(L_, static_cast<double>(in.retry_after_ms));
    lua_setfield(L_, -2, "retry_after_ms");
  }
  lua_pushnumber(L_, static_cast<double>(in.status));
  lua_setfield(L_, -2, "status");
  set_string(L_, "error_code", in.error_code);
  lua_pushnumber(L_, in.usable_keys);
  lua_setfield(L_, -2, "usable_keys");

  if (!limited_call(1, 1, failure, kCallBudget)) return false;
  auto shape_error = [&](const std::string& why) {
    failure = LuaFailure{"decide " + why, "", 0, ""};
    return false;
  };
  if (!lua_istable(L_, -1)) return shape_error(std::string("must return a table, got ") + luaL_typename(L_, -1));
  lua_getfield(L_, -1, "action");
  std::string action = lua_type(L_, -1) == LUA_TSTRING ? lua_tostring(L_, -1) : "";
  lua_pop(L_, 1);
  decision = Decision{};
  if (action == "retry") {
    lua_getfield(L_, -1, "delay_ms");
    double delay = lua_tonumber(L_, -1);
    if (lua_type(L_, -1) != LUA_TNUMBER || !(delay >= 0)) {  // NaN fails too
      return shape_error("returned action 'retry' without a delay_ms >= 0");
    }
    decision.action = Decision::Action::retry;
    decision.delay_ms = static_cast<long>(std::min(delay, static_cast<double>(kMaxDelayMs)));
  } else if (action == "fail") {
    lua_getfield(L_, -1, "code");
    if (!lua_isnil(L_, -1) && !valid_name(L_, -1)) {
      return shape_error("returned a code that is not printable text of at most " + std::to_string(kMaxNameBytes) +
                         " bytes");
    }
    decision.action = Decision::Action::fail;
    if (lua_type(L_, -1) == LUA_TSTRING) decision.code = lua_tostring(L_, -1);
  } else if (action == "switch_model") {
    decision.action = Decision::Action::switch_model;
  } else {
    return shape_error("returned an unknown action '" + action + "' (retry, fail or switch_model)");
  }
  return true;
}

bool PolicySet::next_model(const SwitchInput& in, std::string& model, LuaFailure& failure) {
  StackGuard guard(L_);
  lua_rawgeti(L_, LUA_REGISTRYINDEX, switch_ref_);
  lua_getfield(L_, -1, "next_model");
  lua_createtable(L_, 0, 5);
  set_string(L_, "current", in.current);
  set_string(L_, "class", in.cls);
  lua_createtable(L_, in.candidates ? static_cast<int>(in.candidates->size()) : 0, 0);
  if (in.candidates) {
    int i = 1;
    for (const auto& m : *in.candidates) {
      lua_pushstring(L_, m.c_str());
      lua_rawseti(L_, -2, i++);
    }
  }
  lua_setfield(L_, -2, "candidates");
  lua_newtable(L_);
  if (in.exhausted) {
    for (const auto& m : *in.exhausted) {
      lua_pushboolean(L_, 1);
      lua_setfield(L_, -2, m.c_str());
    }
  }
  lua_setfield(L_, -2, "exhausted");
  push_json(L_, maintain_config_);
  lua_setfield(L_, -2, "config");
  if (!limited_call(1, 1, failure, kCallBudget)) return false;
  if (lua_isnil(L_, -1)) {
    model.clear();
    return true;
  }
  if (lua_type(L_, -1) != LUA_TSTRING || lua_objlen(L_, -1) == 0) {
    failure = LuaFailure{std::string("next_model must return a model name or nil, got ") + luaL_typename(L_, -1), "",
                         0, ""};
    return false;
  }
  model = lua_tostring(L_, -1);
  return true;
}

bool PolicySet::select(const nlohmann::json& stats, nlohmann::json& selection, LuaFailure& failure) {
  StackGuard guard(L_);
  lua_rawgeti(L_, LUA_REGISTRYINDEX, retest_ref_);
  lua_getfield(L_, -1, "select");
  push_json(L_, stats);
  push_json(L_, maintain_config_);
  if (!limited_call(2, 1, failure, kCallBudget)) return false;
  std::string error;
  nlohmann::json out;
  auto shape_error = [&](const std::string& why) {
    failure = LuaFailure{"select " + why, "", 0, ""};
    return false;
  };
  if (!lua_istable(L_, -1) || !try_to_json(L_, lua_gettop(L_), out, error, "selection")) {
    return shape_error("must return a list of {group, priority, reason}" + (error.empty() ? "" : ": " + error));
  }
  if (out.is_object() && out.empty()) out = nlohmann::json::array();
  if (!out.is_array()) return shape_error("must return a list");
  for (const auto& item : out) {
    auto priority = item.is_object() ? item.find("priority") : item.end();
    auto reason = item.is_object() ? item.find("reason") : item.end();
    if (!item.is_object() || !item.contains("group") || priority == item.end() || !priority->is_number() ||
        reason == item.end() || !reason->is_string()) {
      return shape_error("returned an item without group, a numeric priority and a reason: " + item.dump());
    }
  }
  selection = std::move(out);
  return true;
}

}  // namespace shepherd
