// Where: a slice of a suite's matrix from `--where dim=v[,v…]` clauses or a
// workflow's `{dim = value | {values}}` table. Globs match a value's text
// (numbers as Lua prints them); a typo is an error, never an empty slice.
#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/error.h"
#include "suite/matrix.h"
#include "suite/suite.h"
#include "suite/where.h"

namespace shepherd {
namespace {

using nlohmann::json;

Dimension dim(const std::string& name, std::vector<json> values) { return Dimension{name, std::move(values)}; }

// Every kind of value a suite's matrix may hold; the dimensions sorted by
// name, as the loader gives them.
Matrix users_matrix() {
  return Matrix({dim("instance", {1, 2, 17}),
                 dim("model", {"m-a", "m-b", "qwen2.5-7b-instruct"}),
                 dim("prompt_type", {"baseline", "flawed_tool_misuse", "flawed_logic", "cot"}),
                 dim("rate", {0.9, 0.6, 1}),
                 dim("strict", {true, false}),
                 dim("task", {json{{"name", "basic"}, {"tools", 2}}, json{{"name", "api_integration"}}})});
}

// The ordinals `where` keeps must be exactly those `expected` accepts.
void expect_slice(const Matrix& m, const Where& where, const std::function<bool(const json&)>& expected,
                  uint64_t expected_count) {
  uint64_t kept = 0;
  for (uint64_t i = 0; i < m.size(); ++i) {
    json cell = m.cell(i);
    EXPECT_EQ(where.matches(m, i), expected(cell)) << cell.dump() << " under " << where.describe();
    kept += where.matches(m, i) ? 1 : 0;
  }
  EXPECT_EQ(kept, expected_count) << where.describe();
}

// The USAGE error `f` throws (a failure if it throws nothing or another).
Error usage_error(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), "USAGE") << e.what();
    EXPECT_EQ(e.stage(), Stage::cli) << e.what();
    return e;
  }
  ADD_FAILURE() << "no error thrown";
  return Error("NONE", "", Stage::cli);
}

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

TEST(Where, DefaultKeepsEverything) {
  Matrix m = users_matrix();
  ASSERT_EQ(m.size(), 3u * 3u * 4u * 3u * 2u * 2u);
  Where all;
  EXPECT_TRUE(all.all());
  EXPECT_EQ(all.describe(), "");
  expect_slice(m, all, [](const json&) { return true; }, m.size());
  EXPECT_TRUE(Where::parse(m, {}).all());
  EXPECT_TRUE(Where::from_json(m, json()).all());
  EXPECT_TRUE(Where::from_json(m, json::object()).all());
}

TEST(Where, ExactValue) {
  Matrix m = users_matrix();
  Where w = Where::parse(m, {"model=qwen2.5-7b-instruct"});
  EXPECT_FALSE(w.all());
  expect_slice(m, w, [](const json& c) { return c["model"] == "qwen2.5-7b-instruct"; }, m.size() / 3);
  // A value is matched whole: "m-a" is not a prefix match of anything else.
  expect_slice(m, Where::parse(m, {"model=m-a"}), [](const json& c) { return c["model"] == "m-a"; }, m.size() / 3);
}

TEST(Where, GlobsMatchTheValuesText) {
  Matrix m = users_matrix();
  auto flawed = [](const json& c) { return c["prompt_type"].get<std::string>().rfind("flawed_", 0) == 0; };
  expect_slice(m, Where::parse(m, {"prompt_type=flawed_*"}), flawed, m.size() / 2);
  expect_slice(m, Where::parse(m, {"model=m-?"}), [](const json& c) { return c["model"] != "qwen2.5-7b-instruct"; },
               m.size() * 2 / 3);
  expect_slice(m, Where::parse(m, {"prompt_type=[bc]*"}),
               [](const json& c) { return c["prompt_type"] == "baseline" || c["prompt_type"] == "cot"; }, m.size() / 2);
  // Numbers match as Lua prints them: 1 and 17 both start with 1, 0.9 and 0.6 with "0.".
  expect_slice(m, Where::parse(m, {"instance=1*"}), [](const json& c) { return c["instance"] != 2; }, m.size() * 2 / 3);
  expect_slice(m, Where::parse(m, {"rate=0.*"}), [](const json& c) { return c["rate"] != 1; }, m.size() * 2 / 3);
}

TEST(Where, NumbersBooleansAndTablesMatchTheirText) {
  Matrix m = users_matrix();
  expect_slice(m, Where::parse(m, {"rate=0.9"}), [](const json& c) { return c["rate"] == 0.9; }, m.size() / 3);
  expect_slice(m, Where::parse(m, {"rate=0.6"}), [](const json& c) { return c["rate"] == 0.6; }, m.size() / 3);
  expect_slice(m, Where::parse(m, {"rate=1"}), [](const json& c) { return c["rate"] == 1; }, m.size() / 3);
  expect_slice(m, Where::parse(m, {"instance=17"}), [](const json& c) { return c["instance"] == 17; }, m.size() / 3);
  expect_slice(m, Where::parse(m, {"strict=true"}), [](const json& c) { return c["strict"] == true; }, m.size() / 2);
  expect_slice(m, Where::parse(m, {"strict=false"}), [](const json& c) { return c["strict"] == false; }, m.size() / 2);
  // A table by its name.
  expect_slice(m, Where::parse(m, {"task=basic"}), [](const json& c) { return c["task"]["name"] == "basic"; },
               m.size() / 2);
  expect_slice(m, Where::parse(m, {"task=api_*"}),
               [](const json& c) { return c["task"]["name"] == "api_integration"; }, m.size() / 2);
}

