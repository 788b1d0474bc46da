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

namespace {

// A run under a storm of SIGHUPs (a policy reload each), from the moment the
// process blocks SIGHUP -- its first instruction -- until it has exited:
// start-up, the run, and the very end (summary, log, exit) all get some.
Result run_under_hangups(const std::vector<std::string>& args, int* sent) {
  std::vector<std::string> full{SHEPHERD_BIN};
  full.insert(full.end(), args.begin(), args.end());
  Process p(full, key_env(1));
  // Before main() runs, no process can take a SIGHUP (the loader is not
  // the program yet); from its first instruction on, shepherd blocks it.
  bool blocked = wait_until([&] { return !p.running() || signal_blocked(p.pid(), SIGHUP); }, 5s);
  EXPECT_TRUE(blocked);
  *sent = 0;
  while (p.running()) {
    p.signal(SIGHUP);
    ++*sent;
    std::this_thread::sleep_for(1ms);
  }
  return p.wait(1s);
}

}  // namespace

TEST(Signals, HangupAtStartUpAndAtTheEndNeverKillsTheProcess) {
  Mock mock(nlohmann::json{{"latency", 5}});
  TempDir dir;
  SuiteSpec s;
  s.base_url = mock.base_url();
  s.concurrency = 4;
  s.matrix = "{ model = { 'm-a' }, instance = (function() local t = {} for i = 1, 40 do t[i] = i end return t end)() }";
  // A start-up that takes a while: the suite's top level runs once to load
  // and once per worker.
  std::string suite = dir.write(
      "s.lua", "local t0 = os.clock()\nwhile os.clock() - t0 < 0.2 do end\n" + s.text());
  std::string db = dir.file("s.db");

  int sent = 0;
  Result r = run_under_hangups({"run", suite, "--db", db}, &sent);
  EXPECT_EQ(r.signal, 0) << "killed by signal " << r.signal << " after " << sent << " SIGHUPs";
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_GT(sent, 50);
  EXPECT_NE(r.err.find("40 tasks: 40 done, 0 failed, 0 pending"), std::string::npos) << "the summary:\n" << r.err;
  EXPECT_EQ(query(db, "SELECT outcome FROM runs ORDER BY id DESC LIMIT 1"), "completed") << "the run row is closed";

  // Again with nothing left to do (the run is all start-up and end), with
  // --json, then status and export: each ends by its own outcome.
  for (int i = 0; i < 3; ++i) {
    Result again = run_under_hangups({"run", suite, "--db", db, "--json"}, &sent);
    EXPECT_EQ(again.signal, 0) << "after " << sent << " SIGHUPs";
    ASSERT_EQ(again.exit_code, 0) << again.err;
    auto j = nlohmann::json::parse(again.out);
    EXPECT_EQ(j["status"], "ok");
    EXPECT_EQ(j["done"], 40);
    std::string log = read_file(j["log"].get<std::string>());
    EXPECT_NE(log.find("completed"), std::string::npos) << "the log is whole:\n" << log;
  }
  Result st = run_under_hangups({"status", suite, "--db", db, "--json"}, &sent);
  EXPECT_EQ(st.exit_code, 0) << st.err;
  EXPECT_EQ(nlohmann::json::parse(st.out)["overall"]["done"], 40);
  Result ex = run_under_hangups({"export", suite, "--db", db, "--format", "jsonl"}, &sent);
  EXPECT_EQ(ex.exit_code, 0) << ex.err;
  EXPECT_EQ(parse_jsonl(ex.out).size(), 40u);

  // An outcome other than success keeps its own exit code: a suite error is 2.
  Result bad = run_under_hangups({"run", dir.write("bad.lua", "return 42\n"), "--json"}, &sent);
  EXPECT_EQ(bad.signal, 0);
  EXPECT_EQ(bad.exit_code, 2) << bad.out;
}
