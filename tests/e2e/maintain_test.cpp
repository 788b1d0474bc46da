// `shepherd maintain` and `shepherd retest` (packaged workflows) against a
// store with real failures made by real runs against the mock: what each
// threshold, priority_models, skip_models, batch_size and the cooldown select;
// --dry-run changes no byte of the store; a maintenance run re-sends the
// failures retry.lua would retry and the pending tasks of the selected groups
// only; the report; --where; the retest script, whose lines re-send only the
// failed classes retry.lua would retry (`run --retry-class`), as maintain
// does; `run --retry-class` and s:run{retry_classes} themselves; the usage errors.
#include <sys/stat.h>

#include <filesystem>
#include <regex>
#include <set>
#include <sstream>

#include <SQLiteCpp/SQLiteCpp.h>
#include <gtest/gtest.h>

#include "harness.h"

using namespace e2e;
using nlohmann::json;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

// 4 models x 2 prompt types x 5 instances = 40 tasks; retry.max_retries = 0,
// so every task is one request. The default request's prompt lists the cell
// sorted ("instance=1 model=m-a prompt_type=p1"), which the canned rules
// match. The setup's runs leave instance 5 pending (2 per model) and:
//   m-a  p1 1-4: a 500 each (server_error, retryable); the rule answers 4
//        times, so sent again they succeed               4 done 4 failed 2 pending  40% / 40%
//   m-b  p1 1, 2: a 500 each (server_error); p1 4: a 401 (auth_failed, not
//        retryable; the rule never runs out)            5 done 3 failed 2 pending  50% / 30%
//   m-c  every request a 400 (client_error, never retried)   0 done 8 failed 2 pending   0% / 80%
//   m-d  all well                                       8 done 0 failed 2 pending  80% /  0%
json error_body(const std::string& message, const std::string& type, const std::string& code = "") {
  json e = {{"message", message}, {"type", type}};
  if (!code.empty()) e["code"] = code;
  return {{"error", e}};
}

json server_error(const std::string& when, int times) {
  return {{"when", when}, {"status", 500}, {"times", times}, {"body_json", error_body("The server had an error", "server_error")}};
}

json scenario() {
  return {{"canned",
           json::array({{{"when", "instance=4 model=m-b prompt_type=p1"},
                         {"status", 401},
                         {"body_json", error_body("Incorrect API key provided: e2e-****.", "invalid_request_error", "invalid_api_key")}},
                        server_error("model=m-a prompt_type=p1", 4),
                        server_error("instance=1 model=m-b prompt_type=p1", 1),
                        server_error("instance=2 model=m-b prompt_type=p1", 1),
                        {{"when", "model=m-c"},
                         {"status", 400},
                         {"body_json", error_body("Invalid value for 'messages'", "invalid_request_error")}}})}};
}

const std::vector<std::string> kModels = {"m-a", "m-b", "m-c", "m-d"};
constexpr int kSetupRequests = 32;

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// The models of a selection (or of `ran`), in order.
std::vector<std::string> models_of(const json& picks) {
  std::vector<std::string> out;
  for (const auto& p : picks) out.push_back(p["group"]["model"].get<std::string>());
  return out;
}

using Models = std::vector<std::string>;

class Maintain : public ::testing::Test {
 protected:
  void SetUp() override {
    mock_ = std::make_unique<Mock>(scenario());
    suite_ = write_suite("s.lua", "");
    db_ = dir_.file("mt.db");
    // The 401 first, alone: a bad key is out of its run, and the rest would stay pending.
    Result auth = shepherd({"run", suite_, "--db", db_, "--no-progress", "--where", "model=m-b", "--where", "prompt_type=p1",
                            "--where", "instance=4"},
                           key_env(1));
    ASSERT_EQ(auth.exit_code, 4) << auth.err;
    Result rest = shepherd({"run", suite_, "--db", db_, "--no-progress", "--where", "instance=1,2,3,4"}, key_env(1));
    ASSERT_EQ(rest.exit_code, 4) << rest.err;
    ASSERT_EQ(mock_->stats()["requests"], kSetupRequests);
    ASSERT_EQ(query(db_, "SELECT group_concat(n, ' ') FROM (SELECT state || '=' || count(*) AS n FROM tasks GROUP BY state ORDER BY state)"),
              "done=17 failed=15 pending=8");
    ASSERT_EQ(query(db_, "SELECT group_concat(n, ' ') FROM (SELECT last_class || '=' || count(*) AS n FROM tasks "
                         "WHERE state = 'failed' GROUP BY last_class ORDER BY last_class)"),
              "auth_failed=1 client_error=8 server_error=6");
  }

  // The suite file `name`, the same suite (name "mt", same tasks) with `fields` in its maintain table.
  std::string write_suite(const std::string& name, const std::string& fields) {
    SuiteSpec s = suite_at(mock_->base_url());
    s.name = "mt";
    s.models = kModels;
    s.concurrency = 4;
    s.matrix = "{ model = { 'm-a', 'm-b', 'm-c', 'm-d' }, prompt_type = { 'p1', 'p2' }, instance = { 1, 2, 3, 4, 5 } }";
    s.extra = "  retry = { max_retries = 0 },\n";
    if (!fields.empty()) s.extra += "  maintain = { " + fields + " },\n";
    return dir_.write(name, s.text());
  }

  Result run_cli(const std::string& command, std::vector<std::string> extra, const std::string& suite = "") {
    std::vector<std::string> args{command, suite.empty() ? suite_ : suite, "--db", db_};
    args.insert(args.end(), extra.begin(), extra.end());
    return shepherd(args, key_env(1));
  }

