// A provider that refuses every key with a 403 whose error code differs
// from key to key (so "the same error N times in a row" never fires) must
// not cause a retry storm: a task's retries are never immediate, its
// attempts are few, and the run ends.
#include <gtest/gtest.h>

#include "harness.h"

using namespace e2e;
using namespace std::chrono_literals;

namespace {

nlohmann::json refusing(const std::string& code) {
  nlohmann::json body = {{"error",
                          {{"message", "You are not allowed to sample from this model"},
                           {"type", "invalid_request_error"},
                           {"param", nullptr},
                           {"code", code}}}};
  return {{"canned", nlohmann::json::array({{{"status", 403}, {"body_json", body}}})}};
}

std::string provider(const std::string& name, const Mock& mock, int key) {
  return "    " + name + " = {\n      base_url = '" + mock.base_url() + "',\n      keys = { { id = 'k" +
         std::to_string(key) + "', env = 'E2E_KEY_" + std::to_string(key) +
         "' } },\n      models = { 'm-a' },\n      limits = { concurrency = 4 },\n"
         "      timeouts = { connect_ms = 1000, total_ms = 3000 },\n    },\n";
}

// Two providers serving one model, one key each: each key's 403 carries its
// own code. `retry`: the suite's retry table ("" for the defaults).
void storm(const std::string& code_a, const std::string& code_b, int tasks, const std::string& retry,
           int max_attempts, double min_gap_s) {
  Mock a(refusing(code_a));
  Mock b(refusing(code_b));
  TempDir dir;
  std::string suite = dir.write("s.lua", "return {\n  name = 'storm',\n  providers = {\n" + provider("a", a, 0) +
                                             provider("b", b, 1) +
                                             "  },\n  matrix = { model = { 'm-a' }, instance = (function() local t = {} for i = 1, " +
                                             std::to_string(tasks) + " do t[i] = i end return t end)() },\n" +
                                             retry +
                                             "  request = function(cell)\n"
                                             "    return { model = cell.model, max_tokens = 16, messages = { { role = "
                                             "'user', content = 'instance=' .. cell.instance } } }\n"
                                             "  end,\n}\n");
  std::string db = dir.file("storm.db");
  auto t0 = std::chrono::steady_clock::now();
  Result r = shepherd({"run", suite, "--json"}, key_env(2), 60s);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(seconds, 20.0) << "the run ends";
  EXPECT_TRUE(r.exit_code == 3 || r.exit_code == 4) << "tasks failed or were left pending: " << r.exit_code << "\n"
                                                     << r.out << r.err;

  int requests = a.stats()["requests"].get<int>() + b.stats()["requests"].get<int>();
  EXPECT_GE(requests, 2);
  EXPECT_LE(requests, tasks * max_attempts) << "no storm: a few attempts per task at most";
  EXPECT_LE(std::stoi(query(db, "SELECT coalesce(max(c), 0) FROM (SELECT count(*) AS c FROM attempts GROUP BY task)")),
            max_attempts);
  // Every retry the policy asked for waits; and the next attempt of the task
  // really started later (the 403 answers at once, so any gap is the delay).
  EXPECT_EQ(query(db, "SELECT count(*) FROM attempts WHERE decision = 'retry' AND coalesce(delay_ms, 0) <= 0"), "0");
  std::string immediate = query(db,
                                "SELECT count(*) FROM attempts a JOIN attempts b ON a.task = b.task AND b.n = a.n + 1 "
                                "WHERE b.started_at - a.ended_at < " + std::to_string(min_gap_s));
  EXPECT_EQ(immediate, "0") << "retries sent sooner than " << min_gap_s << " s after the answer before";
}

}  // namespace

TEST(RetryStorm, A403ThatDiffersPerKeyEndsQuicklyWithTheDefaults) {
  // A refusal: the key is out of the run at its first 403, whatever the code.
  storm("model_access_denied_for_k0", "organization_restricted_k1", 6, "", 2, 0.1);
}

TEST(RetryStorm, A403ThrottleThatDiffersPerKeyIsRetriedLateAndBoundedly) {
  // Throttling sent as a 403, worded differently by each key: a rate limit,
  // retried with backoff (never at once), at most max_retries times. (The
  // key pool also halves each slot's pace at every one: few tasks, so the
  // run stays short.)
  storm("rate_limit_exceeded", "rate_limit_error", 2, "  retry = { max_retries = 2, base_delay_ms = 200 },\n", 3, 0.09);
}
