// Inputs end to end: a suite over files (shepherd.files + shepherd.read),
// over JSONL and CSV records, and over an OpenAI Batch API input file. Every
// task is sent with its input's content (the mock echoes the prompt), ids
// stay the same across runs, and a bad input is a suite error (exit 2).
#include <filesystem>
#include <set>

#include <gtest/gtest.h>

#include "harness.h"

using namespace e2e;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

// export --format jsonl: task id -> record.
std::map<std::string, json> by_task(const std::string& suite) {
  Result r = shepherd({"export", suite, "--format", "jsonl"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::map<std::string, json> out;
  for (auto& row : parse_jsonl(r.out)) out[row["task"].get<std::string>()] = row;
  return out;
}

const char* const kFileRequest =
    "function(cell)\n"
    "    return { max_tokens = 16, messages = { { role = 'user', content = cell.file.path .. ' ' .. cell.file.stem .. ' ' .. shepherd.read(cell.file.path) } } }\n"
    "  end";

}  // namespace

TEST(Inputs, FilesRunOncePerFileWithTheirContentAndKeepTheirIds) {
  Mock mock;
  TempDir dir;
  fs::create_directories(dir.file("inputs/sub/deep"));  // TempDir::write makes no directories
  dir.write("inputs/a.c", "int a;");
  dir.write("inputs/sub/deep/b.c", "int b;");
  dir.write("inputs/notes.txt", "not a C file");
  SuiteSpec spec = suite_at(mock.base_url());
  spec.matrix = "{ file = shepherd.files('inputs/**/*.c') }";
  spec.extra = "  models = { 'm-a' },";
  spec.request = kFileRequest;
  std::string suite = dir.write("files.lua", spec.text());

  Result r = shepherd({"run", suite}, key_env(1));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(mock.stats()["requests"], 2);
  auto first = by_task(suite);
  ASSERT_EQ(first.size(), 2u);
  std::set<std::string> contents;
  for (const auto& [id, row] : first) {
    EXPECT_EQ(row["state"], "done");
    contents.insert(row["content"].get<std::string>());
    const std::string path = row["dims"]["file"]["path"];
    EXPECT_NE(row["content"].get<std::string>().find(path + " " + row["dims"]["file"]["stem"].get<std::string>()), std::string::npos);
  }
  EXPECT_NE(first.begin()->second["content"].get<std::string>().find("int "), std::string::npos);

  // A file edited (its size changes) keeps its task: nothing is sent again;
  // a new file is one new task.
  dir.write("inputs/a.c", "int a; int a2;");
  dir.write("inputs/c.c", "int c;");
  Result again = shepherd({"run", suite}, key_env(1));
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(mock.stats()["requests"], 3);
  auto second = by_task(suite);
  ASSERT_EQ(second.size(), 3u);
  for (const auto& [id, row] : first) EXPECT_TRUE(second.count(id)) << id;

  // A missing file read from request() fails that task with a clear error, not the run.
  dir.write("inputs/d.c", "int d;");
  spec.request = "function(cell)\n    return { messages = { { role = 'user', content = shepherd.read(cell.file.path .. '.missing') } } }\n  end";
  std::string broken = dir.write("broken.lua", spec.text());
  Result b = shepherd({"run", broken, "--db", dir.file("broken.db")}, key_env(1));
  EXPECT_NE(b.err.find("shepherd.read: no such file: inputs/"), std::string::npos) << b.err;
}

TEST(Inputs, JsonlAndCsvRecordsAreADimension) {
  Mock mock;
  TempDir dir;
  dir.write("prompts.jsonl",
            "{\"id\": \"p1\", \"text\": \"first prompt\"}\n"
            "{\"id\": \"p2\", \"text\": \"second prompt\"}\n"
            "{\"id\": \"p3\", \"text\": \"third prompt\"}\n");
  SuiteSpec spec = suite_at(mock.base_url());
  spec.models = {"m-a", "m-b"};
  spec.matrix = "{ prompt = shepherd.jsonl('prompts.jsonl', { id = 'id' }), model = { 'm-a', 'm-b' } }";
  spec.request = "function(cell) return { model = cell.model, messages = { { role = 'user', content = cell.prompt.id .. ': ' .. cell.prompt.text } } } end";
  std::string suite = dir.write("jsonl.lua", spec.text());

  Result r = shepherd({"run", suite}, key_env(1));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(mock.stats()["requests"], 6);
  auto first = by_task(suite);
  ASSERT_EQ(first.size(), 6u);
  for (const auto& [id, row] : first) {
    EXPECT_EQ(row["state"], "done");
    EXPECT_EQ(row["model"], row["dims"]["model"]);
    const std::string expected = row["dims"]["prompt"]["id"].get<std::string>() + ": " + row["dims"]["prompt"]["text"].get<std::string>();
    EXPECT_NE(row["content"].get<std::string>().find(expected), std::string::npos) << row.dump();
  }

  // A record edited and one inserted before the others: ids follow the id field.
  dir.write("prompts.jsonl",
            "{\"id\": \"p0\", \"text\": \"new prompt\"}\n"
            "{\"id\": \"p1\", \"text\": \"first prompt, edited\"}\n"
            "{\"id\": \"p2\", \"text\": \"second prompt\"}\n"
            "{\"id\": \"p3\", \"text\": \"third prompt\"}\n");
  Result again = shepherd({"run", suite}, key_env(1));
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(mock.stats()["requests"], 8);  // only p0, for both models
  auto second = by_task(suite);
  ASSERT_EQ(second.size(), 8u);
  for (const auto& [id, row] : first) EXPECT_TRUE(second.count(id)) << id;

  // CSV: a header row, quoted fields with commas and newlines.
  dir.write("rows.csv", "key,question\nq1,\"What is 1, 2?\"\nq2,\"say \"\"hi\"\"\"\n");
  spec.name = "csv";
  spec.models = {"m-a"};
  spec.matrix = "{ row = shepherd.csv('rows.csv', { id = 'key' }) }";
  spec.extra = "  models = { 'm-a' },";
  spec.request = "function(cell) return { messages = { { role = 'user', content = cell.row.question } } } end";
  std::string csv_suite = dir.write("csv.lua", spec.text());
  Result c = shepherd({"run", csv_suite}, key_env(1));
  ASSERT_EQ(c.exit_code, 0) << c.err;
  std::set<std::string> contents;
  for (const auto& [id, row] : by_task(csv_suite)) contents.insert(row["content"].get<std::string>());
  ASSERT_EQ(contents.size(), 2u);
  bool comma = false, quote = false;
  for (const auto& t : contents) {
    comma = comma || t.find("What is 1, 2?") != std::string::npos;
    quote = quote || t.find("say \"hi\"") != std::string::npos;
  }
  EXPECT_TRUE(comma && quote);
}

TEST(Inputs, BadInputsAreSuiteErrorsNamingTheLine) {
  Mock mock;
  TempDir dir;
  dir.write("p.jsonl", "{\"id\": 1}\n{\"id\": 2}\n{\"id\": 1}\n");
  SuiteSpec spec = suite_at(mock.base_url());
  spec.matrix = "{ p = shepherd.jsonl('p.jsonl', { id = 'id' }), model = { 'm-a' } }";
  std::string suite = dir.write("bad.lua", spec.text());
  Result r = shepherd({"run", suite}, key_env(1));
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("p.jsonl:3: duplicate id 1 (first at line 1)"), std::string::npos) << r.err;
  dir.write("p.jsonl", "{\"id\": 1}\n{\"id\": 2\n");
  r = shepherd({"run", suite}, key_env(1));
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("p.jsonl:2: not valid JSON"), std::string::npos) << r.err;
  EXPECT_EQ(mock.stats()["requests"], 0);
}

