// A suite's outputs (one file per done task, written atomically after the
// result is committed), `run --results` (a live JSON line per finished task),
// `export --format files` (outputs again from the store, without a request),
// `export --format openai-batch` and the CSV's column per dimension.
#include <sys/stat.h>

#include <csignal>
#include <filesystem>
#include <set>

#include <gtest/gtest.h>

#include "harness.h"

using namespace e2e;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

// instance=3 is answered 400 (a request error: the task fails at once).
json failing_three() {
  json bad = {{"error", {{"message", "bad request for three"}, {"type", "invalid_request_error"}}}};
  return json{{"canned", json::array({{{"when", "instance=3 "}, {"status", 400}, {"body_json", bad}}})}};
}

SuiteSpec outputs_suite(const Mock& mock, const std::string& outputs, int instances = 4) {
  SuiteSpec s = suite_at(mock.base_url());
  std::string list;
  for (int i = 1; i <= instances; ++i) list += (i > 1 ? ", " : "") + std::to_string(i);
  s.matrix = "{ model = { \"m-a\" }, instance = { " + list + " } }";
  s.extra = "  outputs = " + outputs + ",";
  // The prompt ends with a space, so "instance=3 " names one cell only.
  s.request =
      "function(cell) return { model = cell.model, max_tokens = 16, messages = { { role = 'user', content = "
      "'instance=' .. cell.instance .. ' model=' .. cell.model .. ' ' } } } end";
  return s;
}

const char* const kNestedPath =
    "{ path = function(cell) return 'generated/' .. cell.model .. '/deep/' .. cell.instance .. '.txt' end }";

// Every regular file under `dir`, relative path -> text.
std::map<std::string, std::string> files_under(const std::string& dir) {
  std::map<std::string, std::string> out;
  if (!fs::exists(dir)) return out;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) out[fs::relative(e.path(), dir).string()] = read_file(e.path().string());
  return out;
}

