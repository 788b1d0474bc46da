#pragma once
// The planner: a suite's matrix is the cartesian product of its dimensions.
// A cell is addressed by its ordinal; its task id is a hash of the suite name
// and the cell's canonical JSON, so it is the same run after run whatever the
// order of keys in the file.
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "store/records.h"
#include "suite/suite.h"

namespace shepherd {

class Matrix {
 public:
  explicit Matrix(const std::vector<Dimension>& dims);  // dims sorted by name; copied
  // Matrix({…}) in tests: a braced list would fit the vector and the Suite alike.
  explicit Matrix(std::initializer_list<Dimension> dims) : Matrix(std::vector<Dimension>(dims)) {}
  // The suite's matrix without a copy of its values (a JSONL dimension may
  // hold a million records): `suite` must outlive it.
  explicit Matrix(const Suite& suite);
  Matrix(const Matrix& other);
  Matrix& operator=(const Matrix&) = delete;

  uint64_t size() const { return size_; }
  const std::vector<Dimension>& dims() const { return *dims_; }

  // Index of each dimension's value for this cell, in dims() order.
  std::vector<uint32_t> value_indices(uint64_t ordinal) const;
  nlohmann::json cell(uint64_t ordinal) const;  // {"dim": value, ...}

  // The cell as people name it in logs: its values joined by '/', in the
  // order the suite file lists the dimensions
  // ("qwen2.5-7b-instruct/flawed_tool_misuse/easy/basic_task/17").
  std::string label(uint64_t ordinal) const;

 private:
  void init();

  std::vector<Dimension> owned_;  // empty for a view of a suite's dims
  const std::vector<Dimension>* dims_;
  std::vector<size_t> label_order_;
  uint64_t size_ = 1;
};

// The id of a cell whose values are all their own identities.
std::string task_id_for(const std::string& suite_name, const nlohmann::json& cell);
// The id of any cell: values with an identity (a file's path, a record's id)
// hash that instead of the whole value.
std::string task_id_for(const std::string& suite_name, const Matrix& matrix, uint64_t ordinal);

// Per dimension, per value: its member text in the canonical JSON a cell's
// id hashes ("\"name\":value", the value's identity where it has one); the
// id text is "{" + its members joined by "," + "}".
std::vector<std::vector<std::string>> cell_member_texts(const Matrix& matrix);

// Calls `visit(ordinal, canonical JSON of the cell's identities)` for every
// cell, in matrix order; the text is what cell(ordinal).dump() gives when no
// value has an identity of its own.
void for_each_cell_text(const Matrix& matrix, const std::function<void(uint64_t, const std::string&)>& visit);

// Every cell of the suite as a task: id and canonical dims, in matrix order.
std::vector<TaskSeed> plan_cells(const Suite& suite);

}  // namespace shepherd
