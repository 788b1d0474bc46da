// concurrency = N per (key, model) with K keys: N x K truly in flight per model.
#include <gtest/gtest.h>

#include "harness.h"

using namespace e2e;

TEST(Concurrency, EveryKeyAndModelFillsItsSlots) {
  Mock mock(nlohmann::json{{"latency", 400}});
  TempDir dir;
  SuiteSpec s;
  s.base_url = mock.base_url();
  s.keys = 3;
  s.concurrency = 20;
  s.models = {"m-a", "m-b"};
  s.matrix = "{ model = { 'm-a', 'm-b' }, instance = (function() local t = {} for i = 1, 240 do t[i] = i end return t end)() }";
  std::string suite = dir.write("s.lua", s.text());
  auto start = std::chrono::steady_clock::now();
  Result r = shepherd({"run", suite, "--db", dir.file("s.db")}, key_env(3));
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto stats = mock.stats();
  // 2 models x 3 keys x 20 = 120 at once; 480 tasks at 400 ms = 4 waves.
  EXPECT_GE(stats["peak_in_flight"].get<int>(), 110);
  EXPECT_LE(stats["peak_in_flight"].get<int>(), 120) << "the per-(key, model) limit must hold";
  EXPECT_LT(seconds, 4.0);
  for (const auto& key : {"e2e-secret-value-0", "e2e-secret-value-1", "e2e-secret-value-2"}) {
    int n = stats["by_key"][key]["ok"].get<int>();
    EXPECT_GT(n, 120) << key << " should carry about a third of 480";
  }
}
