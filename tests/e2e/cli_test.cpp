// The CLI's contract: help, usage errors, suite errors with file:line:field,
// JSON errors, exit codes, and a store held by another run.
#include <signal.h>

#include <thread>

#include <gtest/gtest.h>

#include "harness.h"

using namespace e2e;
using namespace std::chrono_literals;

TEST(Cli, HelpEverywhere) {
  for (auto args : std::vector<std::vector<std::string>>{
           {"--help"}, {"run", "--help"}, {"status", "--help"}, {"export", "--help"}, {"mock", "--help"}}) {
    Result r = shepherd(args);
    EXPECT_EQ(r.exit_code, 0) << args[0];
    EXPECT_NE(r.out.find("Usage"), std::string::npos) << r.out;
  }
}

TEST(Cli, UsageErrorsExitTwo) {
  TempDir dir;
  std::string suite = dir.write("s.lua", suite_at("http://127.0.0.1:9/v1").text());
  EXPECT_EQ(shepherd({}).exit_code, 2);
  EXPECT_EQ(shepherd({"frobnicate"}).exit_code, 2);
  EXPECT_EQ(shepherd({"run"}).exit_code, 2);
  EXPECT_EQ(shepherd({"run", suite, "--bogus"}).exit_code, 2);
  EXPECT_EQ(shepherd({"export", suite, "--format", "xml"}).exit_code, 2);
  EXPECT_EQ(shepherd({"status", suite, "--by", "nosuchdim"}).exit_code, 2);
  Result missing = shepherd({"run", dir.file("nope.lua")});
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.err.find("SUITE_NOT_FOUND"), std::string::npos) << missing.err;
}

TEST(Cli, SuiteErrorsNameFileLineAndField) {
  TempDir dir;
  std::string syntax = dir.write("syntax.lua", "return {\n  name = 'x',\n  matrix = { a = { 1 } \n  request = 5,\n}\n");
  Result r = shepherd({"run", syntax});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("syntax.lua:4:"), std::string::npos) << r.err;

  SuiteSpec s = suite_at("http://127.0.0.1:9/v1");
  s.concurrency = 0;
  std::string bad = dir.write("bad.lua", s.text());
  Result typed = shepherd({"run", bad, "--json"}, key_env(1));
  EXPECT_EQ(typed.exit_code, 2);
  auto j = nlohmann::json::parse(typed.out);
  EXPECT_EQ(j["status"], "error");
  EXPECT_EQ(j["error"]["code"], "SUITE_INVALID");
  EXPECT_EQ(j["error"]["stage"], "config");
  EXPECT_EQ(j["error"]["details"]["field"], "providers.mock.limits.concurrency");
  EXPECT_EQ(j["error"]["details"]["line"], 8);  // where `limits = { concurrency = 0 }` is written
  EXPECT_TRUE(j.contains("timestamp"));

  std::string text = suite_at("http://127.0.0.1:9/v1").text();
  text.replace(text.find("    mock = {\n"), 12, "    mock = {\n      kind = 'anthropic',\n");
  Result kind = shepherd({"run", dir.write("kind.lua", text)}, key_env(1));
  EXPECT_EQ(kind.exit_code, 2);
  EXPECT_NE(kind.err.find("providers.mock.kind"), std::string::npos) << kind.err;

  Result env = shepherd({"run", dir.write("env.lua", suite_at("http://127.0.0.1:9/v1").text())});
  EXPECT_EQ(env.exit_code, 2);
  EXPECT_NE(env.err.find("E2E_KEY_0"), std::string::npos) << env.err;
  EXPECT_NE(env.err.find("KEY_ENV_MISSING"), std::string::npos) << env.err;
}

TEST(Cli, StoreHeldByAnotherRunIsRefused) {
  Mock mock(nlohmann::json{{"faults", {{"hang", 1.0}}}});
  TempDir dir;
  SuiteSpec s = suite_at(mock.base_url());
  s.timeouts = "{ connect_ms = 1000, total_ms = 30000 }";
  std::string suite = dir.write("s.lua", s.text());
  Process first({SHEPHERD_BIN, "run", suite}, key_env(1));
  std::this_thread::sleep_for(500ms);
  Result second = shepherd({"run", suite, "--json"}, key_env(1));
  EXPECT_EQ(second.exit_code, 1);
  EXPECT_EQ(nlohmann::json::parse(second.out)["error"]["code"], "STORE_LOCKED") << second.out;
  // Reading is fine while it runs.
  EXPECT_EQ(shepherd({"status", suite}).exit_code, 0);
  first.signal(SIGKILL);
  first.wait();
}

TEST(Cli, ExportBeforeAnyRunSaysSo) {
  TempDir dir;
  std::string suite = dir.write("s.lua", suite_at("http://127.0.0.1:9/v1").text());
  Result r = shepherd({"export", suite, "--format", "jsonl"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("STORE_OPEN_FAILED"), std::string::npos) << r.err;
}

// A JSON scenario nested 100,000 deep (a canned body_json) is refused with a
// code; it once overflowed the stack when the mock serialised it.
TEST(Cli, DeeplyNestedScenarioIsRefused) {
  TempDir dir;
  std::string deep = "{\"canned\": [{\"body_json\": " + std::string(100000, '[') + std::string(100000, ']') + "}]}";
  Result r = shepherd({"mock", "--port", "0", "--scenario", dir.write("deep.json", deep), "--json"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.out.find("SCENARIO_INVALID"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("nested deeper than"), std::string::npos) << r.out;
}