  // `maintain … --json`: the report it prints; it must exit 0.
  json maintain_json(std::vector<std::string> extra, const std::string& suite = "") {
    extra.push_back("--json");
    Result r = run_cli("maintain", extra, suite);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    json j = json::parse(r.out, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << "stdout: " << r.out << "\nstderr: " << r.err;
    return j.is_discarded() ? json::object() : j;
  }

  // What `maintain --dry-run` selects, by model, in order.
  Models selected(std::vector<std::string> extra, const std::string& suite = "") {
    extra.push_back("--dry-run");
    return models_of(maintain_json(extra, suite)["selection"]);
  }

  // Requests the mock answered per model (any outcome).
  std::map<std::string, int> sent_by_model() const {
    json stats = mock_->stats();
    std::map<std::string, int> out;
    for (const auto& m : kModels) {
      out[m] = 0;
      if (!stats["by_model"].contains(m)) continue;
      for (const auto& [outcome, n] : stats["by_model"][m].items()) out[m] += n.get<int>();
    }
    return out;
  }

  // The mock's GET /requests: every chat request it answered, by HTTP status.
  std::map<int, int> answered_by_status() const {
    std::map<int, int> out;
    for (const auto& r : json::parse(http_get("http://127.0.0.1:" + std::to_string(mock_->port()) + "/requests")))
      ++out[r["status"].get<int>()];
    return out;
  }

  std::map<std::string, int> sent_since(const std::map<std::string, int>& before) const {
    auto now = sent_by_model();
    for (auto& [m, n] : now) n -= before.at(m);
    return now;
  }

  // Every task: dims -> "state class attempts updated_at".
  std::map<std::string, std::string> tasks() const {
    std::map<std::string, std::string> out;
    for (const auto& row : query_rows(db_, "SELECT dims, state, last_class, attempts, updated_at FROM tasks"))
      out[row[0]] = row[1] + " " + row[2] + " " + row[3] + " " + row[4];
    return out;
  }

  std::string task_field(const std::string& where, const std::string& field) const {
    return query(db_, "SELECT " + field + " FROM tasks WHERE " + where);
  }

  // The store as its bytes: the database file and its WAL (an absent WAL
  // counts as an empty one: SQLite creates and removes it as connections come and go).
  std::string store_bytes() const {
    std::string wal = db_ + "-wal";
    return read_file(db_) + "\n--wal--\n" + (fs::exists(wal) ? read_file(wal) : "");
  }

  TempDir dir_;
  std::unique_ptr<Mock> mock_;
  std::string suite_, db_;
};

// The dims text of a cell as the store keeps it.
std::string cell(const std::string& model, const std::string& prompt_type, int instance) {
  return json{{"instance", instance}, {"model", model}, {"prompt_type", prompt_type}}.dump();
}

std::string where_cell(const std::string& model, const std::string& prompt_type, int instance) {
  return "dims = '" + cell(model, prompt_type, instance) + "'";
}

}  // namespace

TEST_F(Maintain, DryRunChangesNoByteOfTheStoreAndStillReportsTheSelection) {
  const std::string before = store_bytes();
  Result r = run_cli("maintain", {"--dry-run"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(store_bytes() == before) << "the store's bytes changed (" << before.size() << " -> " << store_bytes().size() << ")";
  EXPECT_EQ(mock_->stats()["requests"], kSetupRequests) << "nothing was sent";

  // The analysis, the selection with its reasons, and the report's path.
  std::vector<std::string> lines;
  std::istringstream in(r.out);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  auto line_with = [&](const std::string& part) {
    for (const auto& l : lines)
      if (has(l, part)) return l;
    return std::string();
  };
  EXPECT_TRUE(std::regex_search(line_with("model=m-a "), std::regex("10 +4 +4 +2 +40\\.0% +40\\.0% +both"))) << r.out;
  EXPECT_TRUE(std::regex_search(line_with("model=m-b "), std::regex("50\\.0% +30\\.0% +low completion"))) << r.out;
  EXPECT_TRUE(std::regex_search(line_with("model=m-d "), std::regex("80\\.0% +0\\.0% +-$"))) << r.out;
  EXPECT_TRUE(has(r.out, "selected for a re-test:\n"
                         "  2. model=m-c — completion 0% < 80%; failures 80% > 30%; severe failure (10 unfinished)\n"
                         "  3. model=m-a — completion 40% < 80%; failures 40% > 30% (6 unfinished)\n"
                         "  3. model=m-b — completion 50% < 80% (5 unfinished)\n"))
      << r.out;
  EXPECT_TRUE(has(r.out, "--dry-run: nothing was sent")) << r.out;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.out, m, std::regex("report (\\S+)"))) << r.out;
  const std::string path = m[1];
  EXPECT_TRUE(std::regex_match(path, std::regex(dir_.path() + "/reports/maintain-mt-\\d{8}-\\d{6}(-\\d+)?\\.json"))) << path;
  json report = json::parse(read_file(path));
  EXPECT_EQ(report["dry_run"], true);
  EXPECT_EQ(models_of(report["selection"]), (Models{"m-c", "m-a", "m-b"}));
  EXPECT_TRUE(report["ran"].empty()) << report["ran"].dump();
  EXPECT_EQ(report["after"], report["analysis"]) << "after a dry run, the store is as it was";

  // --json: the same, as JSON on stdout, and still no byte changed.
  json j = maintain_json({"--dry-run"});
  EXPECT_TRUE(store_bytes() == before) << "the store's bytes changed under --dry-run --json";
  EXPECT_EQ(j["dry_run"], true);
  EXPECT_EQ(j["selection"], report["selection"]);
  EXPECT_TRUE(j["ran"].empty());
  EXPECT_EQ(mock_->stats()["requests"], kSetupRequests);
  EXPECT_EQ(query(db_, "SELECT count(*) FROM events WHERE kind = 'maintained'"), "0") << "no maintenance recorded";
  EXPECT_EQ(query(db_, "SELECT count(*) FROM runs"), "2") << "no run recorded";
}

