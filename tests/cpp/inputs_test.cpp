// Inputs: shepherd.files globs, JSONL and CSV records as matrix dimensions,
// and the task ids they give (from a file's path, a record's id field or its
// content, never its position or a file's size).
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/error.h"
#include "inputs/file_glob.h"
#include "inputs/record_reader.h"
#include "suite/matrix.h"
#include "suite/suite.h"

namespace shepherd {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

class InputsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("shepherd_inputs_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string write(const std::string& rel, const std::string& text) {
    fs::path p = dir_ / rel;
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << text;
    return p.string();
  }

  Suite load(const std::string& matrix, const std::string& extra = "") {
    write("suite.lua",
          "return {\n  name = \"inputs\",\n"
          "  providers = { p = { base_url = \"http://127.0.0.1:1/v1\", keys = { { id = \"k\", env = \"K\" } }, models = { \"m\" } } },\n"
          "  models = { \"m\" },\n"
          "  matrix = {\n" + matrix + "  },\n" + extra +
          "  request = function(cell) return { messages = { { role = 'user', content = 'x' } } } end,\n}\n");
    SuiteLoadOptions options;
    options.resolve_keys = false;
    return load_suite((dir_ / "suite.lua").string(), options);
  }

  // Every way an id is computed must agree.
  static std::vector<std::string> ids(const Suite& s) {
    Matrix m(s.dims);
    auto seeds = plan_cells(s);
    std::vector<std::string> out;
    for (uint64_t i = 0; i < m.size(); ++i) {
      EXPECT_EQ(seeds[i].id, task_id_for(s.name, m, i)) << i;
      EXPECT_EQ(json::parse(seeds[i].dims_json), m.cell(i)) << i;  // the stored dims are the full values
      out.push_back(seeds[i].id);
    }
    return out;
  }

  std::string error_of(const std::function<void()>& f) {
    try {
      f();
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), codes::SUITE_INVALID);
      return e.what();
    }
    ADD_FAILURE() << "no error";
    return "";
  }

  fs::path dir_;
};

TEST(GlobTest, StarStaysInASegmentAndDoubleStarCrossesDirectories) {
  EXPECT_TRUE(glob_matches("*.c", "a.c"));
  EXPECT_FALSE(glob_matches("*.c", "d/a.c"));
  EXPECT_TRUE(glob_matches("inputs/**/*.c", "inputs/a.c"));  // ** matches no directory too
  EXPECT_TRUE(glob_matches("inputs/**/*.c", "inputs/x/y/a.c"));
  EXPECT_FALSE(glob_matches("inputs/**/*.c", "inputs/x/y/a.h"));
  EXPECT_FALSE(glob_matches("inputs/**/*.c", "other/a.c"));
  EXPECT_TRUE(glob_matches("**", "a/b/c"));
  EXPECT_TRUE(glob_matches("a?[0-9].txt", "ab7.txt"));
  EXPECT_FALSE(glob_matches("*.c", ".hidden.c"));
  EXPECT_TRUE(glob_matches(".*.c", ".hidden.c"));
  EXPECT_FALSE(glob_matches("**/*.c", ".git/a.c"));
}

TEST_F(InputsTest, FindFilesSortsByPathAndFillsRecords) {
  write("inputs/b.c", "bb");
  write("inputs/a.c", "a");
  write("inputs/sub/deep/z.c", "zzz");
  write("inputs/sub/notes.txt", "");
  write("inputs/.git/x.c", "");
  write("inputs/Makefile", "");
  auto files = find_files(dir_.string(), "inputs/**/*.c");
  ASSERT_EQ(files.size(), 3u);
  EXPECT_EQ(files[0].path, "inputs/a.c");
  EXPECT_EQ(files[1].path, "inputs/b.c");
  EXPECT_EQ(files[2].path, "inputs/sub/deep/z.c");
  EXPECT_EQ(files[2].name, "z.c");
  EXPECT_EQ(files[2].stem, "z");
  EXPECT_EQ(files[2].ext, "c");
  EXPECT_EQ(files[2].size, 3u);
  EXPECT_EQ(find_files(dir_.string(), "inputs/*.c").size(), 2u);  // no ** : one level only
  auto make = find_files(dir_.string(), "inputs/Make*");
  ASSERT_EQ(make.size(), 1u);
  EXPECT_EQ(make[0].ext, "");
  EXPECT_TRUE(find_files(dir_.string(), "nothing/**/*.c").empty());
  EXPECT_NE(error_of([&] { find_files(dir_.string(), "../*.c"); }).find(".."), std::string::npos);
}

