// Models as resources: an exhausted model gives way to the next one and is
// never used again in the run; with none left the run stops, results kept.
#include <ctime>

#include <SQLiteCpp/Database.h>
#include <gtest/gtest.h>

#include "harness.h"

using namespace e2e;

namespace {

std::string resource_suite(const TempDir& dir, const Mock& mock, int tasks, const std::string& extra = "") {
  SuiteSpec s = suite_at(mock.base_url());
  s.models = {"m-a", "m-b", "m-c"};
  s.concurrency = 4;
  s.matrix = "{ file = (function() local t = {} for i = 1, " + std::to_string(tasks) +
             " do t[i] = 'input-' .. i .. '.c' end return t end)() }";
  s.extra = "  models = { 'm-a', 'm-b', 'm-c' },\n" + extra;
  return dir.write("gen.lua", s.text());
}

}  // namespace

TEST(Switch, QuotaOnTwoModelsThirdFinishesTheJob) {
  Mock mock(nlohmann::json{{"latency", 5}, {"quota", {{"m-a", 10}, {"m-b", 10}}}});
  TempDir dir;
  std::string suite = resource_suite(dir, mock, 60);
  Result r = shepherd({"run", suite}, key_env(1));
  ASSERT_EQ(r.exit_code, 0) << r.err;

  auto stats = mock.stats();
  EXPECT_EQ(stats["by_model"]["m-a"]["ok"], 10);
  EXPECT_EQ(stats["by_model"]["m-b"]["ok"], 10);
  EXPECT_EQ(stats["by_model"]["m-c"]["ok"], 40);
  // Once exhausted, a model gets at most what was already in flight (4 slots).
  EXPECT_LE(stats["by_model"]["m-a"]["quota_exhausted"].get<int>(), 4);
  EXPECT_LE(stats["by_model"]["m-b"]["quota_exhausted"].get<int>(), 4);

  std::map<std::string, int> answered;
  for (const auto& row : parse_jsonl(shepherd({"export", suite, "--format", "jsonl"}).out)) {
    EXPECT_EQ(row["state"], "done");
    answered[row["model"].get<std::string>()]++;
  }
  EXPECT_EQ(answered["m-c"], 40) << "the answering model is recorded";
  std::string db = dir.file("e2e.db");
  EXPECT_EQ(query(db, "SELECT count(*) FROM events WHERE kind = 'model_switch'"), "2");
  EXPECT_EQ(query(db, "SELECT json_extract(detail, '$.from') || '>' || json_extract(detail, '$.to') FROM events "
                      "WHERE kind = 'model_switch' ORDER BY id LIMIT 1"),
            "m-a>m-b");
  EXPECT_EQ(query(db, "SELECT count(*) FROM tasks WHERE state = 'failed'"), "0");
}

TEST(Switch, AllModelsExhaustedStopsWithExitThreeAndKeepsProgress) {
  Mock mock(nlohmann::json{{"latency", 5}, {"quota", {{"m-a", 5}, {"m-b", 5}, {"m-c", 5}}}});
  TempDir dir;
  std::string suite = resource_suite(dir, mock, 40);
  Result r = shepherd({"run", suite, "--json"}, key_env(1));
  EXPECT_EQ(r.exit_code, 3) << r.err;
  auto out = nlohmann::json::parse(r.out);
  EXPECT_EQ(out["models_exhausted"], true);
  EXPECT_NE(r.err.find("no model is left"), std::string::npos) << r.err;
  std::string db = dir.file("e2e.db");
  EXPECT_EQ(query(db, "SELECT count(*) FROM tasks WHERE state = 'done'"), "15");
  EXPECT_EQ(query(db, "SELECT count(*) FROM tasks WHERE state = 'pending'"), "25");
  EXPECT_EQ(query(db, "SELECT count(*) FROM tasks WHERE state = 'failed'"), "0");
  EXPECT_EQ(query(db, "SELECT outcome FROM runs"), "models_exhausted");
  int requests = mock.stats()["requests"].get<int>();
  EXPECT_LE(requests, 15 + 3 * 4) << "after the last model ran out, nothing more was sent";

  // A later run remembers the exhaustion: nothing is sent.
  mock.reset();
  ASSERT_EQ(shepherd({"run", suite}, key_env(1)).exit_code, 3);
  EXPECT_EQ(mock.stats()["requests"], 0);
  // With the quota back (--forget-exhausted) it continues the unfinished tasks only.
  ASSERT_EQ(shepherd({"run", suite, "--forget-exhausted"}, key_env(1)).exit_code, 3);  // 5 per model again
  EXPECT_EQ(query(db, "SELECT count(*) FROM tasks WHERE state = 'done'"), "30");
}