TEST_F(Maintain, ThresholdFlagsSelectByCompletionAndByFailureRate) {
  struct Case {
    std::vector<std::string> flags;
    Models expected;
  };
  // Priority 2 (severe: failures over 50%) first, then the least complete.
  const std::vector<Case> cases = {
      {{}, {"m-c", "m-a", "m-b"}},  // the defaults: completion below 80% or failures over 30%
      {{"--completion-threshold", "0.45", "--failure-threshold", "1"}, {"m-c", "m-a"}},
      {{"--completion-threshold", "0.3", "--failure-threshold", "1"}, {"m-c"}},
      {{"--completion-threshold", "0.81", "--failure-threshold", "1"}, {"m-c", "m-a", "m-b", "m-d"}},
      {{"--completion-threshold=0.8", "--failure-threshold=1"}, {"m-c", "m-a", "m-b"}},  // m-d's 80% is not below 80%
      {{"--completion-threshold", "0", "--failure-threshold", "0.35"}, {"m-c", "m-a"}},
      {{"--completion-threshold", "0", "--failure-threshold", "0.3"}, {"m-c", "m-a"}},  // m-b's 30% is not over 30%
      {{"--completion-threshold", "0", "--failure-threshold", "0.25"}, {"m-c", "m-a", "m-b"}},
      {{"--completion-threshold", "0", "--failure-threshold", "1"}, {}},
      {{"--completion-threshold", "1", "--failure-threshold", "0"}, {"m-c", "m-a", "m-b", "m-d"}},
  };
  for (const auto& c : cases) {
    std::string label;
    for (const auto& f : c.flags) label += f + " ";
    EXPECT_EQ(selected(c.flags), c.expected) << label;
  }

  // The reasons name the threshold that selected the group; the configuration echoes the flags.
  json only_completion = maintain_json({"--dry-run", "--completion-threshold", "0.45", "--failure-threshold", "1"});
  EXPECT_DOUBLE_EQ(only_completion["configuration"]["minimum_completion_rate"].get<double>(), 0.45);
  EXPECT_DOUBLE_EQ(only_completion["configuration"]["maximum_failure_rate"].get<double>(), 1.0);
  for (const auto& pick : only_completion["selection"]) {
    EXPECT_TRUE(has(pick["reason"], "< 45%")) << pick.dump();
    EXPECT_FALSE(has(pick["reason"], "failures")) << pick.dump();
  }
  json only_failure = maintain_json({"--dry-run", "--completion-threshold", "0", "--failure-threshold", "0.35"});
  ASSERT_EQ(only_failure["selection"].size(), 2u);
  EXPECT_EQ(only_failure["selection"][1]["reason"], "failures 40% > 35%");
  EXPECT_EQ(only_failure["selection"][1]["priority"], 3);
  EXPECT_EQ(only_failure["selection"][1]["tasks"], 6);
  // Patterns at these thresholds: failure only, never "low completion".
  json patterns = json::object();
  for (const auto& p : only_failure["patterns"]) patterns[p["group"]["model"].get<std::string>()] = p["pattern"];
  EXPECT_EQ(patterns, json({{"m-a", "high failure rate"}, {"m-c", "high failure rate"}}));
}

TEST_F(Maintain, SuiteMaintainThresholdsApplyAndFlagsOverrideThem) {
  std::string by_completion = write_suite("completion.lua", "minimum_completion_rate = 0.45, maximum_failure_rate = 1");
  json j = maintain_json({"--dry-run"}, by_completion);
  EXPECT_EQ(models_of(j["selection"]), (Models{"m-c", "m-a"}));
  EXPECT_DOUBLE_EQ(j["configuration"]["minimum_completion_rate"].get<double>(), 0.45);
  EXPECT_DOUBLE_EQ(j["configuration"]["maximum_failure_rate"].get<double>(), 1.0);
  EXPECT_EQ(selected({"--completion-threshold", "0.81"}, by_completion), (Models{"m-c", "m-a", "m-b", "m-d"}))
      << "the flag overrides the suite's minimum, the suite's maximum stays";
  EXPECT_EQ(selected({"--failure-threshold", "0.25"}, by_completion), (Models{"m-c", "m-a", "m-b"}))
      << "the flag overrides the suite's maximum, the suite's minimum stays";

  std::string by_failure = write_suite("failure.lua", "minimum_completion_rate = 0, maximum_failure_rate = 0.35");
  EXPECT_EQ(selected({}, by_failure), (Models{"m-c", "m-a"}));
  EXPECT_EQ(selected({"--failure-threshold", "0.5"}, by_failure), (Models{"m-c"}));

  // The suite's own retest command uses them too.
  std::string script = dir_.file("retest.sh");
  Result r = run_cli("retest", {"--script", script}, by_failure);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string text = read_file(script);
  EXPECT_TRUE(has(text, "# model=m-c: ")) << text;
  EXPECT_TRUE(has(text, "# model=m-a: failures 40% > 35%")) << text;
  EXPECT_FALSE(has(text, "model=m-b")) << text;
}

TEST_F(Maintain, PriorityModelsComeFirstSkipModelsNeverAndBatchSizeCaps) {
  json p = maintain_json({"--dry-run"}, write_suite("priority.lua", "priority_models = { 'm-b' }"));
  ASSERT_EQ(models_of(p["selection"]), (Models{"m-b", "m-c", "m-a"}));
  EXPECT_EQ(p["selection"][0]["priority"], 1);
  EXPECT_EQ(p["selection"][0]["reason"], "completion 50% < 80%; priority model");
  EXPECT_EQ(p["selection"][1]["priority"], 2);
  EXPECT_EQ(p["selection"][2]["priority"], 3);
  EXPECT_EQ(p["configuration"]["priority_models"], json({"m-b"}));
  // A priority model orders the selection; it is not selected for being one.
  EXPECT_EQ(selected({}, write_suite("priority_d.lua", "priority_models = { 'm-d', 'm-a' }")), (Models{"m-a", "m-c", "m-b"}));

  EXPECT_EQ(selected({}, write_suite("skip.lua", "skip_models = { 'm-c' }")), (Models{"m-a", "m-b"}));
  EXPECT_EQ(selected({"--completion-threshold", "1", "--failure-threshold", "0"},
                     write_suite("skip2.lua", "skip_models = { 'm-c', 'm-a' }")),
            (Models{"m-b", "m-d"}));
  EXPECT_EQ(selected({}, write_suite("both.lua", "skip_models = { 'm-b' }, priority_models = { 'm-b' }")), (Models{"m-c", "m-a"}))
      << "skip wins over priority";

  EXPECT_EQ(selected({}, write_suite("batch2.lua", "batch_size = 2")), (Models{"m-c", "m-a"}));
  EXPECT_EQ(selected({"--completion-threshold", "1"}, write_suite("batch3.lua", "batch_size = 3")), (Models{"m-c", "m-a", "m-b"}));
  EXPECT_EQ(selected({}, write_suite("batch1.lua", "batch_size = 1, priority_models = { 'm-b' }")), (Models{"m-b"}));

  // Grouped by model and prompt type: the priority holds for every group of the model.
  json g = maintain_json({"--dry-run"}, write_suite("groups.lua", "group_by = { 'model', 'prompt_type' }, priority_models = { 'm-b' }"));
  ASSERT_EQ(g["analysis"].size(), 8u) << g["analysis"].dump();
  ASSERT_EQ(g["selection"].size(), 4u) << g["selection"].dump();
  EXPECT_EQ(g["selection"][0]["group"], json({{"model", "m-b"}, {"prompt_type", "p1"}}));
  EXPECT_EQ(g["selection"][0]["priority"], 1);
  std::set<std::string> rest;
  for (size_t i = 1; i < 4; ++i) {
    EXPECT_EQ(g["selection"][i]["priority"], 2) << g["selection"][i].dump();
    rest.insert(g["selection"][i]["group"]["model"].get<std::string>() + "/" + g["selection"][i]["group"]["prompt_type"].get<std::string>());
  }
  EXPECT_EQ(rest, (std::set<std::string>{"m-a/p1", "m-c/p1", "m-c/p2"}));
  EXPECT_EQ(g["configuration"]["group_by"], json({"model", "prompt_type"}));
}

