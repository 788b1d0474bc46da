// The key pool against the mock's real limits: every key used up to its limit
// and no further, learned limits, a bad key dropped at once.
#include <gtest/gtest.h>

#include "harness.h"

using namespace e2e;

namespace {

std::string many(int n) {
  return "(function() local t = {} for i = 1, " + std::to_string(n) + " do t[i] = i end return t end)()";
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

TEST(Keys, ConfiguredRpmIsHonouredAndUsed) {
  // The provider allows 50 requests per (key, model) per 10 s window.
  Mock mock(nlohmann::json{{"latency", 5}, {"rate_limit", {{"requests", 50}, {"window_ms", 10000}}}});
  TempDir dir;
  SuiteSpec s = suite_at(mock.base_url());
  s.concurrency = 20;
  s.matrix = "{ model = { 'm-a' }, instance = " + many(60) + " }";
  std::string suite = dir.write("s.lua", s.text());
  std::string text = read_file(suite);
  text.replace(text.find("concurrency = 20"), 16, "concurrency = 20, rpm = 300");
  dir.write("s.lua", text);
  auto t0 = std::chrono::steady_clock::now();
  Result r = shepherd({"run", suite}, key_env(1), std::chrono::seconds(60));
  double seconds = seconds_since(t0);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto stats = mock.stats();
  EXPECT_EQ(stats["by_outcome"]["rate_limited"], 0) << "paced evenly: never a 429";
  EXPECT_EQ(stats["by_outcome"]["ok"], 60);
  // 60 requests at 5/s: the first goes at once, so about 11.8 s when the limit is used in full.
  double used = 59.0 / (seconds - 0.3) / 5.0;
  EXPECT_GE(used, 0.9) << "took " << seconds << " s";
}

TEST(Keys, UnconfiguredLimitsAreLearnedFromHeaders) {
  Mock mock(nlohmann::json{{"latency", 5}, {"rate_limit", {{"requests", 50}, {"window_ms", 10000}}}});
  TempDir dir;
  SuiteSpec s = suite_at(mock.base_url());
  s.concurrency = 20;
  s.matrix = "{ model = { 'm-a' }, instance = " + many(100) + " }";
  s.extra = "  retry = { max_retries = 10, base_delay_ms = 100, poison_after = 10 },";
  std::string suite = dir.write("s.lua", s.text());
  auto t0 = std::chrono::steady_clock::now();
  Result r = shepherd({"run", suite}, key_env(1), std::chrono::seconds(90));
  double seconds = seconds_since(t0);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto stats = mock.stats();
  int limited = stats["by_outcome"]["rate_limited"].get<int>();
  int requests = stats["requests"].get<int>();
  EXPECT_EQ(stats["by_outcome"]["ok"], 100);
  EXPECT_LE(limited, requests / 10) << limited << " of " << requests << " were 429s";
  // 100 at 5/s is 20 s at the real limit; at least 80% of it means under 25 s (+ the first window).
  EXPECT_LE(seconds, 100.0 / (5.0 * 0.8) + 1.0) << "took " << seconds << " s";
}

TEST(Keys, FiftyInFlightAtOneSecondLatency) {
  Mock mock(nlohmann::json{{"latency", 1000}});
  TempDir dir;
  SuiteSpec s = suite_at(mock.base_url());
  s.concurrency = 50;
  s.matrix = "{ model = { 'm-a' }, instance = " + many(100) + " }";
  std::string suite = dir.write("s.lua", s.text());
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(shepherd({"run", suite}, key_env(1)).exit_code, 0);
  EXPECT_GE(mock.stats()["peak_in_flight"].get<int>(), 50);
  EXPECT_LT(seconds_since(t0), 4.0);
}

TEST(Keys, ARejectedKeyIsDroppedAtOnce) {
  // Key 1's value is not one the provider accepts.
  Mock mock(nlohmann::json{{"latency", 20}, {"keys", {"e2e-secret-value-0", "e2e-secret-value-2"}}});
  TempDir dir;
  SuiteSpec s = suite_at(mock.base_url());
  s.keys = 3;
  s.concurrency = 4;
  s.matrix = "{ model = { 'm-a' }, instance = " + many(60) + " }";
  std::string suite = dir.write("s.lua", s.text());
  Result r = shepherd({"run", suite}, key_env(3));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto stats = mock.stats();
  EXPECT_EQ(stats["by_outcome"]["ok"], 60) << "every task done on the good keys";
  EXPECT_LE(stats["by_outcome"]["unauthorized"].get<int>(), 4) << "at most what that slot had in flight";
  std::string db = dir.file("e2e.db");
  EXPECT_EQ(query(db, "SELECT json_extract(detail, '$.key') FROM events WHERE kind = 'key_disabled'"), "k1");
  EXPECT_NE(r.err.find("key k1"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("e2e-secret-value"), std::string::npos);
  auto st = nlohmann::json::parse(shepherd({"status", suite, "--json"}).out);
  bool shown = false;
  for (const auto& k : st["keys"])
    if (k["key"] == "k1") shown = k["disabled"].get<bool>();
  EXPECT_TRUE(shown) << st["keys"].dump();
}

TEST(Keys, ThreeKeysShareTheWorkEvenly) {
  Mock mock(nlohmann::json{{"latency", 5}});
  TempDir dir;
  SuiteSpec s = suite_at(mock.base_url());
  s.keys = 3;
  s.concurrency = 4;
  s.matrix = "{ model = { 'm-a' }, instance = " + many(600) + " }";
  std::string suite = dir.write("s.lua", s.text());
  ASSERT_EQ(shepherd({"run", suite}, key_env(3)).exit_code, 0);
  auto stats = mock.stats();
  for (int i = 0; i < 3; ++i) {
    int n = stats["by_key"]["e2e-secret-value-" + std::to_string(i)]["ok"].get<int>();
    EXPECT_GE(n, 160) << "key " << i;
    EXPECT_LE(n, 240) << "key " << i;
  }
}

TEST(Keys, AzureDeploymentsAreSlotsOfTheSameModel) {
  Mock mock(nlohmann::json{{"latency", 5}});
  TempDir dir;
  std::string base = "http://127.0.0.1:" + std::to_string(mock.port());
  std::string suite = dir.write("s.lua", R"(
return {
  name = "az",
  providers = {
    openai = { base_url = ")" + base + R"(/v1", keys = { { id = "oa", env = "E2E_KEY_0" } },
               models = { "gpt-4o" }, limits = { concurrency = 4 } },
    azure_east = { kind = "azure", base_url = ")" + base + R"(", api_version = "2024-06-01",
                   deployments = { ["gpt-4o"] = "gpt4o-east" },
                   keys = { { id = "az", env = "E2E_KEY_1" } }, limits = { concurrency = 4 } },
  },
  matrix = { model = { "gpt-4o" }, instance = (function() local t = {} for i = 1, 200 do t[i] = i end return t end)() },
  request = function(cell) return { messages = { { role = "user", content = "n" .. cell.instance } } } end,
}
)");
  Result r = shepherd({"run", suite}, key_env(2));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto stats = mock.stats();
  int openai = stats["by_key"]["e2e-secret-value-0"]["ok"].get<int>();
  int azure = stats["by_key"]["e2e-secret-value-1"]["ok"].get<int>();  // sent as `api-key`
  EXPECT_EQ(openai + azure, 200);
  EXPECT_GE(azure, 60);
  EXPECT_GE(openai, 60);
  EXPECT_EQ(query(dir.file("az.db"), "SELECT count(DISTINCT endpoint) FROM attempts"), "2");
}

TEST(Keys, KeyForStatesAnAffinity) {
  // The older system mapped prompt types to keys: baseline -> k0, cot -> k1.
  Mock mock(nlohmann::json{{"latency", 5}});
  TempDir dir;
  SuiteSpec s = suite_at(mock.base_url());
  s.keys = 3;
  s.concurrency = 40;  // room enough: only the slow start's first wave may spill
  s.matrix = "{ model = { 'm-a' }, prompt_type = { 'baseline', 'cot' }, instance = " + many(30) + " }";
  s.extra = "  key_for = function(cell, keys) if cell.prompt_type == 'baseline' then return 'k0' end return 'k1' end,";
  std::string suite = dir.write("s.lua", s.text());
  ASSERT_EQ(shepherd({"run", suite}, key_env(3)).exit_code, 0);
  std::string db = dir.file("e2e.db");
  // Preferred, not exclusive: a full or not yet probed preferred key spills
  // over rather than hold the queue, so nearly all of each kind goes to its key.
  int baseline_k0 = std::stoi(query(db, "SELECT count(*) FROM attempts a JOIN tasks t ON t.id = a.task "
                                        "WHERE json_extract(t.dims, '$.prompt_type') = 'baseline' AND a.key_id = 'k0'"));
  int cot_k1 = std::stoi(query(db, "SELECT count(*) FROM attempts a JOIN tasks t ON t.id = a.task "
                                   "WHERE json_extract(t.dims, '$.prompt_type') = 'cot' AND a.key_id = 'k1'"));
  int to_k2 = std::stoi(query(db, "SELECT count(*) FROM attempts WHERE key_id = 'k2'"));
  EXPECT_GE(baseline_k0, 26);
  EXPECT_GE(cot_k1, 26);
  EXPECT_LT(to_k2, baseline_k0 + cot_k1) << "the key nobody prefers only takes the overflow";
}
