#include "store/store_lock.h"
#include "store/writer.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>
#include <gtest/gtest.h>

#include "core/error.h"
#include "store/store.h"

namespace shepherd {
namespace {

using Clock = std::chrono::steady_clock;

class WriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = "/tmp/shepherd_writer_test_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    path_ = (dir_ / "store.db").string();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Creates the store with `n` pending tasks t0..t(n-1) in suite "s".
  void seed(int n) {
    Store store(path_, Store::Mode::read_write);
    std::vector<TaskSeed> seeds;
    seeds.reserve(n);
    for (int i = 0; i < n; ++i) seeds.push_back({"t" + std::to_string(i), "{}"});
    store.ensure_tasks("s", seeds);
  }

  // A separate connection, as another process would have.
  int64_t count(const std::string& sql) {
    SQLite::Database db(path_, SQLite::OPEN_READONLY);
    return db.execAndGet(sql).getInt64();
  }

  std::filesystem::path dir_;
  std::string path_;
};

AttemptRecord attempt(int task, int n, size_t response_bytes = 300) {
  AttemptRecord r;
  r.task_id = "t" + std::to_string(task);
  r.run_id = 1;
  r.n = n;
  r.key_id = "key-a";
  r.endpoint = "http://127.0.0.1:8080/v1";
  r.model_requested = "m-7b";
  r.model_answered = "m-7b";
  r.http_status = 200;
  r.cls = "ok";
  r.decision = "done";
  r.policy_version = "p1";
  r.latency_ms = 12.5;
  r.prompt_tokens = 10;
  r.completion_tokens = 20;
  r.started_at = 1000.0;
  r.ended_at = 1000.0125;
  r.response = std::string(response_bytes, 'r');
  r.task_state = TaskState::done;
  r.task_attempts = n;
  r.content = "answer " + std::to_string(task);
  r.usage_json = R"({"prompt_tokens":10,"completion_tokens":20})";
  return r;
}

// Runs `f` on another thread; false if it has not returned within `limit`.
template <class F>
bool returns_within(std::chrono::milliseconds limit, F&& f) {
  auto done = std::async(std::launch::async, std::forward<F>(f));
  return done.wait_for(limit) == std::future_status::ready;
}

TEST_F(WriterTest, APushedRecordIsVisibleToAnotherConnectionWithin50ms) {
  seed(2);
  Writer writer(path_);
  // The first commit creates the WAL file (a one-off fsync of it and of the
  // directory); the promise is about a running writer that sits idle.
  writer.push(attempt(0, 1));
  writer.flush();
  SQLite::Database reader(path_, SQLite::OPEN_READONLY);
  SQLite::Statement visible(reader, "SELECT count(*) FROM attempts WHERE task = 't1'");
  const auto pushed = Clock::now();
  writer.push(attempt(1, 1));
  bool seen = false;
  while (!seen && Clock::now() - pushed < std::chrono::milliseconds(50)) {
    seen = visible.executeStep() && visible.getColumn(0).getInt() == 1;
    visible.reset();
    if (!seen) std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  const double ms = std::chrono::duration<double, std::milli>(Clock::now() - pushed).count();
  std::cout << "[ measure  ] push to visible: " << ms << " ms\n";
  EXPECT_TRUE(seen) << "not visible after " << ms << " ms";
}

TEST_F(WriterTest, AnAttemptInsertsItsRowAndUpdatesItsTask) {
  seed(3);
  {
    Writer writer(path_);
    AttemptRecord failed = attempt(0, 1);
    failed.model_answered = "";  // unknown: keeps whatever the task had
    failed.http_status = 0;      // transport failure, no response
    failed.transport = "timeout";
    failed.cls = "timeout";
    failed.decision = "retry";
    failed.error_code = "TIMEOUT";
    failed.error_message = "stalled";
    failed.prompt_tokens = -1;
    failed.completion_tokens = -1;
    failed.response = "";
    failed.task_state = TaskState::pending;
    failed.content = "";
    failed.usage_json = "";
    writer.push(std::move(failed));
    writer.flush();
    EXPECT_EQ(writer.committed(), 1u);

    SQLite::Database db(path_, SQLite::OPEN_READONLY);
    SQLite::Statement a(db,
                        "SELECT model_answered, http_status, transport, class, prompt_tokens, "
                        "completion_tokens, response, key_id, run, n FROM attempts");
    ASSERT_TRUE(a.executeStep());
    EXPECT_TRUE(a.getColumn(0).isNull());
    EXPECT_TRUE(a.getColumn(1).isNull());
    EXPECT_EQ(a.getColumn(2).getString(), "timeout");
    EXPECT_EQ(a.getColumn(3).getString(), "timeout");
    EXPECT_TRUE(a.getColumn(4).isNull());
    EXPECT_TRUE(a.getColumn(5).isNull());
    EXPECT_TRUE(a.getColumn(6).isNull());
    EXPECT_EQ(a.getColumn(7).getString(), "key-a");
    EXPECT_EQ(a.getColumn(8).getInt(), 1);
    EXPECT_EQ(a.getColumn(9).getInt(), 1);

    SQLite::Statement t(db,
                        "SELECT state, attempts, model, content, error_code, error_message, "
                        "last_class, latency_ms, usage FROM tasks WHERE id = 't0'");
    ASSERT_TRUE(t.executeStep());
    EXPECT_EQ(t.getColumn(0).getString(), "pending");
    EXPECT_EQ(t.getColumn(1).getInt(), 1);
    EXPECT_TRUE(t.getColumn(2).isNull());
    EXPECT_TRUE(t.getColumn(3).isNull());
    EXPECT_EQ(t.getColumn(4).getString(), "TIMEOUT");
    EXPECT_EQ(t.getColumn(5).getString(), "stalled");
    EXPECT_EQ(t.getColumn(6).getString(), "timeout");
    EXPECT_EQ(t.getColumn(7).getDouble(), 12.5);
    EXPECT_TRUE(t.getColumn(8).isNull());

    writer.push(attempt(0, 2));
    AttemptRecord unknown_model = attempt(1, 1);
    unknown_model.model_answered = "";
    writer.push(attempt(1, 1));
    writer.push(std::move(unknown_model));
  }
  Store store(path_, Store::Mode::read_only);
  std::vector<ExportRow> rows;
  store.export_tasks("s", [&](const ExportRow& r) { rows.push_back(r); });
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].state, TaskState::done);
  EXPECT_EQ(rows[0].attempts, 2);
  EXPECT_EQ(rows[0].model, "m-7b");
  EXPECT_EQ(rows[0].content, "answer 0");
  EXPECT_EQ(rows[0].error_code, "");  // a success clears the previous error
  EXPECT_EQ(rows[0].usage_json, R"({"prompt_tokens":10,"completion_tokens":20})");
  EXPECT_EQ(rows[1].model, "m-7b");  // the unknown model did not erase the known one
  EXPECT_EQ(rows[2].state, TaskState::pending);
  EXPECT_EQ(rows[2].attempts, 0);
  EXPECT_EQ(store.db().execAndGet("SELECT count(*) FROM tasks WHERE suite = 's' AND state = 'done'").getInt(), 2);
}

