// `shepherd script FILE.lua [ARGS…]`: every function of the workflow API
// against a real store made by a real run against the mock, the two tiers of
// error (misuse raises, operational failure returns nil, code, message),
// signals, exit codes, and the packaged `shepherd incomplete`.
#include <signal.h>
#include <sys/stat.h>

#include <ctime>
#include <filesystem>
#include <regex>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "harness.h"

using namespace e2e;
using nlohmann::json;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

// 2 models x 4 prompt types x 2 rates x 2 instances = 32 tasks. The default
// request's prompt lists the cell sorted ("instance=1 model=m-a prompt_type=cot rate=0.6"),
// which the mock's canned rules match. What one run leaves in the store:
//   m-b flawed_x (4)             a 400 every time: client_error, never retried
//   baseline instance 2 (4)      refused by check: check_failed
//   m-a cot rate 0.6 (2)         a 500 three times (max_retries 2): server_error, 2 retries each;
//                                the mock answers 500 only 6 times, so sent again they succeed
//   m-b flawed_y 0.9 2 (1)       key_for sends it to k1, a revoked key: 401, key_disabled,
//                                then done on k0 (1 retry)
//   the other 21                 done at once
constexpr int kTasks = 32;
constexpr int kFirstRunRequests = 32 + 2 * 2 + 1;

json faulty_scenario() {
  return {{"keys", {"e2e-secret-value-0"}},
          {"canned",
           json::array({{{"when", "model=m-b prompt_type=flawed_x"},
                         {"status", 400},
                         {"body_json", {{"error", {{"message", "Invalid value for 'messages'"}, {"type", "invalid_request_error"}}}}}},
                        {{"when", "model=m-a prompt_type=cot rate=0.6"},
                         {"status", 500},
                         {"times", 6},
                         {"body_json", {{"error", {{"message", "The server had an error"}, {"type", "server_error"}}}}}}})}};
}

const char* const kMatrix =
    "{ model = { 'm-a', 'm-b' }, prompt_type = { 'baseline', 'cot', 'flawed_x', 'flawed_y' }, "
    "rate = { 0.9, 0.6 }, instance = { 1, 2 } }";

SuiteSpec faulty_suite(const Mock& mock) {
  SuiteSpec s = suite_at(mock.base_url());
  s.keys = 2;
  s.models = {"m-a", "m-b"};
  s.matrix = kMatrix;
  s.extra = R"(  retry = { max_retries = 2, base_delay_ms = 10, jitter = false },
  check = function(cell, response)
    if cell.prompt_type == "baseline" and cell.instance == 2 then return false, "baseline 2 is never right" end
    return true
  end,
  key_for = function(cell, keys)
    if cell.model == "m-b" and cell.prompt_type == "flawed_y" and cell.rate == 0.9 and cell.instance == 2 then return "k1" end
    return "k0"
  end,)";
  return s;
}

// Every script starts with these two lines: J, and s, the suite handle on
// shepherd.args[1] with its store shepherd.args[2].
const char* const kPrelude =
    "local J = shepherd.json.encode\n"
    "local s = assert(shepherd.suite(shepherd.args[1], { db = shepherd.args[2] }))\n";

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// An empty Lua table encodes as {} or []: one form for comparing.
json norm(json j) {
  if (j.is_array() && j.empty()) return json::object();
  return j;
}

