// The store is the single source of truth: a second writer through another
// name for it is refused, a store deleted or replaced under a run stops that
// run, and a commit that fails stops dispatching and says exactly what it lost.
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <thread>

#include <gtest/gtest.h>

#include "harness.h"

using namespace e2e;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

std::string instances(int n) {
  return "{ model = { 'm-a' }, instance = (function() local t = {} for i = 1, " + std::to_string(n) +
         " do t[i] = i end return t end)() }";
}

std::string suite_of(const TempDir& dir, const Mock& mock, int tasks, int concurrency) {
  SuiteSpec s = suite_at(mock.base_url());
  s.concurrency = concurrency;
  s.matrix = instances(tasks);
  return dir.write("s.lua", s.text());
}

int done_count(const std::string& db) {
  return std::stoi(try_query(db, "SELECT count(*) FROM tasks WHERE state = 'done'", "0"));
}

nlohmann::json json_error(const Result& r) {
  auto j = nlohmann::json::parse(r.out.empty() ? "{}" : r.out, nullptr, false);
  return j.is_object() && j.contains("error") ? j["error"] : nlohmann::json();
}

}  // namespace

TEST(StoreSafety, AnotherNameForABusyStoreIsRefused) {
  Mock mock(nlohmann::json{{"latency", 100}});
  TempDir dir;
  std::string suite = suite_of(dir, mock, 120, 4);  // about 3 s
  std::string db = dir.file("s.db");
  Process first({SHEPHERD_BIN, "run", suite, "--db", db}, key_env(1));
  ASSERT_TRUE(wait_until([&] { return done_count(db) >= 4; }, 10s)) << first.err_so_far();

  // A symlink to the store, and a symlink to its directory: the same file, the same lock.
  fs::create_symlink(db, dir.file("sym.db"));
  fs::create_directory_symlink(dir.path(), dir.file("alias-dir"));
  for (const std::string& alias : {dir.file("sym.db"), dir.file("alias-dir") + "/s.db"}) {
    Result second = shepherd({"run", suite, "--db", alias, "--json"}, key_env(1));
    EXPECT_EQ(second.exit_code, 1) << alias << "\n" << second.out << second.err;
    EXPECT_EQ(json_error(second)["code"], "STORE_LOCKED") << second.out;
    EXPECT_EQ(json_error(second)["details"]["pid"], first.pid()) << "the refusal names the holder";
  }

  // A hard link: another name for the inode. Refused whoever holds it.
  ASSERT_EQ(::link(db.c_str(), dir.file("hard.db").c_str()), 0);
  Result linked = shepherd({"run", suite, "--db", dir.file("hard.db"), "--json"}, key_env(1));
  EXPECT_EQ(linked.exit_code, 1) << linked.out << linked.err;
  nlohmann::json e = json_error(linked);
  EXPECT_EQ(e["code"], "STORE_OPEN_FAILED") << linked.out;
  EXPECT_NE(e.value("message", "").find("hard links"), std::string::npos) << linked.out;
  EXPECT_EQ(e["details"]["links"], 2) << linked.out;
  // Reading through it would see a torn store (the writer's log is under the
  // other name): refused as well, and it leaves nothing behind.
  for (const std::vector<std::string>& args : {std::vector<std::string>{"status", suite, "--json"},
                                                std::vector<std::string>{"export", suite, "--format", "jsonl", "--json"}}) {
    std::vector<std::string> through_link = args;
    through_link.insert(through_link.end(), {"--db", dir.file("hard.db")});
    Result read = shepherd(through_link);
    EXPECT_EQ(read.exit_code, 1) << args[0] << read.out << read.err;
    EXPECT_EQ(json_error(read)["code"], "STORE_OPEN_FAILED") << read.out;
  }
  EXPECT_FALSE(fs::exists(dir.file("hard.db-wal")));

  Result r = first.wait(30s);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(query(db, "PRAGMA integrity_check"), "ok");
  EXPECT_EQ(query(db, "SELECT count(*) FROM tasks WHERE state = 'done'"), "120");
  EXPECT_EQ(query(db, "SELECT count(*) FROM runs"), "1") << "a refused run leaves no trace in the store";
  EXPECT_EQ(mock.stats()["requests"], 120) << "nothing was sent twice";

  // Not even idle: while the second name exists, no run writes through either.
  Result idle = shepherd({"run", suite, "--db", db, "--json"}, key_env(1));
  EXPECT_EQ(idle.exit_code, 1) << idle.out;
  EXPECT_EQ(json_error(idle)["code"], "STORE_OPEN_FAILED") << idle.out;
  fs::remove(dir.file("hard.db"));
  Result again = shepherd({"run", suite, "--db", db}, key_env(1));
  EXPECT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(query(db, "PRAGMA integrity_check"), "ok");
  EXPECT_EQ(mock.stats()["requests"], 120);
}

namespace {

// Runs the suite, does `harm` to the store mid-run, and expects STORE_LOST.
// `fresh`: the store is gone, so the next run starts from nothing (and says
// so); otherwise it goes on from the file that replaced it.
void expect_store_lost(const std::function<void(const TempDir&, const std::string&)>& harm, const char* why,
                       bool fresh) {
  Mock mock(nlohmann::json{{"latency", 50}});
  TempDir dir;
  std::string suite = suite_of(dir, mock, 400, 4);  // about 5 s
  std::string db = dir.file("s.db");
  Process run({SHEPHERD_BIN, "run", suite, "--db", db, "--json"}, key_env(1));
  ASSERT_TRUE(wait_until([&] { return done_count(db) >= 10; }, 10s)) << run.err_so_far();
  harm(dir, db);
  auto t0 = std::chrono::steady_clock::now();
  Result r = run.wait(10s);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s) << "found within a tick, not at the end";
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  nlohmann::json e = json_error(r);
  EXPECT_EQ(e["code"], "STORE_LOST") << r.out;
  EXPECT_EQ(e["stage"], "storage");
  EXPECT_NE(e.value("message", "").find(why), std::string::npos) << r.out;
  EXPECT_NE(r.err.find(why), std::string::npos) << "said on stderr too:\n" << r.err;
  int sent = mock.stats()["requests"].get<int>();
  EXPECT_LT(sent, 400) << "the run stopped sending";