TEST_F(InputsTest, FileIdsComeFromThePathNotTheSize) {
  write("inputs/a.c", "int a;");
  write("inputs/sub/b.c", "int b;");
  Suite s = load("    file = shepherd.files('inputs/**/*.c'),\n");
  ASSERT_EQ(s.dims.size(), 1u);
  ASSERT_EQ(s.dims[0].values.size(), 2u);
  EXPECT_EQ(s.dims[0].values[1]["path"], "inputs/sub/b.c");
  EXPECT_EQ(s.dims[0].values[1]["size"], 6);
  auto before = ids(s);
  write("inputs/a.c", "int a; int more;");
  write("inputs/c.c", "");  // a new file sorts after a.c: the others keep their ids
  Suite s2 = load("    file = shepherd.files('inputs/**/*.c'),\n");
  auto after = ids(s2);
  ASSERT_EQ(after.size(), 3u);
  EXPECT_EQ(after[0], before[0]);
  EXPECT_EQ(after[2], before[1]);
  EXPECT_EQ(s2.dims[0].values[0]["size"], 16);
  // Identity is the path: the same as a plain dimension listing the paths.
  Suite plain = load("    file = { 'inputs/a.c', 'inputs/c.c', 'inputs/sub/b.c' },\n");
  EXPECT_EQ(ids(plain), after);
}

TEST_F(InputsTest, FilesWithARoot) {
  write("data/x/one.c", "1");
  Suite s = load("    file = shepherd.files('**/*.c', { root = 'data' }),\n");
  ASSERT_EQ(s.dims[0].values.size(), 1u);
  EXPECT_EQ(s.dims[0].values[0]["path"], "data/x/one.c");  // relative to the suite's directory
}

TEST_F(InputsTest, JsonlRecordsWithAnIdField) {
  write("p.jsonl", "{\"id\":\"a\",\"q\":\"one\"}\n\n{\"id\":\"b\",\"q\":\"two\"}\n");
  auto r = read_jsonl((dir_ / "p.jsonl").string(), "id");
  ASSERT_EQ(r.values.size(), 2u);
  EXPECT_EQ(r.identities, (std::vector<json>{"a", "b"}));
  Suite s = load("    prompt = shepherd.jsonl('p.jsonl', { id = 'id' }),\n");
  auto first = ids(s);
  EXPECT_EQ(s.dims[0].values[1]["q"], "two");
  // Editing a record's content, or inserting one before it, keeps its id.
  write("p.jsonl", "{\"id\":\"c\",\"q\":\"new\"}\n{\"id\":\"a\",\"q\":\"one, edited\"}\n{\"id\":\"b\",\"q\":\"two\"}\n");
  auto second = ids(load("    prompt = shepherd.jsonl('p.jsonl', { id = 'id' }),\n"));
  EXPECT_EQ(second[1], first[0]);
  EXPECT_EQ(second[2], first[1]);
}

TEST_F(InputsTest, JsonlWithoutAnIdHashesTheRecord) {
  write("p.jsonl", "{\"b\":1,\"a\":2}\n\"plain\"\n");
  Suite s = load("    prompt = shepherd.jsonl('p.jsonl'),\n");
  Suite plain = load("    prompt = { { a = 2, b = 1 }, 'plain' },\n");
  EXPECT_EQ(ids(s), ids(plain));  // the record's canonical JSON, key order aside
}

