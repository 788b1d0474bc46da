#include "store/store.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>
#include <gtest/gtest.h>

#include "core/error.h"
#include "store/writer.h"

namespace shepherd {
namespace {

using nlohmann::json;

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = "/tmp/shepherd_store_test_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    path_ = (dir_ / "store.db").string();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::filesystem::path dir_;
  std::string path_;
};

// Sets what a finished attempt would, straight in SQL, to test the queries alone.
void set_task(Store& store, const std::string& id, const std::string& state,
              const std::string& last_class = "") {
  SQLite::Statement update(store.db(),
                           "UPDATE tasks SET state = ?, last_class = ? WHERE id = ?");
  update.bind(1, state);
  if (last_class.empty()) update.bind(2);
  else update.bind(2, last_class);
  update.bind(3, id);
  ASSERT_EQ(update.exec(), 1) << id;
}

template <class F>
Error expect_error(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e;
  }
  ADD_FAILURE() << "no Error thrown";
  return Error(codes::INTERNAL, "none", Stage::storage);
}

TEST_F(StoreTest, CreatesSchemaAtCurrentVersionInWalMode) {
  Store store(path_, Store::Mode::read_write);
  EXPECT_EQ(store.schema_version(), Store::kSchemaVersion);
  EXPECT_EQ(Store::kSchemaVersion, 4);
  for (const char* table : {"meta", "runs", "tasks", "attempts", "events"}) {
    EXPECT_TRUE(store.db().tableExists(table)) << table;
  }
  EXPECT_EQ(store.db().execAndGet("PRAGMA journal_mode").getString(), "wal");
  EXPECT_EQ(store.db().execAndGet("PRAGMA synchronous").getInt(), 1);  // NORMAL
  EXPECT_EQ(store.db().execAndGet("PRAGMA busy_timeout").getInt(), 10000);
  EXPECT_EQ(store.db().execAndGet("SELECT count(*) FROM sqlite_master WHERE type = 'index' AND "
                                  "name IN ('tasks_by_suite_state', 'attempts_by_task')")
                .getInt(),
            2);
  EXPECT_TRUE(store.integrity_ok());
}

TEST_F(StoreTest, ReopeningKeepsDataAndVersion) {
  {
    Store store(path_, Store::Mode::read_write);
    store.ensure_tasks("s", {{"t1", R"({"a":1})"}});
  }
  Store again(path_, Store::Mode::read_write);
  EXPECT_EQ(again.schema_version(), Store::kSchemaVersion);
  EXPECT_EQ(again.load_tasks("s").size(), 1u);
  Store reader(path_, Store::Mode::read_only);
  EXPECT_EQ(reader.schema_version(), Store::kSchemaVersion);
}

TEST_F(StoreTest, MigratesAVersionOneStoreKeepingItsData) {
  {
    // A v1 store: the same tables without the columns v2 added.
    Store store(path_, Store::Mode::read_write);
    store.ensure_tasks("s", {{"t1", R"({"a":1})"}});
    store.db().exec("DROP INDEX tasks_census; DROP INDEX attempts_by_class; DROP INDEX attempts_by_ended_at;"
                    "ALTER TABLE tasks DROP COLUMN request_run;"
                    "ALTER TABLE attempts DROP COLUMN request_hash; ALTER TABLE attempts DROP COLUMN delay_ms;"
                    "ALTER TABLE tasks DROP COLUMN request_hash;"
                    "ALTER TABLE attempts DROP COLUMN turn; ALTER TABLE attempts DROP COLUMN conversation;"
                    "ALTER TABLE tasks DROP COLUMN turns; ALTER TABLE tasks DROP COLUMN conversation;"
                    "ALTER TABLE tasks DROP COLUMN transcript;"
                    "UPDATE meta SET value = '1' WHERE key = 'schema_version'");
  }
  const Error e = expect_error([&] { Store reader(path_, Store::Mode::read_only); });
  EXPECT_EQ(e.code(), codes::STORE_OPEN_FAILED) << "a reader asks for a run to migrate";
  Store store(path_, Store::Mode::read_write);
  EXPECT_EQ(store.schema_version(), 4);
  auto tasks = store.load_tasks("s");
  ASSERT_EQ(tasks.size(), 1u);
  EXPECT_EQ(tasks[0].request_hash, "");
  EXPECT_EQ(tasks[0].conversation, 1);
  EXPECT_EQ(store.db().execAndGet("SELECT count(*) FROM pragma_table_info('attempts') WHERE name IN "
                                  "('request_hash', 'delay_ms', 'turn', 'conversation')").getInt(), 4);
  EXPECT_EQ(store.db().execAndGet("SELECT count(*) FROM pragma_table_info('tasks') WHERE name IN "
                                  "('turns', 'conversation', 'transcript', 'request_run')").getInt(), 4);
}

