#include "store/turn_log.h"

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>

#include "core/error.h"
#include "store/details/schema.h"
#include "store/details/sql.h"

namespace shepherd {

TurnLog::TurnLog(const std::string& db_path) : path_(db_path) {
  db_ = details::open_store(db_path, details::Access::read_only);
  query_ = details::guard(codes::STORE_OPEN_FAILED, path_, "prepare the turn query", [&] {
    return std::make_unique<SQLite::Statement>(
        *db_,
        "SELECT turn, n, request_hash, model_requested, model_answered, response, latency_ms, prompt_tokens, "
        "completion_tokens FROM attempts WHERE task = ? AND conversation = ? AND decision = 'answered' "
        "ORDER BY turn, n");
  });
}

TurnLog::~TurnLog() = default;

std::vector<RecordedTurn> TurnLog::load(const std::string& task_id, int conversation) {
  return details::guard(codes::IO_ERROR, path_, "read a conversation's turns", [&] {
    SQLite::Statement& q = *query_;
    q.reset();
    q.bind(1, task_id);
    q.bind(2, conversation);
    std::vector<RecordedTurn> out;
    while (q.executeStep()) {
      RecordedTurn& t = out.emplace_back();
      t.turn = q.getColumn(0).getInt();
      t.n = q.getColumn(1).getInt();
      details::read_text(t.request_hash, q.getColumn(2));
      details::read_text(t.model_requested, q.getColumn(3));
      details::read_text(t.model_answered, q.getColumn(4));
      details::read_text(t.response, q.getColumn(5));
      t.latency_ms = q.getColumn(6).getDouble();
      t.prompt_tokens = q.getColumn(7).isNull() ? -1 : q.getColumn(7).getInt64();
      t.completion_tokens = q.getColumn(8).isNull() ? -1 : q.getColumn(8).getInt64();
    }
    q.reset();
    return out;
  });
}

}  // namespace shepherd
