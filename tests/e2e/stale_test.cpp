// Stale answers: after an edit of the suite's prompt or max_tokens, the done
// tasks whose request changed are found, shown, kept apart from fresh ones,
// and sent again only when asked; a renamed suite is named.
#include <gtest/gtest.h>

#include "harness.h"

using namespace e2e;
using nlohmann::json;

namespace {

struct Edit {
  std::string name = "e2e-stale";
  std::string easy = "Solve";
  std::string hard = "Solve";
  int max_tokens = 16;
  bool reordered = false;  // the same request written another way
};

std::string suite_text(const Mock& mock, const Edit& e) {
  SuiteSpec s;
  s.name = e.name;
  s.base_url = mock.base_url();
  s.matrix = "{ model = { 'm-a' }, difficulty = { 'easy', 'hard' }, instance = { 1, 2, 3 } }";
  const std::string prompt = "(cell.difficulty == 'hard' and '" + e.hard + "' or '" + e.easy +
                             "') .. ' ' .. cell.difficulty .. ' #' .. cell.instance";
  if (!e.reordered) {
    s.request = "function(cell)\n    return { model = cell.model, max_tokens = " + std::to_string(e.max_tokens) +
                ", messages = { { role = 'user', content = " + prompt + " } } }\n  end";
  } else {
    s.request = "function(cell)\n    -- reformatted: same fields, another order\n    local m = { content = " + prompt +
                ", role = 'user' }\n    return { messages = { m }, max_tokens = " + std::to_string(e.max_tokens) +
                ", model = cell.model }\n  end";
  }
  return s.text();
}

json run_json(const std::string& suite, const std::string& db, std::vector<std::string> more = {}) {
  std::vector<std::string> args{"run", suite, "--db", db, "--json"};
  args.insert(args.end(), more.begin(), more.end());
  Result r = shepherd(args, key_env(1));
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  json out = json::parse(r.out, nullptr, false);
  EXPECT_FALSE(out.is_discarded()) << r.out;
  out["stderr"] = r.err;
  return out;
}

json status_json(const std::string& suite, const std::string& db, std::vector<std::string> more = {}) {
  std::vector<std::string> args{"status", suite, "--db", db, "--json"};
  args.insert(args.end(), more.begin(), more.end());
  Result r = shepherd(args);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return json::parse(r.out);
}

}  // namespace

