#pragma once
// RAII owner of one LuaJIT state. A state is single-threaded: one per thread.
// Its memory is counted by its own allocator, so neither a runaway suite nor
// a policy can take the machine's memory: a state has a ceiling, and a call
// may be given a tighter one (MemoryLimit) for its duration.
#include <cstddef>
#include <memory>

extern "C" {
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
}

namespace shepherd {

// Far above any real suite, far below what would take the machine down.
inline constexpr size_t kLuaStateMemoryLimit = size_t{4} << 30;

class LuaState {
 public:
  // Fresh state with the standard libraries opened; allocations beyond
  // `memory_limit` bytes fail ("not enough memory", a Lua error).
  explicit LuaState(size_t memory_limit = kLuaStateMemoryLimit);
  ~LuaState();
  LuaState(const LuaState&) = delete;
  LuaState& operator=(const LuaState&) = delete;
  lua_State* get() const { return state_.get(); }
  operator lua_State*() const { return state_.get(); }

  // Bytes held by the state now.
  static size_t memory_used(lua_State* L);

  struct Memory;  // the allocator's count (lua_state.cpp)

 private:
  struct Closer {
    void operator()(lua_State* L) const;
  };
  std::unique_ptr<Memory> memory_;  // outlives the state (destroyed after it)
  std::unique_ptr<lua_State, Closer> state_;
};

// For its scope, allocations on `L` may grow the state by at most `headroom`
// bytes over what it holds now (never beyond an enclosing limit). Scope it
// like CallLimit and destroy it before raising a Lua error.
class MemoryLimit {
 public:
  MemoryLimit(lua_State* L, size_t headroom);
  ~MemoryLimit();
  MemoryLimit(const MemoryLimit&) = delete;
  MemoryLimit& operator=(const MemoryLimit&) = delete;

 private:
  size_t* ceiling_ = nullptr;
  size_t previous_ = 0;
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
