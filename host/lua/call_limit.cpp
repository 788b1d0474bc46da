#include "lua/call_limit.h"

#include <algorithm>

extern "C" {
#include <luajit.h>
}

namespace shepherd {

namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

// Instructions between deadline checks: a few microseconds of interpreted
// code, so the check (one clock read) is noise and a fast policy call
// usually finishes before the first one. The larger cost of a count hook is
// LuaJIT's per-instruction counting, paid whatever this is.
constexpr int kCheckEvery = 4000;

// Longer budgets are treated as this, so now + budget cannot overflow.
constexpr milliseconds kLongestBudget = std::chrono::hours(24);

// Registry key of the innermost live guard (a light userdata): its address.
const char kCurrentGuardKey = 0;

CallLimit* current_guard(lua_State* L) {
  lua_pushlightuserdata(L, const_cast<char*>(&kCurrentGuardKey));
  lua_rawget(L, LUA_REGISTRYINDEX);
  auto* guard = static_cast<CallLimit*>(lua_touserdata(L, -1));
  lua_pop(L, 1);
  return guard;
}

void set_current_guard(lua_State* L, CallLimit* guard) {
  lua_pushlightuserdata(L, const_cast<char*>(&kCurrentGuardKey));
  if (guard != nullptr) {
    lua_pushlightuserdata(L, guard);
  } else {
    lua_pushnil(L);
  }
  lua_rawset(L, LUA_REGISTRYINDEX);
}

}  // namespace

void make_interruptible(lua_State* L, int index) {
  // ALLFUNC = this prototype and, recursively, every prototype nested in it.
  // Returns 0 for a non-Lua function, which has nothing to compile anyway.
  luaJIT_setmode(L, index, LUAJIT_MODE_ALLFUNC | LUAJIT_MODE_OFF);
}

int interruptible_xpcall(lua_State* L) {
  luaL_checktype(L, 2, LUA_TFUNCTION);
  int nargs = lua_gettop(L) - 2;
  lua_pushvalue(L, 2);
  lua_insert(L, 1);  // handler, f, handler, args...
  lua_remove(L, 3);  // handler, f, args...
  int status = lua_pcall(L, nargs, LUA_MULTRET, 0);
  if (status == 0) {
    lua_pushboolean(L, 1);
    lua_replace(L, 1);
    return lua_gettop(L);
  }
  // handler, error. Like xpcall, out of memory skips the handler.
  if (status != LUA_ERRMEM) {
    lua_pushvalue(L, 1);
    lua_insert(L, 2);  // handler, handler, error
    if (lua_pcall(L, 1, 1, 0) != 0) {
      lua_pop(L, 1);
      lua_pushliteral(L, "error in error handling");
    }
  }
  lua_pushboolean(L, 0);
  lua_replace(L, 1);
  return 2;
}

CallLimit::CallLimit(lua_State* L, milliseconds budget)
    : L_(L),
      previous_hook_(lua_gethook(L)),
      previous_mask_(lua_gethookmask(L)),
      previous_count_(lua_gethookcount(L)) {
  budget = std::clamp(budget, milliseconds(0), kLongestBudget);
  deadline_ = steady_clock::now() + budget;
  limit_ms_ = static_cast<int>(budget.count());
  previous_ = current_guard(L);
  if (previous_ != nullptr && previous_->deadline_ < deadline_) {
    deadline_ = previous_->deadline_;
    limit_ms_ = previous_->limit_ms_;
  }
  set_current_guard(L, this);
  lua_sethook(L, on_count, LUA_MASKCOUNT, kCheckEvery);
}

CallLimit::~CallLimit() {
  set_current_guard(L_, previous_);
  // An outer guard that already fired keeps raising at every instruction.
  int count = previous_count_;
  if (previous_hook_ == on_count && previous_ != nullptr && previous_->expired_) count = 1;
  lua_sethook(L_, previous_hook_, previous_mask_, count);
}

// Raises a Lua error, so nothing here may need a destructor.
void CallLimit::on_count(lua_State* L, lua_Debug*) {
  CallLimit* guard = current_guard(L);
  if (guard == nullptr) return;
  if (!guard->expired_) {
    auto now = steady_clock::now();
    if (now < guard->deadline_) return;
    // Inner guards never outlive outer ones, so the expired ones are a prefix.
    for (CallLimit* g = guard; g != nullptr && g->deadline_ <= now; g = g->previous_) g->expired_ = true;
    // From now on raise at every instruction: one swallowed by a pcall is
    // followed by another at the first instruction after it.
    lua_sethook(L, on_count, LUA_MASKCOUNT, 1);
  }
  luaL_where(L, 0);  // level 0 in a hook: the Lua function that was running
  lua_pushfstring(L, "exceeded its time limit of %d ms", guard->limit_ms_);
  lua_concat(L, 2);
  lua_error(L);
}

}  // namespace shepherd
