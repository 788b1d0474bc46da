// The planner's matrix: the cartesian product of a suite's dimensions, each
// cell with a task id that is the same run after run.
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>

#include <gtest/gtest.h>

#include "core/error.h"
#include "suite/matrix.h"
#include "suite/suite.h"

namespace shepherd {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

class MatrixTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = "/tmp/shepherd_matrix_test_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }

  Suite load(const std::string& file, const std::string& text) {
    fs::path p = dir_ / file;
    std::ofstream(p, std::ios::binary) << text;
    try {
      return load_suite(p.string(), SuiteLoadOptions{false});
    } catch (const Error& e) {
      ADD_FAILURE() << e.code() << ": " << e.what();
      return Suite{};
    }
  }

  // cell JSON -> task id, over the whole matrix.
  static std::map<std::string, std::string> ids_by_cell(const Suite& s) {
    Matrix m(s.dims);
    std::map<std::string, std::string> out;
    for (uint64_t i = 0; i < m.size(); ++i) out[m.cell(i).dump()] = task_id_for(s.name, m.cell(i));
    return out;
  }

  fs::path dir_;
};

const char* const kProviders = R"LUA(
  providers = {
    local_mock = {
      base_url = "http://127.0.0.1:8089/v1",
      keys = { { id = "k0", env = "UNUSED_KEY" } },
      models = { "m-a", "m-b", "m-c" },
    },
  },
  request = function(cell) return { model = cell.model } end,
)LUA";

std::string suite_text(const std::string& name, const std::string& matrix) {
  return "return {\n  name = \"" + name + "\",\n" + kProviders + "  matrix = {\n" + matrix + "  },\n}\n";
}

const char* const kDemoMatrix =
    "    model = { \"m-a\", \"m-b\", \"m-c\" },\n"
    "    prompt_type = { \"baseline\", \"cot\", \"optimal\", \"flawed\" },\n"
    "    instance = { 1, 2, 3 },\n";

Dimension dim(const std::string& name, std::vector<json> values) { return Dimension{name, std::move(values)}; }

TEST_F(MatrixTest, SizeIsTheProductOfDimensionSizes) {
  Suite s = load("demo.lua", suite_text("demo", kDemoMatrix));
  Matrix m(s.dims);
  EXPECT_EQ(m.size(), 3u * 4u * 3u);
  EXPECT_EQ(Matrix({dim("a", {1, 2}), dim("b", {"x"}), dim("c", {1, 2, 3, 4, 5})}).size(), 10u);
  EXPECT_EQ(Matrix({dim("only", {true})}).size(), 1u);
  EXPECT_EQ(Matrix({}).size(), 0u);
}

TEST_F(MatrixTest, EveryCellIsDistinctAndComplete) {
  Suite s = load("demo.lua", suite_text("demo", kDemoMatrix));
  Matrix m(s.dims);
  std::set<std::string> cells, ids;
  for (uint64_t i = 0; i < m.size(); ++i) {
    json c = m.cell(i);
    ASSERT_TRUE(c.is_object());
    EXPECT_EQ(c.size(), 3u);
    EXPECT_TRUE(c.contains("model") && c.contains("prompt_type") && c.contains("instance")) << c.dump();
    cells.insert(c.dump());
    ids.insert(task_id_for("demo", m.cell(i)));
    // value_indices and cell agree.
    auto idx = m.value_indices(i);
    ASSERT_EQ(idx.size(), m.dims().size());
    for (size_t d = 0; d < idx.size(); ++d) EXPECT_EQ(c[m.dims()[d].name], m.dims()[d].values[idx[d]]);
  }
  EXPECT_EQ(cells.size(), m.size());
  EXPECT_EQ(ids.size(), m.size());
  for (const auto& id : ids) EXPECT_EQ(id.size(), 16u) << id;
}

TEST_F(MatrixTest, OrdinalsCountWithTheLastDimensionFastest) {
  Matrix m({dim("a", {"a0", "a1"}), dim("b", {"b0", "b1", "b2"})});
  EXPECT_EQ(m.cell(0), json::parse(R"({"a":"a0","b":"b0"})"));
  EXPECT_EQ(m.cell(1), json::parse(R"({"a":"a0","b":"b1"})"));
  EXPECT_EQ(m.cell(3), json::parse(R"({"a":"a1","b":"b0"})"));
  EXPECT_EQ(m.cell(5), json::parse(R"({"a":"a1","b":"b2"})"));
  EXPECT_EQ(m.value_indices(4), (std::vector<uint32_t>{1, 1}));
}

