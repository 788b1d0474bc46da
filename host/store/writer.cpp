#include "store/writer.h"

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <type_traits>
#include <variant>
#include <vector>

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>
#include <SQLiteCpp/Transaction.h>
#include <sqlite3.h>

#include <spdlog/spdlog.h>

#include "core/clock.h"
#include "core/error.h"
#include "core/redactor.h"
#include "store/details/schema.h"
#include "store/details/sql.h"

namespace shepherd {
namespace {

// Not stored: run after the transaction holding everything before it commits.
struct AfterCommit {
  std::function<void()> action;
};

using Record = std::variant<AttemptRecord, TaskResultRecord, TaskStateRecord, EventRecord, AfterCommit>;

template <class... F>
struct overloaded : F... {
  using F::operator()...;
};
template <class... F>
overloaded(F...) -> overloaded<F...>;

// SQLite's default autocheckpoint threshold (about 4 MB of WAL).
constexpr int kCheckpointFrames = 1000;

constexpr const char* kInsertAttempt =
    "INSERT INTO attempts(task, run, n, key_id, endpoint, model_requested, model_answered, "
    "http_status, transport, class, decision, error_code, error_message, policy_version, "
    "latency_ms, prompt_tokens, completion_tokens, started_at, ended_at, response, request_hash, delay_ms, "
    "turn, conversation) "
    "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, "
    "?19, ?20, ?21, ?22, ?23, ?24)";

// An unknown answering model (NULL) keeps the one recorded before.
constexpr const char* kUpdateTaskAfterAttempt =
    "UPDATE tasks SET state = ?1, attempts = ?2, model = coalesce(?3, model), content = ?4, "
    "error_code = ?5, error_message = ?6, last_class = ?7, latency_ms = ?8, usage = ?9, "
    "updated_at = ?10, request_hash = coalesce(?12, request_hash), "
    "request_run = CASE WHEN ?12 IS NULL THEN request_run ELSE ?13 END WHERE id = ?11";

// A conversation's turn leaves the task pending: only its result ends it.
constexpr const char* kUpdateTaskAfterTurn =
    "UPDATE tasks SET attempts = ?1, last_class = ?2, turns = ?3, conversation = ?4, updated_at = ?5 "
    "WHERE id = ?6";

constexpr const char* kUpdateTaskResult =
    "UPDATE tasks SET state = ?1, model = coalesce(?2, model), content = ?3, error_code = ?4, "
    "error_message = ?5, latency_ms = ?6, usage = ?7, request_hash = coalesce(?8, request_hash), "
    "request_run = CASE WHEN ?8 IS NULL THEN request_run ELSE ?15 END, turns = ?9, conversation = ?10, transcript = ?11, updated_at = ?12, last_class = ?14 WHERE id = ?13";

constexpr const char* kUpdateTaskState =
    "UPDATE tasks SET state = ?1, error_code = ?2, error_message = ?3, updated_at = ?4 "
    "WHERE id = ?5";

constexpr const char* kInsertEvent =
    "INSERT INTO events(run, at, kind, detail) VALUES(?1, ?2, ?3, ?4)";

void bind_state(SQLite::Statement& st, int index, TaskState state) {
  st.bind(index, std::string(to_string(state)));
}

// No text that reaches the store may carry a key's value.
void redact(AttemptRecord& r, const Redactor& redactor) {
  for (std::string* text : {&r.response, &r.content, &r.model_answered, &r.error_message, &r.error_code, &r.cls,
                            &r.decision, &r.usage_json, &r.endpoint, &r.model_requested}) {
    redactor.scrub(*text);
  }
}
void redact(TaskResultRecord& r, const Redactor& redactor) {
  for (std::string* text : {&r.content, &r.error_code, &r.error_message, &r.cls, &r.model, &r.usage_json, &r.transcript}) {
    redactor.scrub(*text);
  }
}
void redact(TaskStateRecord& r, const Redactor& redactor) {
  redactor.scrub(r.error_code);
  redactor.scrub(r.error_message);
}
void redact(EventRecord& r, const Redactor& redactor) {
  redactor.scrub(r.kind);
  redactor.scrub(r.detail_json);
}
void redact(AfterCommit&, const Redactor&) {}  // its maker scrubs what it writes

}  // namespace

class Writer::Impl {
 public:
  Impl(const std::string& db_path, std::function<void()> on_failure)
      : path_(db_path),
        on_failure_(std::move(on_failure)),
        db_(details::open_store(db_path, details::Access::read_write)),
        insert_attempt_(prepare(kInsertAttempt)),
        update_task_after_attempt_(prepare(kUpdateTaskAfterAttempt)),
        update_task_after_turn_(prepare(kUpdateTaskAfterTurn)),
        update_task_result_(prepare(kUpdateTaskResult)),
        update_task_state_(prepare(kUpdateTaskState)),
        insert_event_(prepare(kInsertEvent)) {
    details::guard(codes::STORE_OPEN_FAILED, path_, "configure writer", [&] {
      // A batch can reach tens of MB while the writer catches up; a cache that
      // holds it spares SQLite spilling pages mid-transaction and reading them back.
      db_->exec("PRAGMA cache_size=-32768");
    });
    // Replaces SQLite's autocheckpoint (which runs inside COMMIT, before the
    // batch could be acknowledged) with one run after flushers are woken.
    sqlite3_wal_hook(db_->getHandle(), &Impl::on_wal_commit, this);
    // Started last: the thread owns the connection and statements from here on.
    thread_ = std::thread([this] { run(); });
  }

