#include "workflow/task_census.h"

#include <algorithm>
#include <map>
#include <string_view>
#include <unordered_map>

#include "core/hash.h"
#include "suite/suite_runtime.h"

namespace shepherd {
namespace {

using nlohmann::json;

// Counts of one group (or of the whole suite).
struct Tally {
  int64_t total = 0, done = 0, failed = 0, pending = 0, stale = 0;
  std::map<std::string, int64_t> failures_by_class;
  // Conversations: turns answered, over the tasks that had any.
  int64_t turns = 0, turns_max = 0, tasks_with_turns = 0;
  int64_t retries = 0;         // attempts beyond each task's first (per turn for conversations)
  int64_t model_mismatch = 0;  // attempts answered by another model than the one asked
  double last_attempt_at = 0;  // unix seconds; 0: never attempted

  json to_json() const {
    const auto rate = [&](int64_t part) {
      return total == 0 ? 0.0 : static_cast<double>(part) / static_cast<double>(total);
    };
    return {{"total", total},
            {"done", done},
            {"failed", failed},
            {"pending", pending},
            {"stale", stale},
            {"completion_rate", rate(done)},
            {"failure_rate", rate(failed)},
            {"failures_by_class", failures_by_class},
            {"retries", retries},
            {"model_mismatch", model_mismatch},
            {"last_attempt_at", last_attempt_at > 0 ? json(last_attempt_at) : json()},
            {"turns",
             {{"total", turns},
              {"mean", tasks_with_turns == 0 ? 0.0 : static_cast<double>(turns) / static_cast<double>(tasks_with_turns)},
              {"max", turns_max}}}};
  }
};

// A task id's number; false when it is not 16 lowercase hex digits.
bool id_number(std::string_view id, uint64_t& out) {
  if (id.size() != 16) return false;
  out = 0;
  for (char c : id) {
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (d < 0) return false;
    out = out << 4 | static_cast<uint64_t>(d);
  }
  return true;
}

std::string id_text(uint64_t n) {
  static const char digits[] = "0123456789abcdef";
  std::string out(16, '0');
  for (int i = 15; i >= 0; --i, n >>= 4) out[static_cast<size_t>(i)] = digits[n & 15];
  return out;
}

}  // namespace

std::vector<uint64_t> cell_id_numbers(const std::string& suite_name, const Matrix& matrix) {
  // The id hashes "suite\n{m0,m1,…}": cells next to each other share all
  // but their last members, so the hash state after each prefix is kept and
  // only what changed is hashed again.
  const auto& dims = matrix.dims();
  std::vector<uint64_t> ids(matrix.size());
  if (dims.empty()) return ids;
  const auto members = cell_member_texts(matrix);
  std::vector<uint64_t> before(dims.size());  // the state after the members before d, and their commas
  before[0] = stable_hash_step(kStableHashSeed, suite_name + "\n{");
  std::vector<size_t> idx(dims.size(), 0);
  size_t changed = 0;  // the first level whose member changed since the last cell
  for (uint64_t i = 0; i < ids.size(); ++i) {
    for (size_t d = changed + 1; d < dims.size(); ++d) {
      before[d] = stable_hash_step(stable_hash_step(before[d - 1], members[d - 1][idx[d - 1]]), ",");
    }
    const size_t last = dims.size() - 1;
    ids[i] = stable_hash_finish(stable_hash_step(stable_hash_step(before[last], members[last][idx[last]]), "}"));
    size_t d = dims.size();
    while (d-- > 0) {
      if (++idx[d] < dims[d].values.size()) break;
      idx[d] = 0;
    }
    changed = d;
  }
  return ids;
}

TaskCensus::TaskCensus(const Suite& suite, Store& store, const Where& where)
    : suite_(suite), store_(store), matrix_(suite) {
  ids_ = cell_id_numbers(suite.name, matrix_);
  cells_.resize(ids_.size());
  for (uint64_t i = 0; i < cells_.size(); ++i) cells_[i].in_view = where.matches(matrix_, i);
  read_store(ids_);
}

// Task id -> ordinal.
class OrdinalIndex {
 public:
  explicit OrdinalIndex(const std::vector<uint64_t>& ids) : ids_(ids) {}