TEST_F(StoreTest, RefusesSchemaNewerThanThisBuild) {
  {
    Store store(path_, Store::Mode::read_write);
    store.db().exec("UPDATE meta SET value = '5' WHERE key = 'schema_version'");
  }
  for (Store::Mode mode : {Store::Mode::read_write, Store::Mode::read_only}) {
    const Error e = expect_error([&] { Store store(path_, mode); });
    EXPECT_EQ(e.code(), codes::STORE_SCHEMA_TOO_NEW);
    EXPECT_EQ(e.stage(), Stage::storage);
    EXPECT_EQ(e.details().value("found", 0), 5);
  }
  // The refusal must not have touched the file.
  SQLite::Database raw(path_);
  EXPECT_EQ(raw.execAndGet("SELECT value FROM meta WHERE key = 'schema_version'").getString(),
            "5");
}

TEST_F(StoreTest, ReadOnlyOnMissingFileAsksToRunFirst) {
  const Error e = expect_error([&] { Store store(path_, Store::Mode::read_only); });
  EXPECT_EQ(e.code(), codes::STORE_OPEN_FAILED);
  EXPECT_NE(std::string(e.what()).find("run the suite first"), std::string::npos) << e.what();
  EXPECT_EQ(e.details().value("path", ""), path_);
  EXPECT_FALSE(std::filesystem::exists(path_));
}

TEST_F(StoreTest, NotAStoreIsRefusedOnOpen) {
  {
    std::FILE* f = std::fopen(path_.c_str(), "w");
    std::fputs("this is not a database, just some text long enough to be read", f);
    std::fclose(f);
  }
  const Error e = expect_error([&] { Store store(path_, Store::Mode::read_write); });
  EXPECT_EQ(e.code(), codes::STORE_OPEN_FAILED);
}

TEST_F(StoreTest, ReadOnlyStoreRefusesWrites) {
  { Store store(path_, Store::Mode::read_write); }
  Store reader(path_, Store::Mode::read_only);
  const Error e = expect_error([&] { reader.ensure_tasks("s", {{"t1", "{}"}}); });
  EXPECT_EQ(e.code(), codes::STORE_WRITE_FAILED);
}

TEST_F(StoreTest, EnsureTasksIsIdempotent) {
  Store store(path_, Store::Mode::read_write);
  store.ensure_tasks("s", {{"t1", R"({"n":1})"}, {"t2", R"({"n":2})"}, {"t3", R"({"n":3})"}});
  set_task(store, "t2", "done");
  // Same ids again (one with other dims) plus one new: nothing is overwritten.
  store.ensure_tasks("s", {{"t1", R"({"n":99})"}, {"t2", R"({"n":2})"}, {"t4", R"({"n":4})"}});
  store.ensure_tasks("other", {{"o1", "{}"}});

  const std::vector<StoredTask> tasks = store.load_tasks("s");
  ASSERT_EQ(tasks.size(), 4u);
  EXPECT_EQ(tasks[0].id, "t1");
  EXPECT_EQ(tasks[1].id, "t2");
  EXPECT_EQ(tasks[1].state, TaskState::done);
  EXPECT_EQ(tasks[3].id, "t4");
  EXPECT_EQ(tasks[3].state, TaskState::pending);
  EXPECT_EQ(tasks[3].attempts, 0);
  EXPECT_EQ(store.db().execAndGet("SELECT dims FROM tasks WHERE id = 't1'").getString(),
            R"({"n":1})");
  EXPECT_EQ(store.load_tasks("other").size(), 1u);
  EXPECT_TRUE(store.load_tasks("nothing").empty());
}

