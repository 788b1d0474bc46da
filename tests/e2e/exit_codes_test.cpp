// Exit codes tell the truth, and `--json` says the same: 0 every task done,
// 4 every task final but some failed, 3 stopped early, 2 usage/suite/policy
// error, 1 runtime failure.
#include <signal.h>

#include <dirent.h>

#include <functional>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "harness.h"

using namespace e2e;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

// The verdict on stdout with --json: one JSON document.
json verdict(const Result& r) {
  json j = json::parse(r.out, nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << "stdout is not one JSON document: " << r.out << "\nstderr: " << r.err;
  return j.is_discarded() ? json::object() : j;
}

SuiteSpec quick(const Mock& mock) {
  SuiteSpec s;
  s.base_url = mock.base_url();
  s.extra = "  retry = { max_retries = 1, base_delay_ms = 10, jitter = false },";
  return s;
}

json bad_request_rule(const std::string& when) {
  return {{"when", when},
          {"status", 400},
          {"body_json",
           {{"error", {{"message", "Invalid value for 'messages'"}, {"type", "invalid_request_error"}, {"code", nullptr}}}}}};
}

bool wait_for(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

// Threads of `pid` but its main thread (which takes the signals through
// sigtimedwait, so its mask shows them unblocked while it waits) that do not
// block `sig`, from /proc/PID/task/*/status.
std::vector<std::string> threads_taking(pid_t pid, int sig) {
  std::vector<std::string> out;
  std::string dir = "/proc/" + std::to_string(pid) + "/task";
  DIR* d = opendir(dir.c_str());
  if (!d) return out;
  while (dirent* e = readdir(d)) {
    std::string tid = e->d_name;
    if (tid == "." || tid == ".." || tid == std::to_string(pid)) continue;
    std::istringstream in(read_file(dir + "/" + tid + "/status"));
    std::string line, name;
    while (std::getline(in, line)) {
      if (line.rfind("Name:", 0) == 0) name = line.substr(5);
      if (line.rfind("SigBlk:", 0) != 0) continue;
      unsigned long long mask = std::stoull(line.substr(7), nullptr, 16);
      if (((mask >> (sig - 1)) & 1ULL) == 0) out.push_back(tid + name);
    }
  }
  closedir(d);
  return out;
}

}  // namespace

TEST(ExitCodes, ZeroWhenEveryTaskIsDone) {
  Mock mock;
  TempDir dir;
  std::string suite = dir.write("s.lua", quick(mock).text());
  Result r = shepherd({"run", suite, "--db", dir.file("s.db"), "--json"}, key_env(1));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  json j = verdict(r);
  EXPECT_EQ(j["status"], "ok");
  EXPECT_EQ(j["exit_code"], 0);
  EXPECT_EQ(j["done"], 3);
  EXPECT_EQ(j["failed"], 0);
  EXPECT_EQ(j["pending"], 0);

  // Nothing left to do is still "every task done".
  r = shepherd({"run", suite, "--db", dir.file("s.db"), "--json"}, key_env(1));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(verdict(r)["exit_code"], 0);
  // Without --json the same code, and status and export exit 0.
  EXPECT_EQ(shepherd({"run", suite, "--db", dir.file("s.db")}, key_env(1)).exit_code, 0);
  EXPECT_EQ(shepherd({"status", suite, "--db", dir.file("s.db"), "--json"}).exit_code, 0);
  EXPECT_EQ(shepherd({"export", suite, "--db", dir.file("s.db"), "--format", "csv"}).exit_code, 0);
}

TEST(ExitCodes, FourWhenSomeTasksFailed) {
  // A 400 for one cell: a client error, not retried; the others are done.
  Mock mock(json{{"canned", json::array({bad_request_rule("instance=2 ")})}});
  TempDir dir;
  std::string suite = dir.write("s.lua", quick(mock).text());
  Result r = shepherd({"run", suite, "--db", dir.file("s.db"), "--json"}, key_env(1));
  EXPECT_EQ(r.exit_code, 4) << r.err;
  json j = verdict(r);
  EXPECT_EQ(j["status"], "failed");
  EXPECT_EQ(j["exit_code"], 4);
  EXPECT_EQ(j["done"], 2);
  EXPECT_EQ(j["failed"], 1);
  EXPECT_EQ(j["pending"], 0);
  EXPECT_EQ(mock.stats()["by_outcome"]["canned"], 1) << "a 400 is not retried";

  // Text mode: the same code and a line that says what to do.
  r = shepherd({"run", suite, "--db", dir.file("s.db")}, key_env(1));
  EXPECT_EQ(r.exit_code, 4) << "failed tasks are final: the verdict stays";
  EXPECT_NE(r.err.find("1 tasks failed"), std::string::npos) << r.err;

  // --retry-failed against a provider that now answers: 0.
  Mock good;
  std::string healed = dir.write("healed.lua", quick(good).text());
  Result first = shepherd({"run", healed, "--db", dir.file("s.db"), "--retry-failed", "--json"}, key_env(1));
  EXPECT_EQ(first.exit_code, 0) << first.err;
  EXPECT_EQ(verdict(first)["status"], "ok");
}

TEST(ExitCodes, FourWhenEveryTaskFailed) {
  Mock mock(json{{"canned", json::array({bad_request_rule("")})}});
  TempDir dir;
  std::string suite = dir.write("s.lua", quick(mock).text());
  Result r = shepherd({"run", suite, "--db", dir.file("s.db"), "--json"}, key_env(1));
  EXPECT_EQ(r.exit_code, 4) << "never 0 with every task failed\n" << r.err;
  json j = verdict(r);
  EXPECT_EQ(j["status"], "failed");
  EXPECT_EQ(j["exit_code"], 4);
  EXPECT_EQ(j["failed"], 3);
  EXPECT_EQ(j["done"], 0);
}

TEST(ExitCodes, ThreeWhenInterrupted) {
  Mock mock(json{{"latency", 400}});
  TempDir dir;
  SuiteSpec s = quick(mock);
  s.concurrency = 4;
  s.matrix = "{ model = { 'm-a' }, instance = (function() local t = {} for i = 1, 100 do t[i] = i end return t end)() }";
  std::string suite = dir.write("s.lua", s.text());
  Process run({SHEPHERD_BIN, "run", suite, "--db", dir.file("s.db"), "--json"}, key_env(1));
  ASSERT_TRUE(wait_for([&] { return mock.stats()["requests"].get<int>() > 0; }, 10s));
  run.signal(SIGINT);
  Result r = run.wait(10s);
  EXPECT_EQ(r.exit_code, 3) << r.err;
  json j = verdict(r);
  EXPECT_EQ(j["status"], "stopped");
  EXPECT_EQ(j["exit_code"], 3);
  EXPECT_EQ(j["interrupted"], true);
  EXPECT_GT(j["pending"].get<int>(), 0);
  EXPECT_EQ(j["done"].get<int>() + j["pending"].get<int>(), 100);
}

TEST(ExitCodes, ThreeWhenTwoSignalsComeAtOnce) {
  // Ctrl-C twice in a row: the second signal must reach the run's loop (and
  // cancel what is in flight), never a helper thread where its default action
  // would kill the process. So no thread of a running `run` takes them.
  Mock mock(json{{"faults", {{"hang", 1.0}}}});
  TempDir dir;
  SuiteSpec s = quick(mock);
  s.timeouts = "{ connect_ms = 1000, total_ms = 20000 }";
  std::string suite = dir.write("s.lua", s.text());
  for (int trial = 0; trial < 8; ++trial) {
    std::string db = dir.file("s" + std::to_string(trial) + ".db");
    Process run({SHEPHERD_BIN, "run", suite, "--db", db, "--grace-ms", "300", "--json"}, key_env(1));
    ASSERT_TRUE(wait_for([&] { return mock.stats()["in_flight"].get<int>() >= 1; }, 10s));
    if (trial == 0) {
      for (int sig : {SIGINT, SIGTERM}) {
        auto takers = threads_taking(run.pid(), sig);
        EXPECT_TRUE(takers.empty()) << "threads that would die of signal " << sig << ": " << ::testing::PrintToString(takers);
      }
    }
    run.signal(trial % 2 ? SIGTERM : SIGINT);
    run.signal(trial % 2 ? SIGTERM : SIGINT);
    Result r = run.wait(10s);
    EXPECT_EQ(r.signal, 0) << "trial " << trial << ": killed by signal " << r.signal << "\n" << r.err;
    EXPECT_EQ(r.exit_code, 3) << "trial " << trial << "\n" << r.err;
    EXPECT_EQ(verdict(r)["status"], "stopped") << r.out;
    EXPECT_EQ(query(db, "SELECT count(*) FROM tasks WHERE state = 'pending'"), "3");
    ASSERT_TRUE(wait_for([&] { return mock.stats()["in_flight"].get<int>() == 0; }, 10s));
  }
}

TEST(ExitCodes, ThreeWhenEveryModelIsExhausted) {
  // Models as resources, every one out of quota: the run stops early.
  Mock mock(json{{"quota", {{"m-a", 0}, {"m-b", 0}}}});
  TempDir dir;
  SuiteSpec s = quick(mock);
  s.models = {"m-a", "m-b"};
  s.matrix = "{ instance = { 1, 2, 3, 4 } }";
  s.extra += "\n  models = { 'm-a', 'm-b' },";
  std::string suite = dir.write("s.lua", s.text());
  Result r = shepherd({"run", suite, "--db", dir.file("s.db"), "--json"}, key_env(1));
  EXPECT_EQ(r.exit_code, 3) << r.err;
  json j = verdict(r);
  EXPECT_EQ(j["status"], "stopped");
  EXPECT_EQ(j["exit_code"], 3);
  EXPECT_EQ(j["models_exhausted"], true) << j.dump();
  EXPECT_EQ(j["done"], 0);
  EXPECT_EQ(j["pending"], 4) << "unfinished tasks stay pending";
}

TEST(ExitCodes, TwoForUsageSuiteAndPolicyErrors) {
  Mock mock;
  TempDir dir;
  struct Case {
    std::string what, code;
    std::vector<std::string> args;
  };
  SuiteSpec good = quick(mock);
  std::string syntax = dir.write("syntax.lua", "return { name = 'x', providers = {\n");
  SuiteSpec no_model = good;
  no_model.matrix = "{ model = { 'nobody-serves-this' }, instance = { 1 } }";
  std::string invalid = dir.write("invalid.lua", no_model.text());
  dir.write("broken_retry.lua", "return { decide = function(ctx) return {\n");
  SuiteSpec bad_policy = good;
  bad_policy.extra = "  policies = { retry = 'broken_retry.lua' },";
  std::string policy = dir.write("policy.lua", bad_policy.text());
  std::string ok = dir.write("ok.lua", good.text());
  const std::vector<Case> cases = {
      {"syntax error", "SUITE_SYNTAX", {"run", syntax, "--db", dir.file("a.db")}},
      {"invalid suite", "SUITE_INVALID", {"run", invalid, "--db", dir.file("b.db")}},
      {"missing suite", "SUITE_NOT_FOUND", {"run", dir.file("nowhere.lua"), "--db", dir.file("c.db")}},
      {"policy that does not load", "POLICY_LOAD_FAILED", {"run", policy, "--db", dir.file("d.db")}},
      {"unknown flag", "USAGE", {"run", ok, "--no-such-flag"}},
      {"bad --by", "USAGE", {"status", ok, "--by", "nope", "--db", dir.file("e.db")}},
  };
  for (const auto& c : cases) {
    std::vector<std::string> args = c.args;
    args.push_back("--json");
    Result r = shepherd(args, key_env(1));
    EXPECT_EQ(r.exit_code, 2) << c.what << "\n" << r.out << r.err;
    json j = verdict(r);
    EXPECT_EQ(j["status"], "error") << c.what;
    EXPECT_EQ(j["exit_code"], 2) << c.what << ": " << j.dump();
    EXPECT_EQ(j["error"]["code"], c.code) << c.what << ": " << j.dump();
    // And in text mode: the same code, one readable line on stderr.
    Result text = shepherd(c.args, key_env(1));
    EXPECT_EQ(text.exit_code, 2) << c.what;
    EXPECT_NE(text.err.find(c.code), std::string::npos) << c.what << ": " << text.err;
  }
  // A missing key variable is a configuration error too.
  Result r = shepherd({"run", ok, "--db", dir.file("f.db"), "--json"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_EQ(verdict(r)["error"]["code"], "KEY_ENV_MISSING");
  EXPECT_EQ(mock.stats()["requests"], 0) << "nothing was sent";
}

TEST(ExitCodes, OneForRuntimeFailures) {
  Mock mock(json{{"faults", {{"hang", 1.0}}}});
  TempDir dir;
  SuiteSpec s = quick(mock);
  s.timeouts = "{ connect_ms = 1000, total_ms = 20000 }";
  std::string suite = dir.write("s.lua", s.text());
  std::string db = dir.file("s.db");
  {
    // A second run on a store that a first run holds.
    Process first({SHEPHERD_BIN, "run", suite, "--db", db, "--grace-ms", "300"}, key_env(1));
    ASSERT_TRUE(wait_for([&] { return mock.stats()["requests"].get<int>() > 0; }, 10s));
    Result second = shepherd({"run", suite, "--db", db, "--json"}, key_env(1));
    EXPECT_EQ(second.exit_code, 1) << second.out << second.err;
    json j = verdict(second);
    EXPECT_EQ(j["status"], "error");
    EXPECT_EQ(j["exit_code"], 1) << j.dump();
    EXPECT_EQ(j["error"]["code"], "STORE_LOCKED");
    first.signal(SIGTERM);
    first.signal(SIGTERM);
    EXPECT_EQ(first.wait(10s).exit_code, 3);
  }
  // A store that cannot be opened: a directory where the file should be.
  Result r = shepherd({"run", suite, "--db", dir.path(), "--json"}, key_env(1));
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  json j = verdict(r);
  EXPECT_EQ(j["status"], "error");
  EXPECT_EQ(j["exit_code"], 1) << j.dump();
  // status on a store that does not exist yet.
  Result st = shepherd({"status", suite, "--db", dir.file("never.db"), "--json"});
  EXPECT_EQ(st.exit_code, 1) << st.out << st.err;
  EXPECT_EQ(verdict(st)["error"]["code"], "STORE_OPEN_FAILED");
  EXPECT_EQ(verdict(st)["exit_code"], 1);
}