  // The next run on that path: over a lost store it starts over, and says so
  // before it sends anything; over a replacement it goes on from there.
  mock.reset();
  Result next = shepherd({"run", suite, "--db", db}, key_env(1));
  EXPECT_EQ(next.exit_code, 0) << next.err;
  if (fresh) {
    EXPECT_NE(next.err.find("earlier runs"), std::string::npos) << "a silent redo of everything:\n" << next.err;
    EXPECT_EQ(mock.stats()["requests"], 400);
  } else {
    EXPECT_EQ(next.err.find("earlier runs"), std::string::npos) << next.err;
    EXPECT_LT(mock.stats()["requests"].get<int>(), 400);
  }
  EXPECT_EQ(query(db, "PRAGMA integrity_check"), "ok");
  EXPECT_EQ(query(db, "SELECT count(*) FROM tasks WHERE state = 'done'"), "400");
}

}  // namespace

TEST(StoreSafety, AStoreDeletedDuringARunStopsIt) {
  expect_store_lost([](const TempDir&, const std::string& db) { fs::remove(db); }, "deleted", true);
}

TEST(StoreSafety, AStoreReplacedDuringARunStopsIt) {
  expect_store_lost(
      [](const TempDir& dir, const std::string& db) {
        fs::copy_file(db, dir.file("copy.db"));
        fs::rename(dir.file("copy.db"), db);
      },
      "replaced", false);
}

TEST(StoreSafety, AFailedCommitStopsDispatchingCountsWhatWasLostAndResumes) {
  // 20 answers a second; SQLite's write lock held elsewhere for longer than
  // the writer's busy timeout (10 s): the commit fails after 10 s.
  Mock mock(nlohmann::json{{"latency", 50}});
  TempDir dir;
  const int tasks = 1000;
  std::string suite = suite_of(dir, mock, tasks, 1);
  std::string db = dir.file("s.db");
  Process run({SHEPHERD_BIN, "run", suite, "--db", db, "--json"}, key_env(1));
  ASSERT_TRUE(wait_until([&] { return done_count(db) >= 5; }, 10s)) << run.err_so_far();

  int sent_at_failure = -1;
  {
    StoreWriteLock held(db);
    auto locked_at = std::chrono::steady_clock::now();
    // The run says so as soon as the commit fails: from then on nothing more goes out.
    bool said = wait_until([&] { return run.err_so_far().find("commit failed") != std::string::npos; }, 13s);
    sent_at_failure = mock.stats()["requests"].get<int>();
    ASSERT_TRUE(said) << run.err_so_far();
    EXPECT_GE(std::chrono::steady_clock::now() - locked_at, 9s) << "the busy timeout rides out a short lock";
    Result r = run.wait(10s);
    EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
    nlohmann::json e = json_error(r);
    ASSERT_EQ(e["code"], "STORE_WRITE_FAILED") << r.out;
    EXPECT_EQ(e["stage"], "storage");
    int sent = mock.stats()["requests"].get<int>();
    EXPECT_LE(sent - sent_at_failure, 1) << "requests went out after the failed commit";
    EXPECT_LT(sent, tasks);

    held.release();
    // Exactly: every request sent was committed, counted lost, or cancelled in
    // flight (one at most: concurrency 1) -- never answered and dropped silently.
    int committed = std::stoi(query(db, "SELECT count(*) FROM attempts"));
    int lost = e["details"]["attempts_lost"].get<int>();
    EXPECT_GT(lost, 0);
    EXPECT_GE(sent - committed - lost, 0) << r.out;
    EXPECT_LE(sent - committed - lost, 1) << r.out;
    EXPECT_NE(e.value("message", "").find(std::to_string(lost) + " answers"), std::string::npos) << r.out;
    EXPECT_GE(e["details"]["records_lost"].get<int>(), lost);
    // Their tasks stay pending: the store holds no trace of the lost answers.
    EXPECT_EQ(query(db, "SELECT count(*) FROM tasks WHERE state = 'done'"), std::to_string(committed));
    EXPECT_EQ(query(db, "SELECT count(*) FROM tasks WHERE state = 'pending'"), std::to_string(tasks - committed));
    EXPECT_EQ(query(db, "PRAGMA integrity_check"), "ok");

    // A later run (with more in flight, to be quick) completes exactly the pending tasks.
    mock.reset();
    SuiteSpec fast = suite_at(mock.base_url());
    fast.concurrency = 64;
    fast.matrix = instances(tasks);
    dir.write("s.lua", fast.text());
    Result resumed = shepherd({"run", suite, "--db", db}, key_env(1));
    ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
    EXPECT_EQ(mock.stats()["requests"], tasks - committed) << "only what was not stored is sent again";
    EXPECT_EQ(query(db, "SELECT count(*) FROM tasks WHERE state = 'done'"), std::to_string(tasks));
    EXPECT_EQ(query(db, "SELECT count(*) FROM attempts"), std::to_string(tasks)) << "one attempt per task";
    EXPECT_EQ(query(db, "SELECT count(*) FROM (SELECT task FROM attempts GROUP BY task HAVING count(*) > 1)"), "0");
  }
}
