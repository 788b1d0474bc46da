// CallLimit and make_interruptible: runaway policy code is stopped at its
// deadline whatever shape the runaway takes (plain loops, loops LuaJIT would
// compile, pcall, coroutines, recursion, closures called later), and the
// state is usable afterwards.
#include <chrono>
#include <cstdio>
#include <string>

#include <gtest/gtest.h>

#include "lua/api.h"
#include "lua/call_limit.h"
#include "lua/lua_call.h"
#include "lua/lua_state.h"
#include "lua/sandbox.h"

namespace shepherd {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

constexpr milliseconds kBudget{100};
constexpr milliseconds kPromptly{1000};  // "stopped" means back within this

struct Outcome {
  bool ok = false;
  bool expired = false;
  LuaFailure failure;
  milliseconds elapsed{0};
};

milliseconds since(steady_clock::time_point start) {
  return std::chrono::duration_cast<milliseconds>(steady_clock::now() - start);
}

// Calls the function on top of the stack under a CallLimit of `budget`.
Outcome call_limited(lua_State* L, milliseconds budget, int nresults = 0) {
  Outcome out;
  auto start = steady_clock::now();
  {
    CallLimit limit(L, budget);
    out.ok = protected_call(L, 0, nresults, out.failure);
    out.expired = limit.expired();
  }
  out.elapsed = since(start);
  return out;
}

// A binding that runs a Lua callback under a guard of its own, as a nested
// host->Lua call would: guarded_call(f, ms) -> ok, message.
int guarded_call(lua_State* L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  auto budget = milliseconds(luaL_checkinteger(L, 2));
  lua_settop(L, 1);
  bool ok;
  LuaFailure failure;
  {
    CallLimit limit(L, budget);
    ok = protected_call(L, 0, 0, failure);
  }
  lua_pushboolean(L, ok);
  lua_pushstring(L, failure.message.c_str());
  return 2;
}

class CallLimitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    register_shepherd_api(L);
    lua_pushcfunction(L, guarded_call);
    lua_setglobal(L, "guarded_call");
  }

  // Pushes `code` loaded the way policies are: interruptible, sandboxed,
  // with the sandbox's xpcall replaced as call_limit.h asks.
  void load(const std::string& code, bool sandboxed = true, bool interruptible = true) {
    LuaFailure failure;
    ASSERT_TRUE(load_chunk(L, code, "spin.lua", failure)) << failure.describe();
    if (interruptible) make_interruptible(L, -1);
    if (sandboxed) {
      push_sandbox_env(L);
      lua_pushcfunction(L, interruptible_xpcall);
      lua_setfield(L, -2, "xpcall");
      lua_setfenv(L, -2);
    }
  }

  // Loads `code`, runs it under kBudget and expects the limit to stop it.
  void expect_stopped(const std::string& code, bool sandboxed = true) {
    SCOPED_TRACE(code);
    load(code, sandboxed);
    int top = lua_gettop(L) - 1;
    Outcome out = call_limited(L, kBudget);
    expect_stopped_by_limit(out, kBudget);
    EXPECT_EQ(lua_gettop(L), top);
  }

  static void expect_stopped_by_limit(const Outcome& out, milliseconds budget) {
    ASSERT_FALSE(out.ok) << "ran to completion in " << out.elapsed.count() << " ms";
    EXPECT_TRUE(out.expired);
    EXPECT_EQ(out.failure.message,
              "exceeded its time limit of " + std::to_string(budget.count()) + " ms")
        << out.failure.describe();
    EXPECT_GE(out.elapsed, budget);
    EXPECT_LT(out.elapsed, kPromptly);
  }

  LuaState L;
};

// ---------------------------------------------------------------- the bound

TEST_F(CallLimitTest, StopsAnEmptyLoopAndNamesWhereItWas) {
  load("local n = 0\nwhile true do end\n");
  Outcome out = call_limited(L, kBudget);
  expect_stopped_by_limit(out, kBudget);
  EXPECT_EQ(out.failure.file, "spin.lua");
  EXPECT_EQ(out.failure.line, 2);
  EXPECT_EQ(out.failure.describe(), "spin.lua:2: exceeded its time limit of 100 ms");
}

