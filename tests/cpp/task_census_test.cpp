// The census behind status, incomplete and s:tasks: the suite's cells as
// they are now joined with the store's rows, grouped in memory.
#include "workflow/task_census.h"

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>
#include <gtest/gtest.h>

#include "core/error.h"
#include "suite/matrix.h"
#include "suite/suite_runtime.h"

namespace shepherd {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

class TaskCensusTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = "/tmp/shepherd_census_test_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }

  Suite load(const std::string& matrix, const std::string& request = "return { model = cell.model, "
                                                                      "messages = { { role = 'user', "
                                                                      "content = tostring(cell.size) } } }") {
    fs::path p = dir_ / "s.lua";
    std::ofstream(p, std::ios::binary) << "return {\n  name = \"s\",\n"
                                          "  providers = { p = { base_url = \"http://127.0.0.1:1/v1\",\n"
                                          "    models = { \"m-a\", \"m-b\" }, keys = { { id = \"k0\", env = \"UNUSED_KEY\" } } } },\n"
                                          "  matrix = {\n" << matrix << "  },\n"
                                       << "  request = function(cell) " << request << " end,\n}\n";
    return load_suite(p.string(), SuiteLoadOptions{false});
  }

  // Every cell stored as pending, as a run plans them.
  Store& seeded(const Suite& suite) {
    store_ = std::make_unique<Store>((dir_ / "s.db").string(), Store::Mode::read_write);
    store_->ensure_tasks(suite.name, plan_cells(suite));
    return *store_;
  }

  std::string id_of(const Suite& suite, const json& cell) { return task_id_for(suite.name, cell); }

  void set(const Suite& suite, const json& cell, const std::string& state, const std::string& cls = "",
           int attempts = 1) {
    SQLite::Statement u(store_->db(),
                        "UPDATE tasks SET state = ?, last_class = nullif(?, ''), attempts = ?, updated_at = 100 "
                        "WHERE id = ?");
    u.bind(1, state);
    u.bind(2, cls);
    u.bind(3, attempts);
    u.bind(4, id_of(suite, cell));
    ASSERT_EQ(u.exec(), 1) << cell.dump();
  }

  fs::path dir_;
  std::unique_ptr<Store> store_;
};

const char* const kMatrix = "    model = { \"m-b\", \"m-a\" },\n    size = { 10, 2 },\n    i = { 1, 2 },\n";

TEST_F(TaskCensusTest, CellTextsAreTheCellsCanonicalJson) {
  // Names and values a canonical writer must escape, numbers of every kind, tables.
  Suite s = load("    [\"say \\\"hi\\\"\"] = { 'a\\\\b', 'é', '\\n' },\n"
                 "    n = { 1, 1.5, -2, 1e300 },\n    flag = { true, false },\n"
                 "    t = { { name = 'x', list = { 1, 2 } } },\n    model = { 'm-a' },\n");
  Matrix m(s.dims);
  ASSERT_EQ(m.size(), 3u * 4u * 2u);
  for_each_cell_text(m, [&](uint64_t i, const std::string& text) { EXPECT_EQ(text, m.cell(i).dump()) << i; });
  const auto seeds = plan_cells(s);
  const auto numbers = cell_id_numbers(s.name, m);
  for (uint64_t i = 0; i < m.size(); ++i) {
    EXPECT_EQ(seeds[i].id, task_id_for(s.name, m.cell(i)));
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(numbers[i]));
    EXPECT_EQ(seeds[i].id, hex);
  }
}

TEST_F(TaskCensusTest, IdNumbersFollowValueIdentities) {
  // Files and records with identities: the census's ids are the planner's.
  std::ofstream(dir_ / "p.jsonl") << "{\"id\":\"x\",\"t\":1}\n{\"id\":\"y\",\"t\":2}\n";
  fs::create_directories(dir_ / "in");
  std::ofstream(dir_ / "in" / "a.c") << "a";
  Suite s = load("    model = { 'm-a', 'm-b' },\n    p = shepherd.jsonl('p.jsonl', { id = 'id' }),\n"
                 "    f = shepherd.files('in/*.c'),\n    n = { 1, 2 },\n");
  Matrix m(s);
  ASSERT_EQ(m.size(), 8u);
  const auto seeds = plan_cells(s);
  const auto numbers = cell_id_numbers(s.name, m);
  for (uint64_t i = 0; i < m.size(); ++i) {
    EXPECT_EQ(seeds[i].id, task_id_for(s.name, m, i));
    EXPECT_EQ(seeds[i].dims_json, m.cell(i).dump());
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(numbers[i]));
    EXPECT_EQ(seeds[i].id, hex);
  }
}

