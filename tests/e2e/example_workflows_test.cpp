// The example workflows in examples/workflows/, run by `shepherd script`
// against stores with real failures made by real runs against the mock:
// daily.lua (status, maintain, maintain to 90%, a retest script, a report)
// and after_quota_reset.lua (one model's QUOTA_EXHAUSTED failures sent again
// once the quota is back, nothing else).
#include <sys/stat.h>

#include <filesystem>
#include <regex>
#include <set>

#include <gtest/gtest.h>

#include "harness.h"

using namespace e2e;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

const std::string kDaily = std::string(SHEPHERD_EXAMPLES_DIR) + "/workflows/daily.lua";
const std::string kAfterQuotaReset = std::string(SHEPHERD_EXAMPLES_DIR) + "/workflows/after_quota_reset.lua";

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

json error_body(const std::string& message, const std::string& type) {
  return {{"error", {{"message", message}, {"type", type}}}};
}

json server_error(const std::string& when, int times = 0) {
  json rule = {{"when", when}, {"status", 500}, {"body_json", error_body("The server had an error", "server_error")}};
  if (times > 0) rule["times"] = times;
  return rule;
}

// The suite: `models` x prompt_type {p1, p2} x instance 1..instances, one
// request per task (max_retries 0); the default prompt lists the cell sorted
// ("instance=1 model=m-a prompt_type=p1"), which the canned rules match.
std::string write_suite(const TempDir& dir, const Mock& mock, const std::string& name, const std::vector<std::string>& models,
                        int instances) {
  SuiteSpec s = suite_at(mock.base_url());
  s.name = name;
  s.models = models;
  s.concurrency = 4;
  std::string list, numbers;
  for (const auto& m : models) list += "'" + m + "', ";
  for (int i = 1; i <= instances; ++i) numbers += std::to_string(i) + ", ";
  s.matrix = "{ model = { " + list + "}, prompt_type = { 'p1', 'p2' }, instance = { " + numbers + "} }";
  s.extra = "  retry = { max_retries = 0 },\n";
  return dir.write(name + ".lua", s.text());
}

// Requests the mock answered for `model` (any outcome).
int sent_for(const Mock& mock, const std::string& model) {
  json stats = mock.stats();
  if (!stats["by_model"].contains(model)) return 0;
  int n = 0;
  for (const auto& [outcome, count] : stats["by_model"][model].items()) n += count.get<int>();
  return n;
}

// Every task: id -> "state error_code attempts updated_at".
std::map<std::string, std::string> tasks_of(const std::string& db) {
  std::map<std::string, std::string> out;
  for (const auto& row : query_rows(db, "SELECT id, state, error_code, attempts, updated_at FROM tasks"))
    out[row[0]] = row[1] + " " + row[2] + " " + row[3] + " " + row[4];
  return out;
}

std::string count(const std::string& db, const std::string& model, const std::string& condition) {
  return query(db, "SELECT count(*) FROM tasks WHERE json_extract(dims, '$.model') = '" + model + "' AND " + condition);
}

std::string store_bytes(const std::string& db) {
  std::string wal = db + "-wal";
  return read_file(db) + "\n--wal--\n" + (fs::exists(wal) ? read_file(wal) : "");
}

std::string path_after(const std::string& out, const std::string& label) {
  std::smatch m;
  if (!std::regex_search(out, m, std::regex(label + " (\\S+)"))) return "";
  return m[1];
}

}  // namespace

