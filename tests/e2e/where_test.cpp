// --where DIM=V[,V…] on run, status and export: only that slice of the
// matrix runs or is shown, --retry-failed acts on the slice only, and a
// typo is a usage error before anything runs.
#include <filesystem>
#include <set>
#include <string>

#include <gtest/gtest.h>

#include "harness.h"

using namespace e2e;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

// 2 models x 4 prompt types x 2 rates x 2 instances = 32 tasks. The default
// request's prompt lists the cell sorted: "instance=1 model=m-a prompt_type=cot rate=0.9".
SuiteSpec sliced(const Mock& mock) {
  SuiteSpec s = suite_at(mock.base_url());
  s.models = {"m-a", "m-b"};
  s.matrix = "{ model = { 'm-a', 'm-b' }, prompt_type = { 'baseline', 'cot', 'flawed_x', 'flawed_y' }, "
             "rate = { 0.9, 0.6 }, instance = { 1, 2 } }";
  return s;
}

// A 400 (client_error, never retried) for every flawed_x cell, answered
// `times` times; a check that refuses baseline instance 2 (check_failed).
SuiteSpec with_failures(const Mock& mock) {
  SuiteSpec s = sliced(mock);
  s.extra = R"(  retry = { max_retries = 0 },
  check = function(cell, response)
    if cell.prompt_type == "baseline" and cell.instance == 2 then return false, "baseline 2 is never right" end
    return true
  end,)";
  return s;
}

json bad_request(const std::string& when, int times) {
  return {{"when", when},
          {"status", 400},
          {"times", times},
          {"body_json", {{"error", {{"message", "Invalid value for 'messages'"}, {"type", "invalid_request_error"}}}}}};
}

int ok_for(const Mock& mock, const std::string& model) {
  json s = mock.stats();
  return s["by_model"].contains(model) ? s["by_model"][model]["ok"].get<int>() : 0;
}

json status_json(const std::vector<std::string>& args) {
  std::vector<std::string> full{"status"};
  full.insert(full.end(), args.begin(), args.end());
  full.push_back("--json");
  Result r = shepherd(full);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  json j = json::parse(r.out, nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << r.out;
  return j;
}

// Group key (dumped) -> group, from status --json.
std::map<std::string, json> groups_of(const json& status) {
  std::map<std::string, json> out;
  for (const auto& g : status["groups"]) out[g["key"].dump()] = g;
  return out;
}

}  // namespace

TEST(Where, RunCoversOnlyTheSliceAndALaterRunTheRest) {
  Mock mock;
  TempDir dir;
  std::string suite = dir.write("s.lua", sliced(mock).text());
  std::string db = dir.file("s.db");

  Result r = shepherd({"run", suite, "--db", db, "--where", "model=m-b", "--where", "prompt_type=flawed_*", "--json"},
                      key_env(1));
  ASSERT_EQ(r.exit_code, 0) << "the slice is all done: " << r.err;
  json verdict = json::parse(r.out);
  EXPECT_EQ(verdict["done"], 8);
  EXPECT_EQ(verdict["pending"], 0);
  EXPECT_EQ(mock.stats()["requests"], 8);
  EXPECT_EQ(ok_for(mock, "m-b"), 8);
  EXPECT_EQ(ok_for(mock, "m-a"), 0) << "nothing outside the slice was sent";
  EXPECT_EQ(query(db, "SELECT count(*) FROM tasks"), "32") << "every task is known";
  EXPECT_EQ(query(db, "SELECT count(*) FROM tasks WHERE state = 'done' AND json_extract(dims, '$.model') = 'm-b' "
                      "AND json_extract(dims, '$.prompt_type') LIKE 'flawed_%'"),
            "8");
  EXPECT_EQ(query(db, "SELECT count(*) FROM tasks WHERE state = 'pending'"), "24");
  EXPECT_EQ(query(db, "SELECT count(*) FROM attempts"), "8");

  // A number as it prints, on another model: 4 prompt types x 2 instances.
  r = shepherd({"run", suite, "--db", db, "--where", "rate=0.6", "--where", "model=m-a"}, key_env(1));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(mock.stats()["requests"], 16);
  EXPECT_EQ(ok_for(mock, "m-a"), 8);
  EXPECT_EQ(query(db, "SELECT count(*) FROM tasks WHERE state = 'done' AND json_extract(dims, '$.model') = 'm-a' "
                      "AND json_extract(dims, '$.rate') = 0.6"),
            "8");
  // The same slice again sends nothing.
  r = shepherd({"run", suite, "--db", db, "--where", "rate=0.6", "--where", "model=m-a"}, key_env(1));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(mock.stats()["requests"], 16);

  json st = status_json({suite, "--db", db});
  EXPECT_EQ(st["overall"]["done"], 16);
  EXPECT_EQ(st["overall"]["pending"], 16);

  // Without --where: the rest, and nothing twice.
  r = shepherd({"run", suite, "--db", db, "--json"}, key_env(1));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["done"], 32);
  EXPECT_EQ(mock.stats()["requests"], 32);
  EXPECT_EQ(ok_for(mock, "m-a"), 16);
  EXPECT_EQ(ok_for(mock, "m-b"), 16);
  EXPECT_EQ(query(db, "SELECT max(attempts) FROM tasks"), "1");
  EXPECT_EQ(query(db, "SELECT count(*) FROM tasks WHERE state = 'done'"), "32");
}