TEST_F(WriterTest, TaskStateAndEventRecords) {
  seed(2);
  {
    Writer writer(path_);
    writer.push(attempt(0, 1));
    writer.push(TaskStateRecord{"t0", TaskState::failed, "GAVE_UP", "too many retries"});
    writer.push(TaskStateRecord{"t1", TaskState::done, "", ""});
    writer.push(EventRecord{0, 5.0, "cooldown", R"({"key":"key-a"})"});
    writer.flush();
    EXPECT_EQ(writer.committed(), 4u);
  }
  SQLite::Database db(path_, SQLite::OPEN_READONLY);
  SQLite::Statement t(db, "SELECT state, error_code, error_message, content FROM tasks ORDER BY seq");
  ASSERT_TRUE(t.executeStep());
  EXPECT_EQ(t.getColumn(0).getString(), "failed");
  EXPECT_EQ(t.getColumn(1).getString(), "GAVE_UP");
  EXPECT_EQ(t.getColumn(2).getString(), "too many retries");
  EXPECT_EQ(t.getColumn(3).getString(), "answer 0");  // a state change keeps the content
  ASSERT_TRUE(t.executeStep());
  EXPECT_EQ(t.getColumn(0).getString(), "done");
  EXPECT_TRUE(t.getColumn(1).isNull());
  SQLite::Statement e(db, "SELECT run, at, kind, detail FROM events");
  ASSERT_TRUE(e.executeStep());
  EXPECT_TRUE(e.getColumn(0).isNull());  // run 0: not part of a run
  EXPECT_EQ(e.getColumn(1).getDouble(), 5.0);
  EXPECT_EQ(e.getColumn(2).getString(), "cooldown");
  EXPECT_EQ(e.getColumn(3).getString(), R"({"key":"key-a"})");
}

