#include "suite/where.h"

#include <fnmatch.h>

#include "core/error.h"
#include "core/text.h"

namespace shepherd {

namespace {

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  for (;;) {
    size_t at = s.find(sep, start);
    out.push_back(s.substr(start, at == std::string::npos ? std::string::npos : at - start));
    if (at == std::string::npos) return out;
    start = at + 1;
  }
}

bool value_matches(const nlohmann::json& value, const nlohmann::json& pattern) {
  if (!pattern.is_string()) return value == pattern;
  const std::string p = pattern.get<std::string>();
  const std::string text = value_text(value);
  return text == p || ::fnmatch(p.c_str(), text.c_str(), 0) == 0;
}

}  // namespace

std::string value_text(const nlohmann::json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_integer() || v.is_number_unsigned()) return v.dump();
  if (v.is_number_float()) {
    double d = v.get<double>();
    // The range first: casting a double beyond int64 to int64 is undefined.
    if (std::abs(d) < 1e15 && d == static_cast<double>(static_cast<int64_t>(d))) {
      return std::to_string(static_cast<int64_t>(d));
    }
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.14g", d);  // as Lua prints it: 0.9, not 0.90000000000000002
    return buf;
  }
  if (v.is_object()) {
    for (const char* key : {"name", "id", "path"}) {
      auto it = v.find(key);
      if (it != v.end() && (it->is_string() || it->is_number())) return value_text(*it);
    }
  }
  return safe_dump(v);
}

void Where::add(const Matrix& matrix, const std::string& dim, const std::vector<nlohmann::json>& patterns,
                const std::string& clause) {
  const auto& dims = matrix.dims();
  size_t d = 0;
  while (d < dims.size() && dims[d].name != dim) ++d;
  if (d == dims.size()) {
    std::string known;
    for (const auto& x : dims) known += (known.empty() ? "" : ", ") + x.name;
    throw Error(codes::USAGE, "where " + clause + ": the suite has no dimension '" + dim + "' (it has " + known + ")",
                Stage::cli, {{"where", clause}, {"dimension", dim}});
  }
  if (allowed_.empty()) allowed_.resize(dims.size());
  std::vector<bool> row(dims[d].values.size(), false);
  for (const auto& p : patterns) {
    bool any = false;
    for (size_t v = 0; v < row.size(); ++v) {
      if (value_matches(dims[d].values[v], p)) row[v] = any = true;
    }
    if (!any) {
      throw Error(codes::USAGE,
                  "where " + clause + ": no value of '" + dim + "' matches " + safe_dump(p),
                  Stage::cli, {{"where", clause}, {"dimension", dim}});
    }
  }
  // Two clauses on one dimension keep what both allow.
  if (!allowed_[d].empty()) {
    for (size_t v = 0; v < row.size(); ++v) row[v] = row[v] && allowed_[d][v];
  }
  allowed_[d] = std::move(row);
  clauses_.push_back(clause);
}

Where Where::parse(const Matrix& matrix, const std::vector<std::string>& clauses) {
  Where w;
  for (const auto& clause : clauses) {
    auto eq = clause.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == clause.size()) {
      throw Error(codes::USAGE, "--where " + clause + ": expected dim=value[,value…]", Stage::cli, {{"where", clause}});
    }
    std::vector<nlohmann::json> patterns;
    for (auto& v : split(clause.substr(eq + 1), ',')) patterns.emplace_back(v);
    w.add(matrix, clause.substr(0, eq), patterns, clause);
  }
  return w;
}

Where Where::from_json(const Matrix& matrix, const nlohmann::json& spec) {
  Where w;
  if (spec.is_null()) return w;
  if (!spec.is_object()) throw Error(codes::USAGE, "where must be a table of dim = value | {values}", Stage::cli);
  for (const auto& [dim, value] : spec.items()) {
    std::vector<nlohmann::json> patterns;
    if (value.is_array()) {
      for (const auto& v : value) patterns.push_back(v);
    } else {
      patterns.push_back(value);
    }
    if (patterns.empty()) throw Error(codes::USAGE, "where." + dim + ": an empty list selects nothing", Stage::cli);
    std::string clause = dim + "=";
    for (size_t i = 0; i < patterns.size(); ++i) clause += (i ? "," : "") + value_text(patterns[i]);
    w.add(matrix, dim, patterns, clause);
  }
  return w;
}

bool Where::matches(const Matrix& matrix, uint64_t ordinal) const {
  if (allowed_.empty()) return true;
  auto idx = matrix.value_indices(ordinal);
  for (size_t d = 0; d < allowed_.size(); ++d) {
    if (!allowed_[d].empty() && !allowed_[d][idx[d]]) return false;
  }
  return true;
}

std::string Where::describe() const {
  std::string out;
  for (const auto& c : clauses_) out += (out.empty() ? "" : " ") + c;
  return out;
}

}  // namespace shepherd