TEST_F(StoreTest, EnsureTasksHandlesAHundredThousandSeeds) {
  Store store(path_, Store::Mode::read_write);
  std::vector<TaskSeed> seeds;
  seeds.reserve(100000);
  for (int i = 0; i < 100000; ++i) {
    seeds.push_back({"task-" + std::to_string(i),
                     R"({"instance":)" + std::to_string(i) + R"(,"model":"m)" +
                         std::to_string(i % 7) + R"("})"});
  }
  const auto start = std::chrono::steady_clock::now();
  store.ensure_tasks("big", seeds);
  const double first =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const auto again = std::chrono::steady_clock::now();
  store.ensure_tasks("big", seeds);
  const double second =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - again).count();
  std::cout << "[ measure  ] ensure_tasks 100000 seeds: " << first * 1000 << " ms new, "
            << second * 1000 << " ms already present\n";
  EXPECT_EQ(store.load_tasks("big").size(), 100000u);
}

TEST_F(StoreTest, LoadTasksReadsStateAndAttempts) {
  Store store(path_, Store::Mode::read_write);
  store.ensure_tasks("s", {{"b", "{}"}, {"a", "{}"}, {"c", "{}"}});
  store.db().exec("UPDATE tasks SET state = 'failed', attempts = 3 WHERE id = 'a'");
  store.db().exec("UPDATE tasks SET state = 'done', attempts = 1 WHERE id = 'c'");
  const std::vector<StoredTask> tasks = store.load_tasks("s");
  ASSERT_EQ(tasks.size(), 3u);
  EXPECT_EQ(tasks[0].id, "b");
  EXPECT_EQ(tasks[0].state, TaskState::pending);
  EXPECT_EQ(tasks[1].id, "a");
  EXPECT_EQ(tasks[1].state, TaskState::failed);
  EXPECT_EQ(tasks[1].attempts, 3);
  EXPECT_EQ(tasks[2].state, TaskState::done);
  EXPECT_EQ(tasks[2].attempts, 1);
}

TEST_F(StoreTest, ResetFailedSendsOnlyFailedTasksOfTheSuiteBack) {
  Store store(path_, Store::Mode::read_write);
  store.ensure_tasks("s", {{"a", "{}"}, {"b", "{}"}, {"c", "{}"}});
  store.ensure_tasks("other", {{"x", "{}"}});
  set_task(store, "a", "failed", "timeout");
  set_task(store, "b", "failed", "server_error");
  set_task(store, "c", "done");
  set_task(store, "x", "failed", "timeout");
  EXPECT_EQ(store.reset_failed("s"), 2);
  EXPECT_EQ(store.reset_failed("s"), 0);
  for (const StoredTask& t : store.load_tasks("s")) {
    EXPECT_EQ(t.state, t.id == "c" ? TaskState::done : TaskState::pending) << t.id;
  }
  EXPECT_EQ(store.load_tasks("other")[0].state, TaskState::failed);
}

TEST_F(StoreTest, ExportStreamsInInsertionOrderWithNullsAsEmpty) {
  Store store(path_, Store::Mode::read_write);
  store.ensure_tasks("e", {{"zeta", R"({"i":0})"}, {"alpha", R"({"i":1})"}});
  store.ensure_tasks("e", {{"mid", ""}});
  store.ensure_tasks("other", {{"o", "{}"}});
  store.db().exec(
      "UPDATE tasks SET state = 'done', attempts = 2, model = 'm-7b', content = 'hello', "
      "latency_ms = 12.5, usage = '{\"total_tokens\":9}' WHERE id = 'alpha'");
  store.db().exec(
      "UPDATE tasks SET state = 'failed', attempts = 1, error_code = 'HTTP_500', "
      "error_message = 'boom' WHERE id = 'zeta'");

  std::vector<ExportRow> rows;
  store.export_tasks("e", [&](const ExportRow& row) { rows.push_back(row); });
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].task, "zeta");
  EXPECT_EQ(rows[1].task, "alpha");
  EXPECT_EQ(rows[2].task, "mid");

  EXPECT_EQ(rows[0].state, TaskState::failed);
  EXPECT_EQ(rows[0].error_code, "HTTP_500");
  EXPECT_EQ(rows[0].error_message, "boom");
  EXPECT_EQ(rows[0].model, "");
  EXPECT_EQ(rows[0].content, "");
  EXPECT_EQ(rows[0].latency_ms, -1);
  EXPECT_EQ(rows[0].usage_json, "");
  EXPECT_EQ(rows[0].dims_json, R"({"i":0})");

  EXPECT_EQ(rows[1].state, TaskState::done);
  EXPECT_EQ(rows[1].model, "m-7b");
  EXPECT_EQ(rows[1].content, "hello");
  EXPECT_EQ(rows[1].attempts, 2);
  EXPECT_EQ(rows[1].latency_ms, 12.5);
  EXPECT_EQ(rows[1].usage_json, R"({"total_tokens":9})");
  EXPECT_EQ(rows[1].error_code, "");

  // Empty dims are stored as NULL and read back empty.
  EXPECT_EQ(rows[2].dims_json, "");
  EXPECT_TRUE(store.db().execAndGet("SELECT dims FROM tasks WHERE id = 'mid'").isNull());
  EXPECT_EQ(rows[2].state, TaskState::pending);
}