  ~Impl() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_one();
    thread_.join();
  }

  template <class R>
  void push(R&& record) {
    auto redactor = Redactor::current();
    if (!redactor->empty()) redact(record, *redactor);
    bool was_empty = false;
    {
      std::lock_guard lock(mutex_);
      if (!accepting_) {
        count_lost(record);  // after a failure: answered, never stored
        return;
      }
      was_empty = queue_.empty();
      queue_.emplace_back(std::in_place_type<R>, std::move(record));
      ++pushed_;
    }
    // The thread only sleeps on an empty queue, so one wake-up per batch suffices.
    if (was_empty) wake_.notify_one();
  }

  void flush() {
    std::unique_lock lock(mutex_);
    const uint64_t target = pushed_;
    committed_cv_.wait(lock, [&] { return committed_seq_ >= target || cause_ != nullptr; });
  }

  uint64_t committed() const { return committed_.load(std::memory_order_acquire); }

  std::shared_ptr<const Error> failure() const {
    std::lock_guard lock(mutex_);
    return failure_locked();
  }

 private:
  SQLite::Statement prepare(const char* sql) {
    return details::guard(codes::STORE_OPEN_FAILED, path_, "prepare writer statements",
                          [&] { return SQLite::Statement(*db_, sql); });
  }

  void run() {
    std::vector<Record> batch;  // swapped with the queue, so both keep their capacity
    for (;;) {
      uint64_t batch_end = 0;
      {
        std::unique_lock lock(mutex_);
        wake_.wait(lock, [&] { return !queue_.empty() || stopping_; });
        if (queue_.empty()) return;  // stopping, and everything is committed
        batch.swap(queue_);
        batch_end = pushed_;
      }
      try {
        commit(batch);
      } catch (const std::exception& e) {
        fail(e, batch);
        return;
      }
      if (actions_ > 0) run_actions(batch);
      const uint64_t n = batch.size() - actions_;  // records only
      batch.clear();
      {
        std::lock_guard lock(mutex_);
        committed_seq_ = batch_end;
        committed_.fetch_add(n, std::memory_order_release);
      }
      committed_cv_.notify_all();
      checkpoint_if_due();
    }
  }

  // In push order, after the commit: a failing action never stops the writer.
  void run_actions(const std::vector<Record>& batch) {
    for (const Record& record : batch) {
      const auto* after = std::get_if<AfterCommit>(&record);
      if (after == nullptr || !after->action) continue;
      try {
        after->action();
      } catch (const std::exception& e) {
        spdlog::error("after a commit: {}", e.what());
      }
    }
  }

  static int on_wal_commit(void* self, sqlite3*, const char*, int frames) {
    static_cast<Impl*>(self)->wal_frames_ = frames;
    return SQLITE_OK;
  }

  // PASSIVE never waits on readers; a checkpoint that fails loses nothing
  // (the WAL keeps every frame), so its result only matters to the next one.
  void checkpoint_if_due() {
    if (wal_frames_ < kCheckpointFrames) return;
    wal_frames_ = 0;
    sqlite3_wal_checkpoint_v2(db_->getHandle(), nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr,
                              nullptr);
  }

