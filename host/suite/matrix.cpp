#include "suite/matrix.h"

#include <algorithm>

#include "core/hash.h"
#include "core/text.h"
#include "suite/where.h"

namespace shepherd {

namespace {

// A value as a path segment: text as --where matches it, clipped.
std::string label_part(const nlohmann::json& v) {
  std::string text = value_text(v);
  return text.size() > 40 ? text.substr(0, 37) + "..." : text;
}

}  // namespace

Matrix::Matrix(const std::vector<Dimension>& dims) : dims_(dims) {
  for (const auto& d : dims_) size_ *= d.values.size();
  if (dims_.empty()) size_ = 0;
  for (size_t i = 0; i < dims_.size(); ++i) label_order_.push_back(i);
  // File order where known; on one line the model first, then by name
  // (dims_ is sorted by name, and the sort is stable).
  std::stable_sort(label_order_.begin(), label_order_.end(), [&](size_t a, size_t b) {
    int la = dims_[a].source_line > 0 ? dims_[a].source_line : INT32_MAX;
    int lb = dims_[b].source_line > 0 ? dims_[b].source_line : INT32_MAX;
    if (la != lb) return la < lb;
    return dims_[a].name == "model" && dims_[b].name != "model";
  });
}

std::string Matrix::label(uint64_t ordinal) const {
  auto idx = value_indices(ordinal);
  std::string out;
  for (size_t i : label_order_) {
    if (!out.empty()) out += '/';
    out += label_part(dims_[i].values[idx[i]]);
  }
  return out;
}

std::vector<uint32_t> Matrix::value_indices(uint64_t ordinal) const {
  // Mixed radix with the last dimension varying fastest.
  std::vector<uint32_t> out(dims_.size());
  for (size_t i = dims_.size(); i-- > 0;) {
    uint64_t n = dims_[i].values.size();
    out[i] = static_cast<uint32_t>(ordinal % n);
    ordinal /= n;
  }
  return out;
}

nlohmann::json Matrix::cell(uint64_t ordinal) const {
  auto idx = value_indices(ordinal);
  nlohmann::json out = nlohmann::json::object();
  for (size_t i = 0; i < dims_.size(); ++i) out[dims_[i].name] = dims_[i].values[idx[i]];
  return out;
}

std::vector<std::vector<std::string>> cell_member_texts(const Matrix& matrix) {
  // A cell's canonical JSON is its "name":value members in name order (the
  // dims are sorted by name, as nlohmann sorts object keys): built from each
  // value's member text, written once, instead of a JSON object per cell.
  const auto& dims = matrix.dims();
  std::vector<std::vector<std::string>> members(dims.size());
  for (size_t d = 0; d < dims.size(); ++d) {
    const std::string name = nlohmann::json(dims[d].name).dump() + ":";
    for (const auto& v : dims[d].values) members[d].push_back(name + v.dump());
  }
  return members;
}

void for_each_cell_text(const Matrix& matrix, const std::function<void(uint64_t, const std::string&)>& visit) {
  const auto& dims = matrix.dims();
  const auto members = cell_member_texts(matrix);
  std::vector<size_t> idx(dims.size(), 0);
  std::string text;
  for (uint64_t i = 0; i < matrix.size(); ++i) {
    text.assign(1, '{');
    for (size_t d = 0; d < dims.size(); ++d) {
      if (d) text += ',';
      text += members[d][idx[d]];
    }
    text += '}';
    visit(i, text);
    // The next cell: the last dimension varies fastest, as value_indices reads ordinals.
    for (size_t d = dims.size(); d-- > 0;) {
      if (++idx[d] < dims[d].values.size()) break;
      idx[d] = 0;
    }
  }
}

std::vector<TaskSeed> plan_cells(const Suite& suite) {
  Matrix matrix(suite.dims);
  std::vector<TaskSeed> cells;
  cells.reserve(matrix.size());
  std::string key;
  for_each_cell_text(matrix, [&](uint64_t, const std::string& text) {
    key.assign(suite.name);
    key += '\n';
    key += text;
    cells.push_back(TaskSeed{stable_hash_hex(key), text});
  });
  return cells;
}

std::string task_id_for(const std::string& suite_name, const nlohmann::json& cell) {
  // nlohmann's object keeps keys sorted: the dump is canonical.
  return stable_hash_hex(suite_name + '\n' + cell.dump());
}

}  // namespace shepherd
