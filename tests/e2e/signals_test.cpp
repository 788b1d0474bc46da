// SIGINT/SIGTERM: stop dispatching, let in-flight answers land, commit, exit 3;
// a second signal exits at once.
#include <signal.h>

#include <thread>

#include <gtest/gtest.h>

#include "harness.h"

using namespace e2e;
using namespace std::chrono_literals;

namespace {

std::string slow_suite(const TempDir& dir, const Mock& mock, long total_ms) {
  SuiteSpec s;
  s.base_url = mock.base_url();
  s.concurrency = 10;
  s.timeouts = "{ connect_ms = 1000, total_ms = " + std::to_string(total_ms) + " }";
  s.matrix = "{ model = { 'm-a' }, instance = (function() local t = {} for i = 1, 200 do t[i] = i end return t end)() }";
  return dir.write("s.lua", s.text());
}

}  // namespace

TEST(Signals, InterruptLetsInFlightFinishThenResumes) {
  Mock mock(nlohmann::json{{"latency", 300}});
  TempDir dir;
  std::string suite = slow_suite(dir, mock, 5000);
  std::string db = dir.file("s.db");
  Process run({SHEPHERD_BIN, "run", suite, "--db", db}, key_env(1));
  std::this_thread::sleep_for(1000ms);
  run.signal(SIGINT);
  auto t0 = std::chrono::steady_clock::now();
  Result r = run.wait(10s);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
  EXPECT_EQ(r.exit_code, 3) << r.err;

  // Every request the mock answered was committed: in flight finished, none lost.
  int answered = mock.stats()["by_outcome"]["ok"].get<int>();
  EXPECT_EQ(std::to_string(answered), query(db, "SELECT count(*) FROM tasks WHERE state = 'done'"));
  EXPECT_GT(answered, 0);
  EXPECT_LT(answered, 200);
  EXPECT_EQ(query(db, "SELECT outcome FROM runs ORDER BY id DESC LIMIT 1"), "interrupted");

  Result resumed = shepherd({"run", suite, "--db", db}, key_env(1));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_EQ(mock.stats()["requests"], 200) << "nothing requested twice";
}

TEST(Signals, SecondSignalExitsAtOnce) {
  Mock mock(nlohmann::json{{"faults", {{"hang", 1.0}}}});
  TempDir dir;
  std::string suite = slow_suite(dir, mock, 60000);
  Process run({SHEPHERD_BIN, "run", suite, "--db", dir.file("s.db"), "--grace-ms", "30000"}, key_env(1));
  std::this_thread::sleep_for(500ms);
  run.signal(SIGTERM);
  std::this_thread::sleep_for(500ms);
  EXPECT_TRUE(run.running()) << "in grace: waiting for the hung requests";
  run.signal(SIGTERM);
  auto t0 = std::chrono::steady_clock::now();
  Result r = run.wait(10s);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_EQ(query(dir.file("s.db"), "SELECT count(*) FROM tasks WHERE state = 'pending'"), "200");
  EXPECT_EQ(query(dir.file("s.db"), "PRAGMA integrity_check"), "ok");
}