// A store where m-a has four 500s (retryable; the mock answers 500 four
// times only) and m-c a 400 for every request (never retried), every model
// with instance 5 still pending:
//   m-a 4 done 4 failed 2 pending (40%) · m-c 0 done 8 failed 2 pending (0%) · m-d 8 done 2 pending (80%).
TEST(ExampleWorkflows, DailyMaintainsWritesItsReportAndARetestScriptAndExitsZero) {
  Mock mock(json{{"canned",
                  json::array({server_error("model=m-a prompt_type=p1", 4),
                               {{"when", "model=m-c"},
                                {"status", 400},
                                {"body_json", error_body("Invalid value for 'messages'", "invalid_request_error")}}})}});
  TempDir dir;
  std::string suite = write_suite(dir, mock, "daily", {"m-a", "m-c", "m-d"}, 5);
  std::string db = dir.file("daily.db");
  Result setup = shepherd({"run", suite, "--db", db, "--no-progress", "--where", "instance=1,2,3,4"}, key_env(1));
  ASSERT_EQ(setup.exit_code, 4) << setup.err;
  ASSERT_EQ(mock.stats()["requests"], 24);

  // --dry-run: the report and the script, and not a byte of the store changed.
  const std::string before = store_bytes(db);
  Result dry = shepherd({"script", kDaily, suite, "--db=" + db, "--dry-run"}, key_env(1));
  ASSERT_EQ(dry.exit_code, 0) << dry.err;
  EXPECT_TRUE(store_bytes(db) == before) << "the store changed under --dry-run";
  EXPECT_EQ(mock.stats()["requests"], 24) << "nothing was sent";
  json dry_report = json::parse(read_file(path_after(dry.out, "daily report")));
  ASSERT_EQ(dry_report["maintain"].size(), 2u) << dry_report.dump();
  EXPECT_EQ(dry_report["maintain"][0]["group"], json({{"model", "m-c"}}));
  EXPECT_EQ(dry_report["maintain"][0]["would_run"], 10);
  EXPECT_EQ(dry_report["maintain"][1]["group"], json({{"model", "m-a"}}));
  EXPECT_EQ(dry_report["maintain"][1]["would_run"], 6);
  EXPECT_EQ(dry_report["before"], dry_report["after"]);
  std::string dry_script = read_file(path_after(dry.out, "retest script"));
  for (const char* model : {"m-a", "m-c", "m-d"}) EXPECT_TRUE(has(dry_script, "--where 'model=" + std::string(model) + "'")) << dry_script;

  // For real.
  Result r = shepherd({"script", kDaily, suite, "--db=" + db}, key_env(1));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string report_path = path_after(r.out, "daily report");
  EXPECT_TRUE(std::regex_match(report_path, std::regex(dir.path() + "/reports/daily-daily-\\d{8}-\\d{6}(-\\d+)?\\.json"))) << r.out;
  const std::string script_path = path_after(r.out, "retest script");
  EXPECT_EQ(script_path, dir.file("reports/retest-daily.sh")) << r.out;

  // First round at the suite's 80%: m-c (severe) then m-a; m-a's 500s and
  // pending tasks, m-c's pending tasks were sent, m-c's 400s were not. Then at
  // 90%: m-d (80%); m-c was just maintained and cools down.
  EXPECT_EQ(sent_for(mock, "m-a"), 8 + 6);
  EXPECT_EQ(sent_for(mock, "m-c"), 8 + 2);
  EXPECT_EQ(sent_for(mock, "m-d"), 8 + 2);
  EXPECT_EQ(count(db, "m-a", "state = 'done'"), "10");
  EXPECT_EQ(count(db, "m-c", "state = 'failed' AND last_class = 'client_error' AND attempts = 1"), "10");
  EXPECT_EQ(count(db, "m-d", "state = 'done'"), "10");

  json report = json::parse(read_file(report_path));
  EXPECT_EQ(report["suite"], "daily");
  EXPECT_EQ(report["retest_script"], script_path);
  ASSERT_EQ(report["before"].size(), 3u);
  EXPECT_EQ(report["before"][0]["done"], 4);
  ASSERT_EQ(report["maintain"].size(), 2u) << report["maintain"].dump();
  EXPECT_EQ(report["maintain"][0]["group"], json({{"model", "m-c"}}));
  EXPECT_EQ(report["maintain"][0]["reset"], 0);
  EXPECT_TRUE(has(report["maintain"][0]["reason"], "severe failure")) << report["maintain"][0].dump();
  EXPECT_EQ(report["maintain"][1]["group"], json({{"model", "m-a"}}));
  EXPECT_EQ(report["maintain"][1]["reset"], 4);
  EXPECT_EQ(report["maintain"][1]["done"], 10);
  ASSERT_EQ(report["maintain_90"].size(), 1u) << report["maintain_90"].dump();
  EXPECT_EQ(report["maintain_90"][0]["group"], json({{"model", "m-d"}}));
  EXPECT_EQ(report["maintain_90"][0]["reason"], "completion 80% < 90%");
  std::map<std::string, int> after;
  for (const auto& g : report["after"]) after[g["group"]["model"]] = g["done"];
  EXPECT_EQ(after, (std::map<std::string, int>{{"m-a", 10}, {"m-c", 0}, {"m-d", 10}}));
  EXPECT_LE(report["started_at"].get<double>(), report["finished_at"].get<double>());
  std::set<std::string> maintained;
  for (const auto& row : query_rows(db, "SELECT json_extract(detail, '$.group.model') FROM events WHERE kind = 'maintained'"))
    maintained.insert(row[0]);
  EXPECT_EQ(maintained, (std::set<std::string>{"m-a", "m-c", "m-d"}));

  // What stays incomplete gets a line in the retest script; nothing runs it.
  struct stat st {};
  ASSERT_EQ(::stat(script_path.c_str(), &st), 0);
  EXPECT_TRUE(st.st_mode & S_IXUSR);
  std::string text = read_file(script_path);
  EXPECT_EQ(text.rfind("#!/bin/sh\n", 0), 0u) << text;
  // m-c's failures are of a class the retry policy does not retry: the line
  // runs its pending tasks only, as maintain would.
  EXPECT_TRUE(has(text, "'" SHEPHERD_BIN "' run '" + suite + "' --db '" + db + "' --where 'model=m-c'\n")) << text;
  EXPECT_FALSE(has(text, "model=m-a")) << text;
  EXPECT_FALSE(has(text, "model=m-d")) << text;
}