TEST_F(TaskCensusTest, GroupsInTheSuitesOrderWithClassesAndRates) {
  Suite s = load(kMatrix);
  seeded(s);
  set(s, {{"model", "m-b"}, {"size", 10}, {"i", 1}}, "failed", "timeout", 3);
  set(s, {{"model", "m-b"}, {"size", 2}, {"i", 1}}, "failed", "auth_failed");
  set(s, {{"model", "m-b"}, {"size", 2}, {"i", 2}}, "done", "ok", 2);
  set(s, {{"model", "m-a"}, {"size", 10}, {"i", 1}}, "done", "ok");
  set(s, {{"model", "m-a"}, {"size", 10}, {"i", 2}}, "failed");  // no class recorded

  json st = TaskCensus(s, *store_, Where()).status({"model"});
  ASSERT_EQ(st["groups"].size(), 2u);
  // The suite lists m-b first: its order, not the alphabet's.
  const json& b = st["groups"][0];
  EXPECT_EQ(b["key"], json({{"model", "m-b"}}));
  EXPECT_EQ(b["total"], 4);
  EXPECT_EQ(b["done"], 1);
  EXPECT_EQ(b["failed"], 2);
  EXPECT_EQ(b["pending"], 1);
  EXPECT_EQ(b["failures_by_class"], json({{"timeout", 1}, {"auth_failed", 1}}));
  EXPECT_EQ(b["retries"], 3);  // 2 beyond the first, and 1
  EXPECT_DOUBLE_EQ(b["completion_rate"].get<double>(), 0.25);
  EXPECT_DOUBLE_EQ(b["failure_rate"].get<double>(), 0.5);
  EXPECT_EQ(b["last_attempt_at"], 100.0);
  const json& a = st["groups"][1];
  EXPECT_EQ(a["failures_by_class"], json({{"unknown", 1}}));
  EXPECT_EQ(st["overall"]["total"], 8);
  EXPECT_EQ(st["overall"]["done"], 2);
  EXPECT_FALSE(st["overall"].contains("key"));

  json two = TaskCensus(s, *store_, Where()).status({"model", "size"});
  ASSERT_EQ(two["groups"].size(), 4u);
  EXPECT_EQ(two["groups"][0]["key"], json({{"model", "m-b"}, {"size", 10}}));
  EXPECT_EQ(two["groups"][1]["key"], json({{"model", "m-b"}, {"size", 2}}));
  EXPECT_TRUE(two["groups"][1]["key"]["size"].is_number_integer());
  EXPECT_EQ(two["groups"][3]["key"], json({{"model", "m-a"}, {"size", 2}}));
  EXPECT_EQ(two["groups"][3]["pending"], 2);

  json one = TaskCensus(s, *store_, Where()).status({});
  ASSERT_EQ(one["groups"].size(), 1u);
  EXPECT_EQ(one["groups"][0]["key"], json::object());
  EXPECT_EQ(one["groups"][0]["total"], 8);
}

TEST_F(TaskCensusTest, TheSuiteAsItIsNowDecidesWhatIsInView) {
  Suite before = load(kMatrix);
  seeded(before);
  set(before, {{"model", "m-a"}, {"size", 2}, {"i", 2}}, "done", "ok");
  // The suite drops size 2 and adds size 5: dropped cells' results stay
  // stored, out of view; new cells count as pending before any run stores them.
  Suite now = load("    model = { \"m-b\", \"m-a\" },\n    size = { 10, 5 },\n    i = { 1, 2 },\n");
  json st = TaskCensus(now, *store_, Where()).status({"size"});
  ASSERT_EQ(st["groups"].size(), 2u);
  EXPECT_EQ(st["groups"][1]["key"], json({{"size", 5}}));
  EXPECT_EQ(st["groups"][1]["pending"], 4);
  EXPECT_EQ(st["overall"]["total"], 8);
  EXPECT_EQ(st["overall"]["done"], 0);
  // A store with no tasks at all: everything pending.
  Store empty((dir_ / "empty.db").string(), Store::Mode::read_write);
  EXPECT_EQ(TaskCensus(now, empty, Where()).status({})["overall"]["pending"], 8);
}

TEST_F(TaskCensusTest, WhereSlices) {
  Suite s = load(kMatrix);
  seeded(s);
  set(s, {{"model", "m-a"}, {"size", 2}, {"i", 1}}, "failed", "server_error");
  Matrix m(s.dims);
  TaskCensus census(s, *store_, Where::parse(m, {"model=m-a", "size=2"}));
  json st = census.status({"model"});
  ASSERT_EQ(st["groups"].size(), 1u);
  EXPECT_EQ(st["groups"][0]["total"], 2);
  EXPECT_EQ(st["groups"][0]["failed"], 1);
  std::vector<json> rows;
  census.list({"failed"}, -1, [&](const json& r) {
    rows.push_back(r);
    return true;
  });
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0]["cell"], json({{"model", "m-a"}, {"size", 2}, {"i", 1}}));
  EXPECT_EQ(rows[0]["class"], "server_error");
}