// Without make_interruptible LuaJIT compiles these after ~56 iterations and
// the trace never returns to the hook (see JitCompiledLoopIgnoresTheHook).
TEST_F(CallLimitTest, StopsNumericLoopsTheJitWouldCompile) {
  expect_stopped("local x = 0 for i = 1, 1e12 do x = x + i end return x");
  expect_stopped("x = 0 for i = 1, 1e12 do x = x + i end return x");
  expect_stopped("local t = {} for i = 1, 1e12 do t[i % 100 + 1] = i * 2 end");
}

TEST_F(CallLimitTest, PcallCannotSwallowTheLimit) {
  expect_stopped("while true do pcall(function() while true do end end) end");
  expect_stopped("local n = 0 while true do local ok, err = pcall(function() while true do end end) n = n + 1 end");
  expect_stopped("while true do xpcall(function() while true do end end, function(e) return e end) end");
  // A pcall at every level of a deep stack: each level gives up in turn.
  expect_stopped(
      "local function nest(n) if n == 0 then while true do end end\n"
      "  while true do pcall(nest, n - 1) end end\n"
      "nest(100)");
}

// With LuaJIT's own xpcall these never return: the handler runs before the
// unwind, and after an error raised by a hook no hook fires until then.
TEST_F(CallLimitTest, XpcallHandlersCannotEscapeTheLimit) {
  expect_stopped("xpcall(function() while true do end end, function(e) while true do end end)");
  expect_stopped("while true do xpcall(function() while true do end end, function(e) while true do end end) end");
  expect_stopped("xpcall(function() while true do end end, function(e) local s = 0 for i = 1, 1e12 do s = s + i end end)");
}

TEST_F(CallLimitTest, InterruptibleXpcallBehavesLikeXpcall) {
  load(
      "local out = {}\n"
      "local function add(a, b) return a + b, a * b end\n"
      "out[1] = { xpcall(add, error, 3, 4) }\n"
      "out[2] = { xpcall(error, function(e) return 'h:' .. tostring(e), 'dropped' end, 'boom', 0) }\n"
      "out[3] = { xpcall(error, error, 'boom') }\n"
      "out[4] = { xpcall(function() error({}) end, function(e) return type(e) end) }\n"
      "out[5] = { pcall(xpcall, error) }\n"
      "out[6] = { xpcall(function() end, tostring) }\n"
      "local parts = {}\n"
      "for i, r in ipairs(out) do\n"
      "  local items = {}\n"
      "  for j = 1, #r do items[j] = tostring(r[j]) end\n"
      "  parts[i] = table.concat(items, ' ')\n"
      "end\n"
      "return table.concat(parts, '|')\n");
  LuaFailure failure;
  ASSERT_TRUE(protected_call(L, 0, 1, failure)) << failure.describe();
  EXPECT_STREQ(lua_tostring(L, -1),
               "true 7 12|false h:boom|false error in error handling|false table|"
               "false bad argument #2 to '?' (function expected, got no value)|true");
  lua_pop(L, 1);
}

TEST_F(CallLimitTest, CoroutinesAreBoundedToo) {
  // Not in the sandbox, but LuaJIT hooks are per VM, so they would be covered.
  expect_stopped(
      "while true do coroutine.resume(coroutine.create(function() while true do end end)) end",
      /*sandboxed=*/false);
}

TEST_F(CallLimitTest, StopsRecursion) {
  expect_stopped("local function spin(n) return spin(n + 1) end return spin(0)");
  expect_stopped("local function fib(n) if n < 2 then return n end return fib(n - 1) + fib(n - 2) end return fib(60)");
}

TEST_F(CallLimitTest, StopsAStringHeavyLoop) {
  expect_stopped(
      "local parts = {}\n"
      "while true do\n"
      "  for i = 1, 50 do parts[i] = string.format('%d:%s', i, ('x'):rep(i)) end\n"
      "  local s = table.concat(parts, ',')\n"
      "  s = s:gsub('x+', string.upper):lower()\n"
      "end\n");
}