// m-a's quota (5 answers) runs out during the run: the tasks in flight then
// fail QUOTA_EXHAUSTED and the rest of m-a stays pending. m-a p1 1 and m-b p1 1
// fail with a 500 (server_error) every time.
TEST(ExampleWorkflows, AfterQuotaResetSendsExactlyThatModelsQuotaFailuresAgain) {
  Mock mock(json{{"quota", {{"m-a", 5}}},
                 {"canned", json::array({server_error("instance=1 model=m-a prompt_type=p1"),
                                         server_error("instance=1 model=m-b prompt_type=p1")})}});
  TempDir dir;
  std::string suite = write_suite(dir, mock, "quota", {"m-a", "m-b"}, 6);
  std::string db = dir.file("quota.db");
  Result run = shepherd({"run", suite, "--db", db, "--no-progress"}, key_env(1));
  ASSERT_EQ(run.exit_code, 3) << "m-a's unsent tasks stay pending: " << run.err;

  std::set<std::string> quota_failed;
  for (const auto& row : query_rows(db, "SELECT id FROM tasks WHERE state = 'failed' AND error_code = 'QUOTA_EXHAUSTED'"))
    quota_failed.insert(row[0]);
  ASSERT_GE(quota_failed.size(), 1u);
  ASSERT_LE(quota_failed.size(), 4u) << "at most the slot's concurrency was in flight";
  ASSERT_EQ(query(db, "SELECT count(*) FROM tasks WHERE error_code = 'QUOTA_EXHAUSTED' AND json_extract(dims, '$.model') != 'm-a'"), "0");
  ASSERT_EQ(count(db, "m-a", "state = 'done'"), "5");
  ASSERT_EQ(count(db, "m-a", "state = 'failed' AND last_class = 'server_error'"), "1");
  ASSERT_EQ(count(db, "m-b", "state = 'failed' AND last_class = 'server_error'"), "1");
  ASSERT_EQ(count(db, "m-b", "state = 'done'"), "11");
  const std::string pending_a = count(db, "m-a", "state = 'pending'");
  ASSERT_EQ(std::stoi(pending_a) + quota_failed.size(), 6u);

  // The quota is back: the mock's counters, quotas and rule use start over.
  mock.reset();
  const auto before = tasks_of(db);
  Result r = shepherd({"script", kAfterQuotaReset, suite, "m-a", "--db=" + db}, key_env(1));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(has(r.out, "m-a: " + std::to_string(quota_failed.size()) + " done, 0 failed, 0 pending")) << r.out;
  EXPECT_EQ(mock.stats()["requests"], static_cast<int>(quota_failed.size())) << "exactly the quota failures were sent";
  EXPECT_EQ(sent_for(mock, "m-b"), 0);

  const auto after = tasks_of(db);
  ASSERT_EQ(after.size(), before.size());
  for (const auto& [id, row] : before) {
    if (quota_failed.count(id)) {
      EXPECT_TRUE(has(after.at(id), "done  2 ")) << id << ": " << after.at(id);
    } else {
      EXPECT_EQ(after.at(id), row) << "untouched: " << id;
    }
  }
  EXPECT_EQ(count(db, "m-a", "state = 'pending'"), pending_a) << "m-a's pending tasks are not this workflow's business";

  // Nothing left on quota: says so, sends nothing.
  Result again = shepherd({"script", kAfterQuotaReset, suite, "m-a", "--db=" + db}, key_env(1));
  EXPECT_EQ(again.exit_code, 0) << again.err;
  EXPECT_TRUE(has(again.out, "no task of m-a failed on quota")) << again.out;
  Result other = shepherd({"script", kAfterQuotaReset, suite, "m-b", "--db=" + db}, key_env(1));
  EXPECT_EQ(other.exit_code, 0) << other.err;
  EXPECT_TRUE(has(other.out, "no task of m-b failed on quota")) << other.out;
  EXPECT_EQ(mock.stats()["requests"], static_cast<int>(quota_failed.size()));
  EXPECT_EQ(tasks_of(db), after);

  // Usage: the model is required.
  Result usage = shepherd({"script", kAfterQuotaReset, suite}, key_env(1));
  EXPECT_EQ(usage.exit_code, 2) << usage.err;
  EXPECT_TRUE(has(usage.err, "usage: after_quota_reset.lua SUITE MODEL")) << usage.err;
}