  // Rows come in the order a run stored them, usually the matrix's: the
  // ordinal after the previous one is tried first, which reads ids in order;
  // the table is built at the first row out of that order.
  bool find(std::string_view id, uint32_t& ordinal) {
    uint64_t n = 0;
    if (!id_number(id, n)) return false;
    if (next_ < ids_.size() && ids_[next_] == n) {
      ordinal = next_++;
      return true;
    }
    if (slots_.empty()) build();
    for (size_t at = n & mask_; slots_[at].second != kEmpty; at = (at + 1) & mask_) {
      if (slots_[at].first == n) {
        ordinal = slots_[at].second;
        next_ = ordinal + 1;
        return true;
      }
    }
    return false;
  }

 private:
  void build() {
    size_t capacity = 16;
    while (capacity < ids_.size() * 2) capacity <<= 1;
    mask_ = capacity - 1;
    slots_.assign(capacity, {0, kEmpty});
    for (uint32_t i = 0; i < ids_.size(); ++i) {
      size_t at = ids_[i] & mask_;
      while (slots_[at].second != kEmpty) at = (at + 1) & mask_;
      slots_[at] = {ids_[i], i};
    }
  }

  static constexpr uint32_t kEmpty = UINT32_MAX;
  const std::vector<uint64_t>& ids_;
  std::vector<std::pair<uint64_t, uint32_t>> slots_;  // open addressing: ids are hashes, their low bits spread
  size_t mask_ = 0;
  uint32_t next_ = 0;
};

void TaskCensus::read_store(const std::vector<uint64_t>& ids) {
  OrdinalIndex index(ids);
  const auto ordinal_of = [&](std::string_view id, uint32_t& ordinal) { return index.find(id, ordinal); };
  // Classes are few: a short list beats hashing a string per task.
  const auto class_of = [&](std::string_view cls) -> uint16_t {
    for (size_t i = 1; i < classes_.size(); ++i)
      if (classes_[i] == cls) return static_cast<uint16_t>(i);
    if (classes_.size() == UINT16_MAX) return 0;  // beyond 65,535 distinct classes: shown as unknown
    classes_.emplace_back(cls);
    return static_cast<uint16_t>(classes_.size() - 1);
  };

  std::vector<std::pair<uint64_t, std::string>> suspects;  // done under another suite text: ordinal, stored hash
  store_.scan_tasks(suite_.name, suite_.config_hash, [&](const TaskScanRow& row) {
    uint32_t ordinal = 0;
    // Tasks of cells the suite no longer has stay stored, out of view.
    if (!ordinal_of(row.id, ordinal) || !cells_[ordinal].in_view) return;
    Cell& c = cells_[ordinal];
    c.stored = true;
    c.state = row.state;
    c.attempts = static_cast<uint32_t>(std::max(row.attempts, 0));
    c.turns = static_cast<uint32_t>(std::max(row.turns, 0));
    if (row.attempts > 0) c.updated_at = row.updated_at;
    if (!row.last_class.empty()) c.cls = class_of(row.last_class);
    if (row.state == TaskState::done && !row.same_suite_version && !row.request_hash.empty()) {
      suspects.emplace_back(ordinal, std::string(row.request_hash));
    }
  });
  if (!suspects.empty()) find_stale(suspects);

  for (const auto& [id, n] : store_.model_mismatches(suite_.name)) {
    uint32_t ordinal = 0;
    if (ordinal_of(id, ordinal)) cells_[ordinal].model_mismatch = static_cast<uint32_t>(n);
  }
}

void TaskCensus::find_stale(const std::vector<std::pair<uint64_t, std::string>>& suspects) {
  // stale: the suite now builds another request than the stored answer's
  // (unknown on either side, e.g. request raising now: not stale).
  SuiteRuntime runtime(suite_, matrix_);
  json body;
  std::string error;
  for (const auto& [ordinal, stored] : suspects) {
    if (runtime.request_body(ordinal, body, error)) cells_[ordinal].stale = request_hash(body) != stored;
  }
}

uint64_t TaskCensus::group_code(uint64_t ordinal, const std::vector<size_t>& dims) const {
  // The by-dims' value indices as one mixed-radix number: ordering codes
  // orders groups by each dim's values in the suite's order.
  const auto idx = matrix_.value_indices(ordinal);
  uint64_t code = 0;
  for (size_t d : dims) code = code * matrix_.dims()[d].values.size() + idx[d];
  return code;
}

json TaskCensus::status(const std::vector<std::string>& by) const {
  std::vector<size_t> dims;
  for (const auto& name : by) {
    const auto& all = matrix_.dims();
    for (size_t d = 0; d < all.size(); ++d)
      if (all[d].name == name) dims.push_back(d);
  }

  std::unordered_map<uint64_t, Tally> groups;
  std::unordered_map<uint64_t, uint64_t> example;  // group code -> an ordinal, for its key
  Tally overall;
  const auto add = [&](Tally& t, const Cell& c) {
    ++t.total;
    switch (c.state) {
      case TaskState::done: ++t.done; break;
      case TaskState::pending: ++t.pending; break;
      case TaskState::failed:
        ++t.failed;
        ++t.failures_by_class[c.cls ? classes_[c.cls] : "unknown"];
        break;
    }
    if (c.stale) ++t.stale;
    if (c.turns > 0) {
      t.turns += c.turns;
      t.turns_max = std::max<int64_t>(t.turns_max, c.turns);
      ++t.tasks_with_turns;
    }
    t.retries += std::max<int64_t>(int64_t{c.attempts} - std::max<int64_t>(c.turns, 1), 0);
    t.model_mismatch += c.model_mismatch;
    t.last_attempt_at = std::max(t.last_attempt_at, c.updated_at);
  };
  for (uint64_t i = 0; i < cells_.size(); ++i) {
    const Cell& c = cells_[i];
    if (!c.in_view) continue;
    add(overall, c);
    if (dims.empty()) continue;
    const uint64_t code = group_code(i, dims);
    add(groups[code], c);
    example.try_emplace(code, i);
  }

  json out = {{"suite", suite_.name}, {"by", by}, {"groups", json::array()}};
  if (by.empty()) {
    // No dims: the suite is one group, even while it is empty.
    json group = overall.to_json();
    group["key"] = json::object();
    out["groups"].push_back(std::move(group));
  } else {
    std::vector<uint64_t> codes;
    codes.reserve(groups.size());
    for (const auto& [code, tally] : groups) codes.push_back(code);
    std::sort(codes.begin(), codes.end());
    for (uint64_t code : codes) {
      json group = groups.at(code).to_json();
      const auto idx = matrix_.value_indices(example.at(code));
      json key = json::object();
      for (size_t d : dims) key[matrix_.dims()[d].name] = matrix_.dims()[d].values[idx[d]];
      group["key"] = std::move(key);
      out["groups"].push_back(std::move(group));
    }
  }
  out["overall"] = overall.to_json();
  return out;
}

void TaskCensus::list(const std::vector<std::string>& states, int64_t limit,
                      const std::function<bool(const json&)>& sink) const {
  const auto wanted = [&](const Cell& c) {
    if (states.empty()) return true;
    for (const auto& s : states) {
      if (s == "stale" ? c.stale : s == to_string(c.state)) return true;
    }
    return false;
  };
  int64_t listed = 0;
  for (uint64_t i = 0; i < cells_.size() && (limit < 0 || listed < limit); ++i) {
    const Cell& c = cells_[i];
    if (!c.in_view || !wanted(c)) continue;
    const std::string id = id_text(ids_[i]);
    json detail = c.stored ? store_.task_detail(id) : json();
    if (detail.is_null()) detail = {{"error", nullptr}, {"model", nullptr}, {"latency_ms", nullptr}};
    json row = {{"id", id},
                {"cell", matrix_.cell(i)},
                {"label", matrix_.label(i)},
                {"state", to_string(c.state)},
                {"attempts", c.attempts},
                {"class", c.cls ? json(classes_[c.cls]) : json()},
                {"error", std::move(detail["error"])},
                {"model", std::move(detail["model"])},
                {"latency_ms", std::move(detail["latency_ms"])},
                {"updated_at", c.updated_at > 0 ? json(c.updated_at) : json()},
                {"stale", c.stale},
                {"turns", c.turns}};
    ++listed;
    if (!sink(row)) break;
  }
}

}  // namespace shepherd
