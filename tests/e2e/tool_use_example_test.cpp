// examples/tool_use_eval.lua end to end: the users' workflow evaluation runs
// against the mock with its shipped scenario (tool calls, faults), every
// conversation ends, transcripts are well formed, and a model stuck calling
// the same tool is stopped as a loop.
#include <regex>
#include <set>

#include <gtest/gtest.h>

#include "harness.h"

using namespace e2e;

namespace {

std::string example_suite(const Mock& mock) {
  std::string text = read_file(std::string(SHEPHERD_EXAMPLES_DIR) + "/tool_use_eval.lua");
  return std::regex_replace(text, std::regex("http://127\\.0\\.0\\.1:8089/v1"), mock.base_url());
}

nlohmann::json example_scenario() {
  return nlohmann::json::parse(read_file(std::string(SHEPHERD_EXAMPLES_DIR) + "/tool_use_mock.json"));
}

std::map<std::string, std::string> demo_env() { return {{"DEMO_KEY_0", "k0-value"}, {"DEMO_KEY_1", "k1-value"}}; }

}  // namespace

TEST(ToolUseExample, EveryConversationEndsWithAWellFormedTranscript) {
  Mock mock(example_scenario());
  TempDir dir;
  std::string suite = dir.write("tool_use_eval.lua", example_suite(mock));
  Result run = shepherd({"run", suite, "--json"}, demo_env(), std::chrono::minutes(3));
  ASSERT_TRUE(run.exit_code == 0 || run.exit_code == 4) << run.err;
  auto verdict = nlohmann::json::parse(run.out);
  EXPECT_EQ(verdict["total"], 720);
  EXPECT_EQ(verdict["pending"], 0);
  EXPECT_GT(verdict["turns_sent"].get<int>(), 720);

  Result st = shepherd({"status", suite, "--by", "prompt_type", "--json"});
  ASSERT_EQ(st.exit_code, 0) << st.err;
  auto status = nlohmann::json::parse(st.out);
  EXPECT_EQ(status["groups"].size(), 6u);
  const auto& overall = status["overall"];
  EXPECT_LE(overall["turns"]["max"].get<int>(), 10);
  EXPECT_GT(overall["turns"]["mean"].get<double>(), 1.0);
  // The mock's faults are retried away: what fails, fails the score.
  for (const auto& [cls, n] : overall["failures_by_class"].items()) EXPECT_EQ(cls, "check_failed") << n;
  EXPECT_GT(overall["done"].get<int>(), 600);

  Result ex = shepherd({"export", suite, "--format", "jsonl", "--transcripts"});
  ASSERT_EQ(ex.exit_code, 0) << ex.err;
  auto rows = parse_jsonl(ex.out);
  ASSERT_EQ(rows.size(), 720u);
  for (const auto& row : rows) {
    const auto& t = row["transcript"];
    ASSERT_TRUE(t.is_array() && t.size() >= 3) << row.dump();
    EXPECT_EQ(t[0]["role"], "system");
    EXPECT_EQ(t[1]["role"], "user");
    std::set<std::string> called;
    int assistants = 0;
    for (const auto& m : t) {
      if (m["role"] == "assistant") {
        ++assistants;
        for (const auto& call : m.value("tool_calls", nlohmann::json::array())) called.insert(call["id"]);
      }
      if (m["role"] == "tool") {
        EXPECT_TRUE(called.count(m["tool_call_id"])) << "a tool result answers a call made before";
      }
    }
    EXPECT_EQ(assistants, row["turns"].get<int>());
    EXPECT_EQ(t.back()["role"], "assistant");
    if (row["state"] == "done") {
      EXPECT_FALSE(t.back().contains("tool_calls"));
      auto result = nlohmann::json::parse(row["content"].get<std::string>());
      EXPECT_EQ(result["turns"], row["turns"]);
      EXPECT_EQ(result["answer"], t.back()["content"]);
    }
  }
}

TEST(ToolUseExample, AModelRepeatingOneToolCallIsStoppedAsALoop) {
  // Every answer to instance 1's basic task is the same search call.
  nlohmann::json call = {{"id", "call_same"}, {"type", "function"},
                         {"function", {{"name", "search"}, {"arguments", "{\"query\":\"quarterly report\"}"}}}};
  nlohmann::json body = {{"id", "chatcmpl-loop"}, {"object", "chat.completion"}, {"created", 1}, {"model", "m-a"},
                         {"choices", {{{"index", 0}, {"finish_reason", "tool_calls"},
                                       {"message", {{"role", "assistant"}, {"content", nullptr}, {"tool_calls", {call}}}}}}},
                         {"usage", {{"prompt_tokens", 10}, {"completion_tokens", 5}, {"total_tokens", 15}}}};
  nlohmann::json scenario = example_scenario();
  scenario["faults"] = nlohmann::json::object();
  scenario["canned"] = {{{"when", "Task 1: Find the quarterly report"}, {"body_json", body}}};
  Mock mock(scenario);
  TempDir dir;
  std::string text = std::regex_replace(example_suite(mock), std::regex("model = \\{ \"m-a\", \"m-b\" \\}"),
                                        "model = { \"m-a\" }");
  std::string suite = dir.write("tool_use_eval.lua", text);
  Result run = shepherd({"run", suite}, demo_env(), std::chrono::minutes(3));
  ASSERT_EQ(run.exit_code, 4) << run.err;
  auto rows = query_rows(dir.file("tool_use_eval.db"),
                         "SELECT error_code, error_message, turns FROM tasks "
                         "WHERE json_extract(dims, '$.instance') = 1 AND json_extract(dims, '$.task_type') = 'basic_task'");
  ASSERT_EQ(rows.size(), 24u);  // 6 prompt types x 4 tool success rates
  for (const auto& r : rows) {
    EXPECT_EQ(r[0], "CHECK_FAILED");
    EXPECT_EQ(r[1], "loop");
    EXPECT_EQ(r[2], "3");  // stopped at the third identical call
  }
}