// Policies are modules: the chunk runs once at load, the host calls its
// functions later. make_interruptible on the chunk covers them all.
TEST_F(CallLimitTest, CoversFunctionsDefinedInTheChunkAndCalledLater) {
  load(
      "local function make_spinner() return function() local t = 0 for i = 1, 1e12 do t = t + i end return t end end\n"
      "return { name = 'spin', decide = function() local s = 0 for i = 1, 1e12 do s = s + i end return s end,\n"
      "         spinner = make_spinner }\n");
  LuaFailure failure;
  ASSERT_TRUE(protected_call(L, 0, 1, failure)) << failure.describe();
  int module = lua_gettop(L);

  lua_getfield(L, module, "decide");
  expect_stopped_by_limit(call_limited(L, kBudget), kBudget);

  lua_getfield(L, module, "spinner");
  ASSERT_TRUE(protected_call(L, 0, 1, failure)) << failure.describe();
  expect_stopped_by_limit(call_limited(L, kBudget), kBudget);
}

// ---------------------------------------------------------------- the JIT

// The reason for make_interruptible: the same kind of loop, compiled, runs
// straight past the deadline because traces never call hooks. The loop is
// finite (a few hundred ms at most), so this cannot hang the suite. The ~150
// instructions interpreted before the loop is compiled stay well under one
// hook interval, so the hook never gets a chance to run.
TEST_F(CallLimitTest, JitCompiledLoopIgnoresTheHook) {
  luaL_dostring(L, "return jit.status()");
  bool jit_on = lua_toboolean(L, -1);
  lua_pop(L, 1);
  if (!jit_on) GTEST_SKIP() << "this LuaJIT runs without a JIT";

  const std::string loop = "local x = 0 for i = 1, 3e8 do x = x + 1 end return x";
  load(loop, true, /*interruptible=*/false);
  Outcome compiled = call_limited(L, milliseconds(1), 1);
  ASSERT_TRUE(compiled.ok) << compiled.failure.describe();
  EXPECT_FALSE(compiled.expired);
  EXPECT_GT(compiled.elapsed, milliseconds(1)) << "the deadline passed during the call";
  EXPECT_EQ(lua_tonumber(L, -1), 3e8);
  lua_pop(L, 1);

  load(loop);
  expect_stopped_by_limit(call_limited(L, milliseconds(1)), milliseconds(1));
}

// Deterministic evidence: no trace is even started for interruptible code,
// while the same code loaded normally is compiled.
TEST_F(CallLimitTest, InterruptibleCodeIsNeverCompiled) {
  ASSERT_EQ(luaL_dostring(L,
                          "traces = 0\n"
                          "jit.attach(function(what) if what == 'start' then traces = traces + 1 end end, 'trace')\n"),
            0);
  auto traces_after = [&](const std::string& code, bool interruptible) {
    LuaFailure failure;
    luaL_dostring(L, "jit.flush() traces = 0");
    load(code, false, interruptible);
    EXPECT_TRUE(protected_call(L, 0, 0, failure)) << failure.describe();
    lua_getglobal(L, "traces");
    int traces = static_cast<int>(lua_tointeger(L, -1));
    lua_pop(L, 1);
    return traces;
  };
  const std::string code =
      "local function inner(n) local s = 0 for i = 1, n do s = s + i end return s end\n"
      "local t = 0 for i = 1, 1000 do t = t + inner(100) end\n"
      "local k = 0 while k < 1e5 do k = k + 1 end\n";
  luaL_dostring(L, "return jit.status()");
  if (lua_toboolean(L, -1)) {
    EXPECT_GT(traces_after(code, false), 0) << "the control must be compiled";
  }
  lua_pop(L, 1);
  EXPECT_EQ(traces_after(code, true), 0);

  // Anything but a Lua function is left alone.
  int top = lua_gettop(L);
  lua_pushcfunction(L, guarded_call);
  make_interruptible(L, -1);
  lua_newtable(L);
  make_interruptible(L, -1);
  lua_settop(L, top);
}