  // Group commit: every record taken from the queue, one transaction.
  void commit(const std::vector<Record>& batch) {
    actions_ = 0;
    SQLite::Transaction transaction(*db_, SQLite::TransactionBehavior::IMMEDIATE);
    const double now = unix_now();  // one stamp per commit: updated_at = commit time
    for (const Record& record : batch) {
      std::visit(overloaded{
                     [&](const AttemptRecord& r) { write(r, now); },
                     [&](const TaskResultRecord& r) { write(r, now); },
                     [&](const TaskStateRecord& r) { write(r, now); },
                     [&](const EventRecord& r) { write(r); },
                     [&](const AfterCommit&) { ++actions_; },
                 },
                 record);
    }
    transaction.commit();
  }

  // Strings are bound without copying: the batch outlives each step.
  void write(const AttemptRecord& r, double now) {
    SQLite::Statement& a = insert_attempt_;
    a.bindNoCopy(1, r.task_id);
    details::bind_id(a, 2, r.run_id);
    a.bind(3, r.n);
    details::bind_text_ref(a, 4, r.key_id);
    details::bind_text_ref(a, 5, r.endpoint);
    details::bind_text_ref(a, 6, r.model_requested);
    details::bind_text_ref(a, 7, r.model_answered);
    // 0: no HTTP response at all (transport failure).
    details::bind_id(a, 8, static_cast<int64_t>(r.http_status));
    details::bind_text_ref(a, 9, r.transport);
    details::bind_text_ref(a, 10, r.cls);
    details::bind_text_ref(a, 11, r.decision);
    details::bind_text_ref(a, 12, r.error_code);
    details::bind_text_ref(a, 13, r.error_message);
    details::bind_text_ref(a, 14, r.policy_version);
    a.bind(15, r.latency_ms);
    details::bind_count(a, 16, r.prompt_tokens);
    details::bind_count(a, 17, r.completion_tokens);
    a.bind(18, r.started_at);
    a.bind(19, r.ended_at);
    details::bind_text_ref(a, 20, r.response);
    details::bind_text_ref(a, 21, r.request_hash);
    if (r.delay_ms >= 0) a.bind(22, static_cast<int64_t>(r.delay_ms));
    else a.bind(22);
    if (r.turn > 0) {
      a.bind(23, r.turn);
      a.bind(24, r.conversation);
    } else {
      a.bind(23);
      a.bind(24);
    }
    a.exec();
    a.reset();

    if (r.turn > 0) {
      SQLite::Statement& t = update_task_after_turn_;
      t.bind(1, r.task_attempts);
      details::bind_text_ref(t, 2, r.cls);
      // The turns answered so far: this one, if it was answered.
      t.bind(3, r.decision == "answered" ? r.turn : r.turn - 1);
      t.bind(4, r.conversation);
      t.bind(5, now);
      t.bindNoCopy(6, r.task_id);
      t.exec();
      t.reset();
      return;
    }

    SQLite::Statement& t = update_task_after_attempt_;
    bind_state(t, 1, r.task_state);
    t.bind(2, r.task_attempts);
    details::bind_text_ref(t, 3, r.model_answered);
    details::bind_text_ref(t, 4, r.content);
    details::bind_text_ref(t, 5, r.error_code);
    details::bind_text_ref(t, 6, r.error_message);
    details::bind_text_ref(t, 7, r.cls);
    t.bind(8, r.latency_ms);
    details::bind_text_ref(t, 9, r.usage_json);
    t.bind(10, now);
    t.bindNoCopy(11, r.task_id);
    details::bind_text_ref(t, 12, r.request_hash);
    t.bind(13, r.run_id);
    t.exec();
    t.reset();
  }

  void write(const TaskResultRecord& r, double now) {
    SQLite::Statement& t = update_task_result_;
    bind_state(t, 1, r.state);
    details::bind_text_ref(t, 2, r.model);
    details::bind_text_ref(t, 3, r.content);
    details::bind_text_ref(t, 4, r.error_code);
    details::bind_text_ref(t, 5, r.error_message);
    if (r.latency_ms >= 0) t.bind(6, r.latency_ms);
    else t.bind(6);
    details::bind_text_ref(t, 7, r.usage_json);
    details::bind_text_ref(t, 8, r.request_hash);
    t.bind(9, r.turns);
    t.bind(10, r.conversation);
    details::bind_text_ref(t, 11, r.transcript);
    t.bind(12, now);
    t.bindNoCopy(13, r.task_id);
    details::bind_text_ref(t, 14, r.cls);
    t.bind(15, r.run_id);
    t.exec();
    t.reset();
  }