TEST(Where, SeveralValuesInOneClause) {
  Matrix m = users_matrix();
  expect_slice(m, Where::parse(m, {"model=m-a,qwen2.5-7b-instruct"}), [](const json& c) { return c["model"] != "m-b"; },
               m.size() * 2 / 3);
  // Values and globs mixed.
  expect_slice(m, Where::parse(m, {"prompt_type=cot,flawed_*"}), [](const json& c) { return c["prompt_type"] != "baseline"; },
               m.size() * 3 / 4);
  expect_slice(m, Where::parse(m, {"rate=0.9,1"}), [](const json& c) { return c["rate"] != 0.6; }, m.size() * 2 / 3);
}

TEST(Where, ClausesOnDifferentDimensionsAllHold) {
  Matrix m = users_matrix();
  Where w = Where::parse(m, {"model=m-a,m-b", "rate=0.6", "prompt_type=flawed_*"});
  expect_slice(m, w,
               [](const json& c) {
                 return c["model"] != "qwen2.5-7b-instruct" && c["rate"] == 0.6 &&
                        c["prompt_type"].get<std::string>().rfind("flawed_", 0) == 0;
               },
               m.size() * 2 / 3 / 3 / 2);
}

TEST(Where, TwoClausesOnOneDimensionIntersect) {
  Matrix m = users_matrix();
  Where w = Where::parse(m, {"prompt_type=flawed_*", "prompt_type=*logic"});
  expect_slice(m, w, [](const json& c) { return c["prompt_type"] == "flawed_logic"; }, m.size() / 4);
  // In either order.
  expect_slice(m, Where::parse(m, {"prompt_type=*logic,cot", "prompt_type=flawed_*,baseline"}),
               [](const json& c) { return c["prompt_type"] == "flawed_logic"; }, m.size() / 4);
  // Disjoint clauses keep nothing: each clause names real values, so it is not an error.
  expect_slice(m, Where::parse(m, {"model=m-a", "model=m-b"}), [](const json&) { return false; }, 0);
}

TEST(Where, FromJsonTakesValuesListsAndGlobs) {
  Matrix m = users_matrix();
  expect_slice(m, Where::from_json(m, {{"model", "m-b"}}), [](const json& c) { return c["model"] == "m-b"; },
               m.size() / 3);
  expect_slice(m, Where::from_json(m, {{"prompt_type", {"flawed_*", "cot"}}}),
               [](const json& c) { return c["prompt_type"] != "baseline"; }, m.size() * 3 / 4);
  // Numbers and booleans as values.
  expect_slice(m, Where::from_json(m, {{"rate", 0.9}}), [](const json& c) { return c["rate"] == 0.9; }, m.size() / 3);
  expect_slice(m, Where::from_json(m, {{"rate", {0.6, 1}}}), [](const json& c) { return c["rate"] != 0.9; },
               m.size() * 2 / 3);
  expect_slice(m, Where::from_json(m, {{"instance", {1, 17}}}), [](const json& c) { return c["instance"] != 2; },
               m.size() * 2 / 3);
  expect_slice(m, Where::from_json(m, {{"strict", false}}), [](const json& c) { return c["strict"] == false; },
               m.size() / 2);
  // A Lua number that is whole arrives as 1.0 and still matches 1.
  expect_slice(m, Where::from_json(m, {{"instance", 17.0}}), [](const json& c) { return c["instance"] == 17; },
               m.size() / 3);
  // A number written as text matches as it prints.
  expect_slice(m, Where::from_json(m, {{"rate", "0.6"}}), [](const json& c) { return c["rate"] == 0.6; }, m.size() / 3);
  expect_slice(m, Where::from_json(m, {{"task", "basic"}}), [](const json& c) { return c["task"]["name"] == "basic"; },
               m.size() / 2);
  // Several dimensions.
  expect_slice(m, Where::from_json(m, {{"model", "m-a"}, {"strict", true}, {"prompt_type", "flawed_*"}}),
               [](const json& c) {
                 return c["model"] == "m-a" && c["strict"] == true &&
                        c["prompt_type"].get<std::string>().rfind("flawed_", 0) == 0;
               },
               m.size() / 3 / 2 / 2);
}

