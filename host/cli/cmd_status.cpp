#include <cstdio>
#include <iostream>
#include <sstream>

#include "cli/commands.h"
#include "core/text.h"
#include "core/error.h"
#include "store/store.h"
#include "suite/matrix.h"
#include "suite/suite.h"
#include "suite/suite_runtime.h"
#include "suite/where.h"
#include "workflow/suite_view.h"
#include "workflow/task_census.h"

namespace shepherd::cli {

namespace {

std::vector<std::string> split_dims(const std::string& by, const Suite& suite) {
  std::vector<std::string> out;
  std::stringstream in(by);
  std::string dim;
  while (std::getline(in, dim, ',')) {
    if (dim.empty()) continue;
    bool known = false;
    std::string names;
    for (const auto& d : suite.dims) {
      known = known || d.name == dim;
      names += (names.empty() ? "" : ", ") + d.name;
    }
    if (!known) {
      throw Error(codes::USAGE, "--by " + dim + ": not a dimension of suite " + suite.name + " (" + names + ")",
                  Stage::cli, {{"dimension", dim}});
    }
    out.push_back(dim);
  }
  return out;
}

std::string percent(double v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%.1f%%", v * 100);
  return buf;
}

std::string value_text(const nlohmann::json& v) { return v.is_string() ? v.get<std::string>() : safe_dump(v); }

void print_table(const nlohmann::json& s, const std::vector<std::string>& by) {
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> header = by.empty() ? std::vector<std::string>{"group"} : by;
  // Conversations count their turns beside the tasks.
  const bool turns = s["overall"]["turns"]["total"].get<long long>() > 0;
  // mismatch: attempts a model other than the one asked answered (the 72b for the 7b).
  for (const char* h : {"total", "done", "failed", "pending", "stale", "retries", "mismatch"}) header.push_back(h);
  if (turns) {
    for (const char* h : {"turns", "mean", "max"}) header.push_back(h);
  }
  for (const char* h : {"completion", "failure", "failures by class"}) header.push_back(h);
  rows.push_back(header);
  auto row_of = [&](const nlohmann::json& grp, std::vector<std::string> cells) {
    for (const char* k : {"total", "done", "failed", "pending", "stale", "retries", "model_mismatch"}) {
      cells.push_back(std::to_string(grp[k].get<long long>()));
    }
    if (turns) {
      const auto& t = grp["turns"];
      char mean[32];
      std::snprintf(mean, sizeof mean, "%.1f", t["mean"].get<double>());
      cells.push_back(std::to_string(t["total"].get<long long>()));
      cells.push_back(mean);
      cells.push_back(std::to_string(t["max"].get<long long>()));
    }
    cells.push_back(percent(grp["completion_rate"].get<double>()));
    cells.push_back(percent(grp["failure_rate"].get<double>()));
    std::string classes;
    for (const auto& [cls, n] : grp["failures_by_class"].items()) {
      classes += (classes.empty() ? "" : " ") + cls + "=" + std::to_string(n.get<long long>());
    }
    cells.push_back(classes.empty() ? "-" : classes);
    rows.push_back(std::move(cells));
  };
  if (!by.empty()) {
    for (const auto& grp : s["groups"]) {
      std::vector<std::string> cells;
      for (const auto& d : by) cells.push_back(value_text(grp["key"][d]));
      row_of(grp, cells);
    }
  }
  std::vector<std::string> all_cells(by.empty() ? 1 : by.size(), "");
  all_cells[0] = "all";
  row_of(s["overall"], all_cells);

  std::vector<size_t> width(header.size(), 0);
  for (const auto& r : rows)
    for (size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
  for (const auto& r : rows) {
    std::string line;
    for (size_t i = 0; i < r.size(); ++i) {
      line += r[i];
      if (i + 1 < r.size()) line += std::string(width[i] - r[i].size() + 2, ' ');
    }
    std::printf("%s\n", line.c_str());
  }
}

// Decisions per policy version: what each edit of the policies decided.
void print_policy_versions(const nlohmann::json& versions) {
  if (versions.size() < 2) return;  // one version: nothing to compare
  std::printf("\npolicy version  attempts  decisions\n");
  for (const auto& v : versions) {
    std::string decisions;
    for (const auto& [d, n] : v["decisions"].items()) {
      decisions += (decisions.empty() ? "" : " ") + d + "=" + std::to_string(n.get<long long>());
    }
    std::printf("%-14s  %-8lld  %s\n", v["version"].get<std::string>().c_str(), v["attempts"].get<long long>(),
                decisions.c_str());
  }
}

// Per key id and model, as the last run left them (or as a running run is now).
void print_keys(const nlohmann::json& keys) {
  if (!keys.is_array() || keys.empty()) return;
  std::printf("\nkey  model  in flight  sent/min  rpm pace  429s  cooldown  breaker  state\n");
  for (const auto& k : keys) {
    std::string state = k.value("disabled", false) ? "disabled" : k.value("parked", "").empty() ? "ok" : "parked " + k.value("parked", "");
    std::printf("%s  %s  %d/%d  %u  %.0f  %llu  %lld ms  %s  %s\n", k.value("key", "?").c_str(),
                k.value("model", "?").c_str(), k.value("in_flight", 0), k.value("concurrency", 0),
                k.value("sent_last_minute", 0u), k.value("rpm_pace", 0.0), k.value("rate_limited", 0ull),
                k.value("cooldown_ms", 0ll), k.value("breaker", "?").c_str(), state.c_str());
  }
}

// One line when `maintain` would select groups now: the routine's next step.
void print_maintain_hint(const Suite& suite, Store& store, const TaskCensus& census,
                         const std::vector<std::string>& by, const nlohmann::json& s, const StatusArgs& a) {
  try {
    std::vector<std::string> group_by = suite.maintain.group_by;
    if (!suite.model_is_dimension && group_by == std::vector<std::string>{"model"}) group_by.clear();
    nlohmann::json groups = group_by == by ? s["groups"] : census.status(group_by)["groups"];
    add_maintenance_fields(store, suite.name, groups);
    nlohmann::json picks = select_retest_groups(suite, groups, suite.maintain);
    if (picks.empty()) return;
    int64_t tasks = 0;
    for (const auto& p : picks) tasks += p.value("tasks", int64_t{0});
    std::printf("\nmaintain would re-test %zu group%s (%lld unfinished tasks): `shepherd maintain %s --dry-run` shows why\n",
                picks.size(), picks.size() == 1 ? "" : "s", static_cast<long long>(tasks), a.suite.c_str());
  } catch (const std::exception&) {
    // A hint, never a failure of status: a broken retest policy shows in maintain and doctor.
  }
}

}  // namespace

int cmd_status(const GlobalOptions& g, const StatusArgs& a) {
  Suite suite = load_suite(a.suite, SuiteLoadOptions{false});
  auto by = split_dims(a.by, suite);
  std::string db = default_db_path(suite.dir, suite.name, a.db);
  Store store(db, Store::Mode::read_only);
  TaskCensus census(suite, store, Where::parse(Matrix(suite), a.where));
  nlohmann::json s = census.status(by);
  s["policy_versions"] = store.policy_versions(suite.name);
  s["keys"] = store.latest_event(suite.name, "pool");
  if (g.json) {
    s["store"] = db;
    std::cout << safe_dump(s) << std::endl;
  } else {
    std::printf("suite %s  store %s\n", suite.name.c_str(), db.c_str());
    print_table(s, by);
    print_policy_versions(s["policy_versions"]);
    print_keys(s["keys"]);
    print_maintain_hint(suite, store, census, by, s, a);
  }
  return kExitOk;
}

}  // namespace shepherd::cli