// The last line of stdout as JSON.
json last_json(const Result& r) {
  std::string out = r.out;
  while (!out.empty() && out.back() == '\n') out.pop_back();
  std::string line = out.substr(out.rfind('\n') == std::string::npos ? 0 : out.rfind('\n') + 1);
  json j = json::parse(line, nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << "stdout: " << r.out << "\nstderr: " << r.err;
  return j.is_discarded() ? json::object() : j;
}

std::string utc_stamp(std::time_t t) {
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%d-%H%M%S", &tm);
  return buf;
}

// A store with failed tasks of three classes, made by one real run.
class WorkflowApi : public ::testing::Test {
 protected:
  void SetUp() override {
    mock_ = std::make_unique<Mock>(faulty_scenario());
    suite_ = dir_.write("s.lua", faulty_suite(*mock_).text());
    db_ = dir_.file("s.db");
    Result r = shepherd({"run", suite_, "--db", db_}, key_env(2));
    ASSERT_EQ(r.exit_code, 4) << r.err;
    ASSERT_EQ(query(db_, "SELECT count(*) FROM tasks WHERE state = 'done'"), "22");
    ASSERT_EQ(mock_->stats()["requests"], kFirstRunRequests);
  }

  // Runs `body` after the prelude: shepherd script FILE SUITE DB EXTRA…
  Result script(const std::string& body, const std::vector<std::string>& extra = {}, const std::string& suite = "") {
    std::string file = dir_.write("w" + std::to_string(++scripts_) + ".lua", kPrelude + body);
    std::vector<std::string> args{"script", file, suite.empty() ? suite_ : suite, db_};
    args.insert(args.end(), extra.begin(), extra.end());
    return shepherd(args, key_env(2));
  }

  // The script's last line as JSON; it must exit 0.
  json script_json(const std::string& body, const std::vector<std::string>& extra = {}, const std::string& suite = "") {
    Result r = script(body, extra, suite);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return last_json(r);
  }

  json status_cli(std::vector<std::string> extra) {
    std::vector<std::string> args{"status", suite_, "--db", db_, "--json"};
    args.insert(args.end(), extra.begin(), extra.end());
    Result r = shepherd(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return json::parse(r.out);
  }

  // The suite edited: an instance 3 (16 new cells, pending) and m-b's
  // requests changed (its 10 done answers are stale).
  std::string edited_suite() {
    SuiteSpec s = faulty_suite(*mock_);
    s.matrix = std::regex_replace(kMatrix, std::regex("instance = \\{ 1, 2 \\}"), "instance = { 1, 2, 3 }");
    std::string text = s.text();
    text = std::regex_replace(text, std::regex("max_tokens = 16"), "max_tokens = (cell.model == 'm-b' and 17 or 16)");
    return dir_.write("edited.lua", text);
  }

  TempDir dir_;
  std::unique_ptr<Mock> mock_;
  std::string suite_, db_;
  int scripts_ = 0;
};

// s:status's groups against `status --json`'s, field by field.
void expect_same_groups(const json& api, const json& cli) {
  ASSERT_TRUE(api.is_array()) << api.dump();
  ASSERT_EQ(api.size(), cli["groups"].size()) << api.dump() << "\n" << cli.dump();
  for (size_t i = 0; i < api.size(); ++i) {
    const json& a = api[i];
    const json& c = cli["groups"][i];
    EXPECT_EQ(norm(a["group"]), norm(c["key"])) << i;
    EXPECT_EQ(norm(a["key"]), norm(c["key"])) << i;
    for (const char* f : {"total", "done", "failed", "pending", "stale", "retries"}) EXPECT_EQ(a[f], c[f]) << f << " " << i;
    EXPECT_DOUBLE_EQ(a["completion_rate"].get<double>(), c["completion_rate"].get<double>()) << i;
    EXPECT_DOUBLE_EQ(a["failure_rate"].get<double>(), c["failure_rate"].get<double>()) << i;
    EXPECT_EQ(norm(a["failures"]), norm(c["failures_by_class"])) << i;
    EXPECT_EQ(norm(a["failures_by_class"]), norm(c["failures_by_class"])) << i;
    if (c.contains("last_attempt_at") && !c["last_attempt_at"].is_null()) {
      EXPECT_NEAR(a["last_attempt_at"].get<double>(), c["last_attempt_at"].get<double>(), 1e-3) << i;
    }
  }
}

}  // namespace

TEST_F(WorkflowApi, StatusGroupsByDimsAndWhereMatchStatusJson) {
  json j = script_json(R"(print(J{
  all = s:status{},
  by2 = s:status{ by = { "model", "prompt_type" } },
  by_text = s:status{ by = "model,rate" },
  slice = s:status{ by = { "model" }, where = { prompt_type = "flawed_*", rate = 0.9 } },
  numbers = s:status{ by = { "rate" }, where = { rate = { 0.6 }, instance = 2 } },
})
)");
  expect_same_groups(j["all"], status_cli({}));
  expect_same_groups(j["by2"], status_cli({"--by", "model,prompt_type"}));
  expect_same_groups(j["by_text"], status_cli({"--by", "model,rate"}));
  expect_same_groups(j["slice"], status_cli({"--by", "model", "--where", "prompt_type=flawed_*", "--where", "rate=0.9"}));
  expect_same_groups(j["numbers"], status_cli({"--by", "rate", "--where", "rate=0.6", "--where", "instance=2"}));

  // The numbers themselves.
  ASSERT_EQ(j["all"].size(), 1u);
  const json& all = j["all"][0];
  EXPECT_EQ(all["total"], kTasks);
  EXPECT_EQ(all["done"], 22);
  EXPECT_EQ(all["failed"], 10);
  EXPECT_EQ(all["retries"], 5) << "2 + 2 for the 500s, 1 for the 401";
  EXPECT_EQ(all["failures"], json({{"check_failed", 4}, {"client_error", 4}, {"server_error", 2}}));
  EXPECT_DOUBLE_EQ(all["completion_rate"].get<double>(), 22.0 / 32);
  EXPECT_GT(all["last_attempt_at"].get<double>(), 1.7e9);
  std::map<std::string, json> by2;
  for (const auto& g : j["by2"]) by2[g["group"]["model"].get<std::string>() + "/" + g["group"]["prompt_type"].get<std::string>()] = g;
  ASSERT_EQ(by2.size(), 8u);
  EXPECT_EQ(by2["m-a/cot"]["failed"], 2);
  EXPECT_EQ(by2["m-a/cot"]["retries"], 4);
  EXPECT_EQ(by2["m-a/cot"]["failures"], json({{"server_error", 2}}));
  EXPECT_EQ(by2["m-b/flawed_x"]["failures"], json({{"client_error", 4}}));
  EXPECT_DOUBLE_EQ(by2["m-b/flawed_x"]["failure_rate"].get<double>(), 1.0);
  EXPECT_EQ(by2["m-b/flawed_y"]["retries"], 1);
  EXPECT_EQ(by2["m-b/flawed_y"]["done"], 4);
  EXPECT_EQ(by2["m-a/baseline"]["failures"], json({{"check_failed", 2}}));
  ASSERT_EQ(j["slice"].size(), 2u);
  EXPECT_EQ(j["slice"][0]["total"], 4);
  EXPECT_EQ(j["slice"][1]["failed"], 2) << "m-b flawed_x at 0.9";
  ASSERT_EQ(j["numbers"].size(), 1u);
  EXPECT_EQ(j["numbers"][0]["group"]["rate"], 0.6);
  EXPECT_EQ(j["numbers"][0]["total"], 8);
}