  void write(const TaskStateRecord& r, double now) {
    SQLite::Statement& t = update_task_state_;
    bind_state(t, 1, r.state);
    details::bind_text_ref(t, 2, r.error_code);
    details::bind_text_ref(t, 3, r.error_message);
    t.bind(4, now);
    t.bindNoCopy(5, r.task_id);
    t.exec();
    t.reset();
  }

  void write(const EventRecord& r) {
    SQLite::Statement& e = insert_event_;
    details::bind_id(e, 1, r.run_id);
    e.bind(2, r.at);
    details::bind_text_ref(e, 3, r.kind);
    details::bind_text_ref(e, 4, r.detail_json);
    e.exec();
    e.reset();
  }

  template <class R>
  void count_lost(const R&) {
    if constexpr (std::is_same_v<R, AfterCommit>) return;  // not a record
    ++records_lost_;
    if constexpr (std::is_same_v<R, AttemptRecord>) ++attempts_lost_;
  }

  void fail(const std::exception& cause, const std::vector<Record>& batch) {
    Error error = details::storage_error(codes::STORE_WRITE_FAILED, path_, "commit", cause);
    {
      std::lock_guard lock(mutex_);
      // The run must stop: later records could never be committed in order.
      // What was queued behind the failed batch is lost with it.
      accepting_ = false;
      for (const std::vector<Record>* list : {&batch, static_cast<const std::vector<Record>*>(&queue_)})
        for (const Record& r : *list) std::visit([&](const auto& record) { count_lost(record); }, r);
      queue_.clear();
      cause_ = std::make_shared<const Error>(error);
    }
    committed_cv_.notify_all();
    if (on_failure_) on_failure_();
  }

  // The failure with the counts as they stand now: records pushed after the
  // failure are lost too.
  std::shared_ptr<const Error> failure_locked() const {
    if (!cause_) return nullptr;
    nlohmann::json details = cause_->details();
    details["attempts_lost"] = attempts_lost_;
    details["records_lost"] = records_lost_;
    std::string message = std::string(cause_->what()) + "; " + std::to_string(attempts_lost_) +
                          " answers were received and not stored (their tasks stay as the store last had them)";
    return std::make_shared<const Error>(cause_->code(), message, cause_->stage(), std::move(details),
                                         cause_->retryable());
  }

  const std::string path_;
  const std::function<void()> on_failure_;
  std::unique_ptr<SQLite::Database> db_;  // declared before the statements: outlives them
  SQLite::Statement insert_attempt_;
  SQLite::Statement update_task_after_attempt_;
  SQLite::Statement update_task_after_turn_;
  SQLite::Statement update_task_result_;
  SQLite::Statement update_task_state_;
  SQLite::Statement insert_event_;

  mutable std::mutex mutex_;
  std::condition_variable wake_;          // the thread waits for records
  std::condition_variable committed_cv_;  // flush() waits for commits
  std::vector<Record> queue_;
  uint64_t pushed_ = 0;         // records accepted so far; a record's sequence number
  uint64_t committed_seq_ = 0;  // every record up to this sequence is committed
  bool accepting_ = true;
  bool stopping_ = false;
  std::shared_ptr<const Error> cause_;  // the failed commit
  uint64_t attempts_lost_ = 0;
  uint64_t records_lost_ = 0;
  std::atomic<uint64_t> committed_{0};
  int wal_frames_ = 0;  // WAL size after the last commit; writer thread only
  size_t actions_ = 0;  // after-commit actions in the batch being committed; writer thread only
  std::thread thread_;
};

Writer::Writer(const std::string& db_path, std::function<void()> on_failure)
    : impl_(std::make_unique<Impl>(db_path, std::move(on_failure))) {}
Writer::~Writer() = default;

void Writer::push(AttemptRecord&& record) { impl_->push(std::move(record)); }
void Writer::push(TaskResultRecord&& record) { impl_->push(std::move(record)); }
void Writer::push(TaskStateRecord&& record) { impl_->push(std::move(record)); }
void Writer::push(EventRecord&& record) { impl_->push(std::move(record)); }
void Writer::after_commit(std::function<void()> action) { impl_->push(AfterCommit{std::move(action)}); }

void Writer::flush() { impl_->flush(); }
uint64_t Writer::committed() const { return impl_->committed(); }
std::shared_ptr<const Error> Writer::failure() const { return impl_->failure(); }

}  // namespace shepherd