TEST_F(Maintain, RunsTheSelectedGroupsPendingAndRetryableFailedTasksAndReportsIt) {
  const auto before = tasks();
  const auto sent_before = sent_by_model();
  json j = maintain_json({});

  // What went out: per selected group its pending tasks and its server_error
  // failures; the 401 and the 400s stay as they are; m-d was not selected.
  EXPECT_EQ(sent_since(sent_before), (std::map<std::string, int>{{"m-a", 4 + 2}, {"m-b", 2 + 2}, {"m-c", 2}, {"m-d", 0}}));
  EXPECT_EQ(mock_->stats()["requests"], kSetupRequests + 12);

  // The store afterwards.
  EXPECT_EQ(query(db_, "SELECT count(*) FROM tasks WHERE json_extract(dims, '$.model') = 'm-a' AND state = 'done'"), "10");
  EXPECT_EQ(query(db_, "SELECT count(*) FROM tasks WHERE json_extract(dims, '$.model') = 'm-b' AND state = 'done'"), "9");
  EXPECT_EQ(task_field(where_cell("m-b", "p1", 4), "state || ' ' || last_class || ' ' || attempts"), "failed auth_failed 1")
      << "an auth_failed task stays failed, not sent again";
  EXPECT_EQ(query(db_, "SELECT count(*) FROM tasks WHERE json_extract(dims, '$.model') = 'm-c' AND state = 'failed' AND last_class = 'client_error'"),
            "10");
  EXPECT_EQ(query(db_, "SELECT max(attempts) FROM tasks WHERE json_extract(dims, '$.model') = 'm-c'"), "1")
      << "the 400s were not sent again";
  EXPECT_EQ(query(db_, "SELECT sum(attempts) FROM tasks WHERE json_extract(dims, '$.model') = 'm-a'"), "14")
      << "m-a's 500s were sent again: 4 tasks with 2 attempts";
  const auto after_tasks = tasks();
  for (const auto& [dims, row] : before) {
    if (json::parse(dims)["model"] == "m-d") {
      EXPECT_EQ(after_tasks.at(dims), row) << "m-d was not selected: " << dims;
    }
  }
  EXPECT_EQ(query(db_, "SELECT count(*) FROM tasks WHERE json_extract(dims, '$.model') = 'm-d' AND state = 'pending'"), "2");

  // The report: stdout with --json, and the file beside the store.
  for (const char* field : {"configuration", "analysis", "patterns", "selection", "ran", "after"})
    EXPECT_TRUE(j.contains(field)) << field << ": " << j.dump();
  EXPECT_EQ(j["suite"], "mt");
  EXPECT_EQ(j["dry_run"], false);
  EXPECT_EQ(j["store"], db_);
  const std::string path = j["report"];
  EXPECT_TRUE(std::regex_match(path, std::regex(dir_.path() + "/reports/maintain-mt-\\d{8}-\\d{6}(-\\d+)?\\.json"))) << path;
  json file = json::parse(read_file(path));
  json printed = j;
  printed.erase("report");
  EXPECT_EQ(file, printed) << "--json prints the report it writes";

  EXPECT_EQ(j["configuration"]["minimum_completion_rate"], 0.8);
  EXPECT_EQ(j["configuration"]["maximum_failure_rate"], 0.3);
  EXPECT_EQ(j["configuration"]["cooldown_hours"], 2);
  EXPECT_EQ(j["configuration"]["batch_size"], 5);
  EXPECT_EQ(j["configuration"]["group_by"], json({"model"}));
  ASSERT_EQ(j["analysis"].size(), 4u);
  EXPECT_EQ(j["analysis"][1]["group"], json({{"model", "m-b"}}));
  EXPECT_EQ(j["analysis"][1]["failures"], json({{"auth_failed", 1}, {"server_error", 2}}));
  EXPECT_EQ(j["analysis"][1]["pending"], 2);
  EXPECT_EQ(j["analysis"][1]["pattern"], "low completion");
  json patterns = json::object();
  for (const auto& p : j["patterns"]) patterns[p["group"]["model"].get<std::string>()] = p["pattern"];
  EXPECT_EQ(patterns, json({{"m-a", "both"}, {"m-b", "low completion"}, {"m-c", "both"}}));
  ASSERT_EQ(models_of(j["selection"]), (Models{"m-c", "m-a", "m-b"}));
  EXPECT_EQ(j["selection"][0]["reason"], "completion 0% < 80%; failures 80% > 30%; severe failure");
  EXPECT_EQ(j["selection"][1]["reason"], "completion 40% < 80%; failures 40% > 30%");
  EXPECT_EQ(j["selection"][2]["reason"], "completion 50% < 80%");

  // What ran, group by group, in the selection's order.
  const json& ran = j["ran"];
  ASSERT_EQ(models_of(ran), (Models{"m-c", "m-a", "m-b"})) << ran.dump();
  EXPECT_EQ(ran[0]["reset"], 0);
  EXPECT_TRUE(ran[0]["retried_classes"].empty()) << "client_error is never retried: " << ran[0].dump();
  EXPECT_EQ(ran[0]["failed"], 10);
  EXPECT_EQ(ran[1]["reset"], 4);
  EXPECT_EQ(ran[1]["retried_classes"], json({"server_error"}));
  EXPECT_EQ(ran[1]["done"], 10);
  EXPECT_EQ(ran[1]["exit"], 0);
  EXPECT_EQ(ran[2]["reset"], 2) << "auth_failed is not retried: " << ran[2].dump();
  EXPECT_EQ(ran[2]["retried_classes"], json({"server_error"})) << ran[2].dump();
  EXPECT_EQ(ran[2]["done"], 9);
  EXPECT_EQ(ran[2]["pending"], 0);

  std::map<std::string, double> after;
  for (const auto& g : j["after"]) after[g["group"]["model"]] = g["completion_rate"].get<double>();
  EXPECT_EQ(after, (std::map<std::string, double>{{"m-a", 1.0}, {"m-b", 0.9}, {"m-c", 0.0}, {"m-d", 0.8}}));

  // The maintenance is recorded per selected group (the cooldown counts from it).
  std::set<std::string> maintained;
  for (const auto& row : query_rows(db_, "SELECT json_extract(detail, '$.group.model') FROM events WHERE kind = 'maintained'"))
    maintained.insert(row[0]);
  EXPECT_EQ(maintained, (std::set<std::string>{"m-a", "m-b", "m-c"}));
}