TEST_F(WriterTest, FlushWaitsForEverythingPushedBeforeIt) {
  constexpr int kThreads = 4, kEach = 2500;
  seed(kThreads * kEach);
  Writer writer(path_);
  writer.flush();  // nothing pushed: returns at once
  std::vector<std::thread> pushers;
  std::vector<int64_t> seen(kThreads, -1);
  for (int p = 0; p < kThreads; ++p) {
    pushers.emplace_back([&, p] {
      for (int i = 0; i < kEach; ++i) {
        AttemptRecord r = attempt(p * kEach + i, 1, 50);
        r.key_id = "pusher-" + std::to_string(p);
        writer.push(std::move(r));
      }
      writer.flush();
      // Read right after this thread's flush, while others may still push.
      seen[p] = count("SELECT count(*) FROM attempts WHERE key_id = 'pusher-" +
                      std::to_string(p) + "'");
    });
  }
  for (std::thread& t : pushers) t.join();
  for (int p = 0; p < kThreads; ++p) EXPECT_EQ(seen[p], kEach) << p;
  writer.flush();
  EXPECT_EQ(writer.committed(), static_cast<uint64_t>(kThreads * kEach));
  EXPECT_EQ(writer.failure(), nullptr);
}

// Every row a transaction touches gets that commit's time, so distinct
// updated_at values count the transactions that updated tasks.
TEST_F(WriterTest, GroupCommitPutsPendingRecordsInOneTransaction) {
  constexpr int kRecords = 10000;
  seed(kRecords);
  Writer writer(path_);
  {
    // Hold the write lock so records pile up behind the writer's first commit.
    SQLite::Database blocker(path_, SQLite::OPEN_READWRITE);
    blocker.exec("BEGIN IMMEDIATE");
    for (int i = 0; i < kRecords; ++i) writer.push(attempt(i, 1, 50));
    blocker.exec("ROLLBACK");
  }
  writer.flush();
  EXPECT_EQ(writer.committed(), static_cast<uint64_t>(kRecords));
  const int64_t transactions =
      count("SELECT count(DISTINCT updated_at) FROM tasks WHERE state = 'done'");
  std::cout << "[ measure  ] " << kRecords << " records queued behind a lock: " << transactions
            << " transactions\n";
  EXPECT_LE(transactions, 3);
  EXPECT_EQ(count("SELECT count(*) FROM attempts"), kRecords);
}

TEST_F(WriterTest, GroupCommitWhileFreeRunning) {
  constexpr int kRecords = 10000;
  seed(kRecords);
  Writer writer(path_);
  for (int i = 0; i < kRecords; ++i) writer.push(attempt(i, 1));
  writer.flush();
  const int64_t transactions =
      count("SELECT count(DISTINCT updated_at) FROM tasks WHERE state = 'done'");
  std::cout << "[ measure  ] " << kRecords << " records pushed flat out: " << transactions
            << " transactions\n";
  EXPECT_LT(transactions, kRecords);
  EXPECT_EQ(count("SELECT count(*) FROM attempts"), kRecords);
}