std::map<int, json> export_by_instance(const std::string& suite) {
  Result r = shepherd({"export", suite, "--format", "jsonl"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::map<int, json> out;
  for (auto& row : parse_jsonl(r.out)) out[row["dims"]["instance"].get<int>()] = row;
  return out;
}

}  // namespace

TEST(Outputs, DoneTasksWriteTheirFilesNestedAndFailedTasksWriteNothing) {
  Mock mock(failing_three());
  TempDir dir;
  std::string suite = dir.write("s.lua", outputs_suite(mock, kNestedPath).text());
  Result r = shepherd({"run", suite}, key_env(1));
  ASSERT_EQ(r.exit_code, 4) << r.err;  // instance 3 failed

  auto rows = export_by_instance(suite);
  auto files = files_under(dir.file("generated"));
  ASSERT_EQ(files.size(), 3u) << "one file per done task, none for the failed one";
  for (int i : {1, 2, 4}) {
    std::string name = "m-a/deep/" + std::to_string(i) + ".txt";
    ASSERT_TRUE(files.count(name)) << name;
    EXPECT_EQ(files[name], rows[i]["content"].get<std::string>()) << "the default text is the answer's content";
    EXPECT_FALSE(files[name].empty());
  }
  EXPECT_EQ(rows[3]["state"], "failed");
  EXPECT_FALSE(fs::exists(dir.file("generated/m-a/deep/3.txt")));
}

TEST(Outputs, WriteGivesTheTextAndARaisingPathIsRecordedNotFatal) {
  Mock mock;
  TempDir dir;
  std::string outputs =
      "{ path = function(cell)\n"
      "    if cell.instance == 2 then error('no path for two') end\n"
      "    return 'out/' .. cell.instance .. '.json'\n"
      "  end,\n"
      "  write = function(cell, result)\n"
      "    return shepherd.json.encode({ instance = cell.instance, model = result.model, answer = result.content,\n"
      "                                   task = result.task, tokens = result.usage and result.usage.total_tokens })\n"
      "  end }";
  std::string suite = dir.write("s.lua", outputs_suite(mock, outputs, 3).text());
  Result r = shepherd({"run", suite}, key_env(1));
  ASSERT_EQ(r.exit_code, 0) << "a failed output never fails its task: " << r.err;

  auto rows = export_by_instance(suite);
  for (int i : {1, 3}) {
    std::string path = dir.file("out/" + std::to_string(i) + ".json");
    ASSERT_TRUE(fs::exists(path)) << path;
    json j = json::parse(read_file(path));
    EXPECT_EQ(j["instance"], i);
    EXPECT_EQ(j["model"], "m-a");
    EXPECT_EQ(j["answer"], rows[i]["content"]);
    EXPECT_EQ(j["task"], rows[i]["task"]);
    EXPECT_GT(j["tokens"].get<int>(), 0);
  }
  EXPECT_FALSE(fs::exists(dir.file("out/2.json")));
  EXPECT_EQ(rows[2]["state"], "done") << "the task's answer is kept";
  EXPECT_EQ(query(dir.file("e2e.db"), "SELECT count(*) FROM events WHERE kind = 'output_failed'"), "1");
  EXPECT_NE(query(dir.file("e2e.db"), "SELECT detail FROM events WHERE kind = 'output_failed'").find("no path for two"),
            std::string::npos);
  EXPECT_NE(r.err.find("no path for two"), std::string::npos) << r.err;

  // export --format files says so too, and writes the rest.
  fs::remove_all(dir.file("out"));
  Result again = shepherd({"export", suite, "--format", "files"});
  EXPECT_EQ(again.exit_code, 4) << again.err;
  EXPECT_NE(again.out.find("2 files written"), std::string::npos) << again.out;
  EXPECT_NE(again.err.find("no path for two"), std::string::npos) << again.err;
}

TEST(Outputs, SuiteFieldsAreValidatedAtLoad) {
  Mock mock;
  TempDir dir;
  for (const auto& [outputs, field] : std::vector<std::pair<std::string, std::string>>{
           {"{ write = function(cell, r) return r.content end }", "outputs.path"},
           {"{ path = 'out.txt' }", "outputs.path"},
           {"{ path = function(cell) return 'x' end, write = 'text' }", "outputs.write"},
           {"{ path = function(cell) return 'x' end, where = 1 }", "outputs.where"},
           {"'out/'", "outputs"}}) {
    std::string suite = dir.write("bad.lua", outputs_suite(mock, outputs).text());
    Result r = shepherd({"run", suite, "--json"}, key_env(1));
    EXPECT_EQ(r.exit_code, 2) << outputs;
    EXPECT_NE(r.out.find("SUITE_INVALID"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find(field), std::string::npos) << outputs << ": " << r.out;
  }
  EXPECT_EQ(mock.stats()["requests"], 0);
}

TEST(Outputs, ExportFilesRegeneratesADeletedFolderWithoutARequest) {
  Mock mock(failing_three());
  TempDir dir;
  std::string suite = dir.write("s.lua", outputs_suite(mock, kNestedPath, 6).text());
  ASSERT_EQ(shepherd({"run", suite}, key_env(1)).exit_code, 4);
  auto before = files_under(dir.file("generated"));
  ASSERT_EQ(before.size(), 5u);
  const json requests = mock.stats()["requests"];

  fs::remove_all(dir.file("generated"));
  Result r = shepherd({"export", suite, "--format", "files"});  // no key needed
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("5 files written"), std::string::npos) << r.out;
  EXPECT_EQ(files_under(dir.file("generated")), before) << "the same files, byte for byte";
  EXPECT_EQ(mock.stats()["requests"], requests) << "regenerated from the store alone";

  // A suite without outputs has nothing to write.
  SuiteSpec plain = suite_at(mock.base_url());
  std::string other = dir.write("plain.lua", plain.text());
  Result usage = shepherd({"export", other, "--format", "files"});
  EXPECT_EQ(usage.exit_code, 2) << usage.err;
}

TEST(Outputs, KillDuringARunLeavesOnlyWholeFilesAndResumeCompletesThem) {
  Mock mock(json{{"latency", 30}});
  TempDir dir;
  const int kTasks = 240;
  std::string outputs =
      "{ path = function(cell) return 'out/' .. cell.instance .. '.json' end,\n"
      "  write = function(cell, result)\n"
      "    return shepherd.json.encode({ instance = cell.instance, answer = result.content, pad = string.rep('x', 20000) })\n"
      "  end }";
  SuiteSpec s = outputs_suite(mock, outputs, kTasks);
  s.concurrency = 8;
  std::string suite = dir.write("s.lua", s.text());
  {
    Process run({SHEPHERD_BIN, "run", suite, "--no-progress"}, key_env(1));
    ASSERT_TRUE(wait_until([&] { return files_under(dir.file("out")).size() >= 20; }, std::chrono::seconds(30)));
    run.signal(SIGKILL);
    run.wait();
  }
  auto partial = files_under(dir.file("out"));
  ASSERT_LT(partial.size(), static_cast<size_t>(kTasks)) << "killed mid-run";
  for (const auto& [name, text] : partial) {
    if (name.rfind(".", 0) == 0 || name.find("/.") != std::string::npos) continue;  // a temporary file, hidden
    json j = json::parse(text, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << name << " is partial";
    EXPECT_EQ(j["pad"].get<std::string>().size(), 20000u) << name;
  }

  Result r = shepherd({"run", suite}, key_env(1));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto rows = export_by_instance(suite);
  size_t outputs_seen = 0;
  for (const auto& [name, text] : files_under(dir.file("out"))) {
    if (name.rfind(".", 0) == 0) continue;
    json j = json::parse(text);
    EXPECT_EQ(j["answer"], rows[j["instance"].get<int>()]["content"]) << name;
    ++outputs_seen;
  }
  EXPECT_EQ(outputs_seen, static_cast<size_t>(kTasks)) << "every done task has its file after the resume";
}

TEST(Results, LinesAppearAsTasksFinishAndAppendAcrossRuns) {
  Mock mock(json{{"latency", 150}});
  TempDir dir;
  SuiteSpec s = outputs_suite(mock, kNestedPath, 8);
  s.concurrency = 1;
  std::string suite = dir.write("s.lua", s.text());
  std::string results = dir.file("results.jsonl");
  {
    Process run({SHEPHERD_BIN, "run", suite, "--no-progress", "--results", results, "--where", "instance=1,2,3,4"},
                key_env(1));
    // The first line is there while the run still goes on: flushed per line.
    ASSERT_TRUE(wait_until([&] { return fs::exists(results) && !read_file(results).empty(); }, std::chrono::seconds(20)));
    EXPECT_TRUE(run.running()) << "a line per finished task, not at the end";
    Result r = run.wait();
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  auto first = parse_jsonl(read_file(results));
  ASSERT_EQ(first.size(), 4u);
  Result r = shepherd({"run", suite, "--results", results}, key_env(1));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto lines = parse_jsonl(read_file(results));
  ASSERT_EQ(lines.size(), 8u) << "appended, never truncated";
  std::set<int> instances;
  for (const auto& line : lines) {
    for (const char* f : {"task", "dims", "state", "model", "content", "error", "attempts", "latency_ms", "usage"})
      EXPECT_TRUE(line.contains(f)) << f << ": " << line.dump();
    EXPECT_EQ(line["state"], "done");
    EXPECT_EQ(line["model"], "m-a");
    EXPECT_TRUE(line["error"].is_null());
    EXPECT_EQ(line["attempts"], 1);
    instances.insert(line["dims"]["instance"].get<int>());
  }
  EXPECT_EQ(instances.size(), 8u);
  EXPECT_EQ(read_file(results).find("e2e-secret-value"), std::string::npos) << "no key value, ever";
}

TEST(Results, FailedTasksHaveTheirErrorAndTheSameFieldsAsTheExport) {
  Mock mock(failing_three());
  TempDir dir;
  std::string suite = dir.write("s.lua", outputs_suite(mock, kNestedPath).text());
  std::string results = dir.file("r.jsonl");
  ASSERT_EQ(shepherd({"run", suite, "--results", results}, key_env(1)).exit_code, 4);
  auto rows = export_by_instance(suite);
  auto lines = parse_jsonl(read_file(results));
  ASSERT_EQ(lines.size(), 4u);
  for (const auto& line : lines) {
    const json& row = rows[line["dims"]["instance"].get<int>()];
    for (const char* f : {"task", "dims", "state", "content", "attempts", "error"}) EXPECT_EQ(line[f], row[f]) << f;
    if (line["state"] == "failed") {
      EXPECT_FALSE(line["error"]["code"].get<std::string>().empty());
      EXPECT_NE(line["error"]["message"].get<std::string>().find("400"), std::string::npos);
    }
  }
}

TEST(Export, OpenAiBatchLinesAndACsvColumnPerDimension) {
  Mock mock(failing_three());
  TempDir dir;
  SuiteSpec s = outputs_suite(mock, kNestedPath);
  s.matrix = "{ model = { \"m-a\" }, instance = { 1, 2, 3, 4 }, lang = { \"c\" } }";
  std::string suite = dir.write("s.lua", s.text());
  ASSERT_EQ(shepherd({"run", suite}, key_env(1)).exit_code, 4);
  auto rows = export_by_instance(suite);

  Result b = shepherd({"export", suite, "--format", "openai-batch"});
  ASSERT_EQ(b.exit_code, 0) << b.err;
  auto lines = parse_jsonl(b.out);
  ASSERT_EQ(lines.size(), 4u);
  std::set<std::string> ids;
  for (const auto& line : lines) {
    ASSERT_TRUE(line["id"].is_string());
    EXPECT_EQ(line["id"].get<std::string>().rfind("batch_req_", 0), 0u);
    ids.insert(line["id"].get<std::string>());
    ASSERT_TRUE(line.contains("custom_id") && line.contains("response") && line.contains("error"));
    const json* row = nullptr;
    for (const auto& [i, r] : rows)
      if (r["task"] == line["custom_id"]) row = &r;
    ASSERT_NE(row, nullptr) << "custom_id is the task id";
    if ((*row)["state"] == "done") {
      EXPECT_TRUE(line["error"].is_null());
      EXPECT_EQ(line["response"]["status_code"], 200);
      EXPECT_EQ(line["response"]["request_id"].get<std::string>().rfind("req_", 0), 0u);
      const json& body = line["response"]["body"];
      EXPECT_EQ(body["object"], "chat.completion");
      EXPECT_EQ(body["choices"][0]["message"]["content"], (*row)["content"]) << "the provider's own completion";
      EXPECT_GT(body["usage"]["total_tokens"].get<int>(), 0);
    } else {
      EXPECT_FALSE(line["error"]["code"].get<std::string>().empty());
      EXPECT_FALSE(line["error"]["message"].get<std::string>().empty());
      EXPECT_EQ(line["response"]["status_code"], 400);
      EXPECT_EQ(line["response"]["body"]["error"]["message"], "bad request for three");
    }
  }
  EXPECT_EQ(ids.size(), 4u);

  Result csv = shepherd({"export", suite, "--format", "csv"});
  ASSERT_EQ(csv.exit_code, 0) << csv.err;
  EXPECT_EQ(csv.out.rfind("task,instance,lang,model,state,result_model,content,attempts,turns,error,latency_ms,usage,"
                          "stale\r\n",
                          0),
            0u)
      << csv.out.substr(0, 200);
  EXPECT_NE(csv.out.find("," + std::to_string(1) + ",c,m-a,done,m-a,"), std::string::npos) << csv.out;
}
