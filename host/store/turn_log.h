#pragma once
// Reads the answered turns of a conversation back from the store, on a
// read-only connection of its own (WAL: it never waits for the writer).
#include <memory>
#include <string>
#include <vector>

#include "store/records.h"

namespace SQLite { class Database; class Statement; }

namespace shepherd {

class TurnLog {
 public:
  explicit TurnLog(const std::string& db_path);  // throws Error(STORE_OPEN_FAILED)
  ~TurnLog();
  TurnLog(const TurnLog&) = delete;
  TurnLog& operator=(const TurnLog&) = delete;

  // The answered turns of the task's `conversation`, by turn, then attempt.
  std::vector<RecordedTurn> load(const std::string& task_id, int conversation);

 private:
  std::string path_;
  std::unique_ptr<SQLite::Database> db_;
  std::unique_ptr<SQLite::Statement> query_;
};

}  // namespace shepherd