TEST_F(WriterTest, ACommitFailureSurfacesAndStopsTheWriter) {
  seed(3);
  Writer writer(path_);
  writer.push(attempt(0, 1));
  writer.flush();
  ASSERT_EQ(writer.failure(), nullptr);
  {
    SQLite::Database other(path_, SQLite::OPEN_READWRITE);
    other.exec("DROP TABLE tasks");
  }
  writer.push(attempt(1, 1));
  EXPECT_TRUE(returns_within(std::chrono::seconds(5), [&] { writer.flush(); }));
  const std::shared_ptr<const Error> failure = writer.failure();
  ASSERT_NE(failure, nullptr);
  EXPECT_EQ(failure->code(), codes::STORE_WRITE_FAILED);
  EXPECT_EQ(failure->stage(), Stage::storage);
  EXPECT_NE(std::string(failure->what()).find("tasks"), std::string::npos) << failure->what();
  EXPECT_EQ(failure->details().value("path", ""), path_);

  // Stopped: later pushes are dropped and flush still returns.
  writer.push(attempt(2, 1));
  EXPECT_TRUE(returns_within(std::chrono::seconds(5), [&] { writer.flush(); }));
  EXPECT_EQ(writer.committed(), 1u);
  EXPECT_EQ(count("SELECT count(*) FROM attempts"), 1);  // the failed batch rolled back
}

TEST_F(WriterTest, TheDestructorCommitsWhatIsQueued) {
  constexpr int kRecords = 5000;
  seed(kRecords);
  {
    Writer writer(path_);
    for (int i = 0; i < kRecords; ++i) writer.push(attempt(i, 1));
  }
  EXPECT_EQ(count("SELECT count(*) FROM attempts"), kRecords);
  EXPECT_EQ(count("SELECT count(*) FROM tasks WHERE state = 'done'"), kRecords);
}

TEST_F(WriterTest, OpeningAWriterCreatesTheStore) {
  { Writer writer(path_); }
  Store store(path_, Store::Mode::read_only);
  EXPECT_EQ(store.schema_version(), Store::kSchemaVersion);
}

double process_cpu_seconds() {
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  const auto seconds = [](const timeval& t) { return t.tv_sec + t.tv_usec / 1e6; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

TEST_F(WriterTest, Throughput) {
  constexpr int kTasks = 50000, kPerTask = 2;
  seed(kTasks);
  Writer writer(path_);
  const double cpu_start = process_cpu_seconds();
  const auto start = Clock::now();
  for (int n = 1; n <= kPerTask; ++n) {
    for (int i = 0; i < kTasks; ++i) writer.push(attempt(i, n));
  }
  const double pushed_s = std::chrono::duration<double>(Clock::now() - start).count();
  writer.flush();
  const double total_s = std::chrono::duration<double>(Clock::now() - start).count();
  const double cpu_s = process_cpu_seconds() - cpu_start;
  constexpr int kRecords = kTasks * kPerTask;
  // CPU time covers building and pushing the records too, and does not grow
  // when other processes compete for the cores, unlike the wall-clock rate.
  std::cout << "[ measure  ] writer: " << kRecords << " attempts (300-byte responses) in "
            << total_s * 1000 << " ms = " << static_cast<int64_t>(kRecords / total_s)
            << " records/s committed; pushing alone took " << pushed_s * 1000 << " ms; "
            << cpu_s / kRecords * 1e6 << " us CPU per record, producer included\n";
  EXPECT_EQ(writer.committed(), static_cast<uint64_t>(kTasks * kPerTask));
  EXPECT_EQ(count("SELECT count(*) FROM attempts"), kTasks * kPerTask);
}

// --- processes ---------------------------------------------------------------

void write_all(int fd, const void* data, size_t size) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = ::write(fd, p, size);
    if (n <= 0) ::_exit(3);
    p += n;
    size -= static_cast<size_t>(n);
  }
}

// Reads one fixed-size value; false at end of stream.
template <class T>
bool read_value(int fd, T& value) {
  char* p = reinterpret_cast<char*>(&value);
  size_t left = sizeof value;
  while (left > 0) {
    const ssize_t n = ::read(fd, p, left);
    if (n <= 0) return false;
    p += n;
    left -= static_cast<size_t>(n);
  }
  return true;
}