TEST_F(StoreTest, RunsAndEvents) {
  int64_t run1 = 0, run2 = 0, other = 0;
  {
    Store store(path_, Store::Mode::read_write);
    run1 = store.begin_run({"s", "/abs/s.lua", "host1", 1234, "cfg", "pol"});
    run2 = store.begin_run({"s", "/abs/s.lua", "host1", 1235, "cfg", ""});
    other = store.begin_run({"t", "/abs/t.lua", "host1", 1236, "cfg", "pol"});
    EXPECT_GT(run2, run1);
    store.finish_run(run1, "completed", {{"done", 3}});

    SQLite::Statement run(store.db(),
                          "SELECT suite, suite_path, host, pid, config_hash, policy_version, "
                          "started_at, finished_at, outcome, summary FROM runs WHERE id = ?");
    run.bind(1, run1);
    ASSERT_TRUE(run.executeStep());
    EXPECT_EQ(run.getColumn(0).getString(), "s");
    EXPECT_EQ(run.getColumn(3).getInt(), 1234);
    EXPECT_GT(run.getColumn(6).getDouble(), 1.6e9);
    EXPECT_GE(run.getColumn(7).getDouble(), run.getColumn(6).getDouble());
    EXPECT_EQ(run.getColumn(8).getString(), "completed");
    EXPECT_EQ(json::parse(run.getColumn(9).getString()), json({{"done", 3}}));
    EXPECT_TRUE(store.db()
                    .execAndGet("SELECT policy_version FROM runs WHERE id = " +
                                std::to_string(run2))
                    .isNull());
  }
  {
    Writer writer(path_);
    writer.push(EventRecord{run2, 200.0, "policy_reload", R"({"file":"retry.lua"})"});
    writer.push(EventRecord{run1, 100.0, "run_started", R"({"tasks":3})"});
    writer.push(EventRecord{other, 150.0, "cooldown", "{}"});
    writer.push(EventRecord{run1, 300.0, "run_finished", ""});
  }
  Store store(path_, Store::Mode::read_only);
  const json events = store.events("s");
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0]["kind"], "run_started");
  EXPECT_EQ(events[0]["run"], run1);
  EXPECT_EQ(events[0]["at"], 100.0);
  EXPECT_EQ(events[0]["detail"], json({{"tasks", 3}}));
  EXPECT_EQ(events[1]["kind"], "policy_reload");
  EXPECT_EQ(events[1]["detail"]["file"], "retry.lua");
  EXPECT_EQ(events[2]["kind"], "run_finished");
  EXPECT_EQ(events[2]["detail"], json::object());
  EXPECT_EQ(store.events("t").size(), 1u);
  EXPECT_TRUE(store.events("none").empty());
}