TEST_F(WorkflowApi, TasksIteratesEachStateWithWhereAndLimit) {
  const std::string body = R"(
local function list(opts)
  local rows = {}
  for t in s:tasks(opts) do rows[#rows + 1] = t end
  return shepherd.json.array(rows)
end
print(J{
  failed = list{ state = "failed" }, done = list{ state = "done" }, pending = list{ state = "pending" },
  stale = list{ state = "stale" }, all = list{}, limited = list{ state = "done", limit = 3 },
  zero = list{ limit = 0 }, slice = list{ state = "failed", where = { model = "m-b" } },
  sliced_limit = list{ where = { prompt_type = "flawed_*" }, limit = 5 },
})
)";
  json j = script_json(body);
  ASSERT_EQ(j["failed"].size(), 10u);
  std::map<std::string, int> classes;
  for (const auto& t : j["failed"]) {
    EXPECT_EQ(t["state"], "failed");
    EXPECT_TRUE(std::regex_match(t["id"].get<std::string>(), std::regex("[0-9a-f]{16}"))) << t.dump();
    for (const char* d : {"model", "prompt_type", "rate", "instance"}) EXPECT_TRUE(t["cell"].contains(d)) << t.dump();
    std::string cls = t["class"];
    ++classes[cls];
    std::string upper = cls;
    for (auto& ch : upper) ch = static_cast<char>(std::toupper(ch));
    EXPECT_EQ(t["error"]["code"], upper) << t.dump();
    EXPECT_FALSE(t["error"]["message"].get<std::string>().empty()) << t.dump();
    EXPECT_EQ(t["attempts"], cls == "server_error" ? 3 : 1) << t.dump();
    EXPECT_EQ(t["stale"], false);
    EXPECT_EQ(t["turns"], 0);
  }
  EXPECT_EQ(classes, (std::map<std::string, int>{{"check_failed", 4}, {"client_error", 4}, {"server_error", 2}}));
  ASSERT_EQ(j["done"].size(), 22u);
  for (const auto& t : j["done"]) {
    EXPECT_EQ(t["state"], "done");
    EXPECT_EQ(t["class"], "ok");
    EXPECT_EQ(t["model"], t["cell"]["model"]);
    EXPECT_FALSE(t.contains("error") && !t["error"].is_null()) << t.dump();
    EXPECT_GE(t["latency_ms"].get<double>(), 0.0);
    EXPECT_GT(t["updated_at"].get<double>(), 1.7e9);
  }
  EXPECT_TRUE(j["pending"].empty());
  EXPECT_TRUE(j["stale"].empty());
  EXPECT_EQ(j["all"].size(), static_cast<size_t>(kTasks));
  ASSERT_EQ(j["limited"].size(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(j["limited"][i]["id"], j["done"][i]["id"]) << "in matrix order";
  EXPECT_TRUE(j["zero"].empty());
  ASSERT_EQ(j["slice"].size(), 6u);
  for (const auto& t : j["slice"]) EXPECT_EQ(t["cell"]["model"], "m-b");
  ASSERT_EQ(j["sliced_limit"].size(), 5u);
  for (const auto& t : j["sliced_limit"]) EXPECT_EQ(t["cell"]["prompt_type"].get<std::string>().rfind("flawed_", 0), 0u);

  // The suite as it is now: new cells are pending, changed requests stale.
  json e = script_json(body, {}, edited_suite());
  ASSERT_EQ(e["pending"].size(), 16u);
  for (const auto& t : e["pending"]) {
    EXPECT_EQ(t["cell"]["instance"], 3);
    EXPECT_EQ(t["state"], "pending");
    EXPECT_EQ(t["attempts"], 0);
  }
  ASSERT_EQ(e["stale"].size(), 10u);
  for (const auto& t : e["stale"]) {
    EXPECT_EQ(t["cell"]["model"], "m-b");
    EXPECT_EQ(t["stale"], true);
    EXPECT_EQ(t["state"], "done");
  }
  EXPECT_EQ(e["done"].size(), 22u) << "a stale task is still done";
  EXPECT_EQ(e["all"].size(), 48u);
}

TEST_F(WorkflowApi, AttemptsListEveryTryOfATask) {
  json j = script_json(R"(
local function one(opts) for t in s:tasks(opts) do return t end end
local server = one{ state = "failed", where = { prompt_type = "cot", model = "m-a" } }
local revoked = one{ where = { model = "m-b", prompt_type = "flawed_y", rate = 0.9, instance = 2 } }
local plain = one{ state = "done", where = { model = "m-a", prompt_type = "flawed_y" } }
print(J{ server = s:attempts(server.id), revoked = s:attempts(revoked.id), plain = s:attempts(plain.id),
         unknown = s:attempts("0000000000000000") })
)");
  ASSERT_EQ(j["server"].size(), 3u) << j.dump();
  for (int i = 0; i < 3; ++i) {
    const json& a = j["server"][i];
    EXPECT_EQ(a["n"], i + 1);
    EXPECT_EQ(a["class"], "server_error");
    EXPECT_EQ(a["http_status"], 500);
    EXPECT_EQ(a["key_id"], "k0");
    EXPECT_EQ(a["model_requested"], "m-a");
    EXPECT_EQ(a["run"], 1);
  }
  ASSERT_EQ(j["revoked"].size(), 2u) << j.dump();
  EXPECT_EQ(j["revoked"][0]["class"], "auth_failed");
  EXPECT_EQ(j["revoked"][0]["key_id"], "k1");
  EXPECT_EQ(j["revoked"][0]["http_status"], 401);
  EXPECT_EQ(j["revoked"][1]["class"], "ok");
  EXPECT_EQ(j["revoked"][1]["key_id"], "k0");
  EXPECT_EQ(j["revoked"][1]["model_answered"], "m-b");
  ASSERT_EQ(j["plain"].size(), 1u);
  EXPECT_EQ(j["plain"][0]["class"], "ok");
  EXPECT_GT(j["plain"][0]["completion_tokens"].get<int>(), 0);
  EXPECT_TRUE(j["unknown"].empty()) << j["unknown"].dump();
}

TEST_F(WorkflowApi, EventsFilterByKindAndSince) {
  double between = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  std::this_thread::sleep_for(20ms);
  ASSERT_EQ(shepherd({"run", suite_, "--db", db_}, key_env(2)).exit_code, 4) << "run 2: nothing to send";
  json j = script_json(R"(
local since = tonumber(shepherd.args[3])
print(J{ all = s:events{}, disabled = s:events{ kind = "key_disabled" }, pool = s:events{ kind = "pool" },
         none = s:events{ kind = "model_switch" }, later = s:events{ since = since },
         later_disabled = s:events{ kind = "key_disabled", since = since },
         future = s:events{ since = shepherd.time.now() + 3600 } })
)",
                       {std::to_string(between)});
  ASSERT_EQ(j["disabled"].size(), 1u) << j.dump();
  const json& d = j["disabled"][0];
  EXPECT_EQ(d["kind"], "key_disabled");
  EXPECT_EQ(d["run"], 1);
  EXPECT_EQ(d["detail"]["key"], "k1");
  EXPECT_EQ(d["detail"]["status"], 401);
  EXPECT_LT(d["at"].get<double>(), between);
  ASSERT_GE(j["pool"].size(), 2u) << "each run records its pool";
  std::set<int> pool_runs;
  for (const auto& e : j["pool"]) {
    EXPECT_EQ(e["kind"], "pool");
    pool_runs.insert(e["run"].get<int>());
  }
  EXPECT_EQ(pool_runs, (std::set<int>{1, 2}));
  EXPECT_TRUE(j["none"].empty());
  size_t disabled = 0, pool = 0;
  double previous = 0;
  for (const auto& e : j["all"]) {
    disabled += e["kind"] == "key_disabled";
    pool += e["kind"] == "pool";
    EXPECT_GE(e["at"].get<double>(), previous) << "in time order";
    previous = e["at"].get<double>();
  }
  EXPECT_EQ(disabled, 1u);
  EXPECT_EQ(pool, j["pool"].size());
  ASSERT_FALSE(j["later"].empty());
  EXPECT_LT(j["later"].size(), j["all"].size());
  for (const auto& e : j["later"]) {
    EXPECT_EQ(e["run"], 2) << e.dump();
    EXPECT_GE(e["at"].get<double>(), between);
  }
  EXPECT_TRUE(j["later_disabled"].empty());
  EXPECT_TRUE(j["future"].empty());
}

TEST_F(WorkflowApi, ResetSendsMatchingFailedTasksBackToPendingKeepingHistory) {
  json j = script_json(R"(
local function count(state) local n = 0 for _ in s:tasks{ state = state } do n = n + 1 end return n end
local out = {}
out.other_class = s:reset{ class = { "timeout" } }
out.server = s:reset{ class = { "server_error" } }
out.again = s:reset{ class = { "server_error" } }
out.pending_after_server = count("pending")
out.mb = s:reset{ where = { model = "m-b" }, class = { "client_error", "check_failed" } }
out.pending = count("pending")
out.failed = count("failed")
print(J(out))
)");
  EXPECT_EQ(j["other_class"], 0);
  EXPECT_EQ(j["server"], 2);
  EXPECT_EQ(j["again"], 0) << "already pending";
  EXPECT_EQ(j["pending_after_server"], 2);
  EXPECT_EQ(j["mb"], 6);
  EXPECT_EQ(j["pending"], 8);
  EXPECT_EQ(j["failed"], 2) << "m-a's check failures";
  // History kept: every attempt still there, the reset tasks among them.
  EXPECT_EQ(query(db_, "SELECT count(*) FROM attempts"), std::to_string(kFirstRunRequests));
  EXPECT_EQ(query(db_, "SELECT count(*) FROM attempts a JOIN tasks t ON t.id = a.task "
                       "WHERE t.state = 'pending' AND a.class = 'server_error'"),
            "6");
  json st = status_cli({});
  EXPECT_EQ(st["overall"]["pending"], 8);
  EXPECT_EQ(st["overall"]["failures_by_class"], json({{"check_failed", 2}}));

  // Without a class: every failed task in the slice; a class given as text.
  json k = script_json(R"(print(J{ text = s:reset{ class = "check_failed", where = { rate = 0.9 } }, rest = s:reset{} }))");
  EXPECT_EQ(k["text"], 1);
  EXPECT_EQ(k["rest"], 1);
  EXPECT_EQ(query(db_, "SELECT count(*) FROM tasks WHERE state = 'failed'"), "0");
  EXPECT_EQ(mock_->stats()["requests"], kFirstRunRequests) << "reset sends nothing";
}

TEST_F(WorkflowApi, RunASliceReturnsItsCountsAndExitCode) {
  json j = script_json(R"(
local out = {}
assert(s:reset{ class = { "server_error" } } == 2)
out.cot = s:run{ where = { model = "m-a", prompt_type = "cot" } }
out.mb = s:run{ where = { model = "m-b" } }
local id
for t in s:tasks{ state = "failed", where = { model = "m-b", prompt_type = "flawed_x" }, limit = 1 } do id = t.id end
out.id = id
out.one = s:run{ tasks = { id }, retry_failed = true }
out.stopping = shepherd.stopping()
print(J(out))
)");
  const json& cot = j["cot"];
  EXPECT_EQ(cot["total"], 4);
  EXPECT_EQ(cot["done"], 4);
  EXPECT_EQ(cot["failed"], 0);
  EXPECT_EQ(cot["pending"], 0);
  EXPECT_EQ(cot["finished"], 2) << "the two reset tasks";
  EXPECT_EQ(cot["exit"], 0);
  EXPECT_EQ(cot["interrupted"], false);
  EXPECT_EQ(cot["models_exhausted"], false);
  EXPECT_EQ(cot["run"], 2);
  EXPECT_GE(cot["seconds"].get<double>(), 0.0);
  const json& mb = j["mb"];
  EXPECT_EQ(mb["total"], 16);
  EXPECT_EQ(mb["done"], 10);
  EXPECT_EQ(mb["failed"], 6);
  EXPECT_EQ(mb["pending"], 0);
  EXPECT_EQ(mb["finished"], 0);
  EXPECT_EQ(mb["exit"], 4) << "failed tasks are final without retry_failed";
  EXPECT_EQ(mb["run"], 3);
  const json& one = j["one"];
  EXPECT_EQ(one["total"], 1);
  EXPECT_EQ(one["failed"], 1);
  EXPECT_EQ(one["done"], 0);
  EXPECT_EQ(one["exit"], 4);
  EXPECT_EQ(j["stopping"], false);
  // What went out: the two reset tasks, then the one named task again.
  EXPECT_EQ(mock_->stats()["requests"], kFirstRunRequests + 2 + 1);
  EXPECT_EQ(query(db_, "SELECT attempts FROM tasks WHERE id = '" + j["id"].get<std::string>() + "'"), "2");
  EXPECT_EQ(query(db_, "SELECT count(*) FROM tasks WHERE state = 'failed'"), "8");
  EXPECT_EQ(query(db_, "SELECT count(*) FROM runs"), "4");
  EXPECT_EQ(query(db_, "SELECT count(*) FROM runs WHERE finished_at IS NULL"), "0");
}

TEST_F(WorkflowApi, SelectRetestHonoursThresholdsPriorityAndOverrides) {
  json j = script_json(R"(print(J{
  default = s:select_retest{},
  priority = s:select_retest{ priority_models = { "m-a" } },
  skip = s:select_retest{ skip_models = { "m-b" } },
  batch = s:select_retest{ batch_size = 1 },
  thresholds = s:select_retest{ minimum_completion_rate = 0.7, maximum_failure_rate = 0.9 },
  none = s:select_retest{ minimum_completion_rate = 0.1, maximum_failure_rate = 0.9 },
  by_prompt = s:select_retest{ by = { "model", "prompt_type" } },
  where = s:select_retest{ where = { model = "m-a" } },
})
)");
  // m-b: 10 of 16 done, 6 failed; m-a: 12 done, 4 failed. The least complete first.
  const json& d = j["default"];
  ASSERT_EQ(d.size(), 2u) << d.dump();
  EXPECT_EQ(d[0]["group"], json({{"model", "m-b"}}));
  EXPECT_EQ(d[0]["priority"], 3);
  EXPECT_EQ(d[0]["tasks"], 6);
  EXPECT_TRUE(has(d[0]["reason"], "completion")) << d[0].dump();
  EXPECT_TRUE(has(d[0]["reason"], "failures")) << "37.5% > 30%: " << d[0].dump();
  EXPECT_EQ(d[1]["group"], json({{"model", "m-a"}}));
  EXPECT_EQ(d[1]["tasks"], 4);
  EXPECT_TRUE(has(d[1]["reason"], "completion")) << d[1].dump();
  EXPECT_FALSE(has(d[1]["reason"], "failures")) << "25% is not over 30%: " << d[1].dump();

  const json& p = j["priority"];
  ASSERT_EQ(p.size(), 2u);
  EXPECT_EQ(p[0]["group"]["model"], "m-a");
  EXPECT_EQ(p[0]["priority"], 1);
  EXPECT_TRUE(has(p[0]["reason"], "priority")) << p[0].dump();
  EXPECT_EQ(p[1]["group"]["model"], "m-b");

  ASSERT_EQ(j["skip"].size(), 1u);
  EXPECT_EQ(j["skip"][0]["group"]["model"], "m-a");
  ASSERT_EQ(j["batch"].size(), 1u);
  EXPECT_EQ(j["batch"][0]["group"]["model"], "m-b");
  ASSERT_EQ(j["thresholds"].size(), 1u);
  EXPECT_EQ(j["thresholds"][0]["group"]["model"], "m-b");
  EXPECT_TRUE(j["none"].empty()) << j["none"].dump();

  // By model and prompt type: four groups under 80%; m-b flawed_x (all failed) is severe.
  const json& bp = j["by_prompt"];
  ASSERT_EQ(bp.size(), 4u) << bp.dump();
  EXPECT_EQ(bp[0]["group"], json({{"model", "m-b"}, {"prompt_type", "flawed_x"}}));
  EXPECT_EQ(bp[0]["priority"], 2);
  EXPECT_EQ(bp[0]["tasks"], 4);
  std::set<std::string> picked;
  for (const auto& g : bp) picked.insert(g["group"]["model"].get<std::string>() + "/" + g["group"]["prompt_type"].get<std::string>());
  EXPECT_EQ(picked, (std::set<std::string>{"m-a/baseline", "m-a/cot", "m-b/baseline", "m-b/flawed_x"}));
  ASSERT_EQ(j["where"].size(), 1u);
  EXPECT_EQ(j["where"][0]["group"]["model"], "m-a");

  // The cooldown counts from a group's last maintenance.
  json c = script_json(R"(
s:mark_maintained{ model = "m-a" }
print(J{ cooling = s:select_retest{}, no_cooldown = s:select_retest{ cooldown_hours = 0 } })
)");
  ASSERT_EQ(c["cooling"].size(), 1u) << c.dump();
  EXPECT_EQ(c["cooling"][0]["group"]["model"], "m-b");
  EXPECT_EQ(c["no_cooldown"].size(), 2u);
}