// ---------------------------------------------------------------- normal calls

TEST_F(CallLimitTest, FastCallSucceedsAndLeavesNoHook) {
  load("return function(x) return x + 1 end");
  LuaFailure failure;
  ASSERT_TRUE(protected_call(L, 0, 1, failure)) << failure.describe();
  {
    CallLimit limit(L, kBudget);
    EXPECT_NE(lua_gethook(L), nullptr);
    lua_pushvalue(L, -1);
    lua_pushnumber(L, 41);
    ASSERT_TRUE(protected_call(L, 1, 1, failure)) << failure.describe();
    EXPECT_EQ(lua_tonumber(L, -1), 42);
    lua_pop(L, 1);
    EXPECT_FALSE(limit.expired());
  }
  EXPECT_EQ(lua_gethook(L), nullptr);
  EXPECT_EQ(lua_gethookmask(L), 0);
}

TEST_F(CallLimitTest, WorkUnderTheBudgetIsNotInterrupted) {
  // Long enough to pass many hook checks, well short of the budget.
  load("local s = 0 for i = 1, 1e5 do s = s + i end return s");
  Outcome out = call_limited(L, milliseconds(2000), 1);
  ASSERT_TRUE(out.ok) << out.failure.describe();
  EXPECT_FALSE(out.expired);
  EXPECT_EQ(lua_tonumber(L, -1), 1e5 * (1e5 + 1) / 2);
  lua_pop(L, 1);
}

TEST_F(CallLimitTest, StateRunsNormallyAfterTheLimitFired) {
  expect_stopped("while true do pcall(function() while true do end end) end");
  EXPECT_EQ(lua_gethook(L), nullptr);

  // Unguarded: nothing left to interrupt it.
  load("local s = 0 for i = 1, 1e6 do s = s + i end return s");
  LuaFailure failure;
  ASSERT_TRUE(protected_call(L, 0, 1, failure)) << failure.describe();
  EXPECT_EQ(lua_tonumber(L, -1), 1e6 * (1e6 + 1) / 2);
  lua_pop(L, 1);

  // A fresh guard starts a fresh budget, and can fire again.
  load("local s = 0 for i = 1, 1e6 do s = s + i end return s");
  Outcome again = call_limited(L, milliseconds(2000), 1);
  ASSERT_TRUE(again.ok) << again.failure.describe();
  EXPECT_FALSE(again.expired);
  lua_pop(L, 1);
  expect_stopped("while true do end");
}

// ---------------------------------------------------------------- nesting

TEST_F(CallLimitTest, InnerGuardFiresAndOuterResumes) {
  auto start = steady_clock::now();
  CallLimit outer(L, milliseconds(300));
  load("while true do end");
  Outcome inner = call_limited(L, milliseconds(50));
  expect_stopped_by_limit(inner, milliseconds(50));
  EXPECT_FALSE(outer.expired());

  // The outer guard is back in charge, with its own deadline.
  load("while true do end");
  LuaFailure failure;
  ASSERT_FALSE(protected_call(L, 0, 0, failure));
  EXPECT_EQ(failure.message, "exceeded its time limit of 300 ms");
  EXPECT_TRUE(outer.expired());
  EXPECT_GE(since(start), milliseconds(300));
  EXPECT_LT(since(start), kPromptly);
}

TEST_F(CallLimitTest, InnerGuardCannotExtendTheOuterBudget) {
  // The outer budget runs from the outer guard's creation, so the inner
  // call's own clock (started after load) may read a little less than it.
  auto start = steady_clock::now();
  CallLimit outer(L, milliseconds(50));
  load("while true do end");
  Outcome inner = call_limited(L, milliseconds(10000));
  ASSERT_FALSE(inner.ok);
  EXPECT_TRUE(inner.expired);
  EXPECT_EQ(inner.failure.message, "exceeded its time limit of 50 ms") << inner.failure.describe();
  EXPECT_GE(since(start), milliseconds(50));
  EXPECT_LT(inner.elapsed, kPromptly);
  EXPECT_TRUE(outer.expired());
}

