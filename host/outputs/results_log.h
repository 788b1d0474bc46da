#pragma once
// `run --results FILE.jsonl`: one JSON line per finished task (done or
// failed), appended as its result is committed, so `tail -f` follows the run.
// The file is only ever appended to, across runs.
#include <mutex>
#include <string>

#include <nlohmann/json.hpp>

namespace shepherd {

class ResultsLog {
 public:
  // Opens (creates) `path` for appending. Throws Error(IO_ERROR).
  explicit ResultsLog(const std::string& path);
  ~ResultsLog();
  ResultsLog(const ResultsLog&) = delete;
  ResultsLog& operator=(const ResultsLog&) = delete;

  // One line, written with one write(2) on an O_APPEND descriptor: a reader
  // sees it whole or not yet, and it reaches the file at once (no user-space
  // buffer). A failed write is logged once and never stops the run.
  void append(const nlohmann::json& record);
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
  std::mutex mutex_;
  bool failed_ = false;
};

}  // namespace shepherd