TEST(Stale, EditedPromptIsFoundShownAndSentAgainOnlyWhenAsked) {
  Mock mock;
  TempDir dir;
  const std::string db = dir.file("s.db");
  Edit e;
  std::string suite = dir.write("s.lua", suite_text(mock, e));
  json first = run_json(suite, db);
  EXPECT_EQ(first["done"], 6);
  EXPECT_EQ(first["stale"], 0);
  EXPECT_EQ(mock.stats()["requests"], 6);

  // The same request written another way is not an edit.
  e.reordered = true;
  dir.write("s.lua", suite_text(mock, e));
  json same = run_json(suite, db);
  EXPECT_EQ(same["stale"], 0) << same.dump();
  EXPECT_EQ(same["stderr"].get<std::string>().find("stale"), std::string::npos) << same["stderr"];
  EXPECT_EQ(status_json(suite, db)["overall"]["stale"], 0);

  // The prompt of the hard cells changes: three stale, kept, nothing sent.
  e.hard = "Solve carefully";
  dir.write("s.lua", suite_text(mock, e));
  json edited = run_json(suite, db);
  EXPECT_EQ(edited["status"], "ok");
  EXPECT_EQ(edited["stale"], 3);
  EXPECT_EQ(edited["stale_rerun"], 0);
  EXPECT_EQ(edited["finished_this_run"], 0);
  EXPECT_NE(edited["stderr"].get<std::string>().find("3 done tasks are stale"), std::string::npos) << edited["stderr"];
  EXPECT_EQ(mock.stats()["requests"], 6) << "a stale task is not sent without --rerun-stale";

  json st = status_json(suite, db, {"--by", "difficulty"});
  EXPECT_EQ(st["overall"]["stale"], 3);
  EXPECT_EQ(st["overall"]["done"], 6) << "stale answers stay done until sent again";
  for (const auto& g : st["groups"]) EXPECT_EQ(g["stale"], g["key"]["difficulty"] == "hard" ? 3 : 0) << g.dump();
  Result text = shepherd({"status", suite, "--db", db});
  EXPECT_NE(text.out.find("stale"), std::string::npos) << text.out;

  for (const auto& [dims, row] : export_by_dims(suite, db)) {
    const bool hard = row["dims"]["difficulty"] == "hard";
    EXPECT_EQ(row["stale"], hard) << row.dump();
    EXPECT_EQ(row["state"], "done");
    EXPECT_EQ(row["content"].get<std::string>().find("carefully"), std::string::npos) << "still the old answer";
  }
  Result csv = shepherd({"export", suite, "--db", db, "--format", "csv"});
  ASSERT_EQ(csv.exit_code, 0);
  EXPECT_NE(csv.out.find(",stale\r\n"), std::string::npos) << csv.out;
  EXPECT_NE(csv.out.find(",true\r\n"), std::string::npos) << csv.out;

  // max_tokens changes for every cell: all six stale.
  e.max_tokens = 64;
  dir.write("s.lua", suite_text(mock, e));
  json all = run_json(suite, db);
  EXPECT_EQ(all["stale"], 6);
  EXPECT_NE(all["stderr"].get<std::string>().find("6 done tasks are stale"), std::string::npos) << all["stderr"];
  EXPECT_EQ(mock.stats()["requests"], 6);
  EXPECT_EQ(status_json(suite, db)["overall"]["stale"], 6);

  // --rerun-stale sends them again; the old answers stay in the history.
  json rerun = run_json(suite, db, {"--rerun-stale"});
  EXPECT_EQ(rerun["status"], "ok");
  EXPECT_EQ(rerun["stale_rerun"], 6);
  EXPECT_EQ(rerun["finished_this_run"], 6);
  EXPECT_EQ(mock.stats()["requests"], 12);
  EXPECT_EQ(status_json(suite, db)["overall"]["stale"], 0);
  for (const auto& [dims, row] : export_by_dims(suite, db)) {
    EXPECT_EQ(row["stale"], false) << row.dump();
    EXPECT_EQ(row["attempts"], 2) << row.dump();
    const bool hard = row["dims"]["difficulty"] == "hard";
    EXPECT_EQ(row["content"].get<std::string>().find("carefully") != std::string::npos, hard) << row.dump();
  }
  EXPECT_EQ(query(db, "SELECT count(*) FROM attempts"), "12");
  EXPECT_EQ(query(db, "SELECT count(*) FROM attempts WHERE class = 'ok'"), "12");
  EXPECT_EQ(query(db, "SELECT count(DISTINCT task) FROM attempts WHERE n = 1"), "6");
  EXPECT_EQ(query(db, "SELECT count(*) FROM (SELECT task FROM attempts GROUP BY task HAVING count(DISTINCT request_hash) = 2)"),
            "6");
  // The first answers, to the old prompt, are still there.
  EXPECT_EQ(query(db, "SELECT count(*) FROM attempts a JOIN tasks t ON t.id = a.task WHERE a.n = 1 AND "
                      "t.dims LIKE '%hard%' AND a.response LIKE '%Solve hard%'"),
            "3");

  // Nothing is stale any more: the next run sends nothing.
  json after = run_json(suite, db);
  EXPECT_EQ(after["stale"], 0);
  EXPECT_EQ(after["finished_this_run"], 0);
  EXPECT_EQ(mock.stats()["requests"], 12);
}

TEST(Stale, RenamedSuiteIsNamedAndNotMixedIn) {
  Mock mock;
  TempDir dir;
  const std::string db = dir.file("s.db");
  Edit e;
  std::string suite = dir.write("s.lua", suite_text(mock, e));
  run_json(suite, db);
  EXPECT_EQ(mock.stats()["requests"], 6);

  e.name = "e2e-renamed";
  std::string renamed = dir.write("renamed.lua", suite_text(mock, e));
  json r = run_json(renamed, db);
  const std::string err = r["stderr"];
  EXPECT_NE(err.find("'e2e-stale'"), std::string::npos) << err;
  EXPECT_NE(err.find("'e2e-renamed'"), std::string::npos) << err;
  EXPECT_NE(err.find("6 tasks"), std::string::npos) << err;
  EXPECT_EQ(r["stale"], 0) << "another suite's answers are never this suite's stale answers";
  EXPECT_EQ(r["finished_this_run"], 6) << "tasks belong to a suite name: the renamed suite runs its own";
  EXPECT_EQ(mock.stats()["requests"], 12);
  EXPECT_EQ(status_json(renamed, db)["overall"]["done"], 6);
  EXPECT_EQ(status_json(suite, db)["overall"]["done"], 6) << "the old suite's results are untouched";
}