TEST(Where, UnknownDimensionIsAUsageErrorNamingIt) {
  Matrix m = users_matrix();
  Error e = usage_error([&] { Where::parse(m, {"modle=m-a"}); });
  EXPECT_TRUE(has(e.what(), "'modle'")) << e.what();
  EXPECT_TRUE(has(e.what(), "model")) << "lists the dimensions there are: " << e.what();
  EXPECT_EQ(e.details().value("dimension", ""), "modle");
  EXPECT_EQ(e.details().value("where", ""), "modle=m-a");
  // After a good clause too.
  e = usage_error([&] { Where::parse(m, {"model=m-a", "prompt=cot"}); });
  EXPECT_TRUE(has(e.what(), "'prompt'")) << e.what();
  e = usage_error([&] { Where::from_json(m, {{"temperature", 0.9}}); });
  EXPECT_TRUE(has(e.what(), "'temperature'")) << e.what();
  EXPECT_EQ(e.details().value("dimension", ""), "temperature");
}

TEST(Where, AValueThatMatchesNothingIsAUsageError) {
  Matrix m = users_matrix();
  Error e = usage_error([&] { Where::parse(m, {"model=qwen2.5-7b"}); });
  EXPECT_TRUE(has(e.what(), "qwen2.5-7b")) << e.what();
  EXPECT_TRUE(has(e.what(), "'model'")) << e.what();
  // One of several values: the whole clause is refused.
  e = usage_error([&] { Where::parse(m, {"model=m-a,m-c"}); });
  EXPECT_TRUE(has(e.what(), "m-c")) << e.what();
  usage_error([&] { Where::parse(m, {"prompt_type=broken_*"}); });
  usage_error([&] { Where::parse(m, {"rate=0.90000001"}); });
  usage_error([&] { Where::parse(m, {"instance=3"}); });
  usage_error([&] { Where::parse(m, {"strict=yes"}); });
  usage_error([&] { Where::parse(m, {"task=advanced"}); });
  usage_error([&] { Where::from_json(m, {{"rate", 0.7}}); });
  usage_error([&] { Where::from_json(m, {{"instance", {1, 4}}}); });
  // A number or boolean from a workflow matches by value: 1 is not true.
  usage_error([&] { Where::from_json(m, {{"strict", 1}}); });
  usage_error([&] { Where::from_json(m, {{"model", {"nothing*"}}}); });
  e = usage_error([&] { Where::from_json(m, {{"model", json::array()}}); });
  EXPECT_TRUE(has(e.what(), "empty")) << e.what();
}

TEST(Where, MalformedClausesAreUsageErrors) {
  Matrix m = users_matrix();
  for (const char* clause : {"model", "=x", "model=", "", "="}) {
    Error e = usage_error([&] { Where::parse(m, {clause}); });
    EXPECT_TRUE(has(e.what(), "dim=value")) << clause << ": " << e.what();
  }
  usage_error([&] { Where::from_json(m, json::array({"model=m-a"})); });
  usage_error([&] { Where::from_json(m, json("model=m-a")); });
}

TEST(Where, DescribeListsTheClauses) {
  Matrix m = users_matrix();
  EXPECT_EQ(Where::parse(m, {"model=m-a,m-b", "prompt_type=flawed_*"}).describe(), "model=m-a,m-b prompt_type=flawed_*");
  EXPECT_EQ(Where::parse(m, {"prompt_type=flawed_*", "prompt_type=*logic"}).describe(),
            "prompt_type=flawed_* prompt_type=*logic");
  EXPECT_EQ(Where::from_json(m, {{"rate", 0.9}}).describe(), "rate=0.9");
  EXPECT_EQ(Where::from_json(m, {{"instance", {1, 17}}}).describe(), "instance=1,17");
  EXPECT_EQ(Where::from_json(m, {{"strict", true}}).describe(), "strict=true");
}

TEST(Where, ValueTextIsWhatLuaPrints) {
  EXPECT_EQ(value_text("flawed_logic"), "flawed_logic");
  EXPECT_EQ(value_text(17), "17");
  EXPECT_EQ(value_text(-3), "-3");
  EXPECT_EQ(value_text(0.9), "0.9");
  EXPECT_EQ(value_text(0.6), "0.6");
  EXPECT_EQ(value_text(0.1 + 0.2), "0.3");  // %.14g, as Lua: not 0.30000000000000004
  EXPECT_EQ(value_text(1.0), "1");
  EXPECT_EQ(value_text(1e20), "1e+20");
  EXPECT_EQ(value_text(true), "true");
  EXPECT_EQ(value_text(false), "false");
  EXPECT_EQ(value_text(json{{"name", "basic"}, {"tools", 2}}), "basic");
  EXPECT_EQ(value_text(json{{"id", 7}}), "7");
  EXPECT_EQ(value_text(json{{"path", "a/b.txt"}}), "a/b.txt");
}

TEST(Where, MatrixLabelsUseTheSameText) {
  // A cell's label shows the text --where matches, so what a log shows can be pasted.
  Matrix m({dim("model", {"m-a"}), dim("rate", {0.9}), dim("task", {json{{"name", "basic"}}})});
  ASSERT_EQ(m.size(), 1u);
  std::string label = m.label(0);
  EXPECT_TRUE(has(label, "0.9")) << label;
  EXPECT_TRUE(has(label, "basic")) << label;
  EXPECT_TRUE(Where::parse(m, {"rate=0.9", "task=basic", "model=m-a"}).matches(m, 0));
}

}  // namespace
}  // namespace shepherd
