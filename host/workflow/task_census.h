#pragma once
// What a suite's tasks are now, for `status`, `incomplete` and the workflow
// API: the cells of the suite as it is now (not the matrix the store was
// planned from), each with its stored state. Built for a million tasks: one
// pass over the store's task rows, joined to the cells by id in memory and
// grouped by the cells' value indices, with no JSON per task; the suite's
// request(cell) runs only for done tasks whose request came from another
// version of the suite text (the others cannot be stale).
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "store/store.h"
#include "suite/matrix.h"
#include "suite/suite.h"
#include "suite/where.h"

namespace shepherd {

// Each cell's task id as a number (the id is its 16 hex digits), in matrix
// order: what task_id_for gives, without building each cell's JSON.
std::vector<uint64_t> cell_id_numbers(const std::string& suite_name, const Matrix& matrix);

class TaskCensus {
 public:
  // Reads the store once. Throws Error (IO_ERROR) when it cannot.
  TaskCensus(const Suite& suite, Store& store, const Where& where);

  // Groups by the named dims (none: one group), in the suite's order of
  // their values:
  // {"suite","by":[...],"groups":[{"key":{dim:value},"total","done","failed","pending","stale",
  //  "completion_rate","failure_rate","failures_by_class":{class:n},"retries","model_mismatch",
  //  "last_attempt_at","turns":{"total","mean","max"}}], "overall":{same, no key}}
  nlohmann::json status(const std::vector<std::string>& by) const;

  // The tasks in view in matrix order whose state is one of `states`
  // ("pending", "done", "failed", "stale"; none: all), at most `limit`
  // (-1: all); each as {id, cell, label, state, attempts, class, error = {code,
  // message} | null, model, latency_ms, updated_at, stale, turns}. The sink
  // returns false to stop.
  void list(const std::vector<std::string>& states, int64_t limit,
            const std::function<bool(const nlohmann::json&)>& sink) const;

 private:
  struct Cell {
    double updated_at = 0;  // 0: never attempted
    uint32_t attempts = 0;
    uint32_t turns = 0;
    uint32_t model_mismatch = 0;
    uint16_t cls = 0;  // into classes_; 0: none
    TaskState state = TaskState::pending;
    bool in_view = false;
    bool stored = false;
    bool stale = false;
  };

  void read_store(const std::vector<uint64_t>& ids);
  void find_stale(const std::vector<std::pair<uint64_t, std::string>>& suspects);
  uint64_t group_code(uint64_t ordinal, const std::vector<size_t>& dims) const;

  const Suite& suite_;
  Store& store_;
  Matrix matrix_;
  std::vector<uint64_t> ids_;  // per ordinal
  std::vector<Cell> cells_;    // per ordinal
  std::vector<std::string> classes_{""};
};

}  // namespace shepherd
