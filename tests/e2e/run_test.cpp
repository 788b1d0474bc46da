// The demo suite end to end: results, status, export, a re-run that sends
// nothing, logs per run, and no key value anywhere.
#include <filesystem>
#include <regex>

#include <gtest/gtest.h>

#include "harness.h"

using namespace e2e;
namespace fs = std::filesystem;

namespace {

// The README's demo suite, pointed at this test's mock.
std::string demo_suite(const Mock& mock) {
  std::string text = read_file(std::string(SHEPHERD_EXAMPLES_DIR) + "/demo.lua");
  return std::regex_replace(text, std::regex("http://127\\.0\\.0\\.1:8089/v1"), mock.base_url());
}

std::map<std::string, std::string> demo_env() {
  return {{"DEMO_KEY_0", "sk-demo-secret-zero-0000"}, {"DEMO_KEY_1", "sk-demo-secret-one-1111"}};
}

}  // namespace

TEST(Run, DemoSuiteRunsResumesAndExports) {
  Mock mock(nlohmann::json{{"latency", 20}, {"keys", {"sk-demo-secret-zero-0000", "sk-demo-secret-one-1111"}}});
  TempDir dir;
  std::string suite = dir.write("demo.lua", demo_suite(mock));

  Result r = shepherd({"run", suite}, demo_env());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(mock.stats()["requests"], 36);
  EXPECT_EQ(mock.stats()["by_outcome"]["ok"], 36);
  ASSERT_TRUE(fs::exists(dir.file("demo.db"))) << "the store defaults to <name>.db beside the suite";

  // Resume is the default: a finished suite sends nothing.
  Result again = shepherd({"run", suite}, demo_env());
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(mock.stats()["requests"], 36);

  Result exp = shepherd({"export", suite, "--format", "jsonl"});
  ASSERT_EQ(exp.exit_code, 0) << exp.err;
  auto rows = parse_jsonl(exp.out);
  ASSERT_EQ(rows.size(), 36u);
  std::set<std::string> ids;
  for (const auto& row : rows) {
    for (const char* f : {"task", "dims", "state", "model", "content", "attempts", "error", "latency_ms", "usage"})
      EXPECT_TRUE(row.contains(f)) << f;
    EXPECT_EQ(row["state"], "done");
    EXPECT_EQ(row["model"], row["dims"]["model"]);
    EXPECT_EQ(row["attempts"], 1);
    EXPECT_TRUE(row["error"].is_null());
    EXPECT_TRUE(row["content"].get<std::string>().find("task " + row["dims"]["model"].get<std::string>()) != std::string::npos);
    EXPECT_GT(row["usage"]["total_tokens"].get<int>(), 0);
    EXPECT_GE(row["latency_ms"].get<double>(), 15.0);
    ids.insert(row["task"].get<std::string>());
  }
  EXPECT_EQ(ids.size(), 36u);

  Result csv = shepherd({"export", suite, "--format", "csv", "--out", dir.file("out.csv")});
  ASSERT_EQ(csv.exit_code, 0) << csv.err;
  std::string text = read_file(dir.file("out.csv"));
  EXPECT_EQ(text.rfind("task,instance,model,prompt_type,state,result_model,content,attempts,turns,error,latency_ms,usage,stale\r\n", 0), 0u);
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 37);

  Result st = shepherd({"status", suite, "--by", "model,prompt_type", "--json"});
  ASSERT_EQ(st.exit_code, 0) << st.err;
  auto status = nlohmann::json::parse(st.out);
  EXPECT_EQ(status["overall"]["total"], 36);
  EXPECT_EQ(status["overall"]["done"], 36);
  EXPECT_EQ(status["groups"].size(), 12u);
  EXPECT_EQ(status["groups"][0]["total"], 3);
  EXPECT_DOUBLE_EQ(status["groups"][0]["completion_rate"].get<double>(), 1.0);

  // One log per run, never overwritten, named by suite, time and run id.
  std::vector<std::string> logs;
  for (const auto& e : fs::directory_iterator(dir.file("logs"))) logs.push_back(e.path().filename().string());
  ASSERT_EQ(logs.size(), 2u);
  for (const auto& name : logs) EXPECT_TRUE(std::regex_match(name, std::regex("demo-\\d{8}-\\d{6}-run[12]\\.log"))) << name;

  // Key values never reach a log, the store, an export or the output.
  std::string everything = r.out + r.err + again.out + again.err + exp.out + text + st.out;
  for (const auto& e : fs::directory_iterator(dir.path())) {
    if (e.is_regular_file()) everything += read_file(e.path().string());
  }
  for (const auto& e : fs::directory_iterator(dir.file("logs"))) everything += read_file(e.path().string());
  EXPECT_EQ(everything.find("sk-demo-secret"), std::string::npos);
  EXPECT_NE(everything.find("k0"), std::string::npos);
}

