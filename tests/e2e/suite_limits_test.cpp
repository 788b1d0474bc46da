// Whatever a suite, a scenario or a policy does -- huge names, raising
// metatables, URLs with no host, loops that never return, texts of 100 MB --
// the result is an error with a code, in bounded time and space; never a
// crash, a hang, or a store that grows by the size of the text.
#include <filesystem>
#include <thread>

#include <gtest/gtest.h>

#include "harness.h"

using namespace e2e;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

nlohmann::json json_error(const Result& r) {
  auto j = nlohmann::json::parse(r.out.empty() ? "{}" : r.out, nullptr, false);
  return j.is_object() && j.contains("error") ? j["error"] : nlohmann::json();
}

// `run` and `status` both refuse the suite with exit 2 and `code`.
void expect_suite_error(const std::string& suite, const std::string& code, const std::string& field = "") {
  for (const char* command : {"run", "status"}) {
    Result r = shepherd({command, suite, "--json"}, key_env(1), 30s);
    EXPECT_EQ(r.exit_code, 2) << command << ": " << r.out.substr(0, 2000) << r.err.substr(0, 2000);
    nlohmann::json e = json_error(r);
    EXPECT_EQ(e["code"], code) << command << ": " << r.out.substr(0, 2000);
    EXPECT_EQ(e["stage"], "config") << command;
    if (!field.empty()) {
      EXPECT_EQ(e["details"]["field"], field) << command << ": " << r.out.substr(0, 2000);
    }
    EXPECT_LT(r.out.size(), 20'000u) << command << ": the error quotes the suite at length";
  }
}

// `text` with its first `from` replaced by `to` (which must be there).
std::string replaced(std::string text, const std::string& from, const std::string& to) {
  size_t at = text.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (at != std::string::npos) text.replace(at, from.size(), to);
  return text;
}

// Nothing but the suite file(s) in the directory: no store, no logs.
void expect_nothing_written(const TempDir& dir, size_t files) {
  size_t n = 0;
  for (const auto& entry : fs::directory_iterator(dir.path())) {
    ++n;
    EXPECT_FALSE(entry.path().extension() == ".db" || entry.path().filename() == "logs") << entry.path();
  }
  EXPECT_EQ(n, files);
}

}  // namespace

