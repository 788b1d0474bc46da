#pragma once
// RAII owner of one LuaJIT state. A state is single-threaded: one per thread.
#include <memory>

extern "C" {
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
}

namespace shepherd {

class LuaState {
 public:
  LuaState();  // fresh state with the standard libraries opened
  lua_State* get() const { return state_.get(); }
  operator lua_State*() const { return state_.get(); }

 private:
  struct Closer {
    void operator()(lua_State* L) const { lua_close(L); }
  };
  std::unique_ptr<lua_State, Closer> state_;
};

// Pops nothing; restores the stack top on scope exit.
class StackGuard {
 public:
  explicit StackGuard(lua_State* L) : L_(L), top_(lua_gettop(L)) {}
  ~StackGuard() { lua_settop(L_, top_); }
  StackGuard(const StackGuard&) = delete;
  StackGuard& operator=(const StackGuard&) = delete;

 private:
  lua_State* L_;
  int top_;
};

}  // namespace shepherd