TEST(Run, TaskIdsAreStableAcrossKeyOrder) {
  Mock mock;
  TempDir dir;
  SuiteSpec a;
  a.base_url = mock.base_url();
  a.matrix = "{ model = { 'm-a' }, prompt_type = { 'x', 'y' }, instance = { 1, 2 } }";
  SuiteSpec b = a;
  b.matrix = "{ instance = { 1, 2 }, prompt_type = { 'x', 'y' }, model = { 'm-a' } }";
  std::string sa = dir.write("a.lua", a.text());
  std::string sb = dir.write("b.lua", b.text());
  ASSERT_EQ(shepherd({"run", sa, "--db", dir.file("a.db")}, key_env(1)).exit_code, 0);
  ASSERT_EQ(shepherd({"run", sb, "--db", dir.file("a.db")}, key_env(1)).exit_code, 0);
  EXPECT_EQ(mock.stats()["requests"], 4) << "the reordered suite is the same tasks: nothing is re-requested";
  EXPECT_EQ(query(dir.file("a.db"), "SELECT count(*) FROM tasks"), "4");
}

TEST(Run, SuiteFilesChecksAndPolicyOverridesResolveBesideTheSuite) {
  Mock mock(nlohmann::json{{"faults", {{"error_500", 1.0}, {"first_attempt_only", true}}}});
  TempDir dir;
  std::filesystem::create_directories(dir.file("sub"));
  dir.write("sub/prompts.lua", "return { greet = function(n) return 'hello ' .. n end }\n");
  // A retry policy of the suite's own: give up at once, with its own code.
  dir.write("sub/give_up.lua", "return { decide = function(ctx) return { action = 'fail', code = 'GAVE_UP_' .. ctx.class } end }\n");
  SuiteSpec s = suite_at(mock.base_url());
  s.matrix = "{ model = { 'm-a' }, instance = { 1, 2, 3 } }";
  s.extra = R"(  policies = { retry = "give_up.lua" },
  check = function(cell, response)
    if cell.instance == 2 then return false, "instance 2 is never right" end
    return response.content:find("hello", 1, true) ~= nil, "no greeting"
  end,)";
  std::string text = s.text();
  // request() uses the module beside the suite; instance 3 returns a non-table.
  text.replace(text.find("  request = function(cell)\n"), 26,
               "  request = function(cell)\n    if cell.instance == 3 then return 'oops' end\n"
               "    local prompts = require('prompts')\n"
               "    do return { messages = { { role = 'user', content = prompts.greet(cell.instance) } } } end\n");
  std::string suite = dir.write("sub/s.lua", text);
  Result r = shepherd({"run", suite}, key_env(1));
  ASSERT_EQ(r.exit_code, 4) << r.err;
  std::map<int, nlohmann::json> by_instance;
  for (auto& row : parse_jsonl(shepherd({"export", suite, "--format", "jsonl"}).out))
    by_instance[row["dims"]["instance"].get<int>()] = row;
  // Every first attempt is a 500, and the suite's policy fails it at once.
  EXPECT_EQ(by_instance[1]["state"], "failed");
  EXPECT_EQ(by_instance[1]["error"]["code"], "GAVE_UP_server_error");
  EXPECT_EQ(by_instance[3]["error"]["code"], "REQUEST_BUILD_FAILED");
  EXPECT_NE(by_instance[3]["error"]["message"].get<std::string>().find("must return a table"), std::string::npos);
  EXPECT_EQ(mock.stats()["requests"], 2) << "instance 3 never reached the network";

  // Without the 500s, the check decides: 1 passes, 2 is check_failed (not retried by default).
  Mock clean;
  std::string text2 = std::regex_replace(read_file(suite), std::regex(mock.base_url()), clean.base_url());
  text2 = std::regex_replace(text2, std::regex("  policies = \\{ retry = \"give_up.lua\" \\},\n"), "");
  std::string suite2 = dir.write("sub/s2.lua", std::regex_replace(text2, std::regex("name = \"e2e\""), "name = \"e2e2\""));
  ASSERT_EQ(shepherd({"run", suite2}, key_env(1)).exit_code, 4);
  by_instance.clear();
  for (auto& row : parse_jsonl(shepherd({"export", suite2, "--format", "jsonl"}).out))
    by_instance[row["dims"]["instance"].get<int>()] = row;
  EXPECT_EQ(by_instance[1]["state"], "done");
  EXPECT_EQ(by_instance[1]["content"], "mock answer: hello 1");
  EXPECT_EQ(by_instance[2]["state"], "failed");
  EXPECT_EQ(by_instance[2]["error"]["code"], "CHECK_FAILED");
  EXPECT_NE(by_instance[2]["error"]["message"].get<std::string>().find("instance 2 is never right"), std::string::npos);
}

