// Every fault the mock can inject, classified, retried and recorded.
#include <sstream>

#include <gtest/gtest.h>

#include "harness.h"

using namespace e2e;

namespace {

struct FaultCase {
  const char* fault;
  const char* cls;        // the class of the first (faulty) attempt
  const char* transport;  // its transport, "" for an HTTP answer
};

class FirstAttemptFault : public ::testing::TestWithParam<FaultCase> {};

SuiteSpec fast_retry_suite(const Mock& mock) {
  SuiteSpec s;
  s.base_url = mock.base_url();
  // Four: under the five consecutive failures that open a circuit breaker.
  s.matrix = "{ model = { 'm-a' }, instance = { 1, 2, 3, 4 } }";
  s.timeouts = "{ connect_ms = 1000, total_ms = 1500, stall_ms = 300 }";
  s.extra = "  retry = { base_delay_ms = 10, max_delay_ms = 50, jitter = false },";
  return s;
}

}  // namespace

TEST_P(FirstAttemptFault, IsClassifiedRetriedAndRecovered) {
  const FaultCase& c = GetParam();
  Mock mock(nlohmann::json{{"faults", {{c.fault, 1.0}, {"first_attempt_only", true}}}});
  TempDir dir;
  std::string suite = dir.write("s.lua", fast_retry_suite(mock).text());
  Result r = shepherd({"run", suite, "--db", dir.file("s.db")}, key_env(1));
  ASSERT_EQ(r.exit_code, 0) << r.err;

  auto rows = parse_jsonl(shepherd({"export", suite, "--db", dir.file("s.db"), "--format", "jsonl"}).out);
  ASSERT_EQ(rows.size(), 4u);
  for (const auto& row : rows) {
    EXPECT_EQ(row["state"], "done") << row.dump();
    EXPECT_EQ(row["attempts"], 2) << row.dump();
  }
  std::string db = dir.file("s.db");
  EXPECT_EQ(query(db, "SELECT count(*) FROM attempts WHERE n = 1 AND class = '" + std::string(c.cls) + "' AND decision = 'retry'"), "4");
  EXPECT_EQ(query(db, "SELECT count(*) FROM attempts WHERE n = 1 AND coalesce(transport, '') = '" + std::string(c.transport) + "'"), "4");
  EXPECT_EQ(query(db, "SELECT count(*) FROM attempts WHERE n = 2 AND class = 'ok'"), "4");
  EXPECT_EQ(mock.stats()["by_outcome"][c.fault], 4);
}

INSTANTIATE_TEST_SUITE_P(Faults, FirstAttemptFault,
                         ::testing::Values(FaultCase{"error_500", "server_error", ""},
                                           FaultCase{"hang", "timeout", "timeout"},
                                           FaultCase{"stall", "timeout", "stall"},
                                           FaultCase{"reset", "network", "reset"},
                                           FaultCase{"malformed", "bad_response", ""},
                                           FaultCase{"wrong_model", "model_mismatch", ""}),
                         [](const auto& info) { return std::string(info.param.fault); });

TEST(Faults, WrongModelIsNeverASuccess) {
  // qwen2.5-72b answering for qwen2.5-7b: never stored as the 7b's result.
  Mock mock(nlohmann::json{{"faults", {{"wrong_model", 1.0}}}, {"wrong_model", "qwen2.5-72b-instruct"}});
  TempDir dir;
  SuiteSpec s = fast_retry_suite(mock);
  s.models = {"qwen2.5-7b-instruct"};
  s.matrix = "{ model = { 'qwen2.5-7b-instruct' }, instance = { 1, 2 } }";
  std::string suite = dir.write("s.lua", s.text());
  Result r = shepherd({"run", suite, "--db", dir.file("s.db")}, key_env(1));
  ASSERT_EQ(r.exit_code, 4) << r.err;
  for (const auto& row : parse_jsonl(shepherd({"export", suite, "--db", dir.file("s.db"), "--format", "jsonl"}).out)) {
    EXPECT_EQ(row["state"], "failed");
    EXPECT_EQ(row["error"]["code"], "MODEL_MISMATCH");
    EXPECT_TRUE(row["content"].is_null());
    EXPECT_EQ(row["attempts"], 4) << "max_retries 3: four attempts, then fail";
  }
  auto st = nlohmann::json::parse(shepherd({"status", suite, "--db", dir.file("s.db"), "--json"}).out);
  EXPECT_EQ(st["overall"]["failures_by_class"]["model_mismatch"], 2);
  // Every attempt the 72b answered is counted, not only the final class.
  EXPECT_EQ(st["overall"]["model_mismatch"], 8);
  EXPECT_EQ(st["groups"][0]["model_mismatch"], 8);
  std::string human = shepherd({"status", suite, "--db", dir.file("s.db")}).out;
  std::istringstream lines(human);
  std::string header, row;
  std::getline(lines, header);  // "suite … store …"
  std::getline(lines, header);
  std::getline(lines, row);
  EXPECT_NE(header.find("mismatch"), std::string::npos) << human;
  // The mismatch column's value sits under its header.
  const size_t at = header.find("mismatch");
  ASSERT_NE(at, std::string::npos);
  EXPECT_EQ(row.substr(at, 1), "8") << human;
}

