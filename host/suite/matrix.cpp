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

Matrix::Matrix(const std::vector<Dimension>& dims) : owned_(dims), dims_(&owned_) { init(); }

Matrix::Matrix(const Suite& suite) : dims_(&suite.dims) { init(); }

Matrix::Matrix(const Matrix& other)
    : owned_(other.owned_),
      dims_(other.dims_ == &other.owned_ ? &owned_ : other.dims_),
      label_order_(other.label_order_),
      size_(other.size_) {}

void Matrix::init() {
  const auto& dims = *dims_;
  for (const auto& d : dims) size_ *= d.values.size();
  if (dims.empty()) size_ = 0;
  for (size_t i = 0; i < dims.size(); ++i) label_order_.push_back(i);
  // File order where known; on one line the model first, then by name
  // (dims_ is sorted by name, and the sort is stable).
  std::stable_sort(label_order_.begin(), label_order_.end(), [&](size_t a, size_t b) {
    int la = dims[a].source_line > 0 ? dims[a].source_line : INT32_MAX;
    int lb = dims[b].source_line > 0 ? dims[b].source_line : INT32_MAX;
    if (la != lb) return la < lb;
    return dims[a].name == "model" && dims[b].name != "model";
  });
}

std::string Matrix::label(uint64_t ordinal) const {
  auto idx = value_indices(ordinal);
  std::string out;
  for (size_t i : label_order_) {
    if (!out.empty()) out += '/';
    out += label_part((*dims_)[i].values[idx[i]]);
  }
  return out;
}

std::vector<uint32_t> Matrix::value_indices(uint64_t ordinal) const {
  // Mixed radix with the last dimension varying fastest.
  const auto& dims = *dims_;
  std::vector<uint32_t> out(dims.size());
  for (size_t i = dims.size(); i-- > 0;) {
    uint64_t n = dims[i].values.size();
    out[i] = static_cast<uint32_t>(ordinal % n);
    ordinal /= n;
  }
  return out;
}

nlohmann::json Matrix::cell(uint64_t ordinal) const {
  auto idx = value_indices(ordinal);
  const auto& dims = *dims_;
  nlohmann::json out = nlohmann::json::object();
  for (size_t i = 0; i < dims.size(); ++i) out[dims[i].name] = dims[i].values[idx[i]];
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
    const auto& keys = dims[d].identities.empty() ? dims[d].values : dims[d].identities;
    members[d].reserve(keys.size());
    for (const auto& v : keys) members[d].push_back(name + v.dump());
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
  Matrix matrix(suite);
  std::vector<TaskSeed> cells;
  cells.reserve(matrix.size());
  std::string key;
  bool keyed = std::any_of(suite.dims.begin(), suite.dims.end(), [](const auto& d) { return !d.identities.empty(); });
  if (!keyed) {
    for_each_cell_text(matrix, [&](uint64_t, const std::string& text) {
      key.assign(suite.name);
      key += '\n';
      key += text;
      cells.push_back(TaskSeed{stable_hash_hex(key), text});
    });
    return cells;
  }
  // Some values have identities: the id hashes the identities' text, the
  // stored dims are the full values.
  const auto members = cell_member_texts(matrix);
  const auto& dims = matrix.dims();
  std::vector<std::vector<std::string>> full(dims.size());
  for (size_t d = 0; d < dims.size(); ++d) {
    if (dims[d].identities.empty()) continue;
    const std::string name = nlohmann::json(dims[d].name).dump() + ":";
    full[d].reserve(dims[d].values.size());
    for (const auto& v : dims[d].values) full[d].push_back(name + v.dump());
  }
  std::vector<size_t> idx(dims.size(), 0);
  std::string text;
  for (uint64_t i = 0; i < matrix.size(); ++i) {
    key.assign(suite.name);
    key += "\n{";
    text.assign(1, '{');
    for (size_t d = 0; d < dims.size(); ++d) {
      if (d) {
        key += ',';
        text += ',';
      }
      key += members[d][idx[d]];
      text += dims[d].identities.empty() ? members[d][idx[d]] : full[d][idx[d]];
    }
    key += '}';
    text += '}';
    cells.push_back(TaskSeed{stable_hash_hex(key), text});
    for (size_t d = dims.size(); d-- > 0;) {
      if (++idx[d] < dims[d].values.size()) break;
      idx[d] = 0;
    }
  }
  return cells;
}

std::string task_id_for(const std::string& suite_name, const nlohmann::json& cell) {
  // nlohmann's object keeps keys sorted: the dump is canonical.
  return stable_hash_hex(suite_name + '\n' + cell.dump());
}

std::string task_id_for(const std::string& suite_name, const Matrix& matrix, uint64_t ordinal) {
  const auto& dims = matrix.dims();
  const auto idx = matrix.value_indices(ordinal);
  nlohmann::json keys = nlohmann::json::object();
  for (size_t i = 0; i < dims.size(); ++i) {
    keys[dims[i].name] = dims[i].identities.empty() ? dims[i].values[idx[i]] : dims[i].identities[idx[i]];
  }
  return task_id_for(suite_name, keys);
}

}  // namespace shepherd
