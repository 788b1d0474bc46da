#include "store/details/schema.h"

#include <sys/stat.h>

#include <array>
#include <charconv>
#include <filesystem>
#include <string_view>

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>
#include <SQLiteCpp/Transaction.h>

#include "core/error.h"
#include "store/details/sql.h"
#include "store/store.h"

namespace shepherd::details {
namespace {

// Long enough to ride out a checkpoint or a concurrent migration, short enough
// that a wedged peer surfaces as an error instead of a silent hang.
constexpr int kBusyTimeoutMs = 10000;

struct Migration {
  int version;
  std::string_view sql;
};

// Append-only: a released step is never edited, a change is a new step.
constexpr std::array<Migration, 4> kMigrations = {{
    {1, R"sql(
CREATE TABLE meta(
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
);

CREATE TABLE runs(
  id             INTEGER PRIMARY KEY,
  suite          TEXT NOT NULL,
  suite_path     TEXT,
  host           TEXT,
  pid            INTEGER,
  config_hash    TEXT,
  policy_version TEXT,
  started_at     REAL NOT NULL,
  finished_at    REAL,
  outcome        TEXT,
  summary        TEXT
);
CREATE INDEX runs_by_suite ON runs(suite);

-- seq is an explicit rowid so export order (insertion order) survives VACUUM,
-- which may renumber implicit rowids; id stays the task's key.
CREATE TABLE tasks(
  seq           INTEGER PRIMARY KEY,
  id            TEXT NOT NULL UNIQUE,
  suite         TEXT NOT NULL,
  dims          TEXT,
  state         TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done', 'failed')),
  attempts      INTEGER NOT NULL DEFAULT 0,
  model         TEXT,
  content       TEXT,
  error_code    TEXT,
  error_message TEXT,
  last_class    TEXT,
  latency_ms    REAL,
  usage         TEXT,
  created_at    REAL NOT NULL,
  updated_at    REAL NOT NULL
);
CREATE INDEX tasks_by_suite_state ON tasks(suite, state);

CREATE TABLE attempts(
  id                INTEGER PRIMARY KEY,
  task              TEXT NOT NULL,
  run               INTEGER,
  n                 INTEGER NOT NULL,
  key_id            TEXT,
  endpoint          TEXT,
  model_requested   TEXT,
  model_answered    TEXT,
  http_status       INTEGER,
  transport         TEXT,
  class             TEXT,
  decision          TEXT,
  error_code        TEXT,
  error_message     TEXT,
  policy_version    TEXT,
  latency_ms        REAL,
  prompt_tokens     INTEGER,
  completion_tokens INTEGER,
  started_at        REAL,
  ended_at          REAL,
  response          TEXT
);
CREATE INDEX attempts_by_task ON attempts(task);

CREATE TABLE events(
  id     INTEGER PRIMARY KEY,
  run    INTEGER,
  at     REAL NOT NULL,
  kind   TEXT,
  detail TEXT
);
CREATE INDEX events_by_run ON events(run);
)sql"},
    // v2: what each attempt sent (stale answers are found by it) and the
    // retry delay a policy asked for.
    {2, R"sql(
ALTER TABLE attempts ADD COLUMN request_hash TEXT;
ALTER TABLE attempts ADD COLUMN delay_ms INTEGER;
ALTER TABLE tasks ADD COLUMN request_hash TEXT;
)sql"},
    // v3: conversations. An attempt may be one turn of a task's conversation
    // (which one, and of which try at the conversation); a task counts its
    // turns, names the conversation a run continues, and keeps its transcript.
    {3, R"sql(
ALTER TABLE attempts ADD COLUMN turn INTEGER;
ALTER TABLE attempts ADD COLUMN conversation INTEGER;
ALTER TABLE tasks ADD COLUMN turns INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN conversation INTEGER NOT NULL DEFAULT 1;
ALTER TABLE tasks ADD COLUMN transcript TEXT;
)sql"},
    // v4: which run sent the request a task's request_hash describes (the
    // suite version it came from: answers of the current version are not
    // stale without asking the suite again); what status reads of every
    // task, in an index that covers it (a scan of a million tasks never
    // reads their answers); model_mismatch attempts found without reading
    // every attempt; failed attempts by time (alert windows, error statistics).
    {4, R"sql(
ALTER TABLE tasks ADD COLUMN request_run INTEGER;
CREATE INDEX tasks_census ON tasks(suite, seq, id, state, last_class, attempts, turns, updated_at, request_hash,
                                   request_run);
CREATE INDEX attempts_by_class ON attempts(class);
CREATE INDEX attempts_by_ended_at ON attempts(ended_at);
)sql"},
}};

static_assert(kMigrations.back().version == Store::kSchemaVersion,
              "the last migration must produce Store::kSchemaVersion");

Error too_new(const std::string& path, int found) {
  return Error(codes::STORE_SCHEMA_TOO_NEW,
               "store " + path + " was written by a newer shepherd (schema v" +
                   std::to_string(found) + ", this build reads up to v" +
                   std::to_string(Store::kSchemaVersion) + "); upgrade shepherd",
               Stage::storage,
               {{"path", path}, {"found", found}, {"supported", Store::kSchemaVersion}});
}

void apply_pragmas(SQLite::Database& db, Access access) {
  if (access == Access::read_write) {
    // WAL is a property of the file: set once by a writer, inherited by readers,
    // and it lets readers run while the writer commits.
    const std::string mode = db.execAndGet("PRAGMA journal_mode=WAL").getString();
    if (mode != "wal" && mode != "memory") {
      throw Error(codes::STORE_OPEN_FAILED,
                  "store " + db.getFilename() + " cannot use WAL journaling (got '" + mode + "')",
                  Stage::storage, {{"path", db.getFilename()}});
    }
  }
  // In WAL mode NORMAL keeps every committed transaction across a process
  // crash (kill -9) and skips the fsync per commit.
  db.exec("PRAGMA synchronous=NORMAL");
}

// Applies every step newer than the stored version in one transaction, so a
// crash mid-migration leaves the previous version intact.
void migrate(SQLite::Database& db, const std::string& path) {
  SQLite::Transaction transaction(db, SQLite::TransactionBehavior::IMMEDIATE);
  // Re-read under the write lock: another process may have migrated meanwhile.
  const int version = read_schema_version(db);
  if (version > Store::kSchemaVersion) throw too_new(path, version);
  if (version == Store::kSchemaVersion) return;
  for (const Migration& step : kMigrations) {
    if (step.version <= version) continue;
    db.exec(std::string(step.sql));
    // Prepared after the step: v1 creates meta itself.
    SQLite::Statement set_version(
        db, "INSERT OR REPLACE INTO meta(key, value) VALUES('schema_version', ?)");
    set_version.bind(1, std::to_string(step.version));
    set_version.exec();
  }
  transaction.commit();
}

}  // namespace

int read_schema_version(SQLite::Database& db) {
  if (!db.tableExists("meta")) return 0;
  SQLite::Statement query(db, "SELECT value FROM meta WHERE key = 'schema_version'");
  if (!query.executeStep()) return 0;
  const std::string text = query.getColumn(0).getString();
  int version = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), version);
  if (ec != std::errc() || end != text.data() + text.size() || version < 0) {
    throw Error(codes::STORE_OPEN_FAILED,
                "store " + db.getFilename() + " has an unreadable schema_version '" + text + "'",
                Stage::storage, {{"path", db.getFilename()}});
  }
  return version;
}