TEST_F(Maintain, BatchSizeCapsWhatRunsAndTheOtherGroupsStayUntouched) {
  std::string suite = write_suite("batch.lua", "batch_size = 1, priority_models = { 'm-a' }");
  const auto before = tasks();
  const auto sent_before = sent_by_model();
  Result r = run_cli("maintain", {}, suite);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(has(r.out, "  1. model=m-a — completion 40% < 80%; failures 40% > 30%; priority model (6 unfinished)\n")) << r.out;
  EXPECT_TRUE(has(r.out, "  ran model=m-a: 10 done, 0 failed, 0 pending")) << r.out;
  EXPECT_FALSE(has(r.out, "model=m-c —")) << "one group at most: " << r.out;

  EXPECT_EQ(sent_since(sent_before), (std::map<std::string, int>{{"m-a", 6}, {"m-b", 0}, {"m-c", 0}, {"m-d", 0}}));
  const auto after = tasks();
  for (const auto& [dims, row] : before) {
    if (json::parse(dims)["model"] != "m-a") {
      EXPECT_EQ(after.at(dims), row) << dims;
    } else {
      EXPECT_TRUE(has(after.at(dims), "done ")) << dims << ": " << after.at(dims);
    }
  }
  EXPECT_EQ(query(db_, "SELECT group_concat(json_extract(detail, '$.group.model')) FROM events WHERE kind = 'maintained'"), "m-a");
}

TEST_F(Maintain, CooldownHoldsBackGroupsMaintainedWithinCooldownHours) {
  // A maintenance of m-c and m-a; m-c stays at 0% (its 400s are final).
  json first = maintain_json({"--completion-threshold", "0.45", "--failure-threshold", "1"});
  ASSERT_EQ(models_of(first["ran"]), (Models{"m-c", "m-a"}));
  const std::vector<std::string> everything{"--completion-threshold", "1", "--failure-threshold", "0"};

  // Default cooldown (2 h): m-c is held back though it meets the thresholds; m-a is complete now.
  json j = maintain_json({"--dry-run", "--completion-threshold", "1", "--failure-threshold", "0"});
  EXPECT_EQ(models_of(j["selection"]), (Models{"m-b", "m-d"}));
  for (const auto& g : j["analysis"]) {
    bool maintained = g["group"]["model"] == "m-a" || g["group"]["model"] == "m-c";
    EXPECT_EQ(g.contains("last_maintained_at") && g["last_maintained_at"].is_number(), maintained) << g.dump();
  }
  EXPECT_EQ(selected(everything, write_suite("cool1.lua", "cooldown_hours = 1")), (Models{"m-b", "m-d"}));
  EXPECT_EQ(selected(everything, write_suite("cool0.lua", "cooldown_hours = 0")), (Models{"m-c", "m-b", "m-d"}))
      << "cooldown_hours = 0 holds nothing back";

  // Counted from the last maintenance: moved 2 h 1 min into the past, a 2 h
  // cooldown is over and a 3 h one is not.
  {
    SQLite::Database d(db_, SQLite::OPEN_READWRITE);
    d.exec("PRAGMA busy_timeout=5000");
    d.exec("UPDATE events SET at = at - 7260 WHERE kind = 'maintained'");
  }
  EXPECT_EQ(selected(everything), (Models{"m-c", "m-b", "m-d"}));
  EXPECT_EQ(selected(everything, write_suite("cool3.lua", "cooldown_hours = 3")), (Models{"m-b", "m-d"}));
}

TEST_F(Maintain, WhereLimitsAnalysisSelectionAndRunsToTheSlice) {
  // A dry run over two models analyses and selects only those.
  json two = maintain_json({"--dry-run", "--where", "model=m-a,m-d"});
  EXPECT_EQ(models_of(two["analysis"]), (Models{"m-a", "m-d"}));
  EXPECT_EQ(models_of(two["selection"]), (Models{"m-a"}));

  const auto before = tasks();
  const auto sent_before = sent_by_model();
  json j = maintain_json({"--where", "prompt_type=p2", "--completion-threshold", "0.9"});
  EXPECT_EQ(j["configuration"]["where"], json({{"prompt_type", {"p2"}}}));
  ASSERT_EQ(j["analysis"].size(), 4u);
  for (const auto& g : j["analysis"]) EXPECT_EQ(g["total"], 5) << "p2 only: " << g.dump();
  ASSERT_EQ(j["selection"].size(), 4u) << j["selection"].dump();
  EXPECT_EQ(j["selection"][0]["group"], json({{"model", "m-c"}}));
  EXPECT_EQ(j["selection"][0]["tasks"], 5);

  // Only p2's pending instance 5 of each model went out; m-c's p2 failures are 400s (not retried).
  EXPECT_EQ(sent_since(sent_before), (std::map<std::string, int>{{"m-a", 1}, {"m-b", 1}, {"m-c", 1}, {"m-d", 1}}));
  const auto after = tasks();
  for (const auto& [dims, row] : before) {
    json d = json::parse(dims);
    if (d["prompt_type"] == "p1") {
      EXPECT_EQ(after.at(dims), row) << "outside the slice: " << dims;
    }
  }
  EXPECT_EQ(task_field(where_cell("m-a", "p1", 1), "state || ' ' || last_class"), "failed server_error")
      << "a retryable failure outside the slice is not sent again";
  EXPECT_EQ(task_field(where_cell("m-a", "p1", 5), "state"), "pending");
  EXPECT_EQ(task_field(where_cell("m-a", "p2", 5), "state"), "done");
  EXPECT_EQ(task_field(where_cell("m-d", "p2", 5), "state"), "done");
  EXPECT_EQ(task_field(where_cell("m-c", "p2", 5), "state || ' ' || last_class"), "failed client_error");

  // A typo selects nothing and runs nothing: a usage error.
  Result typo = run_cli("maintain", {"--where", "modle=m-a"});
  EXPECT_EQ(typo.exit_code, 2) << typo.err;
  EXPECT_TRUE(has(typo.err, "'modle'")) << typo.err;
  Result value = run_cli("maintain", {"--where", "model=m-z"});
  EXPECT_EQ(value.exit_code, 2) << value.err;
  EXPECT_EQ(mock_->stats()["requests"], kSetupRequests + 4);
}