TEST(Where, RetryFailedResetsOnlyTheSlicesFailedTasks) {
  // flawed_x fails (400) the first 8 times only: a task sent again succeeds.
  Mock mock(json{{"canned", json::array({bad_request("prompt_type=flawed_x", 8)})}});
  TempDir dir;
  std::string suite = dir.write("s.lua", with_failures(mock).text());
  std::string db = dir.file("s.db");

  Result r = shepherd({"run", suite, "--db", db}, key_env(1));
  ASSERT_EQ(r.exit_code, 4) << r.err;
  EXPECT_EQ(query(db, "SELECT count(*) FROM tasks WHERE state = 'failed' AND last_class = 'client_error'"), "8");
  EXPECT_EQ(query(db, "SELECT count(*) FROM tasks WHERE state = 'failed' AND last_class = 'check_failed'"), "4");
  EXPECT_EQ(mock.stats()["requests"], 32);

  // Only m-a's flawed_x go back and run; its baseline check failures and all of m-b's stay failed.
  r = shepherd({"run", suite, "--db", db, "--retry-failed", "--where", "model=m-a", "--where", "prompt_type=flawed_x",
                "--json"},
               key_env(1));
  ASSERT_EQ(r.exit_code, 0) << "the slice is all done now: " << r.err;
  json verdict = json::parse(r.out);
  EXPECT_EQ(verdict["done"], 4);
  EXPECT_EQ(verdict["failed"], 0);
  EXPECT_EQ(mock.stats()["requests"], 36) << "the 4 reset tasks, nothing else";
  EXPECT_EQ(query(db, "SELECT count(*) FROM tasks WHERE state = 'failed'"), "8");
  EXPECT_EQ(query(db, "SELECT count(*) FROM tasks WHERE state = 'failed' AND json_extract(dims, '$.model') = 'm-b' "
                      "AND last_class = 'client_error'"),
            "4");
  EXPECT_EQ(query(db, "SELECT count(*) FROM tasks WHERE state = 'failed' AND last_class = 'check_failed'"), "4");
  // The reset tasks keep their failed attempt as history.
  EXPECT_EQ(query(db, "SELECT count(*) FROM attempts a JOIN tasks t ON t.id = a.task "
                      "WHERE json_extract(t.dims, '$.model') = 'm-a' AND json_extract(t.dims, '$.prompt_type') = 'flawed_x'"),
            "8");

  // status shows the others still failed, with their class.
  auto groups = groups_of(status_json({suite, "--db", db, "--by", "model,prompt_type"}));
  json mb_x = groups[json{{"model", "m-b"}, {"prompt_type", "flawed_x"}}.dump()];
  EXPECT_EQ(mb_x["failed"], 4);
  EXPECT_EQ(mb_x["failures_by_class"], json({{"client_error", 4}}));
  json ma_x = groups[json{{"model", "m-a"}, {"prompt_type", "flawed_x"}}.dump()];
  EXPECT_EQ(ma_x["done"], 4);
  EXPECT_EQ(ma_x["failed"], 0);
  json ma_base = groups[json{{"model", "m-a"}, {"prompt_type", "baseline"}}.dump()];
  EXPECT_EQ(ma_base["failed"], 2);
  EXPECT_EQ(ma_base["failures_by_class"], json({{"check_failed", 2}}));
  Result human = shepherd({"status", suite, "--db", db, "--by", "model,prompt_type"});
  ASSERT_EQ(human.exit_code, 0) << human.err;
  EXPECT_NE(human.out.find("client_error"), std::string::npos) << human.out;
  EXPECT_NE(human.out.find("check_failed"), std::string::npos) << human.out;

  // Retrying the whole of m-b now: its 4 flawed_x succeed, its 2 baseline fail the check again.
  r = shepherd({"run", suite, "--db", db, "--retry-failed", "--where", "model=m-b"}, key_env(1));
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_EQ(mock.stats()["requests"], 42);
  EXPECT_EQ(query(db, "SELECT count(*) FROM tasks WHERE state = 'failed'"), "4");
  EXPECT_EQ(query(db, "SELECT count(*) FROM tasks WHERE state = 'failed' AND json_extract(dims, '$.model') = 'm-a'"),
            "2");
}

