#include "workflow/suite_view.h"

#include <filesystem>
#include <fstream>

#include <spdlog/spdlog.h>

#include "alerts/alert_rules.h"
#include "alerts/webhook.h"
#include "core/error.h"
#include "core/clock.h"
#include "core/text.h"
#include "lua/api.h"
#include "lua/lua_call.h"
#include "policy/policy_set.h"
#include "policy/policy_sources.h"
#include "store/export_format.h"
#include "store/store.h"
#include "suite/matrix.h"
#include "suite/suite_runtime.h"
#include "suite/where.h"
#include "workflow/task_census.h"

namespace shepherd {

namespace fs = std::filesystem;

namespace {

Where where_of(const Suite& suite, const nlohmann::json& where) {
  return Where::from_json(Matrix(suite), where);
}

}  // namespace

void add_maintenance_fields(Store& store, const std::string& suite, nlohmann::json& groups) {
  auto maintained = store.maintained_at(suite);
  for (auto& g : groups) {
    g["group"] = g["key"];
    g["failures"] = g["failures_by_class"];
    auto it = maintained.find(safe_dump(g["key"]));
    g["last_maintained_at"] = it == maintained.end() ? nlohmann::json() : nlohmann::json(it->second);
  }
}

nlohmann::json select_retest_groups(const Suite& suite, const nlohmann::json& groups, const MaintainConfig& config) {
  LuaState L;
  register_shepherd_api(L);
  PolicySet policies(L, PolicySources::for_suite(suite), suite.retry, config);
  nlohmann::json selection;
  LuaFailure failure;
  if (!policies.select(groups, selection, failure)) {
    throw Error(codes::POLICY_ERROR, "retest select failed: " + failure.describe(), Stage::policy,
                {{"file", failure.file}, {"line", failure.line}});
  }
  for (auto& pick : selection) {
    for (const auto& g : groups) {
      if (g["key"] == pick["group"]) pick["tasks"] = g["pending"].get<int64_t>() + g["failed"].get<int64_t>();
    }
  }
  return selection;
}

SuiteView::SuiteView(const std::string& suite_path, const std::string& db_path)
    : suite_(load_suite(suite_path, SuiteLoadOptions{false})) {
  db_path_ = db_path.empty() ? (fs::path(suite_.dir) / (suite_.name + ".db")).string()
                             : fs::absolute(db_path).lexically_normal().string();
}

bool SuiteView::store_exists() const { return fs::exists(db_path_); }

void SuiteView::check_where(const nlohmann::json& where) const { where_of(suite_, where); }

nlohmann::json SuiteView::info() const {
  nlohmann::json dims = nlohmann::json::object();
  for (const auto& d : suite_.dims) dims[d.name] = d.values;
  return {{"name", suite_.name},
          {"path", suite_.path},
          {"db", db_path_},
          {"models", suite_.models},
          {"model_is_dimension", suite_.model_is_dimension},
          {"dims", dims},
          {"maintain", suite_.maintain.to_json()},
          {"retry", suite_.retry.to_json()}};
}

void SuiteView::check_dims(const std::vector<std::string>& by) const {
  for (const auto& d : by) {
    bool known = std::any_of(suite_.dims.begin(), suite_.dims.end(), [&](const auto& x) { return x.name == d; });
    if (!known) throw Error(codes::USAGE, "the suite has no dimension '" + d + "'", Stage::cli, {{"dimension", d}});
  }
}

nlohmann::json SuiteView::status(const std::vector<std::string>& by, const nlohmann::json& where) {
  check_dims(by);
  Where w = where_of(suite_, where);
  Store store(db_path_, Store::Mode::read_only);
  nlohmann::json s = TaskCensus(suite_, store, w).status(by);
  add_maintenance_fields(store, suite_.name, s["groups"]);
  s["overall"]["failures"] = s["overall"]["failures_by_class"];
  return s;
}

void SuiteView::tasks(const std::vector<std::string>& states, const nlohmann::json& where, int64_t limit,
                      const std::function<bool(const nlohmann::json&)>& sink) {
  static const char* const known[] = {"pending", "done", "failed", "stale"};
  for (const auto& state : states) {
    if (std::find(std::begin(known), std::end(known), state) == std::end(known)) {
      throw Error(codes::USAGE, "state must be pending, done, failed or stale, not '" + state + "'", Stage::cli);
    }
  }
  Where w = where_of(suite_, where);
  Store store(db_path_, Store::Mode::read_only);
  TaskCensus(suite_, store, w).list(states, limit, sink);
}

nlohmann::json SuiteView::attempts(const std::string& task_id) {
  Store store(db_path_, Store::Mode::read_only);
  return store.attempts(task_id);
}

nlohmann::json SuiteView::events(const std::string& kind, double since) {
  Store store(db_path_, Store::Mode::read_only);
  nlohmann::json out = nlohmann::json::array();
  for (auto& e : store.events(suite_.name)) {
    if (!kind.empty() && e["kind"] != kind) continue;
    if (e["at"].get<double>() < since) continue;
    out.push_back(std::move(e));
  }
  return out;
}

int SuiteView::reset(const nlohmann::json& where, const std::string& state, const std::vector<std::string>& classes) {
  if (state != "failed" && state != "done" && state != "pending") {
    throw Error(codes::USAGE, "state must be failed or done, not '" + state + "'", Stage::cli);
  }
  Where w = where_of(suite_, where);
  Store store(db_path_, Store::Mode::read_write);
  if (!w.all()) store.limit_to(cells_in_view(suite_, w));
  return store.reset_matching(suite_.name, state, classes);
}

RunReport SuiteView::run(const SliceRun& slice) {
  where_of(suite_, slice.where);  // misuse is found before the store is touched
  Suite runnable = load_suite(suite_.path);  // with the keys' values this time
  RunOptions options;
  options.db_path = db_path_;
  options.where_json = slice.where;
  options.only_tasks = slice.tasks;
  options.retry_failed = slice.retry_failed;
  options.forget_exhausted = slice.forget_exhausted;
  options.retry_classes = slice.retry_classes;
  options.live_progress = slice.progress;
  return run_suite(runnable, options);
}

void SuiteView::export_to(const std::string& format, const std::string& out_path, const nlohmann::json& where,
                          bool transcripts) {
  if (format != "jsonl" && format != "csv" && format != "openai-batch") {
    throw Error(codes::USAGE, "format must be jsonl, csv or openai-batch, not '" + format + "'", Stage::cli);
  }
  Where w = where_of(suite_, where);
  Store store(db_path_, Store::Mode::read_only);
  store.limit_to(cells_in_view(suite_, w));
  // Written beside, then renamed: a reader never sees half an export.
  std::string tmp = out_path + ".tmp";
  {
    std::ofstream file(tmp, std::ios::binary | std::ios::trunc);
    if (!file) throw Error(codes::IO_ERROR, "cannot write " + out_path, Stage::execution, {{"path", out_path}});
    std::vector<std::string> dims;
    for (const auto& d : suite_.dims) dims.push_back(d.name);
    write_export(store, suite_.name, format, transcripts, file, dims, suite_.has_task);
  }
  std::error_code ec;
  fs::rename(tmp, out_path, ec);
  if (ec) throw Error(codes::IO_ERROR, "cannot write " + out_path + ": " + ec.message(), Stage::execution);
}

nlohmann::json SuiteView::select_retest(const nlohmann::json& overrides, const std::vector<std::string>& by_given,
                                        const nlohmann::json& where) {
  std::vector<std::string> by = by_given.empty() ? suite_.maintain.group_by : by_given;
  if (by_given.empty() && by == std::vector<std::string>{"model"} && !suite_.model_is_dimension) {
    by.clear();  // the model is a resource: the suite is one group
  }
  MaintainConfig config = suite_.maintain;
  auto number = [&](const char* name, double& field) {
    if (auto it = overrides.find(name); it != overrides.end()) {
      if (!it->is_number()) throw Error(codes::USAGE, std::string(name) + " must be a number", Stage::cli);
      field = it->get<double>();
    }
  };
  auto list = [&](const char* name, std::vector<std::string>& field) {
    if (auto it = overrides.find(name); it != overrides.end()) {
      field.clear();
      if (!it->is_array()) throw Error(codes::USAGE, std::string(name) + " must be a list of models", Stage::cli);
      for (const auto& m : *it) field.push_back(m.is_string() ? m.get<std::string>() : m.dump());
    }
  };
  if (overrides.is_object()) {
    number("minimum_completion_rate", config.minimum_completion_rate);
    number("maximum_failure_rate", config.maximum_failure_rate);
    number("cooldown_hours", config.cooldown_hours);
    double batch = config.batch_size;
    number("batch_size", batch);
    config.batch_size = static_cast<int>(batch);
    list("priority_models", config.priority_models);
    list("skip_models", config.skip_models);
  }
  return select_retest_groups(suite_, status(by, where)["groups"], config);
}

nlohmann::json SuiteView::errors(double window_s) {
  if (!(window_s > 0)) throw Error(codes::USAGE, "window_s must be a number of seconds > 0", Stage::cli);
  const double now = unix_now();
  const double since = now - window_s;
  Store store(db_path_, Store::Mode::read_only);
  nlohmann::json rows = store.error_stats(suite_.name, since, since + window_s / 2);
  nlohmann::json by_class = nlohmann::json::object(), by_code = nlohmann::json::object();
  int64_t total = 0;
  auto add = [](nlohmann::json& into, const std::string& key, const nlohmann::json& row) {
    nlohmann::json& e = into[key];
    if (e.is_null()) e = {{"count", 0}, {"first_half", 0}, {"second_half", 0}};
    for (const char* f : {"count", "first_half", "second_half"}) e[f] = e.value(f, int64_t{0}) + row[f].get<int64_t>();
  };
  for (const auto& row : rows) {
    total += row["count"].get<int64_t>();
    add(by_class, row["class"], row);
    if (!row["code"].get<std::string>().empty()) add(by_code, row["code"], row);
  }
  // Increasing: the second half holds clearly more than the first (by a
  // quarter and at least two); decreasing: clearly fewer; else stable.
  for (auto* table : {&by_class, &by_code}) {
    for (auto& [key, e] : table->items()) {
      const double first = e["first_half"].get<double>(), second = e["second_half"].get<double>();
      e["trend"] = second >= first * 1.25 + 2 ? "increasing" : first >= second * 1.25 + 2 ? "decreasing" : "stable";
    }
  }
  return {{"window_s", window_s}, {"since", since}, {"now", now}, {"total", total},
          {"by_class", by_class}, {"by_code", by_code}};
}

nlohmann::json SuiteView::check_alerts() {
  nlohmann::json fired = nlohmann::json::array();
  if (suite_.alerts.rules.empty()) return fired;
  const double now = unix_now();
  Store store(db_path_, Store::Mode::read_write);
  for (size_t i = 0; i < suite_.alerts.rules.size(); ++i) {
    const AlertRule& rule = suite_.alerts.rules[i];
    int64_t count = 0;
    for (const auto& row : store.error_stats(suite_.name, now - rule.window_s, now)) {
      if (rule.matches(row["class"].get<std::string>(), row["code"].get<std::string>())) count += row["count"].get<int64_t>();
    }
    if (count < rule.count) continue;
    double last = store.last_alert_at(suite_.name, rule.name);
    if (last > 0 && now - last < rule.window_s) continue;  // once per window
    FiredAlert f{i, static_cast<int>(count), now};
    nlohmann::json detail = f.to_json(suite_.alerts, suite_.name);
    std::string text = f.text(suite_.alerts, suite_.name);
    store.record_alert(safe_dump(detail), now);
    spdlog::warn("{}", text);
    nlohmann::json out = detail;
    out["text"] = text;
    if (!suite_.alerts.webhook.empty()) {
      std::string error;
      long status = WebhookSender::post(suite_.alerts.webhook, safe_dump({{"text", text}, {"alert", detail}}), 3000, error);
      out["webhook"] = status > 0 ? nlohmann::json{{"status", status}} : nlohmann::json{{"error", error}};
    }
    fired.push_back(std::move(out));
  }
  return fired;
}

bool SuiteView::would_retry(const std::string& cls) {
  LuaState L;
  register_shepherd_api(L);
  // What the policy says of the class itself, not of a spent budget: as the
  // first failure of a task, with a retry to spend and no other key to try.
  RetryConfig retry = suite_.retry;
  retry.max_retries = std::max(retry.max_retries, 1);
  PolicySet policies(L, PolicySources::for_suite(suite_), retry, suite_.maintain);
  DecideInput in;
  in.cls = cls;
  in.attempt = 1;
  nlohmann::json cell = nlohmann::json::object();
  in.cell = &cell;
  in.model_role = suite_.model_is_dimension ? "dimension" : "resource";
  std::vector<HistoryEntry> history;
  in.history = &history;
  in.usable_keys = 0;  // a key-bound failure (auth, quota, missing model) is not worth sending again blind
  Decision decision;
  LuaFailure failure;
  if (!policies.decide(in, decision, failure)) {
    throw Error(codes::POLICY_ERROR, "decide failed: " + failure.describe(), Stage::policy,
                {{"file", failure.file}, {"line", failure.line}});
  }
  return decision.action != Decision::Action::fail;
}

void SuiteView::mark_maintained(const nlohmann::json& group) {
  Store store(db_path_, Store::Mode::read_write);
  store.record_maintenance(suite_.name, group, unix_now());
}

}  // namespace shepherd