TEST_F(Maintain, RetestWritesAnExecutableCommentedScriptThatRunsNothingUntilRun) {
  const std::string before = store_bytes();
  std::string script = dir_.file("retest.sh");
  Result r = run_cli("retest", {"--script", script});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(store_bytes() == before) << "writing the script changed the store";
  EXPECT_EQ(mock_->stats()["requests"], kSetupRequests);
  EXPECT_TRUE(has(r.out, script + ": 3 groups to re-test")) << r.out;

  struct stat st {};
  ASSERT_EQ(::stat(script.c_str(), &st), 0);
  EXPECT_TRUE(st.st_mode & S_IXUSR) << std::oct << st.st_mode;
  std::string text = read_file(script);
  EXPECT_EQ(text.rfind("#!/bin/sh\n", 0), 0u) << text;
  // Each group: its reason as a comment, then its run line.
  const std::string run = "'" SHEPHERD_BIN "' run '" + suite_ + "' --db '" + db_ + "' --where ";
  // Failed tasks go again only in the classes retry.lua would retry, as
  // `maintain` sends them: m-c's 400s and m-b's 401 are left alone (named in
  // the comment); a group with no retryable class gets no retry flag.
  EXPECT_TRUE(has(text, "\n# model=m-c: completion 0% < 80%; failures 80% > 30%; severe failure (priority 2, 10 unfinished); "
                        "failed client_error (8) left alone: the retry policy would not retry it\n" +
                            run + "'model=m-c'\n"))
      << text;
  EXPECT_TRUE(has(text, "\n# model=m-a: completion 40% < 80%; failures 40% > 30% (priority 3, 6 unfinished)\n" + run +
                            "'model=m-a' --retry-class 'server_error'\n"))
      << text;
  EXPECT_TRUE(has(text, "\n# model=m-b: completion 50% < 80% (priority 3, 5 unfinished); failed auth_failed (1) left alone: "
                        "the retry policy would not retry it\n" +
                            run + "'model=m-b' --retry-class 'server_error'\n"))
      << text;
  EXPECT_FALSE(has(text, "--retry-failed")) << "it re-sends every failed class: " << text;
  EXPECT_LT(text.find("model=m-c"), text.find("model=m-a"));
  EXPECT_LT(text.find("model=m-a"), text.find("model=m-b"));
  EXPECT_FALSE(has(text, "m-d")) << text;

  // --json names the script and the selection; --where narrows it.
  std::string narrow = dir_.file("narrow.sh");
  Result j = run_cli("retest", {"--script", narrow, "--where", "prompt_type=p2", "--json"});
  ASSERT_EQ(j.exit_code, 0) << j.err;
  json out = json::parse(j.out);
  EXPECT_EQ(out["script"], narrow);
  EXPECT_EQ(models_of(out["selection"]), (Models{"m-c"})) << "p2 of the others is 80% complete: " << out.dump();
  EXPECT_EQ(out["selection"][0]["retry_classes"], json::array()) << out.dump();
  EXPECT_EQ(out["selection"][0]["left_failed"], json({"client_error (4)"})) << out.dump();
  EXPECT_TRUE(has(read_file(narrow), "--where 'model=m-c' --where 'prompt_type=p2'\n")) << read_file(narrow);

  // Run, the script completes the work: m-c and m-a at these thresholds.
  std::string two = dir_.file("two.sh");
  ASSERT_EQ(run_cli("retest", {"--script", two, "--completion-threshold", "0.45", "--failure-threshold", "1"}).exit_code, 0);
  EXPECT_TRUE(store_bytes() == before);
  const auto tasks_before = tasks();
  const auto sent_before = sent_by_model();
  Process sh({"/bin/sh", two}, key_env(1));
  Result done = sh.wait(60s);
  EXPECT_EQ(done.exit_code, 0) << "the last line, m-a's run, finishes every task: " << done.err;
  EXPECT_EQ(query(db_, "SELECT count(*) FROM tasks WHERE json_extract(dims, '$.model') = 'm-a' AND state = 'done'"), "10")
      << "m-a's server_error failures were sent again and its pending tasks run";
  EXPECT_EQ(query(db_, "SELECT count(*) FROM tasks WHERE json_extract(dims, '$.model') = 'm-c' AND state = 'failed' AND last_class = 'client_error'"),
            "10");
  auto sent = sent_since(sent_before);
  EXPECT_EQ(sent["m-a"], 6);
  EXPECT_EQ(sent["m-b"], 0);
  EXPECT_EQ(sent["m-c"], 2) << "only m-c's pending tasks: its 400s are not sent again";
  EXPECT_EQ(sent["m-d"], 0);
  EXPECT_EQ(query(db_, "SELECT count(*) FROM tasks WHERE json_extract(dims, '$.model') = 'm-c' AND attempts = 1"), "10");
  const auto after = tasks();
  for (const auto& [dims, row] : tasks_before) {
    json d = json::parse(dims);
    if (d["model"] == "m-b" || d["model"] == "m-d") {
      EXPECT_EQ(after.at(dims), row) << "not in the script: " << dims;
    }
  }
}