TEST_F(WorkflowApi, ExportWritesTheFileAtomically) {
  std::string jsonl = dir_.write("out.jsonl", "an older export\n");
  struct stat before{};
  ASSERT_EQ(::stat(jsonl.c_str(), &before), 0);
  std::string csv = dir_.file("out.csv");
  json j = script_json(R"(
print(J{ jsonl = s:export{ format = "jsonl", out = shepherd.args[3], where = { model = "m-a" } },
         csv = s:export{ format = "csv", out = shepherd.args[4] } })
)",
                       {jsonl, csv});
  EXPECT_EQ(j["jsonl"], jsonl);
  EXPECT_EQ(j["csv"], csv);
  struct stat after{};
  ASSERT_EQ(::stat(jsonl.c_str(), &after), 0);
  EXPECT_NE(before.st_ino, after.st_ino) << "written beside and renamed over the old file, never rewritten in place";

  // The same records as the command's.
  Result cli = shepherd({"export", suite_, "--db", db_, "--format", "jsonl", "--where", "model=m-a"});
  ASSERT_EQ(cli.exit_code, 0) << cli.err;
  auto rows = parse_jsonl(read_file(jsonl));
  ASSERT_EQ(rows.size(), 16u);
  EXPECT_EQ(rows, parse_jsonl(cli.out));
  for (const auto& row : rows) EXPECT_EQ(row["dims"]["model"], "m-a");
  Result cli_csv = shepherd({"export", suite_, "--db", db_, "--format", "csv"});
  ASSERT_EQ(cli_csv.exit_code, 0) << cli_csv.err;
  std::string text = read_file(csv);
  EXPECT_EQ(text, cli_csv.out);
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), kTasks + 1);
  EXPECT_EQ(text.rfind("task,instance,model,prompt_type,rate,state,result_model,content,attempts,turns,error,latency_ms,usage,stale", 0), 0u);
  for (const auto& e : fs::directory_iterator(dir_.path())) {
    EXPECT_FALSE(has(e.path().filename().string(), ".tmp")) << "left behind: " << e.path();
  }

  // A file that cannot be written is an operational failure: nil, code, message.
  json f = script_json(R"(
local ok, code, message = s:export{ format = "csv", out = shepherd.args[3] }
print(J{ ok = ok == nil, code = code, message = message })
)",
                       {dir_.file("no/such/dir/x.csv")});
  EXPECT_EQ(f["ok"], true);
  EXPECT_EQ(f["code"], "IO_ERROR");
  EXPECT_TRUE(has(f["message"], "x.csv")) << f.dump();
}

