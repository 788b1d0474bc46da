#pragma once
// Time limits for host->Lua calls. LuaJIT cannot be preempted, so a count hook
// checks a deadline every few thousand VM instructions; once past it, it
// raises on every instruction until the guard goes away, so a pcall inside
// the policy cannot swallow it: the first instruction after the pcall raises
// again. Compiled traces never run hooks, hence make_interruptible.
//
// One escape remains that no hook can close: LuaJIT runs an xpcall handler
// at the point of the error, before unwinding, and an error raised by a hook
// leaves hooks disabled until then, so `xpcall(spin, spin)` would loop for
// ever. Environments that run policy code must replace `xpcall` with
// interruptible_xpcall below.
#include <chrono>

#include "lua/lua_state.h"

namespace shepherd {

// Turns the JIT off for the Lua function at `index` and for every function
// defined inside it (by prototype, so closures created later are covered),
// so the interpreter runs them and count hooks fire. Call it on a freshly
// loaded chunk, before it runs. Anything but a Lua function is left as is.
void make_interruptible(lua_State* L, int index);

// `xpcall(f, handler, ...)` for policy environments: the same results, but
// the handler runs after the error has unwound to here, with hooks working.
// Policies cannot tell the difference: without `debug` a handler cannot look
// at the stack it would otherwise have run on.
int interruptible_xpcall(lua_State* L);

// From construction to destruction, Lua code on `L` that runs past `budget`
// fails with "<file>:<line>: exceeded its time limit of <n> ms".
// LuaJIT hooks belong to the whole VM, so coroutines of `L` are bounded too.
//
// - Nested guards tighten, never extend: an inner guard stops no later than
//   the one around it (and then reports that one's budget).
// - Guards must be destroyed in reverse order of creation (scope them), and a
//   Lua error must not unwind through one: destroy it before raising, as
//   every binding does with its C++ objects.
// - Code is stopped only between VM instructions: a long-running C function
//   (a huge string.rep, a pathological pattern) finishes first.
// - Any other hook on the state is suspended for the guard's life, then put back.
// - No allocation: the hook finds the guard through a light userdata in the
//   registry, so it is neither copyable nor movable.
class CallLimit {
 public:
  CallLimit(lua_State* L, std::chrono::milliseconds budget);
  ~CallLimit();
  CallLimit(const CallLimit&) = delete;
  CallLimit& operator=(const CallLimit&) = delete;

  // Whether the limit stopped (some of) the code run under this guard.
  bool expired() const { return expired_; }

 private:
  static void on_count(lua_State* L, lua_Debug* ar);

  lua_State* L_;
  std::chrono::steady_clock::time_point deadline_;
  int limit_ms_;  // the budget behind deadline_: ours or an outer guard's
  bool expired_ = false;
  CallLimit* previous_;  // the guard this one is nested in, if any
  lua_Hook previous_hook_;
  int previous_mask_;
  int previous_count_;
};

}  // namespace shepherd