// The script of the default selection (m-c, m-a, m-b), run: what maintain
// would send and nothing more. m-b's 401 (auth_failed) and m-c's 400s
// (client_error) are not sent again; the 500s (server_error) and the pending
// tasks are.
TEST_F(Maintain, RetestScriptRunSendsOnlyTheFailedClassesRetryWouldRetry) {
  // A copy of the store for `maintain`, to compare with below. The mock
  // answers a task sent again the same either way: the 500 rules are used
  // up, the 401 and the 400s never run out.
  const std::string twin = dir_.file("twin.db");
  for (const char* suffix : {"", "-wal"}) {
    if (fs::exists(db_ + suffix)) fs::copy_file(db_ + suffix, twin + suffix);
  }
  std::string script = dir_.file("retest.sh");
  ASSERT_EQ(run_cli("retest", {"--script", script}).exit_code, 0);
  const std::map<int, int> answered_before = answered_by_status();
  ASSERT_EQ(answered_before, (std::map<int, int>{{200, 17}, {400, 8}, {401, 1}, {500, 6}}));
  const auto tasks_before = tasks();
  const auto sent_before = sent_by_model();

  Process sh({"/bin/sh", script}, key_env(1));
  Result done = sh.wait(60s);
  EXPECT_EQ(done.exit_code, 4) << "the last line, m-b's run, leaves its auth_failed task failed: " << done.err;

  // Sent: m-c's 2 pending (400 again), m-a's 4 server_error + 2 pending,
  // m-b's 2 server_error + 2 pending; no 401 and no old 400 again.
  EXPECT_EQ(sent_since(sent_before), (std::map<std::string, int>{{"m-a", 6}, {"m-b", 4}, {"m-c", 2}, {"m-d", 0}}));
  EXPECT_EQ(answered_by_status(), (std::map<int, int>{{200, 17 + 10}, {400, 8 + 2}, {401, 1}, {500, 6}}));

  EXPECT_EQ(task_field(where_cell("m-b", "p1", 4), "state || ' ' || last_class || ' ' || attempts"), "failed auth_failed 1");
  for (int i : {1, 2}) EXPECT_EQ(task_field(where_cell("m-b", "p1", i), "state || ' ' || attempts"), "done 2") << i;
  for (const char* p : {"p1", "p2"}) EXPECT_EQ(task_field(where_cell("m-b", p, 5), "state || ' ' || attempts"), "done 1") << p;
  EXPECT_EQ(query(db_, "SELECT count(*) FROM tasks WHERE json_extract(dims, '$.model') = 'm-a' AND state = 'done'"), "10");
  EXPECT_EQ(query(db_, "SELECT group_concat(n, ' ') FROM (SELECT attempts || ':' || count(*) AS n FROM tasks "
                       "WHERE json_extract(dims, '$.model') = 'm-c' AND state = 'failed' AND last_class = 'client_error' "
                       "GROUP BY attempts ORDER BY attempts)"),
            "1:10")
      << "m-c: its 8 old failures untouched, its 2 pending tasks failed once";
  const auto after = tasks();
  for (const auto& [dims, row] : tasks_before) {
    if (json::parse(dims)["model"] == "m-d") {
      EXPECT_EQ(after.at(dims), row) << "not in the script: " << dims;
    }
  }

  // `maintain` on the copy sends as much and leaves every task as the script did.
  const auto sent_by_script = sent_since(sent_before);
  const auto sent_before_maintain = sent_by_model();
  Result maintain = shepherd({"maintain", suite_, "--db", twin, "--json"}, key_env(1));
  ASSERT_EQ(maintain.exit_code, 0) << maintain.err;
  EXPECT_EQ(models_of(json::parse(maintain.out)["ran"]), (Models{"m-c", "m-a", "m-b"}));
  EXPECT_EQ(sent_since(sent_before_maintain), sent_by_script);
  const std::string cells = "SELECT group_concat(row, char(10)) FROM (SELECT dims || ' ' || state || ' ' || "
                            "coalesce(last_class, '') || ' ' || attempts AS row FROM tasks ORDER BY dims)";
  EXPECT_EQ(query(twin, cells), query(db_, cells));
}

// `run --retry-class`: failed tasks of the named classes in the --where
// slice go again; other classes, and failures outside the slice, stay failed
// with their class.
TEST_F(Maintain, RunRetryClassSendsOnlyTheNamedClassesOfTheSlice) {
  const auto before = tasks();
  auto sent_before = sent_by_model();
  Result b = run_cli("run", {"--no-progress", "--json", "--where", "model=m-b", "--retry-class", "server_error"});
  EXPECT_EQ(b.exit_code, 4) << "the auth_failed task stays failed: " << b.err;
  json out = json::parse(b.out);
  EXPECT_EQ(out["done"], 9);
  EXPECT_EQ(out["failed"], 1);
  EXPECT_EQ(out["finished_this_run"], 4) << "2 server_error failures and 2 pending tasks";
  EXPECT_EQ(sent_since(sent_before), (std::map<std::string, int>{{"m-a", 0}, {"m-b", 4}, {"m-c", 0}, {"m-d", 0}}));
  EXPECT_EQ(answered_by_status()[401], 1) << "the 401 was not sent again";
  EXPECT_EQ(task_field(where_cell("m-b", "p1", 4), "state || ' ' || last_class || ' ' || attempts"), "failed auth_failed 1");
  const std::string log = read_file(out["log"].get<std::string>());
  EXPECT_TRUE(has(log, "2 failed tasks of class server_error sent back to pending (--retry-class)")) << log;
  for (const auto& [dims, row] : before) {
    if (json::parse(dims)["model"] != "m-b") {
      EXPECT_EQ(tasks().at(dims), row) << "outside the slice: " << dims;
    }
  }

  // No --where: the whole suite; client_error (m-c) and auth_failed stay failed.
  sent_before = sent_by_model();
  Result all = run_cli("run", {"--no-progress", "--json", "--retry-class", "server_error"});
  EXPECT_EQ(all.exit_code, 4) << all.err;
  EXPECT_EQ(sent_since(sent_before), (std::map<std::string, int>{{"m-a", 6}, {"m-b", 0}, {"m-c", 2}, {"m-d", 2}}));
  // done: m-a's 4 and m-b's 2 server_error tasks at their second attempt, the rest at their first.
  EXPECT_EQ(query(db_, "SELECT group_concat(n, ' ') FROM (SELECT state || '/' || "
                       "(CASE WHEN state = 'failed' THEN last_class || '/' ELSE '' END) || attempts || '=' || count(*) AS n "
                       "FROM tasks GROUP BY state, CASE WHEN state = 'failed' THEN last_class END, attempts ORDER BY 1)"),
            "done/1=23 done/2=6 failed/auth_failed/1=1 failed/client_error/1=10");
}