TEST_F(InputsTest, JsonlErrorsNameTheFileAndLines) {
  const std::string f = write("p.jsonl", "{\"id\":1}\n{\"id\":2}\n{\"id\":1}\n");
  std::string e = error_of([&] { read_jsonl(f, "id"); });
  EXPECT_NE(e.find(f + ":3"), std::string::npos) << e;
  EXPECT_NE(e.find("first at line 1"), std::string::npos) << e;
  write("p.jsonl", "{\"id\":1}\n{\"id\": oops}\n");
  e = error_of([&] { load("    prompt = shepherd.jsonl('p.jsonl', { id = 'id' }),\n"); });
  EXPECT_NE(e.find("p.jsonl:2: not valid JSON"), std::string::npos) << e;
  write("p.jsonl", "{\"id\":1}\n{\"other\":2}\n");
  e = error_of([&] { read_jsonl(f, "id"); });
  EXPECT_NE(e.find(":2: the id field 'id' is missing"), std::string::npos) << e;
  write("p.jsonl", "{\"a\":1}\n{\"a\":1}\n");
  e = error_of([&] { read_jsonl(f); });
  EXPECT_NE(e.find(":2: duplicate record"), std::string::npos) << e;
  e = error_of([&] { load("    prompt = shepherd.jsonl('missing.jsonl'),\n"); });
  EXPECT_NE(e.find("no such file"), std::string::npos) << e;
  write("p.jsonl", std::string(200, '[') + std::string(200, ']') + "\n");
  e = error_of([&] { read_jsonl(f); });
  EXPECT_NE(e.find("nested deeper"), std::string::npos) << e;
}

TEST_F(InputsTest, CsvFollowsRfc4180) {
  const std::string f = write("t.csv",
                              "id,text,note\r\n"
                              "1,\"a, b\",plain\r\n"
                              "2,\"say \"\"hi\"\"\",\"two\nlines\"\r\n"
                              "3,,\r\n");
  auto r = read_csv(f, "id");
  ASSERT_EQ(r.values.size(), 3u);
  EXPECT_EQ(r.values[0], (json{{"id", "1"}, {"text", "a, b"}, {"note", "plain"}}));
  EXPECT_EQ(r.values[1]["text"], "say \"hi\"");
  EXPECT_EQ(r.values[1]["note"], "two\nlines");
  EXPECT_EQ(r.values[2]["text"], "");
  EXPECT_EQ(r.identities, (std::vector<json>{"1", "2", "3"}));
  Suite s = load("    row = shepherd.csv('t.csv', { id = 'id' }),\n");
  EXPECT_EQ(ids(s).size(), 3u);
}

TEST_F(InputsTest, CsvErrorsNameTheLine) {
  const std::string f = write("t.csv", "id,text\n1,\"x\ny\"\n2,a,b\n");
  std::string e = error_of([&] { read_csv(f, "id"); });
  EXPECT_NE(e.find(f + ":4: 3 fields, the header has 2"), std::string::npos) << e;  // line 4: the quoted newline counts
  write("t.csv", "id,text\n1,a\n1,b\n");
  e = error_of([&] { read_csv(f, "id"); });
  EXPECT_NE(e.find(":3: duplicate id \"1\" (first at line 2)"), std::string::npos) << e;
  write("t.csv", "id,text\n1,\"open\n");
  e = error_of([&] { read_csv(f, "id"); });
  EXPECT_NE(e.find(":2: a quoted field is not closed"), std::string::npos) << e;
  write("t.csv", "id,text\n1,a\n");
  e = error_of([&] { read_csv(f, "key"); });
  EXPECT_NE(e.find(":1: the header has no column 'key'"), std::string::npos) << e;
}

TEST_F(InputsTest, PlainSuitesKeepTheirIds) {
  // A suite without inputs computes ids exactly as before: no identities.
  Suite s = load("    i = { 1, 2 },\n    s = { 'x' },\n");
  for (const auto& d : s.dims) EXPECT_TRUE(d.identities.empty());
  Matrix m(s.dims);
  auto seeds = plan_cells(s);
  for (uint64_t i = 0; i < m.size(); ++i) EXPECT_EQ(seeds[i].id, task_id_for(s.name, m.cell(i)));
}

}  // namespace
}  // namespace shepherd
