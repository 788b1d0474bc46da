#include "store/store.h"

#include "core/text.h"

#include <algorithm>
#include <map>

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>
#include <SQLiteCpp/Transaction.h>

#include "core/clock.h"
#include "core/error.h"
#include "store/details/schema.h"
#include "store/details/sql.h"

namespace shepherd {
namespace {

using nlohmann::json;

}  // namespace

Store::Store(const std::string& path, Mode mode)
    : db_(details::open_store(path, mode == Mode::read_only ? details::Access::read_only
                                                            : details::Access::read_write)) {}

Store::~Store() = default;

SQLite::Database& Store::db() { return *db_; }

int Store::schema_version() const {
  return details::guard(codes::IO_ERROR, db_->getFilename(), "read schema version",
                        [&] { return details::read_schema_version(*db_); });
}

int64_t Store::begin_run(const RunInfo& info) {
  return details::guard(codes::STORE_WRITE_FAILED, db_->getFilename(), "begin run", [&] {
    SQLite::Statement insert(*db_,
                             "INSERT INTO runs(suite, suite_path, host, pid, config_hash, "
                             "policy_version, started_at) VALUES(?, ?, ?, ?, ?, ?, ?)");
    insert.bind(1, info.suite);
    details::bind_text(insert, 2, info.suite_path);
    details::bind_text(insert, 3, info.host);
    details::bind_id(insert, 4, info.pid);
    details::bind_text(insert, 5, info.config_hash);
    details::bind_text(insert, 6, info.policy_version);
    insert.bind(7, unix_now());
    insert.exec();
    return db_->getLastInsertRowid();
  });
}

void Store::finish_run(int64_t run_id, const std::string& outcome, const nlohmann::json& summary) {
  details::guard(codes::STORE_WRITE_FAILED, db_->getFilename(), "finish run", [&] {
    SQLite::Statement update(
        *db_, "UPDATE runs SET finished_at = ?, outcome = ?, summary = ? WHERE id = ?");
    update.bind(1, unix_now());
    details::bind_text(update, 2, outcome);
    if (summary.is_null()) update.bind(3);
    else update.bind(3, safe_dump(summary));
    update.bind(4, run_id);
    update.exec();
  });
}

void Store::ensure_tasks(const std::string& suite, const std::vector<TaskSeed>& seeds) {
  details::guard(codes::STORE_WRITE_FAILED, db_->getFilename(), "record tasks", [&] {
    SQLite::Transaction transaction(*db_, SQLite::TransactionBehavior::IMMEDIATE);
    SQLite::Statement insert(*db_,
                             "INSERT OR IGNORE INTO tasks(id, suite, dims, state, attempts, "
                             "created_at, updated_at) VALUES(?1, ?2, ?3, 'pending', 0, ?4, ?4)");
    // Bindings survive reset(): suite and time are bound once for every seed.
    insert.bind(2, suite);
    insert.bind(4, unix_now());
    for (const TaskSeed& seed : seeds) {
      insert.bindNoCopy(1, seed.id);
      details::bind_text_ref(insert, 3, seed.dims_json);
      insert.exec();
      insert.reset();
    }
    transaction.commit();
  });
}

std::vector<StoredTask> Store::load_tasks(const std::string& suite) {
  return details::guard(codes::IO_ERROR, db_->getFilename(), "load tasks", [&] {
    SQLite::Statement query(
        *db_, "SELECT id, state, attempts, request_hash, conversation FROM tasks WHERE suite = ? ORDER BY seq");
    query.bind(1, suite);
    std::vector<StoredTask> tasks;
    while (query.executeStep()) {
      StoredTask& task = tasks.emplace_back();
      details::read_text(task.id, query.getColumn(0));
      task.state = task_state_from(query.getColumn(1).getText());
      task.attempts = query.getColumn(2).getInt();
      details::read_text(task.request_hash, query.getColumn(3));
      task.conversation = query.getColumn(4).getInt();
    }
    return tasks;
  });
}

int Store::reset_to_pending(const std::vector<std::string>& ids) {
  return details::guard(codes::STORE_WRITE_FAILED, db_->getFilename(), "reset tasks", [&] {
    // The answer goes: the task is sent again. Its attempts stay as history;
    // a conversation starts afresh instead of replaying the old one.
    SQLite::Transaction transaction(*db_, SQLite::TransactionBehavior::IMMEDIATE);
    SQLite::Statement update(*db_,
                             "UPDATE tasks SET state = 'pending', content = NULL, conversation = conversation + 1, "
                             "updated_at = ? WHERE id = ?");
    update.bind(1, unix_now());
    int n = 0;
    for (const auto& id : ids) {
      update.bindNoCopy(2, id);
      n += update.exec();
      update.reset();
    }
    transaction.commit();
    return n;
  });
}

std::vector<std::pair<std::string, int64_t>> Store::other_suites(const std::string& suite) {
  return details::guard(codes::IO_ERROR, db_->getFilename(), "list suites", [&] {
    SQLite::Statement query(*db_, "SELECT suite, count(*) FROM tasks WHERE suite <> ? GROUP BY suite ORDER BY suite");
    query.bind(1, suite);
    std::vector<std::pair<std::string, int64_t>> out;
    while (query.executeStep()) out.emplace_back(query.getColumn(0).getString(), query.getColumn(1).getInt64());
    return out;
  });
}

int Store::reset_failed(const std::string& suite) {
  return details::guard(codes::STORE_WRITE_FAILED, db_->getFilename(), "reset failed tasks", [&] {
    // Error fields stay: they describe the last attempt until the next one.
    // A conversation is tried afresh, not replayed to the same failure.
    SQLite::Statement update(*db_,
                             "UPDATE tasks SET state = 'pending', conversation = conversation + 1, updated_at = ? "
                             "WHERE suite = ? AND state = 'failed'");
    update.bind(1, unix_now());
    update.bind(2, suite);
    return update.exec();
  });
}

int Store::reset_failed(const std::string& suite, const std::vector<std::string>& ids) {
  return details::guard(codes::STORE_WRITE_FAILED, db_->getFilename(), "reset failed tasks", [&] {
    SQLite::Transaction transaction(*db_, SQLite::TransactionBehavior::IMMEDIATE);
    SQLite::Statement update(*db_,
                             "UPDATE tasks SET state = 'pending', conversation = conversation + 1, updated_at = ? "
                             "WHERE suite = ? AND id = ? AND state = 'failed'");
    update.bind(1, unix_now());
    update.bind(2, suite);
    int n = 0;
    for (const auto& id : ids) {
      update.bindNoCopy(3, id);
      n += update.exec();
      update.reset();
    }
    transaction.commit();
    return n;
  });
}

void Store::limit_to(const std::vector<TaskSeed>& cells) {
  details::guard(codes::IO_ERROR, db_->getFilename(), "scope", [&] {
    // A TEMP table lives in the connection's own temp database: a read-only
    // store can have one.
    db_->exec("CREATE TEMP TABLE IF NOT EXISTS scope(seq INTEGER PRIMARY KEY, id TEXT NOT NULL, dims TEXT, hash TEXT);"
              "DELETE FROM temp.scope");
    SQLite::Transaction transaction(*db_);
    SQLite::Statement insert(*db_, "INSERT INTO temp.scope(id, dims, hash) VALUES(?, ?, ?)");
    for (const auto& cell : cells) {
      insert.bindNoCopy(1, cell.id);
      insert.bindNoCopy(2, cell.dims_json);
      details::bind_text_ref(insert, 3, cell.request_hash);
      insert.exec();
      insert.reset();
    }
    transaction.commit();
  });
  scoped_ = true;
}

std::string Store::task_source() const {
  // stale: a done task whose stored request differs from the one the suite
  // builds now (unknown on either side: not stale).
  if (!scoped_) return "(SELECT *, 0 AS stale FROM main.tasks WHERE suite = ?1) AS tasks";
  return "(SELECT s.seq AS seq, s.id AS id, s.dims AS dims, coalesce(t.state, 'pending') AS state, t.model AS model, "
         "t.content AS content, coalesce(t.attempts, 0) AS attempts, t.error_code AS error_code, "
         "t.error_message AS error_message, t.last_class AS last_class, t.latency_ms AS latency_ms, "
         "t.usage AS usage, coalesce(t.turns, 0) AS turns, t.transcript AS transcript, t.updated_at AS updated_at, "
         "(t.state = 'done' AND t.request_hash IS NOT NULL AND s.hash IS NOT NULL "
         "AND t.request_hash <> s.hash) AS stale "
         "FROM temp.scope AS s LEFT JOIN main.tasks AS t ON t.id = s.id AND t.suite = ?1) AS tasks";
}

void Store::scan_tasks(const std::string& suite, const std::string& config_hash,
                       const std::function<void(const TaskScanRow&)>& sink) {
  details::guard(codes::IO_ERROR, db_->getFilename(), "read tasks", [&] {
    // The runs whose suite text is this one: a request sent by one of them
    // is what the suite builds now. (Runs are few; a join per task is not.)
    std::vector<int64_t> same_version;
    {
      SQLite::Statement runs(*db_, "SELECT id FROM runs WHERE suite = ? AND config_hash = ? ORDER BY id");
      runs.bind(1, suite);
      runs.bind(2, config_hash);
      while (runs.executeStep()) same_version.push_back(runs.getColumn(0).getInt64());
    }
    // The tasks_census index covers every column read here, in the order a
    // run stored the tasks: the scan never reads a stored answer.
    SQLite::Statement query(*db_,
                            "SELECT id, state, last_class, attempts, turns, updated_at, request_hash, request_run "
                            "FROM tasks INDEXED BY tasks_census WHERE suite = ?1");
    query.bind(1, suite);
    TaskScanRow row;
    while (query.executeStep()) {
      row.id = {query.getColumn(0).getText(), static_cast<size_t>(query.getColumn(0).getBytes())};
      row.state = task_state_from(query.getColumn(1).getText());
      const SQLite::Column cls = query.getColumn(2);
      row.last_class = cls.isNull() ? std::string_view() : std::string_view(cls.getText(), cls.getBytes());
      row.attempts = query.getColumn(3).getInt();
      row.turns = query.getColumn(4).getInt();
      row.updated_at = query.getColumn(5).getDouble();
      const SQLite::Column hash = query.getColumn(6);
      row.request_hash = hash.isNull() ? std::string_view() : std::string_view(hash.getText(), hash.getBytes());
      const int64_t run = query.getColumn(7).getInt64();  // 0 when NULL
      row.same_suite_version = run != 0 && std::binary_search(same_version.begin(), same_version.end(), run);
      sink(row);
    }
  });
}

std::map<std::string, int64_t> Store::model_mismatches(const std::string& suite) {
  return details::guard(codes::IO_ERROR, db_->getFilename(), "read attempts", [&] {
    SQLite::Statement query(*db_,
                            "SELECT a.task, count(*) FROM attempts a CROSS JOIN tasks t ON t.id = a.task "
                            "WHERE a.class = 'model_mismatch' AND t.suite = ? GROUP BY a.task");
    // (CROSS JOIN: from the few mismatched attempts, by attempts_by_class.)
    query.bind(1, suite);
    std::map<std::string, int64_t> out;
    while (query.executeStep()) out[query.getColumn(0).getString()] = query.getColumn(1).getInt64();
    return out;
  });
}

nlohmann::json Store::task_detail(const std::string& id) {
  return details::guard(codes::IO_ERROR, db_->getFilename(), "read task", [&] {
    // Prepared once: listings call this per task; 64 MiB of page cache spares
    // re-reading the index pages each lookup goes through.
    if (!task_detail_) {
      db_->exec("PRAGMA cache_size=-65536");
      task_detail_ = std::make_unique<SQLite::Statement>(
          *db_, "SELECT error_code, error_message, model, latency_ms FROM tasks WHERE id = ?");
    }
    SQLite::Statement& query = *task_detail_;
    query.reset();
    query.bind(1, id);
    if (!query.executeStep()) return json();
    auto text = [&](int i) { return query.getColumn(i).isNull() ? json() : json(query.getColumn(i).getString()); };
    json error;
    if (!query.getColumn(0).isNull()) error = {{"code", text(0)}, {"message", text(1)}};
    return json{{"error", error},
                {"model", text(2)},
                {"latency_ms", query.getColumn(3).isNull() ? json() : json(query.getColumn(3).getDouble())}};
  });
}

nlohmann::json Store::latest_event(const std::string& suite, const std::string& kind) {
  return details::guard(codes::IO_ERROR, db_->getFilename(), "events", [&] {
    SQLite::Statement query(*db_,
                            "SELECT e.detail FROM events e JOIN runs r ON r.id = e.run "
                            "WHERE r.suite = ? AND e.kind = ? ORDER BY e.id DESC LIMIT 1");
    query.bind(1, suite);
    query.bind(2, kind);
    if (!query.executeStep() || query.getColumn(0).isNull()) return json();
    json detail = json::parse(query.getColumn(0).getString(), nullptr, false);
    return detail.is_discarded() ? json() : detail;
  });
}

nlohmann::json Store::policy_versions(const std::string& suite) {
  return details::guard(codes::IO_ERROR, db_->getFilename(), "policy versions", [&] {
    SQLite::Statement query(*db_,
                            "SELECT a.policy_version, a.decision, a.class, count(*), min(a.id) AS first "
                            "FROM attempts a WHERE a.run IN (SELECT id FROM runs WHERE suite = ?) "
                            "GROUP BY a.policy_version, a.decision, a.class ORDER BY first");
    query.bind(1, suite);
    json out = json::array();
    std::map<std::string, size_t> index;
    while (query.executeStep()) {
      std::string version = query.getColumn(0).isNull() ? "" : query.getColumn(0).getString();
      auto [it, fresh] = index.emplace(version, out.size());
      if (fresh) {
        out.push_back({{"version", version}, {"attempts", 0}, {"decisions", json::object()}, {"classes", json::object()}});
      }
      json& entry = out[it->second];
      const int64_t n = query.getColumn(3).getInt64();
      std::string decision = query.getColumn(1).isNull() ? "unknown" : query.getColumn(1).getString();
      std::string cls = query.getColumn(2).isNull() ? "unknown" : query.getColumn(2).getString();
      entry["attempts"] = entry["attempts"].get<int64_t>() + n;
      entry["decisions"][decision] = entry["decisions"].value(decision, int64_t{0}) + n;
      entry["classes"][cls] = entry["classes"].value(cls, int64_t{0}) + n;
    }
    return out;
  });
}

void Store::export_tasks(const std::string& suite, const std::function<void(const ExportRow&)>& sink,
                         bool transcripts) {
  details::guard(codes::IO_ERROR, db_->getFilename(), "export", [&] {
    SQLite::Statement query(*db_,
                            "SELECT id, dims, state, model, content, attempts, error_code, "
                            "error_message, latency_ms, usage, coalesce(stale, 0), coalesce(turns, 0), " +
                                std::string(transcripts ? "transcript" : "NULL") + " FROM " + task_source() +
                                " ORDER BY seq");
    query.bind(1, suite);
    ExportRow row;  // one row reused: its strings keep their buffers
    while (query.executeStep()) {
      details::read_text(row.task, query.getColumn(0));
      details::read_text(row.dims_json, query.getColumn(1));
      row.state = task_state_from(query.getColumn(2).getText());
      details::read_text(row.model, query.getColumn(3));
      details::read_text(row.content, query.getColumn(4));
      row.attempts = query.getColumn(5).getInt();
      details::read_text(row.error_code, query.getColumn(6));
      details::read_text(row.error_message, query.getColumn(7));
      const SQLite::Column latency = query.getColumn(8);
      row.latency_ms = latency.isNull() ? -1 : latency.getDouble();
      details::read_text(row.usage_json, query.getColumn(9));
      row.stale = query.getColumn(10).getInt() != 0;
      row.turns = query.getColumn(11).getInt();
      details::read_text(row.transcript, query.getColumn(12));
      sink(row);
    }
  });
}

void Store::list_tasks(const std::string& suite, const std::string& state, int64_t limit,
                       const std::function<bool(const json&)>& sink) {
  details::guard(codes::IO_ERROR, db_->getFilename(), "list tasks", [&] {
    std::string filter = state.empty()      ? ""
                         : state == "stale" ? " WHERE coalesce(stale, 0) = 1"
                                            : " WHERE state = ?2";
    SQLite::Statement query(*db_,
                            "SELECT id, dims, state, attempts, last_class, error_code, error_message, model, "
                            "latency_ms, updated_at, coalesce(stale, 0), coalesce(turns, 0) FROM " +
                                task_source() + filter + " ORDER BY seq" +
                                (limit >= 0 ? " LIMIT " + std::to_string(limit) : std::string()));
    query.bind(1, suite);
    if (!filter.empty() && state != "stale") query.bind(2, state);
    auto text = [&](int i) { return query.getColumn(i).isNull() ? json() : json(query.getColumn(i).getString()); };
    while (query.executeStep()) {
      json error;
      if (!query.getColumn(5).isNull()) error = {{"code", text(5)}, {"message", text(6)}};
      json row = {{"id", text(0)},
                  {"cell", json::parse(query.getColumn(1).getString(), nullptr, false)},
                  {"state", text(2)},
                  {"attempts", query.getColumn(3).getInt()},
                  {"class", text(4)},
                  {"error", error},
                  {"model", text(7)},
                  {"latency_ms", query.getColumn(8).isNull() ? json() : json(query.getColumn(8).getDouble())},
                  {"updated_at", query.getColumn(9).isNull() ? json() : json(query.getColumn(9).getDouble())},
                  {"stale", query.getColumn(10).getInt() != 0},
                  {"turns", query.getColumn(11).getInt()}};
      if (!sink(row)) break;
    }
  });
}

nlohmann::json Store::attempts(const std::string& task_id) {
  return details::guard(codes::IO_ERROR, db_->getFilename(), "read attempts", [&] {
    SQLite::Statement query(*db_,
                            "SELECT n, run, key_id, endpoint, model_requested, model_answered, http_status, transport, "
                            "class, decision, error_code, error_message, policy_version, latency_ms, prompt_tokens, "
                            "completion_tokens, started_at, ended_at, request_hash, delay_ms, turn, conversation "
                            "FROM attempts WHERE task = ? ORDER BY id");
    query.bind(1, task_id);
    static const char* const names[] = {"n", "run", "key_id", "endpoint", "model_requested", "model_answered",
                                        "http_status", "transport", "class", "decision", "error_code", "error_message",
                                        "policy_version", "latency_ms", "prompt_tokens", "completion_tokens",
                                        "started_at", "ended_at", "request_hash", "delay_ms", "turn", "conversation"};
    json out = json::array();
    while (query.executeStep()) {
      json row = json::object();
      for (int i = 0; i < static_cast<int>(std::size(names)); ++i) {
        const SQLite::Column c = query.getColumn(i);
        if (c.isNull()) row[names[i]] = nullptr;
        else if (c.isInteger()) row[names[i]] = c.getInt64();
        else if (c.isFloat()) row[names[i]] = c.getDouble();
        else row[names[i]] = c.getString();
      }
      out.push_back(std::move(row));
    }
    return out;
  });
}

Store::LastAttempt Store::last_attempt(const std::string& task_id) {
  return details::guard(codes::IO_ERROR, db_->getFilename(), "read attempts", [&] {
    SQLite::Statement query(*db_, "SELECT n, run, http_status, response FROM attempts WHERE task = ? ORDER BY id DESC LIMIT 1");
    query.bind(1, task_id);
    LastAttempt out;
    if (query.executeStep()) {
      out.n = query.getColumn(0).getInt();
      out.run = query.getColumn(1).isNull() ? 0 : query.getColumn(1).getInt64();
      out.http_status = query.getColumn(2).isNull() ? 0 : static_cast<long>(query.getColumn(2).getInt64());
      details::read_text(out.response, query.getColumn(3));
    }
    return out;
  });
}

int Store::reset_matching(const std::string& suite, const std::string& state, const std::vector<std::string>& classes) {
  return details::guard(codes::STORE_WRITE_FAILED, db_->getFilename(), "reset tasks", [&] {
    // Within the view (limit_to): their attempts stay as history; a
    // conversation starts afresh.
    std::string in_scope = scoped_ ? " AND id IN (SELECT id FROM temp.scope)" : "";
    std::string class_filter;
    for (size_t i = 0; i < classes.size(); ++i) class_filter += (i ? ", ?" : "?");
    if (!classes.empty()) class_filter = " AND coalesce(last_class, '') IN (" + class_filter + ")";
    SQLite::Statement update(*db_,
                             "UPDATE tasks SET state = 'pending', conversation = conversation + 1, "
                             "content = CASE WHEN state = 'done' THEN NULL ELSE content END, updated_at = ?1 "
                             "WHERE suite = ?2 AND state = ?3" + in_scope + class_filter);
    update.bind(1, unix_now());
    update.bind(2, suite);
    update.bind(3, state);
    for (size_t i = 0; i < classes.size(); ++i) update.bind(static_cast<int>(i) + 4, classes[i]);
    return update.exec();
  });
}

nlohmann::json Store::error_stats(const std::string& suite, double since, double mid) {
  return details::guard(codes::IO_ERROR, db_->getFilename(), "error statistics", [&] {
    SQLite::Statement query(*db_,
                            "SELECT coalesce(a.class, 'unknown'), coalesce(a.error_code, ''), count(*), "
                            "sum(a.ended_at < ?3), sum(a.ended_at >= ?3) FROM attempts a "
                            // CROSS JOIN keeps SQLite on the window (attempts_by_ended_at)
                            // instead of walking every task of the suite.
                            "CROSS JOIN tasks t ON t.id = a.task WHERE t.suite = ?1 AND a.ended_at >= ?2 "
                            "AND coalesce(a.class, '') <> 'ok' AND a.decision NOT IN ('done', 'answered') "
                            "GROUP BY 1, 2 ORDER BY 3 DESC");
    query.bind(1, suite);
    query.bind(2, since);
    query.bind(3, mid);
    json out = json::array();
    while (query.executeStep()) {
      out.push_back({{"class", query.getColumn(0).getString()},
                     {"code", query.getColumn(1).getString()},
                     {"count", query.getColumn(2).getInt64()},
                     {"first_half", query.getColumn(3).getInt64()},
                     {"second_half", query.getColumn(4).getInt64()}});
    }
    return out;
  });
}

double Store::last_alert_at(const std::string& suite, const std::string& name) {
  return details::guard(codes::IO_ERROR, db_->getFilename(), "read alerts", [&] {
    SQLite::Statement query(*db_,
                            "SELECT max(at) FROM events WHERE kind = 'alert' AND json_extract(detail, '$.suite') = ? "
                            "AND json_extract(detail, '$.rule.name') = ?");
    query.bind(1, suite);
    query.bind(2, name);
    return query.executeStep() && !query.getColumn(0).isNull() ? query.getColumn(0).getDouble() : 0.0;
  });
}

void Store::record_event(int64_t run, const std::string& kind, const std::string& detail_json) {
  details::guard(codes::STORE_WRITE_FAILED, db_->getFilename(), "record an event", [&] {
    SQLite::Statement insert(*db_, "INSERT INTO events(run, at, kind, detail) VALUES(?, ?, ?, ?)");
    insert.bind(1, run);
    insert.bind(2, unix_now());
    insert.bind(3, kind);
    insert.bind(4, detail_json);
    insert.exec();
  });
}

void Store::record_alert(const std::string& detail_json, double at) {
  details::guard(codes::STORE_WRITE_FAILED, db_->getFilename(), "record an alert", [&] {
    SQLite::Statement insert(*db_, "INSERT INTO events(run, at, kind, detail) VALUES(NULL, ?, 'alert', ?)");
    insert.bind(1, at);
    insert.bind(2, detail_json);
    insert.exec();
  });
}

void Store::record_maintenance(const std::string& suite, const nlohmann::json& group, double at) {
  details::guard(codes::STORE_WRITE_FAILED, db_->getFilename(), "record maintenance", [&] {
    SQLite::Statement insert(*db_, "INSERT INTO events(run, at, kind, detail) VALUES(NULL, ?, 'maintained', ?)");
    insert.bind(1, at);
    insert.bind(2, safe_dump({{"suite", suite}, {"group", group}}));
    insert.exec();
  });
}

std::map<std::string, double> Store::maintained_at(const std::string& suite) {
  return details::guard(codes::IO_ERROR, db_->getFilename(), "read maintenance", [&] {
    SQLite::Statement query(*db_,
                            "SELECT json_extract(detail, '$.group'), max(at) FROM events WHERE kind = 'maintained' "
                            "AND json_extract(detail, '$.suite') = ? GROUP BY 1");
    query.bind(1, suite);
    std::map<std::string, double> out;
    while (query.executeStep()) {
      // json_extract gives the group as JSON text; canonical again so it compares with a status key.
      auto group = json::parse(query.getColumn(0).getString(), nullptr, false);
      if (!group.is_discarded()) out[safe_dump(group)] = query.getColumn(1).getDouble();
    }
    return out;
  });
}

nlohmann::json Store::events(const std::string& suite, const std::vector<std::string>& kinds) {
  return details::guard(codes::IO_ERROR, db_->getFilename(), "read events", [&] {
    std::string only;
    for (size_t i = 0; i < kinds.size(); ++i) only += i ? ", ?" : " AND e.kind IN (?";
    if (!kinds.empty()) only += ")";
    SQLite::Statement query(*db_,
                            "SELECT e.run, e.at, e.kind, e.detail FROM events e "
                            "JOIN runs r ON r.id = e.run WHERE r.suite = ?" + only + " ORDER BY e.at, e.id");
    query.bind(1, suite);
    for (size_t i = 0; i < kinds.size(); ++i) query.bind(static_cast<int>(i) + 2, kinds[i]);
    json out = json::array();
    while (query.executeStep()) {
      const SQLite::Column detail = query.getColumn(3);
      json parsed = detail.isNull() ? json::object()
                                    : json::parse(detail.getString(), nullptr, false);
      // Keep a malformed detail readable rather than dropping the event.
      if (parsed.is_discarded()) parsed = detail.getString();
      out.push_back({{"run", query.getColumn(0).getInt64()},
                     {"at", query.getColumn(1).getDouble()},
                     {"kind", query.getColumn(2).getString()},
                     {"detail", std::move(parsed)}});
    }
    return out;
  });
}

bool Store::integrity_ok() {
  return details::guard(codes::IO_ERROR, db_->getFilename(), "integrity check", [&] {
    SQLite::Statement check(*db_, "PRAGMA integrity_check");
    // A healthy database answers with exactly one row: "ok".
    bool ok = check.executeStep() && check.getColumn(0).getString() == "ok";
    return ok && !check.executeStep();
  });
}

std::vector<double> Store::failed_attempt_times(const std::string& suite, const std::string& cls,
                                                const std::string& code, double since, double until) {
  return details::guard(codes::IO_ERROR, db_->getFilename(), "read recent failures", [&] {
    // CROSS JOIN keeps attempts as the outer loop, so the window is a range
    // on ended_at (index attempts_by_ended_at) whatever the store's size;
    // left to itself, SQLite walks every task of the suite and its attempts.
    SQLite::Statement query(*db_,
                            "SELECT a.ended_at FROM attempts a CROSS JOIN tasks t ON t.id = a.task "
                            "WHERE a.ended_at >= ?2 AND a.ended_at <= ?3 AND t.suite = ?1 "
                            "AND coalesce(a.class, '') <> 'ok' AND a.decision NOT IN ('done', 'answered') "
                            "AND (?4 = '' OR coalesce(a.class, 'unknown') = ?4) "
                            "AND (?5 = '' OR coalesce(a.error_code, '') = ?5) ORDER BY a.ended_at");
    query.bind(1, suite);
    query.bind(2, since);
    query.bind(3, until);
    query.bind(4, cls);
    query.bind(5, code);
    std::vector<double> out;
    while (query.executeStep()) out.push_back(query.getColumn(0).getDouble());
    return out;
  });
}

}  // namespace shepherd