// An empty class list names nothing to retry: a usage error before the store
// is touched, as is --retry-class beside --retry-failed.
TEST_F(Maintain, RunRetryClassWithoutAClassIsAUsageError) {
  const std::string before = store_bytes();
  struct Case {
    std::vector<std::string> args;
    std::string says;
    bool json = true;  // CLI11's "missing value" comes before --json is seen (as for --db or --where): plain text
  };
  const std::vector<Case> cases = {
      {{"--retry-class", ""}, "--retry-class"},
      {{"--retry-class", ","}, "--retry-class"},
      {{"--retry-class", "server_error,,auth_failed"}, "--retry-class"},
      {{"--retry-class", "server_error", "--retry-class", ""}, "--retry-class"},
      {{"--retry-class"}, "--retry-class", false},
      {{"--retry-class", "--no-progress"}, "'--no-progress'"},
      {{"--retry-class", "server_error", "--retry-failed"}, "--retry-failed"},
  };
  for (const auto& c : cases) {
    std::string label;
    for (const auto& a : c.args) label += "'" + a + "' ";
    Result r = run_cli("run", c.args);
    EXPECT_EQ(r.exit_code, 2) << label << "\n" << r.err;
    EXPECT_TRUE(has(r.err, "USAGE")) << label << "\n" << r.err;
    EXPECT_TRUE(has(r.err, c.says)) << label << "\n" << r.err;

    if (!c.json) continue;
    // shepherd's own --json, before the subcommand: a --retry-class missing
    // its value would take a later --json as its value (refused as a class
    // name, without JSON).
    std::vector<std::string> with_json{"--json", "run", suite_, "--db", db_};
    with_json.insert(with_json.end(), c.args.begin(), c.args.end());
    Result j = shepherd(with_json, key_env(1));
    EXPECT_EQ(j.exit_code, 2) << label << "--json\n" << j.err;
    json e = json::parse(j.out, nullptr, false);
    ASSERT_FALSE(e.is_discarded()) << label << "--json: stdout is not JSON: " << j.out << "\nstderr: " << j.err;
    EXPECT_EQ(e["error"]["code"], "USAGE") << e.dump();
  }
  EXPECT_TRUE(store_bytes() == before) << "a refused run changed the store";
  EXPECT_EQ(mock_->stats()["requests"], kSetupRequests) << "a refused run sends nothing";
}

// s:run{ retry_classes = {…} } in a workflow: what `run --retry-class` does;
// an empty list, or one beside retry_failed, is misuse and raises.
TEST_F(Maintain, WorkflowRunTakesRetryClasses) {
  std::string file = dir_.write("w.lua", R"(
local s = assert(shepherd.suite(shepherd.args[1], { db = shepherd.args[2] }))
local function raises(f) local ok, err = pcall(f) return ok and "no error" or tostring(err) end
local out = {
  empty = raises(function() return s:run{ retry_classes = {} } end),
  empty_text = raises(function() return s:run{ retry_classes = "" } end),
  both = raises(function() return s:run{ retry_classes = { "server_error" }, retry_failed = true } end),
  number = raises(function() return s:run{ retry_classes = { 500 } } end),
}
out.run = assert(s:run{ where = { model = "m-b" }, retry_classes = { "server_error" } })
out.text = assert(s:run{ where = { model = "m-a", prompt_type = "p1" }, retry_classes = "auth_failed,server_error" })
print(shepherd.json.encode(out))
)");
  const auto sent_before = sent_by_model();
  Result r = shepherd({"script", file, suite_, db_}, key_env(1));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json j = json::parse(r.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.out;
  for (const char* f : {"empty", "empty_text", "both", "number"}) {
    EXPECT_TRUE(has(j[f], "bad argument #1 to 'run'")) << f << ": " << j[f];
  }
  EXPECT_TRUE(has(j["empty"], "retry_classes must name at least one class")) << j["empty"];
  EXPECT_TRUE(has(j["both"], "retry_failed")) << j["both"];
  EXPECT_EQ(j["run"]["done"], 9);
  EXPECT_EQ(j["run"]["failed"], 1);
  EXPECT_EQ(j["run"]["exit"], 4);
  EXPECT_EQ(j["text"]["total"], 5);
  EXPECT_EQ(j["text"]["done"], 5) << "the classes as text, \"a,b\"; no auth_failed in that slice";
  EXPECT_EQ(j["text"]["exit"], 0);
  // m-b: its 2 server_error failures and 2 pending; m-a p1: its 4 server_error failures and 1 pending.
  EXPECT_EQ(sent_since(sent_before), (std::map<std::string, int>{{"m-a", 5}, {"m-b", 4}, {"m-c", 0}, {"m-d", 0}}));
  EXPECT_EQ(task_field(where_cell("m-b", "p1", 4), "state || ' ' || last_class || ' ' || attempts"), "failed auth_failed 1");
}

TEST(MaintainErrors, MissingSuiteMissingScriptAndThresholdsOutsideZeroToOneAreUsageErrors) {
  TempDir dir;
  SuiteSpec spec = suite_at("http://127.0.0.1:9/v1");
  std::string suite = dir.write("s.lua", spec.text());
  std::string db = dir.file("s.db");
  std::string script = dir.file("r.sh");
  struct Case {
    std::vector<std::string> args;
    std::string says;
  };
  const std::vector<Case> cases = {
      {{"maintain", dir.file("missing.lua")}, "SUITE_NOT_FOUND"},
      {{"maintain", dir.file("missing.lua"), "--dry-run"}, "SUITE_NOT_FOUND"},
      {{"retest", dir.file("missing.lua"), "--script", script}, "SUITE_NOT_FOUND"},
      {{"retest", suite, "--db", db}, "--script"},
      {{"maintain", suite, "--db", db, "--completion-threshold", "1.5"}, "--completion-threshold"},
      {{"maintain", suite, "--db", db, "--failure-threshold=-0.1"}, "--failure-threshold"},
      {{"maintain", suite, "--db", db, "--completion-threshold", "abc", "--dry-run"}, "--completion-threshold"},
      {{"retest", suite, "--db", db, "--script", script, "--failure-threshold", "2"}, "--failure-threshold"},
      {{"retest", suite, "--db", db, "--script", script, "--completion-threshold", "-1"}, "--completion-threshold"},
  };
  for (const auto& c : cases) {
    std::string label;
    for (const auto& a : c.args) label += a + " ";
    Result r = shepherd(c.args, key_env(1));
    EXPECT_EQ(r.exit_code, 2) << label << "\n" << r.err;
    EXPECT_TRUE(has(r.err, c.says)) << label << "\n" << r.err;

    // --json: the error as JSON on stdout, as every command gives it.
    std::vector<std::string> with_json = c.args;
    with_json.push_back("--json");
    Result j = shepherd(with_json, key_env(1));
    EXPECT_EQ(j.exit_code, 2) << label << "--json\n" << j.err;
    json e = json::parse(j.out, nullptr, false);
    ASSERT_FALSE(e.is_discarded()) << label << "--json: stdout is not JSON: " << j.out << "\nstderr: " << j.err;
    EXPECT_EQ(e["status"], "error") << e.dump();
    EXPECT_EQ(e["exit_code"], 2) << e.dump();
    EXPECT_TRUE(has(e["error"]["code"].get<std::string>() + " " + e["error"]["message"].get<std::string>(), c.says)) << e.dump();
  }
  EXPECT_FALSE(fs::exists(db)) << "no store was created";
  EXPECT_FALSE(fs::exists(script)) << "no script was written";
  EXPECT_FALSE(fs::exists(dir.file("reports"))) << "no report was written";
}
