// Policies run in a sandbox: escapes fail and nothing happens; a policy that
// raises fails its task with POLICY_ERROR; one that does not load stops the
// run before it starts.
#include <filesystem>

#include <gtest/gtest.h>

#include "harness.h"

using namespace e2e;

namespace {

std::string suite_with(const TempDir& dir, const Mock& mock, const std::string& policies) {
  SuiteSpec s = suite_at(mock.base_url());
  s.extra = "  policies = " + policies + ",";
  return dir.write("s.lua", s.text());
}

}  // namespace

TEST(Sandbox, EscapesFailAndNothingHappens) {
  Mock mock;
  TempDir dir;
  std::string marker = dir.file("escaped");
  // Each attempt is made inside pcall: the policy reports what got through.
  dir.write("classify.lua", R"(
local attempts = {
  function() os.execute("touch )" + marker + R"(") end,
  function() io.open(")" + marker + R"(", "w"):write("x") end,
  function() require("ffi") end,
  function() require("io") end,
  function() load("return 1")() end,
  function() loadstring("return 1")() end,
  function() dofile(")" + marker + R"(") end,
  function() debug.getinfo(1) end,
  function() getfenv(1).x = 1 end,
  function() string.dump(function() end) end,
  function() getmetatable("").__index.upper = nil end,
  function() shepherd.json.encode = nil end,
  function() collectgarbage("stop") end,
  function() setfenv(1, {}) end,
  function() rawset(require("shepherd.models"), "same_model", function() return true end) end,
  function() ("").dump(function() end) end,
  function() require("shepherd.models").same_model = nil end,
}
return {
  classify = function(o)
    local escaped = {}
    for i, try in ipairs(attempts) do
      if pcall(try) then escaped[#escaped + 1] = tostring(i) end
    end
    if #escaped > 0 then return "escaped_" .. table.concat(escaped, "_") end
    return "ok"
  end,
}
)");
  std::string suite = suite_with(dir, mock, "{ classify = 'classify.lua' }");
  Result r = shepherd({"run", suite}, key_env(1));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(query(dir.file("e2e.db"), "SELECT group_concat(DISTINCT last_class) FROM tasks"), "ok") << "nothing escaped";
  EXPECT_EQ(query(dir.file("e2e.db"), "SELECT count(*) FROM tasks WHERE state = 'done'"), "3");
  EXPECT_FALSE(std::filesystem::exists(marker));
}

TEST(Sandbox, APolicyErrorFailsItsTaskWithPolicyError) {
  Mock mock;
  TempDir dir;
  dir.write("classify.lua", "return { classify = function(o) local t = nil; return t.field end }\n");
  std::string suite = suite_with(dir, mock, "{ classify = 'classify.lua' }");
  Result r = shepherd({"run", suite}, key_env(1));
  ASSERT_EQ(r.exit_code, 4) << r.err;
  for (const auto& row : parse_jsonl(shepherd({"export", suite, "--format", "jsonl"}).out)) {
    EXPECT_EQ(row["state"], "failed");
    EXPECT_EQ(row["error"]["code"], "POLICY_ERROR");
    std::string message = row["error"]["message"].get<std::string>();
    EXPECT_NE(message.find("classify.lua:1:"), std::string::npos) << message;
  }
}

TEST(Sandbox, APolicyThatDoesNotLoadStopsTheRunBeforeItStarts) {
  Mock mock;
  TempDir dir;
  dir.write("retry.lua", "return { decide = function(ctx) return { action = 'retry' }\n");  // unclosed
  std::string suite = suite_with(dir, mock, "{ retry = 'retry.lua' }");
  Result r = shepherd({"run", suite, "--json"}, key_env(1));
  EXPECT_EQ(r.exit_code, 2);
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["error"]["code"], "POLICY_LOAD_FAILED");
  EXPECT_EQ(j["error"]["stage"], "policy");
  EXPECT_EQ(j["error"]["details"]["policy"], "retry");
  EXPECT_EQ(j["error"]["details"]["line"], 2);
  EXPECT_EQ(mock.stats()["requests"], 0);

  // A failing selftest() refuses the file too.
  dir.write("retry.lua", "return { decide = function() end, selftest = function() assert(1 == 2, 'broken rule') end }\n");
  Result st = shepherd({"run", suite, "--json"}, key_env(1));
  EXPECT_EQ(st.exit_code, 2);
  EXPECT_NE(nlohmann::json::parse(st.out)["error"]["message"].get<std::string>().find("broken rule"), std::string::npos);
}

TEST(Sandbox, ARunawayPolicyIsStoppedAndCountsAsAPolicyFailure) {
  Mock mock;
  TempDir dir;
  // A loop LuaJIT would compile, and a pcall trying to swallow the stop.
  dir.write("classify.lua", R"(
return {
  classify = function(o)
    local x = 0
    while true do
      pcall(function() for i = 1, 1e12 do x = x + i end end)
    end
  end,
})");
  std::string suite = suite_with(dir, mock, "{ classify = 'classify.lua' }");
  auto start = std::chrono::steady_clock::now();
  Result r = shepherd({"run", suite}, key_env(1), std::chrono::seconds(30));
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_EQ(r.exit_code, 4) << r.err;
  EXPECT_LT(seconds, 5.0) << "three tasks, each stopped after 250 ms";
  for (const auto& row : parse_jsonl(shepherd({"export", suite, "--format", "jsonl"}).out)) {
    EXPECT_EQ(row["state"], "failed");
    EXPECT_EQ(row["error"]["code"], "POLICY_ERROR");
    EXPECT_NE(row["error"]["message"].get<std::string>().find("time limit"), std::string::npos) << row.dump();
  }

  // A file that never finishes loading is refused at start, in bounded time.
  dir.write("classify.lua", "while true do end\n");
  Result load = shepherd({"run", suite, "--json"}, key_env(1), std::chrono::seconds(30));
  EXPECT_EQ(load.exit_code, 2);
  EXPECT_EQ(nlohmann::json::parse(load.out)["error"]["code"], "POLICY_LOAD_FAILED");
}