TEST_F(MatrixTest, TaskIdsArePinned) {
  // A changed id orphans every stored result: this value must never change.
  json cell = {{"instance", 2}, {"model", "m-b"}, {"prompt_type", "cot"}};
  EXPECT_EQ(task_id_for("demo", cell), "e8e438558e8ce7c6");

  Suite s = load("demo.lua", suite_text("demo", kDemoMatrix));
  Matrix m(s.dims);
  bool found = false;
  for (uint64_t i = 0; i < m.size(); ++i) {
    if (m.cell(i) == cell) {
      found = true;
      EXPECT_EQ(task_id_for("demo", m.cell(i)), task_id_for("demo", cell));
    }
  }
  EXPECT_TRUE(found);
}

TEST_F(MatrixTest, KeyOrderInTheFileDoesNotChangeIds) {
  Suite a = load("a.lua", suite_text("same", kDemoMatrix));
  const std::string reordered_matrix =
      "    instance = { 1, 2, 3 },\n"
      "    prompt_type = { \"baseline\", \"cot\", \"optimal\", \"flawed\" },\n"
      "    model = { \"m-a\", \"m-b\", \"m-c\" },\n";
  const std::string text_b =
      "return {\n"
      "  request = function(cell) return { model = cell.model } end,\n"
      "  matrix = {\n" + reordered_matrix + "  },\n"
      "  providers = {\n"
      "    second = { base_url = \"http://127.0.0.1:8090/v1\", keys = { { id = \"k9\", env = \"UNUSED\" } },\n"
      "               models = { \"m-c\" } },\n"
      "    local_mock = {\n"
      "      models = { \"m-a\", \"m-b\", \"m-c\" },\n"
      "      keys = { { env = \"UNUSED_KEY\", id = \"k0\" } },\n"
      "      base_url = \"http://127.0.0.1:8089/v1\",\n"
      "    },\n"
      "  },\n"
      "  name = \"same\",\n"
      "}\n";
  Suite b = load("b.lua", text_b);
  ASSERT_EQ(a.dims.size(), b.dims.size());
  for (size_t i = 0; i < a.dims.size(); ++i) EXPECT_EQ(a.dims[i].name, b.dims[i].name);
  EXPECT_NE(a.config_hash, b.config_hash);
  auto ids_a = ids_by_cell(a);
  auto ids_b = ids_by_cell(b);
  EXPECT_EQ(ids_a.size(), 36u);
  EXPECT_EQ(ids_a, ids_b);
}

TEST_F(MatrixTest, TableValuedDimensions) {
  const std::string matrix =
      "    model = { \"m-a\" },\n"
      "    prompt = { { system = \"be brief\", temperature = 0.5 }, { system = \"be thorough\", temperature = 1 },\n"
      "               { tags = { \"x\", \"y\" } } },\n";
  Suite s = load("t.lua", suite_text("tables", matrix));
  Matrix m(s.dims);
  ASSERT_EQ(m.size(), 3u);
  std::set<std::string> ids;
  for (uint64_t i = 0; i < m.size(); ++i) ids.insert(task_id_for("tables", m.cell(i)));
  EXPECT_EQ(ids.size(), 3u);
  EXPECT_EQ(m.cell(0)["prompt"], json::parse(R"({"system":"be brief","temperature":0.5})"));
  EXPECT_TRUE(m.cell(1)["prompt"]["temperature"].is_number_integer());
  EXPECT_EQ(m.cell(2)["prompt"]["tags"], json::parse(R"(["x","y"])"));

  // The same table written with its keys in another order: the same ids.
  const std::string swapped =
      "    model = { \"m-a\" },\n"
      "    prompt = { { temperature = 0.5, system = \"be brief\" }, { temperature = 1, system = \"be thorough\" },\n"
      "               { tags = { \"x\", \"y\" } } },\n";
  Suite s2 = load("t2.lua", suite_text("tables", swapped));
  EXPECT_EQ(ids_by_cell(s), ids_by_cell(s2));
}

TEST_F(MatrixTest, IdsDifferAcrossSuiteNames) {
  Suite a = load("a.lua", suite_text("suite-a", kDemoMatrix));
  Suite b = load("b.lua", suite_text("suite-b", kDemoMatrix));
  Matrix m(a.dims);
  std::set<std::string> all;
  for (uint64_t i = 0; i < m.size(); ++i) {
    EXPECT_NE(task_id_for(a.name, m.cell(i)), task_id_for(b.name, m.cell(i)));
    all.insert(task_id_for(a.name, m.cell(i)));
    all.insert(task_id_for(b.name, m.cell(i)));
  }
  EXPECT_EQ(all.size(), 2 * m.size());
}

TEST_F(MatrixTest, ValuesOfDifferentTypesAreDifferentCells) {
  Matrix m({dim("x", {1, "1", 1.5, true})});
  std::set<std::string> ids;
  for (uint64_t i = 0; i < m.size(); ++i) ids.insert(task_id_for("s", m.cell(i)));
  EXPECT_EQ(ids.size(), 4u);
}

}  // namespace
}  // namespace shepherd