TEST(Switch, TheSwitchPolicyChoosesAndIsOverruledWhenItCheats) {
  Mock mock(nlohmann::json{{"quota", {{"m-a", 2}}}});
  TempDir dir;
  // Jump straight to m-c; then (m-c never runs out here) nothing more.
  dir.write("jump.lua", "return { next_model = function(ctx) return 'm-c' end }\n");
  std::string suite = resource_suite(dir, mock, 10, "  policies = { switch = 'jump.lua' },\n");
  ASSERT_EQ(shepherd({"run", suite}, key_env(1)).exit_code, 0);
  auto stats = mock.stats();
  EXPECT_FALSE(stats["by_model"].contains("m-b")) << "m-b was never asked";
  EXPECT_EQ(stats["by_model"]["m-c"]["ok"], 8);

  // A policy answering an exhausted model is overruled: the next in order is taken.
  Mock mock2(nlohmann::json{{"quota", {{"m-a", 2}}}});
  TempDir dir2;
  dir2.write("cheat.lua", "return { next_model = function(ctx) return ctx.current end }\n");
  std::string suite2 = resource_suite(dir2, mock2, 10, "  policies = { switch = 'cheat.lua' },\n");
  ASSERT_EQ(shepherd({"run", suite2}, key_env(1)).exit_code, 0);
  EXPECT_EQ(mock2.stats()["by_model"]["m-b"]["ok"], 8);
  EXPECT_NE(query(dir2.file("e2e.db"), "SELECT json_extract(detail, '$.why') FROM events WHERE kind = 'model_switch'")
                .find("not an unused model"),
            std::string::npos);
}

// A model whose quota ran out stays out of later runs: the next run sends
// nothing to it (no 403 asked again) until --forget-exhausted.
TEST(Switch, ExhaustedModelsAreRememberedAcrossRuns) {
  Mock mock(nlohmann::json{{"latency", 5}, {"quota", {{"m-a", 10}}}});
  TempDir dir;
  std::string suite = resource_suite(dir, mock, 20);
  ASSERT_EQ(shepherd({"run", suite}, key_env(1)).exit_code, 0);
  const int refused = mock.stats()["by_model"]["m-a"]["quota_exhausted"].get<int>();
  ASSERT_GE(refused, 1);
  std::string db = dir.file("e2e.db");
  EXPECT_EQ(query(db, "SELECT json_extract(detail, '$.model') FROM events WHERE kind = 'quota_parked' LIMIT 1"), "m-a");

  // Twenty more inputs: none goes to m-a, not even to ask.
  resource_suite(dir, mock, 40);
  Result second = shepherd({"run", suite}, key_env(1));
  ASSERT_EQ(second.exit_code, 0) << second.err;
  auto stats = mock.stats();
  EXPECT_EQ(stats["by_model"]["m-a"]["quota_exhausted"].get<int>(), refused) << "m-a was asked again";
  EXPECT_EQ(stats["by_model"]["m-a"]["ok"], 10);
  EXPECT_NE(second.err.find("ran out of quota in an earlier run"), std::string::npos) << second.err;
  EXPECT_EQ(query(db, "SELECT count(*) FROM events WHERE kind = 'quota_remembered'"), "1");
  EXPECT_EQ(query(db, "SELECT count(*) FROM tasks WHERE state = 'done' AND model = 'm-b'"), "30");

  // --forget-exhausted: m-a is tried again (and refuses again).
  resource_suite(dir, mock, 50);
  Result third = shepherd({"run", suite, "--forget-exhausted"}, key_env(1));
  ASSERT_EQ(third.exit_code, 0) << third.err;
  EXPECT_GT(mock.stats()["by_model"]["m-a"]["quota_exhausted"].get<int>(), refused);
  EXPECT_EQ(query(db, "SELECT count(*) FROM events WHERE kind = 'exhausted_forgotten'"), "1");
}

// With the provider's quota_resets time known, the memory ends there.
TEST(Switch, RememberedExhaustionEndsAtTheQuotaResetTime) {
  Mock mock(nlohmann::json{{"latency", 5}, {"quota", {{"m-a", 3}}}});
  TempDir dir;
  SuiteSpec s = suite_at(mock.base_url());
  s.models = {"m-a", "m-b"};
  s.concurrency = 2;
  s.provider_extra = "quota_resets = '00:00',";
  s.matrix = "{ instance = { 1, 2, 3, 4, 5, 6, 7, 8 } }";
  s.extra = "  models = { 'm-a', 'm-b' },\n";
  std::string suite = dir.write("r.lua", s.text());
  ASSERT_EQ(shepherd({"run", suite}, key_env(1)).exit_code, 0);
  std::string db = dir.file("e2e.db");
  const double until = std::stod(query(db, "SELECT json_extract(detail, '$.until_unix') FROM events WHERE kind = "
                                           "'quota_parked' LIMIT 1"));
  const double now = static_cast<double>(std::time(nullptr));
  EXPECT_GT(until, now);
  EXPECT_LE(until, now + 24 * 3600 + 5) << "the next 00:00 UTC";
  // Pretend the reset has passed: m-a is asked again.
  SQLite::Database(db, SQLite::OPEN_READWRITE)
      .exec("UPDATE events SET detail = json_set(detail, '$.until_unix', 1) WHERE kind = 'quota_parked'");
  const int before = mock.stats()["by_model"]["m-a"]["quota_exhausted"].get<int>();
  s.matrix = "{ instance = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 } }";
  dir.write("r.lua", s.text());
  ASSERT_EQ(shepherd({"run", suite}, key_env(1)).exit_code, 0);
  EXPECT_GT(mock.stats()["by_model"]["m-a"]["quota_exhausted"].get<int>(), before);
}
