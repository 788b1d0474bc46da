// lua/shepherd/loops.lua, table-driven (tests/policies/loops_cases.lua): the
// module is loaded the way suite and policy code gets it, by
// require("shepherd.loops") in a sandbox on a state with the shepherd API
// (its canonical arguments come from shepherd.json).
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/resources.h"
#include "lua/api.h"
#include "lua/lua_call.h"
#include "lua/lua_json.h"
#include "lua/lua_state.h"
#include "lua/sandbox.h"

namespace shepherd {
namespace {

using nlohmann::json;

// Runs one watch case: its steps in order, each result as
// { stuck, why, count } (a reset step: { count }).
constexpr const char* kWatchDriver = R"(
local case = ...
local loops = require("shepherd.loops")
local watch = loops.new(case.options)
local out = {}
for i, step in ipairs(case.steps) do
  if step.reset then
    watch:reset()
    out[i] = { stuck = false, count = watch.count }
  else
    local stuck, why = watch:observe(step.answer)
    out[i] = { stuck = stuck, why = why, count = watch.count }
  end
end
return out
)";

// Runs one signature case: { a, b } or { sig } (false for nil).
constexpr const char* kSignatureDriver = R"(
local case = ...
local loops = require("shepherd.loops")
if case.answer ~= nil then return { sig = loops.signature(case.answer) or false } end
return { a = loops.signature(case.a) or false, b = loops.signature(case.b) or false }
)";

class LoopsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    register_shepherd_api(L);
    std::string path = std::string(SHEPHERD_TEST_SOURCE_DIR) + "/policies/loops_cases.lua";
    LuaFailure failure;
    ASSERT_TRUE(load_chunk(L, read_file(path), path, failure) && protected_call(L, 0, 1, failure))
        << failure.describe();
    cases_ = lua_gettop(L);
  }

  // The cases of one group (`watch`, `signature`, `errors`) as JSON.
  json group(const char* name) {
    lua_getfield(L, cases_, name);
    json out;
    std::string error;
    EXPECT_TRUE(try_to_json(L, -1, out, error)) << error;
    lua_pop(L, 1);
    return out;
  }

  // Runs `driver` in a fresh sandbox with case `i` of group `name` as its
  // argument; returns its result as JSON.
  json drive(const char* driver, const char* name, size_t i) {
    LuaFailure failure;
    json out;
    if (!load_chunk(L, driver, "driver.lua", failure)) {
      ADD_FAILURE() << failure.describe();
      return out;
    }
    push_sandbox_env(L);
    lua_setfenv(L, -2);
    lua_getfield(L, cases_, name);
    lua_rawgeti(L, -1, static_cast<int>(i + 1));
    lua_remove(L, -2);
    if (!protected_call(L, 1, 1, failure)) {
      ADD_FAILURE() << failure.describe();
      return out;
    }
    std::string error;
    EXPECT_TRUE(try_to_json(L, -1, out, error)) << error;
    lua_pop(L, 1);
    return out;
  }

  LuaState L;
  int cases_ = 0;
};

TEST_F(LoopsTest, WatchCases) {
  json cases = group("watch");
  ASSERT_GT(cases.size(), 10u);
  for (size_t i = 0; i < cases.size(); ++i) {
    const json& c = cases[i];
    SCOPED_TRACE(c.value("name", "?"));
    json got = drive(kWatchDriver, "watch", i);
    const json& steps = c.at("steps");
    ASSERT_EQ(got.size(), steps.size());
    for (size_t s = 0; s < steps.size(); ++s) {
      SCOPED_TRACE("step " + std::to_string(s + 1));
      const json& want = steps[s];
      EXPECT_EQ(got[s].value("stuck", false), want.value("stuck", false));
      if (want.contains("count")) {
        EXPECT_EQ(got[s].value("count", -1), want["count"].get<int>());
      }
      if (want.contains("why")) {
        EXPECT_EQ(got[s].value("why", ""), want["why"].get<std::string>());
      } else if (!want.value("stuck", false)) {
        EXPECT_FALSE(got[s].contains("why")) << got[s].dump();
      }
    }
  }
}

TEST_F(LoopsTest, SignatureCases) {
  json cases = group("signature");
  ASSERT_GT(cases.size(), 10u);
  for (size_t i = 0; i < cases.size(); ++i) {
    const json& c = cases[i];
    SCOPED_TRACE(c.value("name", "?"));
    json got = drive(kSignatureDriver, "signature", i);
    if (c.contains("expect")) {
      EXPECT_EQ(got["sig"], c["expect"]);
    } else {
      EXPECT_TRUE(got["a"].is_string()) << got.dump();
      EXPECT_EQ(got["a"] == got["b"], c.at("same").get<bool>()) << got.dump();
    }
  }
}

// Misuse raises with the message of the case, at the line of the caller
// (error levels point past the module's own frames).
TEST_F(LoopsTest, MisuseRaises) {
  json cases = group("errors");
  ASSERT_GT(cases.size(), 5u);
  for (const auto& c : cases) {
    SCOPED_TRACE(c.value("name", "?"));
    std::string code = "local loops = require('shepherd.loops')\n" + c.at("code").get<std::string>() + "\n";
    LuaFailure failure;
    ASSERT_TRUE(load_chunk(L, code, "case.lua", failure)) << failure.describe();
    push_sandbox_env(L);
    lua_setfenv(L, -2);
    int top = lua_gettop(L) - 1;
    ASSERT_FALSE(protected_call(L, 0, 0, failure)) << code;
    EXPECT_EQ(lua_gettop(L), top);
    EXPECT_EQ(failure.message, c.at("error").get<std::string>());
    EXPECT_EQ(failure.file, "case.lua");
    EXPECT_EQ(failure.line, 2);
  }
}

TEST_F(LoopsTest, DefaultsAndReadOnlyModule) {
  LuaFailure failure;
  ASSERT_TRUE(load_chunk(L, R"(
      local loops = require("shepherd.loops")
      local watch = loops.new()
      local changed = pcall(function() loops.new = nil end)
      return table.concat({ watch.repeats, watch.count, tostring(watch.last), tostring(changed),
                            tostring(require("shepherd.loops") == loops) }, ",")
  )", "defaults.lua", failure)) << failure.describe();
  push_sandbox_env(L);
  lua_setfenv(L, -2);
  ASSERT_TRUE(protected_call(L, 0, 1, failure)) << failure.describe();
  EXPECT_STREQ(lua_tostring(L, -1), "3,0,nil,false,true");
  lua_pop(L, 1);
}

// Wherever the binary is copied, the module is in it.
TEST_F(LoopsTest, ModuleIsEmbedded) {
  bool found = false;
  for (const auto& f : details::embedded_files()) found = found || f.path == std::string("lua/shepherd/loops.lua");
  EXPECT_TRUE(found);
}

}  // namespace
}  // namespace shepherd