TEST_F(WriterTest, CommittedRecordsSurviveKill9MidStream) {
  constexpr int kTasks = 20000;
  seed(kTasks);  // closed again before fork: the child opens its own connections
  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(pipe_fds[0]);
    try {
      Writer writer(path_);
      int64_t next = 1;  // attempt n doubles as the global push sequence
      for (int round = 0;; ++round) {
        for (int i = 0; i < 500; ++i, ++next) {
          writer.push(attempt(static_cast<int>(next % kTasks), static_cast<int>(next)));
        }
        if (round % 4 == 0) writer.flush();  // some rounds flushed, most not
        const uint64_t committed = writer.committed();
        write_all(pipe_fds[1], &committed, sizeof committed);
      }
    } catch (...) {
      ::_exit(2);
    }
  }
  ::close(pipe_fds[1]);
  uint64_t seen = 0, value = 0;
  int reports = 0;
  while (seen < 30000 && read_value(pipe_fds[0], value)) {
    seen = std::max(seen, value);
    ++reports;
  }
  ::kill(child, SIGKILL);
  int status = 0;
  ::waitpid(child, &status, 0);
  ::close(pipe_fds[0]);
  ASSERT_TRUE(WIFSIGNALED(status)) << "child exited early with " << WEXITSTATUS(status);
  ASSERT_GE(seen, 30000u);

  Store store(path_, Store::Mode::read_write);  // recovers the WAL
  EXPECT_TRUE(store.integrity_ok());
  SQLite::Statement check(store.db(),
                          "SELECT count(*), count(DISTINCT n), max(n) FROM attempts WHERE n <= ?");
  check.bind(1, static_cast<int64_t>(seen));
  ASSERT_TRUE(check.executeStep());
  // Records commit in push order, so "committed = N" means attempts 1..N are there.
  EXPECT_EQ(check.getColumn(0).getInt64(), static_cast<int64_t>(seen));
  EXPECT_EQ(check.getColumn(1).getInt64(), static_cast<int64_t>(seen));
  const int64_t total = store.db().execAndGet("SELECT count(*) FROM attempts").getInt64();
  std::cout << "[ measure  ] child reported " << seen << " committed over " << reports
            << " reports; " << total << " attempts survived the kill\n";
  EXPECT_GE(total, static_cast<int64_t>(seen));
}

class StoreLockTest : public WriterTest {};

TEST_F(StoreLockTest, ASecondHolderIsRefusedUntilTheFirstDies) {
  const std::string& path = path_;
  {
    StoreLock first(path);
    // Even in the same process a second hold is refused (flock per open file).
    EXPECT_THROW(StoreLock second(path), Error);
  }
  { StoreLock again(path); }  // released by the destructor

  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(pipe_fds[0]);
    char ok = '0';
    try {
      StoreLock lock(path);
      ok = '1';
      write_all(pipe_fds[1], &ok, 1);
      for (;;) ::pause();
    } catch (...) {
      write_all(pipe_fds[1], &ok, 1);
      ::_exit(2);
    }
  }
  ::close(pipe_fds[1]);
  char ok = 0;
  const bool reported = read_value(pipe_fds[0], ok);
  ::close(pipe_fds[0]);
  if (!reported || ok != '1') {
    ::kill(child, SIGKILL);
    ::waitpid(child, nullptr, 0);
    FAIL() << "the child could not take the lock";
  }

  try {
    StoreLock refused(path);
    ADD_FAILURE() << "second lock was granted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), codes::STORE_LOCKED);
    EXPECT_EQ(e.stage(), Stage::storage);
    EXPECT_EQ(e.details().value("path", ""), path);
    EXPECT_EQ(e.details().value("pid", 0), child);
    EXPECT_NE(std::string(e.what()).find("is in use by another shepherd run"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find(std::to_string(child)), std::string::npos) << e.what();
  }

  ::kill(child, SIGKILL);
  int status = 0;
  ::waitpid(child, &status, 0);
  EXPECT_NO_THROW(StoreLock after_kill(path));
}

}  // namespace
}  // namespace shepherd