// Host -> policy -> binding -> callback, each call guarded.
TEST_F(CallLimitTest, GuardInsideABindingRestoresTheCallersGuard) {
  load(
      "local ok, err = guarded_call(function() while true do end end, 30)\n"
      "assert(not ok and err == 'exceeded its time limit of 30 ms', err)\n"
      "local s = 0 for i = 1, 1e5 do s = s + i end\n"
      "return 'continued'\n",
      /*sandboxed=*/false);
  Outcome out = call_limited(L, milliseconds(1000), 1);
  ASSERT_TRUE(out.ok) << out.failure.describe();
  EXPECT_FALSE(out.expired);
  EXPECT_STREQ(lua_tostring(L, -1), "continued");
  lua_pop(L, 1);

  // The caller's budget runs out inside the binding: the caller's code does
  // not get to run on once the binding returns.
  load(
      "local ok, err = guarded_call(function() while true do end end, 10000)\n"
      "escaped = true\n"
      "return 'escaped'\n",
      /*sandboxed=*/false);
  expect_stopped_by_limit(call_limited(L, kBudget, 1), kBudget);
  lua_getglobal(L, "escaped");
  EXPECT_TRUE(lua_isnil(L, -1));
  lua_pop(L, 1);
  EXPECT_EQ(lua_gethook(L), nullptr);
}

// ---------------------------------------------------------------- cost

// Not a benchmark, a sanity bound plus numbers for the record: what a guard
// adds to a trivial call, and what the per-instruction hook dispatch costs.
TEST_F(CallLimitTest, OverheadOfAGuardedTrivialCall) {
  load("return function(x) return x + 1 end");
  LuaFailure failure;
  ASSERT_TRUE(protected_call(L, 0, 1, failure)) << failure.describe();
  int fn = lua_gettop(L);
  constexpr int kCalls = 200000;
  auto time_calls = [&](bool guarded) {
    auto start = steady_clock::now();
    for (int i = 0; i < kCalls; ++i) {
      lua_pushvalue(L, fn);
      lua_pushnumber(L, i);
      bool ok;
      if (guarded) {
        CallLimit limit(L, kBudget);
        ok = protected_call(L, 1, 1, failure);
      } else {
        ok = protected_call(L, 1, 1, failure);
      }
      if (!ok) ADD_FAILURE() << failure.describe();
      lua_pop(L, 1);
    }
    return std::chrono::duration<double, std::nano>(steady_clock::now() - start).count() / kCalls;
  };
  time_calls(true);  // warm up
  double plain_ns = time_calls(false);
  double guarded_ns = time_calls(true);

  load("local s = 0 for i = 1, 1e7 do s = s + i end return s");
  lua_pushvalue(L, -1);
  auto start = steady_clock::now();
  ASSERT_TRUE(protected_call(L, 0, 1, failure)) << failure.describe();
  double loop_plain_ms = std::chrono::duration<double, std::milli>(steady_clock::now() - start).count();
  lua_pop(L, 1);
  Outcome loop_guarded = call_limited(L, milliseconds(5000), 1);
  ASSERT_TRUE(loop_guarded.ok) << loop_guarded.failure.describe();
  lua_pop(L, 1);

  std::printf("[ cost     ] trivial call: %.0f ns plain, %.0f ns guarded (+%.0f ns)\n", plain_ns, guarded_ns,
              guarded_ns - plain_ns);
  std::printf("[ cost     ] 1e7 interpreted iterations: %.1f ms unguarded, %lld ms guarded\n", loop_plain_ms,
              static_cast<long long>(loop_guarded.elapsed.count()));
  // Generous: catches a pathology (an allocation storm, a syscall), not noise.
  EXPECT_LT(guarded_ns - plain_ns, 5000.0);
}

}  // namespace
}  // namespace shepherd