TEST(Where, StatusAndExportShowOnlyTheSlice) {
  Mock mock;
  TempDir dir;
  std::string suite = dir.write("s.lua", sliced(mock).text());
  std::string db = dir.file("s.db");
  ASSERT_EQ(shepherd({"run", suite, "--db", db, "--where", "prompt_type=cot,baseline"}, key_env(1)).exit_code, 0);

  json st = status_json({suite, "--db", db, "--where", "model=m-b"});
  EXPECT_EQ(st["overall"]["total"], 16);
  EXPECT_EQ(st["overall"]["done"], 8);
  EXPECT_EQ(st["overall"]["pending"], 8);
  ASSERT_EQ(st["groups"].size(), 1u);
  EXPECT_EQ(st["groups"][0]["total"], 16);

  st = status_json({suite, "--db", db, "--by", "prompt_type", "--where", "prompt_type=flawed_*", "--where", "rate=0.9"});
  EXPECT_EQ(st["overall"]["total"], 8);
  EXPECT_EQ(st["overall"]["done"], 0);
  ASSERT_EQ(st["groups"].size(), 2u);
  for (const auto& g : st["groups"]) {
    EXPECT_TRUE(g["key"]["prompt_type"] == "flawed_x" || g["key"]["prompt_type"] == "flawed_y") << g.dump();
    EXPECT_EQ(g["total"], 4);
  }
  Result human = shepherd({"status", suite, "--db", db, "--by", "prompt_type", "--where", "prompt_type=c*"});
  ASSERT_EQ(human.exit_code, 0) << human.err;
  EXPECT_NE(human.out.find("cot"), std::string::npos) << human.out;
  EXPECT_EQ(human.out.find("baseline"), std::string::npos) << human.out;
  EXPECT_EQ(human.out.find("flawed_"), std::string::npos) << human.out;

  Result exp = shepherd({"export", suite, "--db", db, "--format", "jsonl", "--where", "model=m-a", "--where", "rate=0.9"});
  ASSERT_EQ(exp.exit_code, 0) << exp.err;
  auto rows = parse_jsonl(exp.out);
  ASSERT_EQ(rows.size(), 8u);
  std::set<std::string> ids;
  for (const auto& row : rows) {
    EXPECT_EQ(row["dims"]["model"], "m-a");
    EXPECT_EQ(row["dims"]["rate"], 0.9);
    bool ran = row["dims"]["prompt_type"] == "cot" || row["dims"]["prompt_type"] == "baseline";
    EXPECT_EQ(row["state"], ran ? "done" : "pending") << row.dump();
    ids.insert(row["task"].get<std::string>());
  }
  EXPECT_EQ(ids.size(), 8u);

  Result csv = shepherd({"export", suite, "--db", db, "--format", "csv", "--out", dir.file("x.csv"), "--where",
                         "prompt_type=flawed_*,cot", "--where", "instance=2"});
  ASSERT_EQ(csv.exit_code, 0) << csv.err;
  std::string text = read_file(dir.file("x.csv"));
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 1 + 2 * 3 * 2) << text;
  EXPECT_EQ(text.find("baseline"), std::string::npos);
  EXPECT_EQ(text.find("\"\"instance\"\":1"), std::string::npos) << text;
}