TEST_F(StoreTest, ReadOnlyStoreReadsWhileTheWriterWrites) {
  constexpr int kTasks = 2000;
  {
    Store store(path_, Store::Mode::read_write);
    std::vector<TaskSeed> seeds;
    for (int i = 0; i < kTasks; ++i) seeds.push_back({"t" + std::to_string(i), "{}"});
    store.ensure_tasks("rw", seeds);
  }
  Store reader(path_, Store::Mode::read_only);
  Writer writer(path_);
  std::thread producer([&] {
    for (int i = 0; i < kTasks; ++i) {
      AttemptRecord r;
      r.task_id = "t" + std::to_string(i);
      r.n = 1;
      r.task_attempts = 1;
      r.task_state = TaskState::done;
      r.cls = "ok";
      r.response = std::string(300, 'x');
      writer.push(std::move(r));
      if (i % 100 == 0) std::this_thread::sleep_for(std::chrono::microseconds(500));
    }
  });
  // Reads run concurrently with commits and only ever see whole commits.
  int64_t last_done = 0;
  int reads = 0;
  while (last_done < kTasks) {
    SQLite::Statement count(reader.db(), "SELECT count(*), sum(state = 'done') FROM tasks WHERE suite = 'rw'");
    ASSERT_TRUE(count.executeStep());
    const int64_t done = count.getColumn(1).getInt64();
    ASSERT_GE(done, last_done);
    ASSERT_EQ(count.getColumn(0).getInt64(), kTasks);
    last_done = done;
    ++reads;
    if (reads > 100000) break;
  }
  producer.join();
  writer.flush();
  EXPECT_EQ(reader.db().execAndGet("SELECT count(*) FROM tasks WHERE suite = 'rw' AND state = 'done'").getInt64(),
            kTasks);
  EXPECT_EQ(reader.load_tasks("rw").back().attempts, 1);
  EXPECT_GT(reads, 1);
  EXPECT_TRUE(reader.integrity_ok());
}

// An alert rule's window as stored: failed attempts of the suite (not ok,
// not done or answered), by class and code (empty: any), ended within
// [since, until], oldest first.
TEST_F(StoreTest, FailedAttemptTimesReadARuleWindowOfTheSuite) {
  Store store(path_, Store::Mode::read_write);
  store.ensure_tasks("s", {{"a", "{}"}, {"b", "{}"}});
  store.ensure_tasks("other", {{"x", "{}"}});
  auto attempt = [&](const std::string& task, const char* cls, const char* decision, const char* code, double ended) {
    SQLite::Statement insert(store.db(),
                             "INSERT INTO attempts(task, n, class, decision, error_code, ended_at) VALUES(?, 1, ?, ?, ?, ?)");
    insert.bind(1, task);
    if (cls) insert.bind(2, cls); else insert.bind(2);
    insert.bind(3, decision);
    if (code) insert.bind(4, code); else insert.bind(4);
    insert.bind(5, ended);
    insert.exec();
  };
  attempt("a", "server_error", "retry", "SERVER_ERROR", 130);
  attempt("b", "server_error", "fail", "SERVER_ERROR", 110);
  attempt("a", "server_error", "retry", "SERVER_ERROR", 99);   // before the window
  attempt("a", "server_error", "retry", "SERVER_ERROR", 201);  // after it
  attempt("x", "server_error", "retry", "SERVER_ERROR", 120);  // another suite's
  attempt("b", "quota_exhausted", "switch_model", "QUOTA_EXHAUSTED", 150);
  attempt("a", "ok", "done", nullptr, 140);
  attempt("b", "check_failed", "answered", nullptr, 145);      // a conversation's turn, answered
  attempt("b", nullptr, "fail", "INTERNAL", 160);              // no class: "unknown", as error_stats says

  using times = std::vector<double>;
  EXPECT_EQ(store.failed_attempt_times("s", "server_error", "", 100, 200), (times{110, 130}));
  EXPECT_EQ(store.failed_attempt_times("s", "server_error", "", 99, 201), (times{99, 110, 130, 201}));
  EXPECT_EQ(store.failed_attempt_times("s", "", "QUOTA_EXHAUSTED", 100, 200), (times{150}));
  EXPECT_EQ(store.failed_attempt_times("s", "server_error", "QUOTA_EXHAUSTED", 100, 200), times{});
  EXPECT_EQ(store.failed_attempt_times("s", "", "", 100, 200), (times{110, 130, 150, 160}));
  EXPECT_EQ(store.failed_attempt_times("s", "unknown", "", 100, 200), (times{160}));
  EXPECT_EQ(store.failed_attempt_times("other", "server_error", "", 100, 200), (times{120}));
  EXPECT_EQ(store.failed_attempt_times("none", "", "", 0, 1e12), times{});
}

}  // namespace
}  // namespace shepherd