std::unique_ptr<SQLite::Database> open_store(const std::string& path, Access access) {
  const bool read_only = access == Access::read_only;
  // SQLite's own "unable to open database file" does not say what to do.
  if (read_only && !std::filesystem::exists(path)) {
    throw Error(codes::STORE_OPEN_FAILED,
                "no store at " + path + "; run the suite first (shepherd run) to create it",
                Stage::storage, {{"path", path}});
  }
  // Two names for one store each get a write-ahead log of their own: a
  // reader through the other name sees a stale or torn store, a writer
  // corrupts it. One store, one name.
  if (struct stat st{}; ::stat(path.c_str(), &st) == 0 && st.st_nlink > 1) {
    throw Error(codes::STORE_OPEN_FAILED,
                "store " + path + " has " + std::to_string(st.st_nlink) +
                    " hard links: one store, one name (remove the other links, or copy the file)",
                Stage::storage, {{"path", path}, {"links", st.st_nlink}});
  }
  std::unique_ptr<SQLite::Database> db;
  int version = 0;
  guard(codes::STORE_OPEN_FAILED, path, "open", [&] {
    const int flags =
        read_only ? SQLite::OPEN_READONLY : SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE;
    db = std::make_unique<SQLite::Database>(path, flags, kBusyTimeoutMs);
    apply_pragmas(*db, access);
    version = read_schema_version(*db);
  });
  if (version > Store::kSchemaVersion) throw too_new(path, version);
  if (version == Store::kSchemaVersion) return db;
  if (read_only) {
    const std::string why = version == 0 ? "is not a shepherd store yet"
                                         : "has schema v" + std::to_string(version) +
                                               ", older than this build's v" +
                                               std::to_string(Store::kSchemaVersion);
    throw Error(codes::STORE_OPEN_FAILED,
                "store " + path + " " + why + "; run the suite first (shepherd run) to update it",
                Stage::storage, {{"path", path}, {"found", version}});
  }
  guard(codes::STORE_OPEN_FAILED, path, "migrate", [&] { migrate(*db, path); });
  return db;
}

}  // namespace shepherd::details