TEST(SuiteLimits, OverlongNamesAreSuiteErrors) {
  for (size_t length : {30'000u, 240u, 101u}) {
    TempDir dir;
    SuiteSpec s = suite_at("http://127.0.0.1:9/v1");
    s.name = std::string(length, 'n');
    std::string suite = dir.write("s.lua", s.text());
    SCOPED_TRACE(length);
    expect_suite_error(suite, "SUITE_INVALID", "name");
    expect_nothing_written(dir, 1);
  }
  // At the limit, a name works: its store and its log file names fit.
  Mock mock;
  TempDir dir;
  SuiteSpec s = suite_at(mock.base_url());
  s.name = std::string(100, 'n');
  std::string suite = dir.write("s.lua", s.text());
  Result r = shepherd({"run", suite}, key_env(1));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(fs::exists(dir.file(s.name + ".db")));
  EXPECT_EQ(shepherd({"status", suite}).exit_code, 0);
}

TEST(SuiteLimits, RaisingMetatablesGiveSuiteErrorsNotPanics) {
  Mock mock;
  TempDir dir;
  const std::string raising = "{ __index = function(t, k) error('no field ' .. tostring(k)) end }";
  std::string text = suite_at(mock.base_url()).text();

  // Every field present: raw reads never reach __index, and the run works.
  std::string whole = replaced(text, "return {\n", "return setmetatable({\n");
  whole.replace(whole.rfind('}'), 1, "}, " + raising + ")");
  std::string suite = dir.write("whole.lua", whole);
  Result ok = shepherd({"run", suite, "--json"}, key_env(1));
  EXPECT_EQ(ok.exit_code, 0) << ok.out << ok.err;

  // `request` only behind the raising __index: a missing field, with its code.
  std::string hidden = "local real = (function()\n" + text + "end)()\nreal.request = nil\n" +
                       "return setmetatable(real, " + raising + ")\n";
  std::string missing = dir.write("missing.lua", hidden);
  for (const char* command : {"run", "status"}) {
    Result r = shepherd({command, missing, "--json"}, key_env(1));
    EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
    EXPECT_EQ(json_error(r)["code"], "SUITE_INVALID") << r.out;
    EXPECT_EQ(json_error(r)["details"]["field"], "request") << r.out;
  }

  // A nested table (the provider) with a raising __index, and a matrix whose
  // dimension list raises: still read raw, still a working run.
  std::string nested = replaced(text, "    mock = {", "    mock = setmetatable({");
  nested = replaced(nested, "\n    },\n  },\n", "\n    }, " + raising + "),\n  },\n");
  nested = replaced(nested, "instance = { 1, 2, 3 }", "instance = setmetatable({ 1, 2, 3 }, " + raising + ")");
  Result n = shepherd({"run", dir.write("nested.lua", nested), "--db", dir.file("n.db"), "--json"}, key_env(1));
  EXPECT_EQ(n.exit_code, 0) << n.out << n.err;

  // An error object whose __tostring raises, at load and from request(cell).
  const std::string evil_error = "error(setmetatable({}, { __tostring = function() error('tostring raised') end }))";
  std::string at_load = "local _ = (function() " + evil_error + " end)()\n" + text;
  Result load = shepherd({"run", dir.write("load.lua", at_load), "--json"}, key_env(1));
  EXPECT_EQ(load.exit_code, 2) << load.out << load.err;
  EXPECT_EQ(json_error(load)["code"], "SUITE_INVALID") << load.out;
  Result st = shepherd({"status", dir.file("load.lua"), "--json"});
  EXPECT_EQ(st.exit_code, 2) << st.out << st.err;
  EXPECT_EQ(json_error(st)["code"], "SUITE_INVALID") << st.out;

  std::string in_request = text;
  in_request = replaced(in_request, "    local parts = {}", "    " + evil_error + "\n    local parts = {}");
  std::string req = dir.write("req.lua", in_request);
  Result rr = shepherd({"run", req, "--db", dir.file("r.db"), "--json"}, key_env(1));
  EXPECT_EQ(rr.exit_code, 4) << "every task failed, the run did not" << rr.out << rr.err;
  EXPECT_EQ(query(dir.file("r.db"), "SELECT count(*) FROM tasks WHERE error_code = 'REQUEST_BUILD_FAILED'"), "3");
}

TEST(SuiteLimits, ABaseUrlWithoutAHostIsRefusedAtLoad) {
  TempDir dir;
  for (const char* url : {"http://", "https://", "http:///v1", "http://:8080/v1", "http://exa mple.com/v1",
                          "http://127.0.0.1:9/v1?x=1"}) {
    SCOPED_TRACE(url);
    std::string suite = dir.write("s.lua", suite_at(url).text());
    auto t0 = std::chrono::steady_clock::now();
    expect_suite_error(suite, "SUITE_INVALID", "providers.mock.base_url");
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
    expect_nothing_written(dir, 1);
  }
}

TEST(SuiteLimits, CodeThatNeverReturnsIsStoppedWithinTheLoadBudget) {
  // Three at once, so the three 10 s budgets overlap: a suite whose top level
  // loops (a pcall trying to swallow the stop), a suite whose required module
  // loops, and a Lua mock scenario that loops.
  TempDir dir;
  std::string text = suite_at("http://127.0.0.1:9/v1").text();
  std::string top = dir.write("top.lua",
                              "while true do pcall(function() while true do end end) end\n" + text);
  dir.write("helper.lua", "local x = 0\nwhile true do x = x + 1 end\nreturn {}\n");
  std::string module = dir.write("module.lua", "local helper = require('helper')\n" + text);
  std::string scenario = dir.write("scenario.lua", "local n = 0\nrepeat n = n + 1 until false\nreturn {}\n");

  auto t0 = std::chrono::steady_clock::now();
  Process run({SHEPHERD_BIN, "run", top, "--json"}, key_env(1));
  Process status({SHEPHERD_BIN, "status", module, "--json"});
  Process mock({SHEPHERD_BIN, "mock", "--json", "--port", "0", "--scenario", scenario});
  for (Process* p : {&run, &status, &mock}) {
    Result r = p->wait(20s);
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_LT(seconds, 15.0);
    EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
    nlohmann::json e = json_error(r);
    EXPECT_EQ(e["code"], p == &mock ? "SCENARIO_INVALID" : "SUITE_INVALID") << r.out;
    EXPECT_NE(e.value("message", "").find("time limit"), std::string::npos) << r.out;
  }
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_GE(seconds, 9.0) << "stopped by the 10 s budget, not earlier";
  expect_nothing_written(dir, 4);
}

TEST(SuiteLimits, PolicyTextsAndMemoryAreBounded) {
  Mock mock;
  TempDir dir;
  // classify: 100 MB built and returned; a 20 MB class; a 20 MB error.
  dir.write("classify.lua", R"(
return {
  classify = function(o)
    local c = o.content or ''
    if c:find('instance=1 ', 1, true) then return string.rep('x', 100 * 1024 * 1024) end
    if c:find('instance=2 ', 1, true) then return string.rep('c', 20 * 1024 * 1024) end
    if c:find('instance=3 ', 1, true) then error(string.rep('e', 20 * 1024 * 1024)) end
    if c:find('instance=4 ', 1, true) then local t = {} for i = 1, 1e9 do t[i] = tostring(i) end end
    return 'custom_failure'
  end,
})");
  // decide: a 20 MB code, a 20 MB error, a 100 MB code.
  dir.write("retry.lua", R"(
return {
  decide = function(ctx)
    if ctx.task.instance == 5 then return { action = 'fail', code = string.rep('C', 20 * 1024 * 1024) } end
    if ctx.task.instance == 6 then error(string.rep('d', 20 * 1024 * 1024)) end
    return { action = 'fail', code = string.rep('D', 100 * 1024 * 1024) }
  end,
})");
  SuiteSpec s = suite_at(mock.base_url());
  s.matrix = "{ model = { 'm-a' }, instance = { 1, 2, 3, 4, 5, 6, 7 } }";
  s.extra = "  policies = { classify = 'classify.lua', retry = 'retry.lua' },";
  std::string suite = dir.write("s.lua", s.text());
  auto t0 = std::chrono::steady_clock::now();
  Result r = shepherd({"run", suite}, key_env(1), 60s);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_EQ(r.exit_code, 4) << r.err.substr(0, 4000);
  EXPECT_LT(seconds, 10.0);
  EXPECT_LT(r.max_rss_kb, 600 * 1024) << "policy calls are held to 64 MB each";
  EXPECT_LT(r.err.size(), 64'000u);

  std::string db = dir.file("e2e.db");
  EXPECT_EQ(query(db, "SELECT count(*) FROM tasks WHERE state = 'failed' AND error_code = 'POLICY_ERROR'"), "7");
  EXPECT_LE(std::stoi(query(db, "SELECT max(length(error_message)) FROM tasks")), 10'000);
  EXPECT_LE(std::stoi(query(db, "SELECT max(length(coalesce(class, '')) + length(coalesce(error_code, '')) + "
                                "length(coalesce(error_message, ''))) FROM attempts")),
            12'000);
  uintmax_t bytes = fs::file_size(db);
  if (fs::exists(db + "-wal")) bytes += fs::file_size(db + "-wal");
  EXPECT_LT(bytes, 2u << 20) << "the store stays small";
  for (const auto& entry : fs::recursive_directory_iterator(dir.file("logs"))) {
    if (entry.is_regular_file()) {
      EXPECT_LT(entry.file_size(), 256u << 10) << entry.path();
    }
  }
  auto rows = parse_jsonl(shepherd({"export", suite, "--format", "jsonl"}).out);
  ASSERT_EQ(rows.size(), 7u);
  for (const auto& row : rows) EXPECT_LT(row.dump().size(), 12'000u) << row.dump().substr(0, 300);
}