TEST(Run, BadTasksFailAloneAndTheRunGoesOn) {
  Mock mock(nlohmann::json{{"quota", {{"m-a", 1}}}});
  TempDir dir;
  dir.write("switch.lua", "return { decide = function(ctx) return { action = 'switch_model' } end }\n");
  SuiteSpec s = suite_at(mock.base_url());
  s.matrix = "{ model = { 'm-a' }, instance = { 1, 2, 3, 4 } }";
  s.extra = "  policies = { retry = 'switch.lua' },";
  std::string text = s.text();
  // Instance 1: a prompt that is not UTF-8 never leaves the host.
  text.replace(text.find("  request = function(cell)\n"), 26,
               "  request = function(cell)\n"
               "    if cell.instance == 1 then return { messages = { { role = 'user', content = '\\255\\254' } } } end\n");
  std::string suite = dir.write("s.lua", text);
  Result r = shepherd({"run", suite}, key_env(1), std::chrono::seconds(20));
  ASSERT_EQ(r.exit_code, 4) << r.err;
  std::map<int, nlohmann::json> rows;
  for (auto& row : parse_jsonl(shepherd({"export", suite, "--format", "jsonl"}).out))
    rows[row["dims"]["instance"].get<int>()] = row;
  EXPECT_EQ(rows[1]["error"]["code"], "REQUEST_BUILD_FAILED");
  EXPECT_NE(rows[1]["error"]["message"].get<std::string>().find("UTF-8"), std::string::npos);
  // The model is a dimension: a policy asking to switch it fails the task, once.
  int done = 0, quota = 0;
  for (int i = 2; i <= 4; ++i) {
    if (rows[i]["state"] == "done") ++done;
    if (rows[i]["error"].is_object() && rows[i]["error"]["code"] == "QUOTA_EXHAUSTED") {
      ++quota;
      EXPECT_EQ(rows[i]["attempts"], 1);
    }
  }
  EXPECT_EQ(done, 1);
  EXPECT_EQ(quota, 2);
  EXPECT_EQ(mock.stats()["requests"], 3);
}

TEST(Run, AMatrixThatChangesBetweenLoadsIsRefused) {
  TempDir dir;
  SuiteSpec s = suite_at("http://127.0.0.1:9/v1");
  // Each load of the file reads and bumps a counter: the matrix is never the same twice.
  s.matrix = "(function() local f = io.open(shepherd.suite_dir .. '/n', 'r'); local n = f and tonumber(f:read('*a')) or 0;"
             " if f then f:close() end; f = io.open(shepherd.suite_dir .. '/n', 'w'); f:write(n + 1); f:close();"
             " return { model = { 'm-a' }, instance = { n } } end)()";
  std::string suite = dir.write("s.lua", s.text());
  Result r = shepherd({"run", suite, "--json"}, key_env(1));
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["error"]["code"], "SUITE_INVALID");
  EXPECT_EQ(j["error"]["details"]["field"], "matrix.instance");
}

TEST(Run, StatusAndExportFollowTheSuiteAsItIsNow) {
  Mock mock;
  TempDir dir;
  SuiteSpec s = suite_at(mock.base_url());
  s.matrix = "{ model = { 'm-a' }, instance = { 1, 2, 3 } }";
  std::string suite = dir.write("s.lua", s.text());
  ASSERT_EQ(shepherd({"run", suite}, key_env(1)).exit_code, 0);
  s.matrix = "{ model = { 'm-a' }, instance = { 2, 3, 4 } }";  // 1 leaves, 4 arrives
  dir.write("s.lua", s.text());
  auto st = nlohmann::json::parse(shepherd({"status", suite, "--json"}).out);
  EXPECT_EQ(st["overall"]["total"], 3);
  EXPECT_EQ(st["overall"]["done"], 2);
  EXPECT_EQ(st["overall"]["pending"], 1);
  ASSERT_EQ(shepherd({"run", suite}, key_env(1)).exit_code, 0);
  EXPECT_EQ(mock.stats()["requests"], 4) << "only the new cell was sent";
  auto rows = parse_jsonl(shepherd({"export", suite, "--format", "jsonl"}).out);
  ASSERT_EQ(rows.size(), 3u);
  for (const auto& row : rows) EXPECT_NE(row["dims"]["instance"], 1);
  EXPECT_EQ(query(dir.file("e2e.db"), "SELECT count(*) FROM tasks"), "4") << "results are never deleted";
}
