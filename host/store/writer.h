#pragma once
// The one writer thread: takes every record pushed since its last commit and
// commits them in one transaction (group commit). A record is committed within
// a few milliseconds of push(); never "every N tasks".
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "store/records.h"

namespace shepherd {

class Error;

class Writer {
 public:
  // `on_failure` runs on the writer thread right after the first failed
  // commit: the run stops dispatching at once.
  explicit Writer(const std::string& db_path, std::function<void()> on_failure = {});
  ~Writer();  // commits what is queued, then joins
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  // Thread-safe, never blocks on the database. Every text is redacted
  // (core/redactor.h) before it is queued.
  void push(AttemptRecord&& record);
  void push(TaskResultRecord&& record);
  void push(TaskStateRecord&& record);
  void push(EventRecord&& record);

  // Runs `action` on the writer's thread once everything pushed before it is
  // committed (never when that commit fails): what must follow durability,
  // such as a task's output file. An action that throws is logged and skipped.
  void after_commit(std::function<void()> action);

  // Blocks until everything pushed before the call is committed.
  void flush();

  uint64_t committed() const;  // records committed so far
  // A failed commit stops the writer; the run must stop. Null while healthy.
  // Its details count what was lost: `attempts_lost` (answers received and
  // not stored: the failed batch and everything pushed after it) and
  // `records_lost` (all records).
  std::shared_ptr<const Error> failure() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace shepherd