TEST_F(WorkflowApi, ReportWritesJsonWithSuiteAndTimeSubstituted) {
  std::string start = utc_stamp(std::time(nullptr));
  json j = script_json(R"(
local path = shepherd.report(shepherd.args[3] .. "/reports/{suite}-{ts}.json",
                             { suite = s:name(), groups = s:status{ by = { "model" } }, note = "daily" })
print(J{ path = path })
)",
                       {dir_.path()});
  std::string end = utc_stamp(std::time(nullptr));
  std::string path = j["path"];
  std::smatch m;
  ASSERT_TRUE(std::regex_match(path, m, std::regex(dir_.path() + "/reports/e2e-(\\d{8}-\\d{6})\\.json"))) << path;
  EXPECT_GE(m[1].str(), start);
  EXPECT_LE(m[1].str(), end);
  json report = json::parse(read_file(path));
  EXPECT_EQ(report["suite"], "e2e");
  EXPECT_EQ(report["note"], "daily");
  ASSERT_EQ(report["groups"].size(), 2u);
  EXPECT_EQ(report["groups"][1]["failed"], 6);
  size_t files = 0;
  for (const auto& e : fs::directory_iterator(dir_.file("reports"))) {
    ++files;
    EXPECT_FALSE(has(e.path().filename().string(), ".tmp")) << e.path();
  }
  EXPECT_EQ(files, 1u);
}

