// Models as resources: an exhausted model gives way to the next one and is
// never used again in the run; with none left the run stops, results kept.
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

  // A later run (quota back) continues the unfinished tasks only.
  mock.reset();
  ASSERT_EQ(shepherd({"run", suite}, key_env(1)).exit_code, 3);  // the mock's quota is 5 per model again
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