TEST(Faults, RejectedKeyIsNotUsedAgain) {
  // The only key is refused: the tasks that met the 401 fail, the rest are
  // never sent (the request is known to be refused) and stay pending.
  Mock mock(nlohmann::json{{"keys", {"some-other-key"}}});
  TempDir dir;
  std::string suite = dir.write("s.lua", fast_retry_suite(mock).text());
  Result r = shepherd({"run", suite, "--db", dir.file("s.db")}, key_env(1));
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_NE(r.err.find("no key can serve"), std::string::npos) << r.err;
  int refused = mock.stats()["by_outcome"]["unauthorized"].get<int>();
  EXPECT_GE(refused, 1);
  EXPECT_EQ(query(dir.file("s.db"), "SELECT count(*) FROM tasks WHERE state = 'failed' AND error_code = 'AUTH_FAILED'"),
            std::to_string(refused));
  EXPECT_EQ(query(dir.file("s.db"), "SELECT count(*) FROM tasks WHERE state = 'pending'"), std::to_string(4 - refused));
}

TEST(Faults, QuotaExhaustedIsNotRetriedLikeARateLimit) {
  // One key, quota for two answers: the key is parked for the run at the
  // first 403; what met it fails once, the rest is never sent and stays pending.
  Mock mock(nlohmann::json{{"quota", {{"m-a", 2}}}});
  TempDir dir;
  SuiteSpec s = fast_retry_suite(mock);
  s.matrix = "{ model = { 'm-a' }, instance = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20 } }";
  std::string suite = dir.write("s.lua", s.text());
  EXPECT_EQ(shepherd({"run", suite, "--db", dir.file("s.db")}, key_env(1)).exit_code, 3) << "tasks left pending";
  std::string db = dir.file("s.db");
  EXPECT_EQ(query(db, "SELECT count(*) FROM tasks WHERE state = 'done'"), "2");
  int refused = mock.stats()["by_outcome"]["quota_exhausted"].get<int>();
  EXPECT_GE(refused, 1);
  EXPECT_LE(refused, 8) << "at most what was in flight when the quota ran out";
  EXPECT_EQ(query(db, "SELECT count(*) FROM tasks WHERE state = 'failed' AND error_code = 'QUOTA_EXHAUSTED' AND attempts = 1"),
            std::to_string(refused));
  EXPECT_EQ(query(db, "SELECT count(*) FROM tasks WHERE attempts > 1"), "0") << "never retried like a 429";
  EXPECT_EQ(query(db, "SELECT count(*) FROM events WHERE kind = 'quota_parked'"), std::to_string(refused));
}

TEST(Faults, RateLimitHonoursRetryAfter) {
  Mock mock(nlohmann::json{{"rate_limit", {{"requests", 4}, {"window_ms", 1000}}}});
  TempDir dir;
  SuiteSpec s = fast_retry_suite(mock);
  s.matrix = "{ model = { 'm-a' }, instance = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 } }";
  s.extra = "  retry = { max_retries = 6, base_delay_ms = 10, jitter = false },";
  std::string suite = dir.write("s.lua", s.text());
  auto start = std::chrono::steady_clock::now();
  Result r = shepherd({"run", suite, "--db", dir.file("s.db")}, key_env(1));
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string db = dir.file("s.db");
  EXPECT_EQ(query(db, "SELECT count(*) FROM tasks WHERE state = 'done'"), "10");
  EXPECT_GE(seconds, 2.0) << "10 requests at 4 per second need at least two more windows";
  // The pool reads the limit from the headers and paces: at most a stray 429.
  EXPECT_LE(mock.stats()["by_outcome"]["rate_limited"].get<int>(), 2);
}

TEST(Faults, RetriesAlwaysEndWhateverThePolicySays) {
  // Malformed answers: a 200, so no circuit breaker slows the loop down.
  Mock mock(nlohmann::json{{"faults", {{"malformed", 1.0}}}});
  TempDir dir;
  dir.write("forever.lua", "return { decide = function(ctx) return { action = 'retry', delay_ms = 0 } end }\n");
  SuiteSpec s = fast_retry_suite(mock);
  s.matrix = "{ model = { 'm-a' }, instance = { 1 } }";
  s.extra = "  policies = { retry = 'forever.lua' },\n  retry = { poison_after = 3 },";
  std::string suite = dir.write("s.lua", s.text());
  ASSERT_EQ(shepherd({"run", suite, "--db", dir.file("p.db")}, key_env(1)).exit_code, 4) << "some tasks failed";
  auto rows = parse_jsonl(shepherd({"export", suite, "--db", dir.file("p.db"), "--format", "jsonl"}).out);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0]["error"]["code"], "POISONED");
  EXPECT_EQ(rows[0]["attempts"], 3) << "the same bad answer three times in a row";

  // Poison set out of reach: the hard cap of 100 attempts in one run still ends it.
  s.extra = "  policies = { retry = 'forever.lua' },\n  retry = { poison_after = 1000 },";
  dir.write("s.lua", s.text());
  ASSERT_EQ(shepherd({"run", suite, "--db", dir.file("r.db")}, key_env(1)).exit_code, 4);
  rows = parse_jsonl(shepherd({"export", suite, "--db", dir.file("r.db"), "--format", "jsonl"}).out);
  EXPECT_EQ(rows[0]["error"]["code"], "RETRY_LIMIT");
  EXPECT_EQ(rows[0]["attempts"], 100);
}