namespace {

std::string batch_suite(const Mock& mock, const std::string& extra) {
  return "return {\n  name = \"batch\",\n  providers = { mock = { base_url = \"" + mock.base_url() +
         "\", keys = { { id = \"k0\", env = \"E2E_KEY_0\" } }, models = { \"m-a\", \"m-b\" } } },\n" + extra + "}\n";
}

}  // namespace

TEST(Inputs, BatchFileLinesAreTasksWithTheirOwnModel) {
  Mock mock;
  TempDir dir;
  dir.write("requests.jsonl",
            "{\"custom_id\": \"req-1\", \"method\": \"POST\", \"url\": \"/v1/chat/completions\", \"body\": {\"model\": \"m-a\", \"messages\": [{\"role\": \"user\", \"content\": \"one for a\"}], \"max_tokens\": 10}}\n"
            "{\"custom_id\": \"req-2\", \"method\": \"POST\", \"url\": \"/v1/chat/completions\", \"body\": {\"model\": \"m-b\", \"messages\": [{\"role\": \"user\", \"content\": \"two for b\"}]}}\n"
            "{\"custom_id\": \"req-3\", \"method\": \"POST\", \"url\": \"/v1/chat/completions\", \"body\": {\"model\": \"m-a\", \"messages\": [{\"role\": \"user\", \"content\": \"three for a\"}]}}\n");
  std::string suite = dir.write("batch.lua", batch_suite(mock, "  batch_file = \"requests.jsonl\",\n"));
  Result r = shepherd({"run", suite}, key_env(1));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(mock.stats()["requests"], 3);
  EXPECT_EQ(mock.stats()["by_model"]["m-a"]["ok"], 2);
  EXPECT_EQ(mock.stats()["by_model"]["m-b"]["ok"], 1);
  auto first = by_task(suite);
  ASSERT_EQ(first.size(), 3u);
  for (const auto& [id, row] : first) {
    const json& line = row["dims"]["request"];
    EXPECT_EQ(row["state"], "done");
    EXPECT_EQ(row["model"], line["body"]["model"]) << "the answer comes from the body's model";
    EXPECT_NE(row["content"].get<std::string>().find(line["body"]["messages"][0]["content"].get<std::string>()), std::string::npos);
  }
  // The id follows custom_id: lines reordered and one added keep the others' ids.
  dir.write("requests.jsonl",
            "{\"custom_id\": \"req-0\", \"body\": {\"model\": \"m-b\", \"messages\": [{\"role\": \"user\", \"content\": \"zero\"}]}}\n"
            "{\"custom_id\": \"req-3\", \"method\": \"POST\", \"url\": \"/v1/chat/completions\", \"body\": {\"model\": \"m-a\", \"messages\": [{\"role\": \"user\", \"content\": \"three for a\"}]}}\n"
            "{\"custom_id\": \"req-2\", \"method\": \"POST\", \"url\": \"/v1/chat/completions\", \"body\": {\"model\": \"m-b\", \"messages\": [{\"role\": \"user\", \"content\": \"two for b\"}]}}\n"
            "{\"custom_id\": \"req-1\", \"method\": \"POST\", \"url\": \"/v1/chat/completions\", \"body\": {\"model\": \"m-a\", \"messages\": [{\"role\": \"user\", \"content\": \"one for a\"}], \"max_tokens\": 10}}\n");
  Result again = shepherd({"run", suite}, key_env(1));
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(mock.stats()["requests"], 4);
  auto second = by_task(suite);
  for (const auto& [id, row] : first) EXPECT_TRUE(second.count(id)) << id;

  // A duplicate custom_id is a suite error naming both lines.
  dir.write("dup.jsonl",
            "{\"custom_id\": \"x\", \"body\": {\"model\": \"m-a\", \"messages\": []}}\n"
            "{\"custom_id\": \"x\", \"body\": {\"model\": \"m-a\", \"messages\": []}}\n");
  std::string dup = dir.write("dup.lua", batch_suite(mock, "  batch_file = \"dup.jsonl\",\n"));
  Result d = shepherd({"run", dup}, key_env(1));
  EXPECT_EQ(d.exit_code, 2);
  EXPECT_NE(d.err.find("dup.jsonl:2: duplicate id \"x\" (first at line 1)"), std::string::npos) << d.err;
}

TEST(Inputs, CookbookBatchFileSendsTheBodiesWithoutMetadata) {
  Mock mock;
  TempDir dir;
  dir.write("cookbook.jsonl",
            "{\"model\": \"m-b\", \"messages\": [{\"role\": \"user\", \"content\": \"cook one\"}], \"metadata\": {\"row_id\": 1}}\n"
            "{\"model\": \"m-a\", \"messages\": [{\"role\": \"user\", \"content\": \"cook two\"}]}\n");
  std::string suite = dir.write("cook.lua", batch_suite(mock, "  batch_file = \"cookbook.jsonl\",\n  batch_file_format = \"cookbook\",\n"));
  Result r = shepherd({"run", suite}, key_env(1));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto rows = by_task(suite);
  ASSERT_EQ(rows.size(), 2u);
  for (const auto& [id, row] : rows) {
    EXPECT_EQ(row["state"], "done");
    EXPECT_EQ(row["model"], row["dims"]["request"]["model"]);
  }
  EXPECT_EQ(mock.stats()["by_model"]["m-b"]["ok"], 1);
  Result again = shepherd({"run", suite}, key_env(1));
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(mock.stats()["requests"], 2);
}