TEST_F(WorkflowApi, MisuseRaisesBadArgumentAndFailuresReturnNilCodeMessage) {
  json j = script_json(R"(
local function raises(f) local ok, err = pcall(f) return ok and "no error" or tostring(err) end
print(J{
  status_type = raises(function() local r = s:status(5) return r end),
  status_by = raises(function() local r = s:status{ by = { "nope" } } return r end),
  status_value = raises(function() local r = s:status{ where = { model = "m-z" } } return r end),
  status_dim = raises(function() local r = s:status{ where = { modle = "m-a" } } return r end),
  tasks_state = raises(function() local r = s:tasks{ state = "bogus" } return r end),
  tasks_limit = raises(function() local r = s:tasks{ limit = -1 } return r end),
  tasks_glob = raises(function() local r = s:tasks{ where = { prompt_type = "nothing_*" } } return r end),
  attempts = raises(function() local r = s:attempts() return r end),
  events = raises(function() local r = s:events(3) return r end),
  reset = raises(function() local r = s:reset{ where = { rate = 0.7 } } return r end),
  run = raises(function() local r = s:run{ where = { model = "zz" } } return r end),
  export = raises(function() local r = s:export{ format = "xml", out = "x" } return r end),
  select = raises(function() local r = s:select_retest{ batch_size = "many" } return r end),
  sleep = raises(function() local r = shepherd.sleep(-1) return r end),
  suite = raises(function() local r = shepherd.suite() return r end),
  report = raises(function() local r = shepherd.report("x.json") return r end),
})
)");
  struct Case {
    const char* field;
    const char* says;
    const char* detail;
  };
  for (const Case& c : std::vector<Case>{{"status_type", "bad argument #1 to 'status'", "table expected"},
                                         {"status_by", "bad argument #1 to 'status'", "nope"},
                                         {"status_value", "bad argument #1 to 'status'", "m-z"},
                                         {"status_dim", "bad argument #1 to 'status'", "'modle'"},
                                         {"tasks_state", "bad argument #1 to 'tasks'", "bogus"},
                                         {"tasks_limit", "bad argument #1 to 'tasks'", "limit"},
                                         {"tasks_glob", "bad argument #1 to 'tasks'", "nothing_*"},
                                         {"attempts", "bad argument #1 to 'attempts'", "string expected"},
                                         {"events", "bad argument #1 to 'events'", "table expected"},
                                         {"reset", "bad argument #1 to 'reset'", "0.7"},
                                         {"run", "bad argument #1 to 'run'", "zz"},
                                         {"export", "bad argument #1 to 'export'", "xml"},
                                         {"select", "bad argument #1 to 'select_retest'", "batch_size"},
                                         {"sleep", "bad argument #1 to 'sleep'", ""},
                                         {"suite", "bad argument #1 to 'suite'", "string expected"},
                                         {"report", "bad argument #2 to 'report'", "table expected"}}) {
    std::string got = j[c.field];
    EXPECT_TRUE(has(got, c.says)) << c.field << ": " << got;
    EXPECT_TRUE(has(got, c.detail)) << c.field << ": " << got;
  }
  EXPECT_EQ(mock_->stats()["requests"], kFirstRunRequests) << "a refused s:run sends nothing";
  EXPECT_EQ(query(db_, "SELECT count(*) FROM runs"), "1") << "nor records a run";

  // Operational failures return nil, code, message and the script goes on.
  json f = script_json(R"(
local a, acode, amessage = shepherd.suite(shepherd.args[3] .. "/missing.lua")
local t = assert(shepherd.suite(shepherd.args[1], { db = shepherd.args[3] .. "/none.db" }))
local b, bcode, bmessage = t:status{}
print(J{ a = a == nil, acode = acode, amessage = amessage, b = b == nil, bcode = bcode, bmessage = bmessage })
)",
                       {dir_.path()});
  EXPECT_EQ(f["a"], true);
  EXPECT_EQ(f["acode"], "SUITE_NOT_FOUND");
  EXPECT_TRUE(has(f["amessage"], "missing.lua")) << f.dump();
  EXPECT_EQ(f["b"], true);
  EXPECT_EQ(f["bcode"], "STORE_OPEN_FAILED");
  EXPECT_FALSE(fs::exists(dir_.file("none.db"))) << "reading creates no store";

  // An unknown where value, uncaught, ends the script: exit 1 with the message.
  Result r = script("s:status{ where = { model = 'm-z' } }\nreturn 0\n");
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_TRUE(has(r.err, "SCRIPT_ERROR")) << r.err;
  EXPECT_TRUE(has(r.err, "bad argument #1 to 'status'")) << r.err;
  EXPECT_TRUE(has(r.err, "m-z")) << r.err;
}