TEST(Where, ATypoIsAUsageErrorBeforeAnythingRuns) {
  Mock mock;
  TempDir dir;
  std::string suite = dir.write("s.lua", sliced(mock).text());
  std::string db = dir.file("s.db");

  struct Case {
    std::vector<std::string> where;
    std::string says;
  };
  const std::vector<Case> cases = {
      {{"--where", "modle=m-a"}, "'modle'"},
      {{"--where", "model=m-c"}, "m-c"},
      {{"--where", "model=m-a", "--where", "prompt_type=flawed_z*"}, "flawed_z*"},
      {{"--where", "rate=0.7"}, "0.7"},
      {{"--where", "model="}, "model="},
      {{"--where", "=m-a"}, "=m-a"},
  };
  for (const auto& c : cases) {
    std::vector<std::string> args{"run", suite, "--db", db};
    args.insert(args.end(), c.where.begin(), c.where.end());
    Result r = shepherd(args, key_env(1));
    EXPECT_EQ(r.exit_code, 2) << c.says << ": " << r.err;
    EXPECT_NE(r.err.find("USAGE"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(c.says), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(db)) << c.says << ": run created the store before refusing its --where";
    EXPECT_FALSE(fs::exists(dir.file("logs"))) << c.says << ": run opened a log before refusing its --where";
  }
  Result j = shepherd({"run", suite, "--db", db, "--where", "modle=m-a", "--json"}, key_env(1));
  EXPECT_EQ(j.exit_code, 2);
  json e = json::parse(j.out, nullptr, false);
  ASSERT_FALSE(e.is_discarded()) << j.out;
  EXPECT_EQ(e["error"]["code"], "USAGE");
  EXPECT_EQ(e["error"]["details"]["dimension"], "modle");
  EXPECT_EQ(mock.stats()["requests"], 0);

  // On a store that exists: nothing changes (no run recorded), and status and export refuse too.
  ASSERT_EQ(shepherd({"run", suite, "--db", db, "--where", "model=m-a"}, key_env(1)).exit_code, 0);
  EXPECT_EQ(query(db, "SELECT count(*) FROM runs"), "1");
  Result r = shepherd({"run", suite, "--db", db, "--where", "model=m-b", "--where", "prompt_typ=cot"}, key_env(1));
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_EQ(query(db, "SELECT count(*) FROM runs"), "1") << "a refused run is not a run";
  EXPECT_EQ(mock.stats()["requests"], 16);

  r = shepherd({"status", suite, "--db", db, "--where", "modle=m-a"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("'modle'"), std::string::npos) << r.err;
  r = shepherd({"status", suite, "--db", db, "--where", "prompt_type=flawed"});
  EXPECT_EQ(r.exit_code, 2) << "a value is matched whole, or by a glob";
  r = shepherd({"export", suite, "--db", db, "--format", "jsonl", "--out", dir.file("x.jsonl"), "--where", "instance=3"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("USAGE"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir.file("x.jsonl")));
}
