// Hot reload: a policy edited mid-run takes effect within a second; a broken
// edit keeps the last good version; SIGHUP reloads on demand.
#include <signal.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <thread>

#include <gtest/gtest.h>

#include "harness.h"

using namespace e2e;
using namespace std::chrono_literals;

namespace {

std::string give_up_with(const std::string& code) {
  return "return { decide = function(ctx) return { action = 'fail', code = '" + code + "' } end }\n";
}

double now_unix() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

TEST(Reload, EditsTakeEffectBrokenEditsAreRefusedSighupForces) {
  // Every answer is malformed, so every task is decided by the retry policy at once.
  Mock mock(nlohmann::json{{"latency", 20}, {"faults", {{"malformed", 1.0}}}});
  TempDir dir;
  std::string policy = dir.write("decide.lua", give_up_with("V1"));
  SuiteSpec s = suite_at(mock.base_url());
  s.concurrency = 2;
  s.matrix = "{ model = { 'm-a' }, instance = (function() local t = {} for i = 1, 700 do t[i] = i end return t end)() }";
  s.extra = "  policies = { retry = 'decide.lua' },";
  std::string suite = dir.write("s.lua", s.text());
  std::string db = dir.file("e2e.db");

  Process run({SHEPHERD_BIN, "run", suite}, key_env(1));
  std::this_thread::sleep_for(700ms);
  double edit_v2 = now_unix();
  dir.write("decide.lua", give_up_with("V2"));
  std::this_thread::sleep_for(1200ms);
  dir.write("decide.lua", "return { decide = function(ctx) return { action = 'fail' \n");  // broken
  std::this_thread::sleep_for(500ms);
  // V3 has V2's size; with V2's mtime put back, only SIGHUP can notice it.
  struct stat before {};
  dir.write("decide.lua", give_up_with("V2"));
  stat(policy.c_str(), &before);
  std::this_thread::sleep_for(300ms);
  double edit_v3 = now_unix();
  dir.write("decide.lua", give_up_with("V3"));
  timespec times[2] = {before.st_atim, before.st_mtim};
  utimensat(AT_FDCWD, policy.c_str(), times, 0);
  std::this_thread::sleep_for(400ms);
  EXPECT_EQ(query(db, "SELECT count(*) FROM attempts WHERE error_code = 'V3'"), "0") << "no stat change, no reload";
  run.signal(SIGHUP);
  Result r = run.wait(60s);
  ASSERT_EQ(r.exit_code, 4) << r.err;

  // V1 decided until at most a second after the edit; then V2; then V3 after SIGHUP.
  double last_v1 = std::stod(query(db, "SELECT max(ended_at) FROM attempts WHERE error_code = 'V1'"));
  EXPECT_LT(last_v1, edit_v2 + 1.0);
  EXPECT_NE(query(db, "SELECT count(*) FROM attempts WHERE error_code = 'V2'"), "0");
  EXPECT_NE(query(db, "SELECT count(*) FROM attempts WHERE error_code = 'V3'"), "0");
  double first_v3 = std::stod(query(db, "SELECT min(ended_at) FROM attempts WHERE error_code = 'V3'"));
  EXPECT_GT(first_v3, edit_v3);
  // The broken edit was refused with its file and line, and V2 kept deciding.
  EXPECT_EQ(query(db, "SELECT json_extract(detail, '$.code') FROM events WHERE kind = 'policy_load_failed'"),
            "POLICY_LOAD_FAILED");
  EXPECT_NE(query(db, "SELECT json_extract(detail, '$.message') FROM events WHERE kind = 'policy_load_failed'")
                .find("decide.lua:2"),
            std::string::npos);
  EXPECT_EQ(query(db, "SELECT count(*) FROM attempts WHERE error_code NOT IN ('V1', 'V2', 'V3')"), "0");
  EXPECT_EQ(query(db, "SELECT count(*) FROM events WHERE kind = 'policy_reload'"), "2");
  // Every attempt records the version that decided it: three versions here.
  EXPECT_EQ(query(db, "SELECT count(DISTINCT policy_version) FROM attempts"), "3");
  EXPECT_EQ(query(db, "SELECT count(DISTINCT error_code) FROM attempts GROUP BY policy_version ORDER BY 1 DESC LIMIT 1"), "1");
  // status breaks the decisions down by policy version.
  auto st = nlohmann::json::parse(shepherd({"status", suite, "--json"}).out);
  ASSERT_EQ(st["policy_versions"].size(), 3u);
  int attempts = 0;
  for (const auto& v : st["policy_versions"]) {
    attempts += v["attempts"].get<int>();
    EXPECT_EQ(v["decisions"]["fail"], v["attempts"]);
    EXPECT_EQ(v["classes"]["bad_response"], v["attempts"]);
  }
  EXPECT_EQ(attempts, 700);
}