TEST_F(WorkflowApi, IncompleteListsEveryTaskNotDone) {
  Result human = shepherd({"incomplete", suite_, "--db", db_});
  ASSERT_EQ(human.exit_code, 0) << human.err;
  std::vector<std::string> lines;
  std::istringstream in(human.out);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) lines.push_back(line);
  ASSERT_EQ(lines.size(), 10u) << human.out;
  std::map<std::string, int> classes;
  for (const auto& line : lines) {
    EXPECT_TRUE(has(line, "failed")) << line;
    for (const char* cls : {"client_error", "check_failed", "server_error"}) classes[cls] += has(line, cls);
  }
  EXPECT_EQ(classes, (std::map<std::string, int>{{"check_failed", 4}, {"client_error", 4}, {"server_error", 2}}));
  EXPECT_TRUE(has(human.err, "10 tasks not done")) << human.err;

  Result js = shepherd({"incomplete", suite_, "--db", db_, "--json"});
  ASSERT_EQ(js.exit_code, 0) << js.err;
  json j = json::parse(js.out);
  EXPECT_EQ(j["suite"], "e2e");
  EXPECT_EQ(j["count"], 10);
  ASSERT_EQ(j["tasks"].size(), 10u);
  std::set<std::string> ids;
  for (const auto& t : j["tasks"]) {
    for (const char* f : {"task", "cell", "state", "attempts", "class", "error"}) EXPECT_TRUE(t.contains(f)) << f << " " << t.dump();
    EXPECT_EQ(t["state"], "failed");
    EXPECT_FALSE(t["error"]["code"].get<std::string>().empty());
    ids.insert(t["task"].get<std::string>());
  }
  std::set<std::string> failed;
  for (const auto& row : query_rows(db_, "SELECT id FROM tasks WHERE state = 'failed'")) failed.insert(row[0]);
  EXPECT_EQ(ids, failed);

  Result by = shepherd({"incomplete", suite_, "--db", db_, "--by", "model", "--json"});
  ASSERT_EQ(by.exit_code, 0) << by.err;
  json b = json::parse(by.out);
  EXPECT_EQ(b["by"], json({"model"}));
  ASSERT_EQ(b["groups"].size(), 2u) << b.dump();
  EXPECT_EQ(b["groups"][0]["group"], json({{"model", "m-a"}}));
  EXPECT_EQ(b["groups"][0]["incomplete"], 4);
  EXPECT_EQ(b["groups"][0]["failed"], 4);
  EXPECT_EQ(b["groups"][0]["pending"], 0);
  EXPECT_EQ(b["groups"][0]["total"], 16);
  EXPECT_EQ(b["groups"][0]["failures"], json({{"check_failed", 2}, {"server_error", 2}}));
  EXPECT_EQ(b["groups"][1]["incomplete"], 6);
  EXPECT_EQ(b["groups"][1]["failures"], json({{"check_failed", 2}, {"client_error", 4}}));

  Result by_human = shepherd({"incomplete", suite_, "--db", db_, "--by", "model,prompt_type"});
  ASSERT_EQ(by_human.exit_code, 0) << by_human.err;
  EXPECT_EQ(std::count(by_human.out.begin(), by_human.out.end(), '\n'), 4) << "only groups with something not done:\n"
                                                                           << by_human.out;
  EXPECT_TRUE(has(by_human.out, "client_error=4")) << by_human.out;

  Result where = shepherd({"incomplete", suite_, "--db", db_, "--where", "model=m-b", "--json"});
  ASSERT_EQ(where.exit_code, 0) << where.err;
  json w = json::parse(where.out);
  EXPECT_EQ(w["count"], 6);
  for (const auto& t : w["tasks"]) EXPECT_EQ(t["cell"]["model"], "m-b");
  Result where_by = shepherd({"incomplete", suite_, "--db", db_, "--where", "prompt_type=flawed_*", "--where", "model=m-b",
                              "--by", "prompt_type", "--json"});
  ASSERT_EQ(where_by.exit_code, 0) << where_by.err;
  json wb = json::parse(where_by.out);
  ASSERT_EQ(wb["groups"].size(), 1u) << wb.dump();
  EXPECT_EQ(wb["groups"][0]["group"], json({{"prompt_type", "flawed_x"}}));
  EXPECT_EQ(wb["groups"][0]["incomplete"], 4);

  // Pending and stale tasks are incomplete too.
  Result edited = shepherd({"incomplete", edited_suite(), "--db", db_, "--json"});
  ASSERT_EQ(edited.exit_code, 0) << edited.err;
  json e = json::parse(edited.out);
  EXPECT_EQ(e["count"], 10 + 16 + 10);
  std::map<std::string, int> states;
  for (const auto& t : e["tasks"]) ++states[t["state"].get<std::string>()];
  EXPECT_EQ(states, (std::map<std::string, int>{{"failed", 10}, {"pending", 16}, {"stale", 10}}));

  // A typo in --where lists nothing and names it.
  Result typo = shepherd({"incomplete", suite_, "--db", db_, "--where", "modle=m-a"});
  EXPECT_NE(typo.exit_code, 0);
  EXPECT_TRUE(has(typo.err, "'modle'")) << typo.err;
  EXPECT_TRUE(typo.out.empty()) << typo.out;
}