TEST_F(TaskCensusTest, StaleOnlyWhereTheRequestCameFromAnotherSuiteText) {
  Suite s = load(kMatrix);
  seeded(s);
  const json c1 = {{"model", "m-a"}, {"size", 10}, {"i", 1}};
  const json c2 = {{"model", "m-a"}, {"size", 10}, {"i", 2}};
  const json c3 = {{"model", "m-a"}, {"size", 2}, {"i", 1}};
  for (const json& c : {c1, c2, c3}) set(s, c, "done", "ok");
  const int64_t old_run = store_->begin_run(RunInfo{"s", "", "", 0, "an older text", ""});
  const int64_t this_run = store_->begin_run(RunInfo{"s", "", "", 0, s.config_hash, ""});
  // c1: answered under an older text, its request differs now -> stale.
  // c2: under an older text, the same request -> not stale.
  // c3: under this very text -> trusted without asking the suite.
  Matrix m(s.dims);
  SuiteRuntime runtime(s, m);
  json body;
  std::string error;
  auto hash_of = [&](const json& cell) {
    for (uint64_t i = 0; i < m.size(); ++i) {
      if (m.cell(i) == cell) {
        EXPECT_TRUE(runtime.request_body(i, body, error));
        return request_hash(body);
      }
    }
    return std::string();
  };
  auto stamp = [&](const json& cell, const std::string& hash, int64_t run) {
    SQLite::Statement u(store_->db(), "UPDATE tasks SET request_hash = ?, request_run = ? WHERE id = ?");
    u.bind(1, hash);
    u.bind(2, run);
    u.bind(3, id_of(s, cell));
    u.exec();
  };
  stamp(c1, "0000000000000000", old_run);
  stamp(c2, hash_of(c2), old_run);
  stamp(c3, "ffffffffffffffff", this_run);
  TaskCensus census(s, *store_, Where());
  EXPECT_EQ(census.status({})["overall"]["stale"], 1);
  std::vector<json> stale;
  census.list({"stale"}, -1, [&](const json& r) {
    stale.push_back(r);
    return true;
  });
  ASSERT_EQ(stale.size(), 1u);
  EXPECT_EQ(stale[0]["cell"], c1);
  EXPECT_EQ(stale[0]["state"], "done");
  EXPECT_EQ(stale[0]["stale"], true);
}

TEST_F(TaskCensusTest, ModelMismatchAttemptsPerGroup) {
  Suite s = load(kMatrix);
  seeded(s);
  const json c = {{"model", "m-b"}, {"size", 2}, {"i", 1}};
  for (int n = 1; n <= 2; ++n) {
    SQLite::Statement ins(store_->db(), "INSERT INTO attempts(task, n, class) VALUES(?, ?, 'model_mismatch')");
    ins.bind(1, id_of(s, c));
    ins.bind(2, n);
    ins.exec();
  }
  set(s, c, "done", "ok", 3);
  json st = TaskCensus(s, *store_, Where()).status({"model"});
  EXPECT_EQ(st["groups"][0]["model_mismatch"], 2);
  EXPECT_EQ(st["groups"][1]["model_mismatch"], 0);
  EXPECT_EQ(st["overall"]["model_mismatch"], 2);
}

TEST_F(TaskCensusTest, ListsInMatrixOrderByStatesWithLimitAndDetails) {
  Suite s = load(kMatrix);
  seeded(s);
  const json failed = {{"model", "m-a"}, {"size", 2}, {"i", 2}};
  set(s, failed, "failed", "server_error", 2);
  store_->db().exec("UPDATE tasks SET error_code = 'HTTP_500', error_message = 'boom', model = 'm-a' WHERE state = "
                    "'failed'");
  set(s, {{"model", "m-b"}, {"size", 10}, {"i", 1}}, "done", "ok");
  TaskCensus census(s, *store_, Where());
  std::vector<json> rows;
  census.list({"pending", "failed"}, -1, [&](const json& r) {
    rows.push_back(r);
    return true;
  });
  ASSERT_EQ(rows.size(), 7u);
  // Ordinals count with the last dim (by name) fastest: i, model, size.
  EXPECT_EQ(rows.front()["cell"], json({{"model", "m-b"}, {"size", 2}, {"i", 1}}));
  EXPECT_EQ(rows.back()["cell"], failed);
  EXPECT_EQ(rows.back()["error"], json({{"code", "HTTP_500"}, {"message", "boom"}}));
  EXPECT_EQ(rows.back()["attempts"], 2);
  EXPECT_EQ(rows.back()["model"], "m-a");
  EXPECT_TRUE(rows.front()["error"].is_null());
  EXPECT_EQ(rows.front()["id"], id_of(s, rows.front()["cell"]));
  int n = 0;
  census.list({}, 3, [&](const json&) { return ++n < 2; });
  EXPECT_EQ(n, 2);  // the sink stopped it
  n = 0;
  census.list({}, 3, [&](const json&) { return ++n > 0; });
  EXPECT_EQ(n, 3);  // the limit did
}

}  // namespace
}  // namespace shepherd