// A store held by another `shepherd run`: s:run returns nil, STORE_LOCKED
// (the script goes on), and reading still works.
TEST(Workflow, RunReturnsStoreLockedWhileAnotherRunHoldsTheStore) {
  Mock mock(json{{"latency", 5000}});
  TempDir dir;
  SuiteSpec spec = suite_at(mock.base_url());
  spec.timeouts = "{ connect_ms = 1000, total_ms = 20000 }";
  std::string suite = dir.write("s.lua", spec.text());
  std::string db = dir.file("s.db");
  Process run({SHEPHERD_BIN, "run", suite, "--db", db, "--grace-ms", "0"}, key_env(1));
  // The run holds the lock once its first request is on the wire (held 5 s by the mock).
  ASSERT_TRUE(wait_until([&] { return mock.stats()["in_flight"].get<int>() >= 1; }, 10s)) << run.err_so_far();
  int sent = mock.stats()["requests"];
  std::string file = dir.write("w.lua", std::string(kPrelude) + R"(
local r, code, message = s:run{}
local groups = s:status{}
print(J{ r = r == nil, code = code, message = message, total = groups[1].total })
return 0
)");
  Result r = shepherd({"script", file, suite, db}, key_env(1), 10s);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  json j = last_json(r);
  EXPECT_EQ(j["r"], true);
  EXPECT_EQ(j["code"], "STORE_LOCKED");
  EXPECT_FALSE(j["message"].get<std::string>().empty());
  EXPECT_EQ(j["total"], 3);
  EXPECT_EQ(mock.stats()["requests"], sent) << "the refused run sent nothing";
  run.signal(SIGINT);
  EXPECT_EQ(run.wait(10s).exit_code, 3);
}

// shepherd.sleep returns false at once when the process is asked to stop,
// and the script's code after it runs and sees shepherd.stopping().
class WorkflowSignal : public ::testing::TestWithParam<int> {};

TEST_P(WorkflowSignal, SleepReturnsEarlyAndTheScriptFinishes) {
  TempDir dir;
  std::string file = dir.write("sleepy.lua", R"(
print("before", shepherd.stopping(), shepherd.sleep(20))
io.stdout:flush()
local t0 = shepherd.time.now()
local slept = shepherd.sleep(30000)
print("after", slept, shepherd.stopping(), shepherd.sleep(10000), string.format("%.3f", shepherd.time.now() - t0))
return 5
)");
  Process p({SHEPHERD_BIN, "script", file});
  ASSERT_TRUE(wait_until([&] { return has(p.out_so_far(), "before"); }, 10s)) << p.err_so_far();
  std::this_thread::sleep_for(200ms);
  ASSERT_TRUE(p.running()) << "asleep";
  auto t0 = std::chrono::steady_clock::now();
  p.signal(GetParam());
  Result r = p.wait(10s);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);
  EXPECT_EQ(r.exit_code, 5) << "the code after the sleep ran and returned: " << r.err;
  EXPECT_TRUE(has(r.out, "before\tfalse\ttrue")) << r.out;
  EXPECT_TRUE(has(r.out, "after\tfalse\ttrue\tfalse\t")) << "a later sleep returns at once too: " << r.out;
}

INSTANTIATE_TEST_SUITE_P(Signals, WorkflowSignal, ::testing::Values(SIGTERM, SIGINT),
                         [](const auto& info) { return info.param == SIGTERM ? "Sigterm" : "Sigint"; });

TEST(Workflow, ArgsPassThroughAndTheReturnedNumberIsTheExitCode) {
  TempDir dir;
  std::string file = dir.write("args.lua", R"(
print(shepherd.json.encode(shepherd.args))
return tonumber(shepherd.args[1])
)");
  Result r = shepherd({"script", file, "7", "two words", "--where", "model=m-a", "--json", "-v"});
  EXPECT_EQ(r.exit_code, 7) << r.err;
  EXPECT_EQ(last_json(r), json({"7", "two words", "--where", "model=m-a", "--json", "-v"}));
  EXPECT_EQ(shepherd({"script", file, "0"}).exit_code, 0);
  EXPECT_EQ(shepherd({"script", file, "3"}).exit_code, 3);

  std::string none = dir.write("none.lua", "local x = 1\n");
  Result n = shepherd({"script", none});
  EXPECT_EQ(n.exit_code, 0) << n.err;
  Result empty_args = shepherd({"script", file});
  EXPECT_EQ(empty_args.exit_code, 0) << "no number returned: " << empty_args.err;
  EXPECT_EQ(norm(last_json(empty_args)), json::object());
}

TEST(Workflow, SyntaxErrorExitsTwoWithFileAndLine) {
  TempDir dir;
  std::string file = dir.write("broken.lua", "local a = 1\nlocal b = 2\nlocal c = = 3\nprint('ran')\n");
  Result r = shepherd({"script", file});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_TRUE(has(r.err, "SCRIPT_SYNTAX")) << r.err;
  EXPECT_TRUE(has(r.err, "broken.lua:3")) << r.err;
  EXPECT_FALSE(has(r.out, "ran"));

  Result missing = shepherd({"script", dir.file("nowhere.lua")});
  EXPECT_EQ(missing.exit_code, 2) << missing.err;
  EXPECT_TRUE(has(missing.err, "SCRIPT_NOT_FOUND")) << missing.err;
  EXPECT_TRUE(has(missing.err, "nowhere.lua")) << missing.err;
}

TEST(Workflow, RuntimeErrorExitsOneWithTraceback) {
  TempDir dir;
  std::string file = dir.write("oops.lua",
                               "local function inner() error('the workflow broke') end\n"
                               "local function outer() inner(); return 1 end\n"
                               "print('started')\n"
                               "outer()\n"
                               "print('never')\n");
  Result r = shepherd({"script", file});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_TRUE(has(r.err, "SCRIPT_ERROR")) << r.err;
  EXPECT_TRUE(has(r.err, "oops.lua:1: the workflow broke")) << r.err;
  EXPECT_TRUE(has(r.err, "stack traceback")) << r.err;
  EXPECT_TRUE(has(r.err, "oops.lua:2")) << "the caller's frame: " << r.err;
  EXPECT_TRUE(has(r.err, "oops.lua:4")) << "the main chunk's line: " << r.err;
  EXPECT_TRUE(has(r.out, "started"));
  EXPECT_FALSE(has(r.out, "never"));
}
