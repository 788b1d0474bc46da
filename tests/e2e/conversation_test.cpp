// Multi-turn tasks against the real binary and the real mock: task(cell, llm)
// conversations with tool calls survive faults and kill -9 with the same
// transcripts as an undisturbed run, never ask the provider twice for a turn
// the store holds, diverge at the first edited turn, and end with the right
// code (MAX_TURNS, TASK_TIMEOUT, a turn's own code, TASK_ERROR with file:line).
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "harness.h"

using namespace e2e;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

// A conversation suite's text: one provider "mock" with keys k0..k{keys-1}
// (env E2E_KEY_i), model m-a, and task(cell, llm) instead of request(cell).
struct ConvSuite {
  std::string name = "e2e-conv";
  std::string base_url;
  int keys = 1;
  int concurrency = 16;
  std::string timeouts = "{ connect_ms = 1000, total_ms = 5000, stall_ms = 1000 }";
  std::string matrix = "{ model = { 'm-a' }, instance = { 1, 2, 3 } }";
  std::string prelude;  // Lua before `return {` (locals the task uses)
  std::string extra;    // more top-level fields, Lua text ending with ','
  std::string task;     // function(cell, llm) ... end
  std::string check;    // optional: function(cell, result) ... end

  std::string text() const {
    std::ostringstream s;
    s << prelude << "return {\n  name = \"" << name << "\",\n  providers = {\n    mock = {\n"
      << "      base_url = \"" << base_url << "\",\n      keys = {";
    for (int i = 0; i < keys; ++i) s << " { id = \"k" << i << "\", env = \"E2E_KEY_" << i << "\" },";
    s << " },\n      models = { \"m-a\" },\n      limits = { concurrency = " << concurrency << " },\n"
      << "      timeouts = " << timeouts << ",\n    },\n  },\n  matrix = " << matrix << ",\n"
      << extra << "\n  task = " << task << ",\n";
    if (!check.empty()) s << "  check = " << check << ",\n";
    s << "}\n";
    return s.str();
  }
};

std::string instances(int n) {
  return "{ model = { 'm-a' }, instance = (function() local t = {} for i = 1, " + std::to_string(n) +
         " do t[i] = i end return t end)() }";
}

// The workflow of the issue: the model gets tools, calls them, gets a
// simulated result drawn with llm:random() and goes on until it answers in
// text (the mock's max_calls bounds it), at most 10 turns.
const char* const kToolPrelude = R"lua(local TOOLS = {
  { type = "function", ["function"] = { name = "search", description = "Search the index",
    parameters = { type = "object", properties = { query = { type = "string" } }, required = { "query" } } } },
  { type = "function", ["function"] = { name = "transform", description = "Transform data",
    parameters = { type = "object", properties = { data = { type = "string" },
      operation = { type = "string", enum = { "filter", "sort", "aggregate" } } }, required = { "data", "operation" } } } },
}
)lua";

const char* const kToolTask = R"lua(function(cell, llm)
    local messages = { { role = "system", content = "You run workflows with tools." },
                       { role = "user", content = "workflow " .. cell.instance } }
    for turn = 1, 10 do
      local r = llm:chat{ max_tokens = 64, messages = messages, tools = TOOLS }
      messages[#messages + 1] = r.message
      if not r.tool_calls then return { answer = r.content, turns = turn } end
      for _, call in ipairs(r.tool_calls) do
        messages[#messages + 1] = { role = "tool", tool_call_id = call.id,
                                    content = call["function"].name .. " -> " .. llm:random(1, 1000000) }
      end
    end
    return nil, "no answer within 10 turns"
  end)lua";

constexpr int kWorkflowTasks = 1000;

ConvSuite workflow_suite(const std::string& base_url) {
  ConvSuite s;
  s.name = "e2e-workflow";  // the same name everywhere: the same task ids, the same llm:random() draws
  s.base_url = base_url;
  s.keys = 2;
  s.concurrency = 64;
  s.timeouts = "{ connect_ms = 1000, total_ms = 5000, stall_ms = 250 }";
  s.matrix = instances(kWorkflowTasks);
  s.prelude = kToolPrelude;
  s.task = kToolTask;
  s.extra =
      "  conversation = { max_turns = 10 },\n"
      "  retry = { max_retries = 10, base_delay_ms = 5, max_delay_ms = 40, jitter = false },";
  return s;
}

json tools_rule() { return {{"call_probability", 0.7}, {"max_calls", 5}, {"parallel", 1}}; }

int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

json run_json(const std::string& suite, const std::string& db, int expected_exit, int keys = 1,
              std::chrono::milliseconds timeout = std::chrono::seconds(120), std::vector<std::string> more = {}) {
  std::vector<std::string> args{"run", suite, "--db", db, "--json"};
  args.insert(args.end(), more.begin(), more.end());
  Result r = shepherd(args, key_env(keys), timeout);
  EXPECT_EQ(r.exit_code, expected_exit) << r.out << r.err.substr(0, 4000);
  json out = json::parse(r.out, nullptr, false);
  EXPECT_FALSE(out.is_discarded()) << r.out;
  if (out.is_discarded()) out = json::object();
  return out;
}

// export --format jsonl [--transcripts], by task id.
std::map<std::string, json> export_records(const std::string& suite, const std::string& db, bool transcripts) {
  std::vector<std::string> args{"export", suite, "--db", db, "--format", "jsonl"};
  if (transcripts) args.push_back("--transcripts");
  Result r = shepherd(args);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::map<std::string, json> out;
  for (auto& row : parse_jsonl(r.out)) out[row["task"].get<std::string>()] = row;
  return out;
}

json mock_requests(const Mock& mock) {
  return json::parse(http_get("http://127.0.0.1:" + std::to_string(mock.port()) + "/requests"));
}

// How many turns a run sent and answered from the store: run --json's
// turns_sent and turns_replayed, which its log's last line must repeat
// ("conversations: N turns sent, M answered from the store").
struct TurnCounts {
  long sent = -1, replayed = -1;
};
TurnCounts turn_counts(const json& run) {
  TurnCounts c{run.value("turns_sent", -1L), run.value("turns_replayed", -1L)};
  TurnCounts logged;
  std::istringstream in(read_file(run.value("log", std::string())));
  std::string line;
  while (std::getline(in, line)) {
    auto at = line.find("conversations: ");
    if (at != std::string::npos) {
      std::sscanf(line.c_str() + at, "conversations: %ld turns sent, %ld answered from the store", &logged.sent,
                  &logged.replayed);
    }
  }
  EXPECT_EQ(logged.sent, c.sent) << "the run log says otherwise";
  EXPECT_EQ(logged.replayed, c.replayed) << "the run log says otherwise";
  return c;
}

// Turns per transcript: the assistant messages in it.
int assistant_messages(const json& transcript) {
  int n = 0;
  for (const auto& m : transcript)
    if (m.value("role", "") == "assistant") ++n;
  return n;
}

// An undisturbed, fault-free run of the workflow suite into its own store:
// the transcripts every disturbed run must reproduce, by task id.
const std::map<std::string, json>& reference_transcripts() {
  static std::map<std::string, json> transcripts = [] {
    Mock mock(json{{"tools", tools_rule()}});
    TempDir dir;
    std::string suite = dir.write("workflow.lua", workflow_suite(mock.base_url()).text());
    json run = run_json(suite, dir.file("ref.db"), 0, 2);
    EXPECT_EQ(run["done"], kWorkflowTasks);
    std::map<std::string, json> out;
    for (auto& [task, row] : export_records(suite, dir.file("ref.db"), true)) out[task] = row["transcript"];
    return out;
  }();
  return transcripts;
}

// Every task done, with the reference transcript; returns how many differ.
int compare_with_reference(const std::string& suite, const std::string& db) {
  const auto& reference = reference_transcripts();
  auto rows = export_records(suite, db, true);
  EXPECT_EQ(rows.size(), static_cast<size_t>(kWorkflowTasks));
  EXPECT_EQ(reference.size(), static_cast<size_t>(kWorkflowTasks));
  int differ = 0;
  for (const auto& [task, row] : rows) {
    EXPECT_EQ(row["state"], "done") << row.dump();
    auto it = reference.find(task);
    bool same = it != reference.end() && it->second == row["transcript"];
    if (!same && ++differ <= 3) {
      ADD_FAILURE() << "task " << task << " transcript differs:\n  got  " << row["transcript"].dump() << "\n  want "
                    << (it == reference.end() ? std::string("(none)") : it->second.dump());
    }
    EXPECT_EQ(row["turns"].get<int>(), assistant_messages(row["transcript"])) << row.dump();
    // The task's table result, stored as JSON text.
    json result = json::parse(row["content"].is_string() ? row["content"].get<std::string>() : "", nullptr, false);
    EXPECT_TRUE(result.is_object()) << row.dump();
    if (result.is_object() && row["transcript"].is_array() && !row["transcript"].empty()) {
      EXPECT_EQ(result["turns"], row["turns"]) << row.dump();
      EXPECT_EQ(result["answer"], row["transcript"].back()["content"]) << row.dump();
    }
  }
  return differ;
}

}  // namespace

// 1. A thousand tool-calling conversations under random faults on random
// turns all finish, each with the transcript of an undisturbed run.
TEST(Conversation, ToolWorkflowsUnderFaultsMatchAnUndisturbedRun) {
  const auto& reference = reference_transcripts();
  ASSERT_EQ(reference.size(), static_cast<size_t>(kWorkflowTasks));
  int max_turns = 0;
  long total_turns = 0;
  for (const auto& [task, transcript] : reference) {
    int turns = assistant_messages(transcript);
    max_turns = std::max(max_turns, turns);
    total_turns += turns;
  }
  EXPECT_EQ(max_turns, 6) << "max_calls 5: at most five tool-calling answers, then text";
  EXPECT_GT(total_turns, 2 * kWorkflowTasks) << "call_probability 0.7: most conversations call tools";

  Mock mock(json{{"latency", {{"kind", "uniform"}, {"min_ms", 0}, {"max_ms", 4}}},
                 {"tools", tools_rule()},
                 {"faults",
                  {{"error_500", 0.03}, {"reset", 0.03}, {"stall", 0.02}, {"malformed", 0.03}, {"wrong_model", 0.03}}},
                 {"seed", 7}});
  TempDir dir;
  std::string suite = dir.write("workflow.lua", workflow_suite(mock.base_url()).text());
  std::string db = dir.file("faults.db");
  // Two workers: each conversation's answers go to the Lua state that holds it.
  json run = run_json(suite, db, 0, 2, std::chrono::seconds(120), {"--workers", "2"});
  EXPECT_EQ(run["done"], kWorkflowTasks);
  EXPECT_EQ(compare_with_reference(suite, db), 0);

  json by = mock.stats()["by_outcome"];
  for (const char* fault : {"error_500", "reset", "stall", "malformed", "wrong_model"})
    EXPECT_GT(by.value(fault, 0), 10) << fault << " was injected: " << by.dump();
  // Faults fell on later turns too, and each was retried as the same turn.
  EXPECT_NE(query(db, "SELECT count(*) FROM attempts WHERE turn >= 3 AND decision = 'retry'"), "0");
  EXPECT_EQ(query(db, "SELECT count(*) FROM attempts WHERE decision = 'answered'"), std::to_string(total_turns));
  EXPECT_EQ(query(db, "SELECT count(*) FROM (SELECT task, turn FROM attempts WHERE decision = 'answered' "
                      "GROUP BY task, turn HAVING count(*) > 1)"),
            "0");
  TurnCounts counts = turn_counts(run);
  EXPECT_EQ(counts.replayed, 0);
  EXPECT_EQ(counts.sent, std::stol(query(db, "SELECT count(*) FROM attempts WHERE turn IS NOT NULL")));
}

// 2. kill -9 three times at random moments, resuming after each: the
// transcripts are those of an undisturbed run, the store is intact, and no
// turn the provider answered (long enough before a kill to be stored) is
// requested again.
TEST(Conversation, KillNineThriceThenResumeRequestsNothingTwice) {
  const auto& reference = reference_transcripts();
  ASSERT_EQ(reference.size(), static_cast<size_t>(kWorkflowTasks));
  // Faults here never answer 200: a 200 is an answer the store must keep.
  Mock mock(json{{"latency", {{"kind", "uniform"}, {"min_ms", 20}, {"max_ms", 60}}},
                 {"tools", tools_rule()},
                 {"faults", {{"error_500", 0.02}, {"reset", 0.02}}}});
  TempDir dir;
  ConvSuite s = workflow_suite(mock.base_url());
  s.concurrency = 16;  // 2 keys x 16 in flight: about four seconds of work
  std::string suite = dir.write("workflow.lua", s.text());
  std::string db = dir.file("killed.db");

  std::random_device device;
  const unsigned seed = device();
  SCOPED_TRACE("kill moments seeded with " + std::to_string(seed));
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> moment_ms(350, 900);

  std::vector<int64_t> kills;
  for (int i = 0; i < 3; ++i) {
    const int requests_before = mock.stats()["requests"].get<int>();
    Process run({SHEPHERD_BIN, "run", suite, "--db", db, "--json", "--workers", "2"}, key_env(2));
    // A random moment once the run is sending: then some answers are old
    // enough (0.3 s) to have to be in the store.
    ASSERT_TRUE(wait_until([&] { return mock.stats()["requests"].get<int>() > requests_before; },
                           std::chrono::seconds(10)));
    std::this_thread::sleep_for(std::chrono::milliseconds(moment_ms(rng)));
    ASSERT_TRUE(run.running()) << "the run ended before kill " << i + 1 << ":\n" << run.err_so_far();
    kills.push_back(unix_ms());
    run.signal(SIGKILL);
    Result killed = run.wait();
    ASSERT_EQ(killed.signal, SIGKILL);
    EXPECT_EQ(query(db, "PRAGMA integrity_check"), "ok");
  }
  int done_before_last = std::stoi(query(db, "SELECT count(*) FROM tasks WHERE state = 'done'"));
  EXPECT_LT(done_before_last, kWorkflowTasks) << "the kills came too late to test anything";

  json last = run_json(suite, db, 0, 2);
  EXPECT_EQ(last["done"], kWorkflowTasks);
  EXPECT_GT(turn_counts(last).replayed, 0) << "unfinished conversations replay their stored turns";
  EXPECT_EQ(query(db, "PRAGMA integrity_check"), "ok");
  EXPECT_EQ(compare_with_reference(suite, db), 0);
  EXPECT_EQ(query(db, "SELECT count(*) FROM (SELECT task, turn FROM attempts WHERE decision = 'answered' "
                      "GROUP BY task, turn HAVING count(*) > 1)"),
            "0")
      << "a turn answered twice";

  // From the mock's side: a request answered 200 more than 0.3 s before a
  // kill was stored, so it is never sent again after that kill.
  json log = mock_requests(mock);
  ASSERT_TRUE(log.is_array());
  for (size_t k = 0; k < kills.size(); ++k) {
    std::set<std::string> stored;
    for (const auto& e : log)
      if (e["status"] == 200 && e["answered_ms"].get<int64_t>() < kills[k] - 300)
        stored.insert(e["hash"].get<std::string>());
    EXPECT_GT(stored.size(), 0u) << "kill " << k + 1;
    int again = 0;
    for (const auto& e : log) {
      if (e["answered_ms"].get<int64_t>() <= kills[k]) continue;
      if (stored.count(e["hash"].get<std::string>()) && ++again <= 5)
        ADD_FAILURE() << "kill " << k + 1 << ": requested again after it: " << e.dump();
    }
  }
}

// 3. An edited suite: the conversation replays the turns that are still the
// same, and goes live from the first turn whose request changed.
TEST(Conversation, EditedSuiteDivergesAtTheFirstChangedTurn) {
  constexpr int kTasks = 6;
  // Turn 4 hangs once per task: the run is killed with turns 1-3 stored.
  Mock mock(json{{"canned", json::array({{{"when", ""}, {"turn", 4}, {"hang", true}, {"times", kTasks}}})}});
  TempDir dir;
  auto suite_with = [&](const std::string& third_prompt) {
    ConvSuite s;
    s.base_url = mock.base_url();
    s.matrix = instances(kTasks);
    s.timeouts = "{ connect_ms = 1000, first_byte_ms = 60000, total_ms = 60000, stall_ms = 1000 }";
    s.task = R"lua(function(cell, llm)
    local prompts = { "first " .. cell.instance, "second", ")lua" + third_prompt + R"lua(", "fourth" }
    local messages = {}
    local answers = {}
    for turn = 1, 4 do
      messages[#messages + 1] = { role = "user", content = prompts[turn] }
      local r = llm:chat{ max_tokens = 16, messages = messages }
      messages[#messages + 1] = r.message
      answers[#answers + 1] = r.content
    end
    return table.concat(answers, " | ")
  end)lua";
    return s.text();
  };
  std::string suite = dir.write("four.lua", suite_with("third"));
  std::string db = dir.file("four.db");

  Process run({SHEPHERD_BIN, "run", suite, "--db", db}, key_env(1));
  ASSERT_TRUE(wait_until(
      [&] {
        return try_query(db, "SELECT count(*) FROM attempts WHERE decision = 'answered' AND turn = 3", "0") ==
               std::to_string(kTasks);
      },
      std::chrono::seconds(20)))
      << run.err_so_far();
  ASSERT_TRUE(wait_until([&] { return mock.stats()["in_flight"].get<int>() == kTasks; }, std::chrono::seconds(5)))
      << "every task's turn 4 hangs: " << mock.stats().dump();
  run.signal(SIGKILL);
  ASSERT_EQ(run.wait().signal, SIGKILL);
  EXPECT_EQ(query(db, "SELECT count(*) FROM tasks WHERE state = 'pending' AND turns = 3"), std::to_string(kTasks));
  json before = mock_requests(mock);
  ASSERT_EQ(before.size(), static_cast<size_t>(3 * kTasks)) << before.dump();
  std::set<std::string> old_hashes;
  for (const auto& e : before) old_hashes.insert(e["hash"].get<std::string>());

  // Turn 3's prompt changes: turns 1-2 come from the store, 3 and 4 are sent.
  dir.write("four.lua", suite_with("third, edited"));
  json resumed = run_json(suite, db, 0);
  EXPECT_EQ(resumed["done"], kTasks);
  TurnCounts counts = turn_counts(resumed);
  EXPECT_EQ(counts.replayed, 2 * kTasks);
  EXPECT_EQ(counts.sent, 2 * kTasks);

  json after = mock_requests(mock);
  ASSERT_EQ(after.size(), static_cast<size_t>(5 * kTasks)) << after.dump();
  std::map<int, int> sent_by_turn;
  for (size_t i = before.size(); i < after.size(); ++i) {
    const json& e = after[i];
    ++sent_by_turn[e["turn"].get<int>()];
    EXPECT_EQ(old_hashes.count(e["hash"].get<std::string>()), 0u) << "sent again: " << e.dump();
  }
  EXPECT_EQ(sent_by_turn, (std::map<int, int>{{3, kTasks}, {4, kTasks}}));

  // The old turn 3 stays in the history; the result is built from the new one.
  EXPECT_EQ(query(db, "SELECT count(*) FROM attempts WHERE decision = 'answered' AND turn = 3"),
            std::to_string(2 * kTasks));
  EXPECT_EQ(query(db, "SELECT count(*) FROM attempts WHERE decision = 'answered' AND turn IN (1, 2)"),
            std::to_string(2 * kTasks));
  EXPECT_EQ(query(db, "SELECT count(DISTINCT request_hash) FROM attempts WHERE turn = 3"), std::to_string(2 * kTasks));
  for (const auto& [task, row] : export_records(suite, db, true)) {
    EXPECT_EQ(row["state"], "done");
    EXPECT_EQ(row["turns"], 4);
    EXPECT_EQ(row["content"], "mock answer: first " + row["dims"]["instance"].dump() +
                                  " | mock answer: second | mock answer: third, edited | mock answer: fourth")
        << row.dump();
    ASSERT_EQ(row["transcript"].size(), 8u) << row.dump();
    EXPECT_EQ(row["transcript"][4]["content"], "third, edited");
  }
}

// 4. A task that never stops asking ends at max_turns.
TEST(Conversation, MaxTurnsEndsATaskThatNeverStops) {
  Mock mock;
  TempDir dir;
  ConvSuite s;
  s.base_url = mock.base_url();
  s.extra = "  conversation = { max_turns = 3 },";
  s.task = R"lua(function(cell, llm)
    local messages = { { role = "user", content = "again " .. cell.instance } }
    while true do
      local r = llm:chat{ max_tokens = 8, messages = messages }
      messages[#messages + 1] = r.message
      messages[#messages + 1] = { role = "user", content = "again" }
    end
  end)lua";
  std::string suite = dir.write("s.lua", s.text());
  std::string db = dir.file("s.db");
  json run = run_json(suite, db, 4);
  EXPECT_EQ(run["failed"], 3);
  for (const auto& [task, row] : export_records(suite, db, false)) {
    EXPECT_EQ(row["state"], "failed");
    EXPECT_EQ(row["error"]["code"], "MAX_TURNS") << row.dump();
    EXPECT_EQ(row["turns"], 3);
  }
  EXPECT_EQ(query(db, "SELECT count(*) FROM attempts WHERE decision = 'answered'"), "9");
  EXPECT_EQ(query(db, "SELECT max(turn) FROM attempts"), "3");
  EXPECT_EQ(mock.stats()["requests"], 9) << "turn 4 is never sent";
  auto st = json::parse(shepherd({"status", suite, "--db", db, "--json"}).out);
  EXPECT_EQ(st["overall"]["failures_by_class"]["max_turns"], 3) << st.dump();
}

// 5. A turn that hangs past task_timeout_ms is cancelled and its task fails
// TASK_TIMEOUT on time; retry delays count toward the deadline; the other
// tasks of the run finish.
TEST(Conversation, TaskTimeoutCancelsTheHungTurn) {
  json server_error = {{"error", {{"message", "The server had an error"}, {"type", "server_error"}}}};
  Mock mock(json{{"canned", json::array({{{"when", "slow cell"}, {"turn", 3}, {"hang", true}},
                                         {{"when", "flaky cell"}, {"turn", 2}, {"status", 500}, {"body_json", server_error}}})}});
  TempDir dir;
  ConvSuite s;
  s.base_url = mock.base_url();
  s.matrix = "{ model = { 'm-a' }, instance = { 1, 2, 3, 4, 5, 6, 7 } }";
  s.timeouts = "{ connect_ms = 1000, first_byte_ms = 60000, total_ms = 60000, stall_ms = 60000 }";
  // The flaky cell's turn 2 fails at 0, 0.4 and 1.2 s: its next retry (due
  // at 2.8 s) would pass the deadline, so the task ends at 1.2 s.
  s.extra = "  conversation = { task_timeout_ms = 1500 },\n"
            "  retry = { max_retries = 6, base_delay_ms = 400, backoff_multiplier = 2, jitter = false },";
  s.task = R"lua(function(cell, llm)
    local kind = cell.instance <= 2 and "slow cell" or cell.instance == 7 and "flaky cell" or "fast cell"
    local messages = { { role = "user", content = kind .. " " .. cell.instance } }
    for turn = 1, 3 do
      local r = llm:chat{ max_tokens = 8, messages = messages }
      messages[#messages + 1] = r.message
      messages[#messages + 1] = { role = "user", content = "go on" }
    end
    return "three turns"
  end)lua";
  std::string suite = dir.write("s.lua", s.text());
  std::string db = dir.file("s.db");
  auto start = std::chrono::steady_clock::now();
  json run = run_json(suite, db, 4, 1, std::chrono::seconds(20));
  double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(run["done"], 4);
  EXPECT_EQ(run["failed"], 3);
  EXPECT_GE(run["seconds"].get<double>(), 1.45);
  EXPECT_LT(run["seconds"].get<double>(), 2.0) << "the deadline cancels the hung turn at once";
  EXPECT_LT(wall, 3.0);
  for (const auto& [task, row] : export_records(suite, db, false)) {
    const int instance = row["dims"]["instance"].get<int>();
    if (instance <= 2) {
      EXPECT_EQ(row["state"], "failed") << row.dump();
      EXPECT_EQ(row["error"]["code"], "TASK_TIMEOUT") << row.dump();
      EXPECT_EQ(row["turns"], 2) << row.dump();
    } else if (instance == 7) {
      EXPECT_EQ(row["state"], "failed") << row.dump();
      EXPECT_EQ(row["error"]["code"], "TASK_TIMEOUT") << row.dump();
      EXPECT_NE(row["error"]["message"].get<std::string>().find("retry"), std::string::npos) << row.dump();
      EXPECT_EQ(row["turns"], 1) << row.dump();
      EXPECT_EQ(row["attempts"], 4) << "turn 1, then turn 2 three times";
    } else {
      EXPECT_EQ(row["state"], "done") << row.dump();
      EXPECT_EQ(row["content"], "three turns");
      EXPECT_EQ(row["turns"], 3);
    }
  }
  EXPECT_EQ(query(db, "SELECT count(*) FROM attempts WHERE decision = 'answered'"), std::to_string(4 * 3 + 2 * 2 + 1));
  EXPECT_EQ(query(db, "SELECT count(*) FROM attempts WHERE turn = 2 AND http_status = 500"), "3");
  // It ended when the retry was found to be too late, not at the deadline.
  const double flaky_ms = std::stod(query(
      db, "SELECT (max(t.updated_at) - min(a.started_at)) * 1000 FROM tasks t JOIN attempts a ON a.task = t.id "
          "WHERE t.error_message LIKE '%retry%'"));
  EXPECT_GT(flaky_ms, 1150) << "its retries waited 0.4 and 0.8 s";
  EXPECT_LT(flaky_ms, 1450) << "the task waited for a retry past its deadline";
  EXPECT_EQ(mock.stats()["in_flight"], 0) << "the hung requests were cancelled";
}

// 6. A turn failing for good raises in the task: uncaught, the task fails
// with the turn's code; caught with pcall, the task goes on.
TEST(Conversation, TurnFailingForGoodRaisesItsCodeInTheTask) {
  json bad_request = {{"error",
                       {{"message", "Invalid value for messages: bad turn two"},
                        {"type", "invalid_request_error"},
                        {"param", "messages"},
                        {"code", nullptr}}}};
  json server_error = {{"error", {{"message", "The server had an error"}, {"type", "server_error"}}}};
  Mock mock(json{{"canned", json::array({{{"when", "cell-400"}, {"turn", 2}, {"status", 400}, {"body_json", bad_request}},
                                         {{"when", "cell-500"}, {"turn", 2}, {"status", 500}, {"body_json", server_error}}})}});
  TempDir dir;
  ConvSuite s;
  s.base_url = mock.base_url();
  s.matrix = "{ model = { 'm-a' }, mode = { '400-raw', '400-pcall', '500-raw', '500-pcall', 'fine' } }";
  s.extra = "  retry = { max_retries = 0 },";
  s.task = R"lua(function(cell, llm)
    local messages = { { role = "user", content = "cell-" .. cell.mode } }
    local function turn()
      local r = llm:chat{ max_tokens = 8, messages = messages }
      messages[#messages + 1] = r.message
      messages[#messages + 1] = { role = "user", content = "next" }
      return r
    end
    turn()
    if cell.mode:find("pcall", 1, true) then
      local ok, err = pcall(turn)
      if ok then return nil, "turn 2 should have failed" end
      -- A fresh request: the failed one, sent again, would fail again.
      messages = { { role = "user", content = "recovery" } }
      local again = turn()
      return "recovered " .. err.code .. " at turn " .. err.turn .. " (" .. tostring(err) .. "), then turn " ..
             llm.turn .. ": " .. again.content
    end
    return turn().content
  end)lua";
  std::string suite = dir.write("s.lua", s.text());
  std::string db = dir.file("s.db");
  json run = run_json(suite, db, 4);
  EXPECT_EQ(run["done"], 3);
  EXPECT_EQ(run["failed"], 2);
  for (const auto& [task, row] : export_records(suite, db, false)) {
    const std::string mode = row["dims"]["mode"];
    SCOPED_TRACE(mode + ": " + row.dump());
    if (mode == "400-raw") {
      EXPECT_EQ(row["state"], "failed");
      EXPECT_EQ(row["error"]["code"], "CLIENT_ERROR");
      EXPECT_NE(row["error"]["message"].get<std::string>().find("bad turn two"), std::string::npos);
      EXPECT_EQ(row["turns"], 1);
    } else if (mode == "500-raw") {
      EXPECT_EQ(row["state"], "failed");
      EXPECT_EQ(row["error"]["code"], "SERVER_ERROR");
      EXPECT_EQ(row["turns"], 1);
    } else if (mode == "400-pcall") {
      EXPECT_EQ(row["state"], "done");
      EXPECT_EQ(row["content"],
                "recovered CLIENT_ERROR at turn 2 (CLIENT_ERROR: HTTP 400: Invalid value for messages: bad turn two), then "
                "turn 3: mock answer: recovery");
      EXPECT_EQ(row["turns"], 2) << "turns 1 and 3 were answered";
    } else if (mode == "500-pcall") {
      EXPECT_EQ(row["state"], "done");
      const std::string content = row["content"].is_string() ? row["content"].get<std::string>() : "";
      EXPECT_EQ(content.rfind("recovered SERVER_ERROR at turn 2 (SERVER_ERROR: ", 0), 0u);
      EXPECT_NE(content.find("then turn 3: mock answer: recovery"), std::string::npos);
      EXPECT_EQ(row["turns"], 2);
    } else {
      EXPECT_EQ(row["state"], "done");
      EXPECT_EQ(row["content"], "mock answer: next");
      EXPECT_EQ(row["turns"], 2);
    }
  }
  // max_retries 0: each failed turn was asked once.
  int turn_two_failures = 0;
  for (const auto& e : mock_requests(mock))
    if (e["turn"] == 2 && e["status"] != 200) ++turn_two_failures;
  EXPECT_EQ(turn_two_failures, 4);
}

// 7. A Lua error in the task fails it with TASK_ERROR and the file:line.
TEST(Conversation, LuaErrorInTheTaskNamesFileAndLine) {
  Mock mock;
  TempDir dir;
  ConvSuite s;
  s.base_url = mock.base_url();
  s.matrix = "{ model = { 'm-a' }, instance = { 1, 2 } }";
  s.task = R"lua(function(cell, llm)
    local r = llm:chat{ model = "not-this-one", max_tokens = 8, messages = { { role = "user", content = "hello " .. cell.instance } } }
    if cell.instance == 2 then return r.model .. " " .. llm.model .. " " .. llm.turn .. " " .. r.content end
    error("the simulated tool broke")  -- THE LINE
  end)lua";
  const std::string text = s.text();
  const size_t at = text.find("-- THE LINE");
  ASSERT_NE(at, std::string::npos);
  const int line = static_cast<int>(std::count(text.begin(), text.begin() + static_cast<long>(at), '\n')) + 1;
  std::string suite = dir.write("broken.lua", text);
  std::string db = dir.file("s.db");
  json run = run_json(suite, db, 4);
  EXPECT_EQ(run["done"], 1);
  EXPECT_EQ(run["failed"], 1);
  for (const auto& [task, row] : export_records(suite, db, false)) {
    if (row["dims"]["instance"] == 2) {
      EXPECT_EQ(row["state"], "done");
      EXPECT_EQ(row["content"], "m-a m-a 1 mock answer: hello 2") << "the host sets the model";
      continue;
    }
    EXPECT_EQ(row["error"]["code"], "TASK_ERROR") << row.dump();
    const std::string message = row["error"]["message"];
    EXPECT_NE(message.find("broken.lua:" + std::to_string(line) + ": the simulated tool broke"), std::string::npos)
        << message << " (expected line " << line << ")";
    EXPECT_EQ(row["turns"], 1);
  }
}

// The result: `return nil, reason` fails the task with CHECK_FAILED and the
// reason; check(cell, result) judges what the task returned.
TEST(Conversation, NilReturnAndCheckFailTheTask) {
  Mock mock;
  TempDir dir;
  ConvSuite s;
  s.base_url = mock.base_url();
  s.matrix = "{ model = { 'm-a' }, instance = { 1, 2, 3 } }";
  s.task = R"lua(function(cell, llm)
    local r = llm:chat{ max_tokens = 8, messages = { { role = "user", content = "judge " .. cell.instance } } }
    if cell.instance == 1 then return nil, "the answer was not good enough" end
    return { answer = r.content, instance = cell.instance }
  end)lua";
  s.check = R"lua(function(cell, result)
    if result.instance == 3 then return false, "three is refused: " .. result.answer end
    return true
  end)lua";
  std::string suite = dir.write("s.lua", s.text());
  std::string db = dir.file("s.db");
  json run = run_json(suite, db, 4);
  EXPECT_EQ(run["done"], 1);
  for (const auto& [task, row] : export_records(suite, db, false)) {
    const int instance = row["dims"]["instance"].get<int>();
    SCOPED_TRACE(row.dump());
    EXPECT_EQ(row["turns"], 1);
    if (instance == 1) {
      EXPECT_EQ(row["error"]["code"], "CHECK_FAILED");
      EXPECT_EQ(row["error"]["message"], "the answer was not good enough");
    } else if (instance == 2) {
      EXPECT_EQ(row["state"], "done");
      EXPECT_EQ(json::parse(row["content"].get<std::string>()),
                (json{{"answer", "mock answer: judge 2"}, {"instance", 2}}));
    } else {
      EXPECT_EQ(row["error"]["code"], "CHECK_FAILED");
      EXPECT_EQ(row["error"]["message"], "three is refused: mock answer: judge 3");
    }
  }
}

// 8. request(cell) or task(cell, llm), never both; conversation only with task.
TEST(Conversation, SuiteWithBothRequestAndTaskOrConversationWithoutTaskIsInvalid) {
  TempDir dir;
  ConvSuite s;
  s.base_url = "http://127.0.0.1:9/v1";
  s.task = "function(cell, llm) return llm:chat{ messages = {} }.content end";
  s.extra = "  request = function(cell) return { messages = {} } end,";
  std::string both = dir.write("both.lua", s.text());
  for (const char* command : {"run", "status"}) {
    Result r = shepherd({command, both, "--db", dir.file("b.db"), "--json"}, key_env(1));
    EXPECT_EQ(r.exit_code, 2) << command << ": " << r.out << r.err;
    json j = json::parse(r.out, nullptr, false);
    ASSERT_TRUE(j.is_object()) << r.out;
    EXPECT_EQ(j["error"]["code"], "SUITE_INVALID") << r.out;
    EXPECT_EQ(j["error"]["details"]["field"], "task") << r.out;
    EXPECT_NE(j["error"]["message"].get<std::string>().find("not both"), std::string::npos) << r.out;
  }
  EXPECT_FALSE(fs::exists(dir.file("b.db"))) << "nothing ran";

  // A request suite that sets conversation bounds.
  SuiteSpec plain = suite_at("http://127.0.0.1:9/v1");
  plain.extra = "  conversation = { max_turns = 4 },";
  std::string stray = dir.write("stray.lua", plain.text());
  Result r = shepherd({"run", stray, "--db", dir.file("c.db"), "--json"}, key_env(1));
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  json j = json::parse(r.out, nullptr, false);
  ASSERT_TRUE(j.is_object()) << r.out;
  EXPECT_EQ(j["error"]["code"], "SUITE_INVALID") << r.out;
  EXPECT_EQ(j["error"]["details"]["field"], "conversation") << r.out;

  // Without the --json flag the line names the file and the field too.
  Result text = shepherd({"run", both, "--db", dir.file("b.db")}, key_env(1));
  EXPECT_EQ(text.exit_code, 2);
  EXPECT_NE(text.err.find("SUITE_INVALID"), std::string::npos) << text.err;
  EXPECT_NE(text.err.find("both.lua"), std::string::npos) << text.err;
  EXPECT_NE(text.err.find("task"), std::string::npos) << text.err;
}

// 9. status --json and export count the turns the mock answered.
TEST(Conversation, StatusAndExportCountTheTurnsTheMockAnswered) {
  Mock mock(json{{"tools", tools_rule()}});
  TempDir dir;
  ConvSuite s = workflow_suite(mock.base_url());
  s.name = "e2e-turns";
  s.matrix = "{ model = { 'm-a' }, group = { 'a', 'b' }, instance = (function() local t = {} for i = 1, 100 do t[i] = i end return t end)() }";
  s.task = std::string(kToolTask);
  // The instance alone would give both groups the same conversations.
  s.task.replace(s.task.find("\"workflow \" .. cell.instance"), std::string("\"workflow \" .. cell.instance").size(),
                 "\"workflow \" .. cell.group .. cell.instance");
  std::string suite = dir.write("s.lua", s.text());
  std::string db = dir.file("s.db");
  json run = run_json(suite, db, 0, 2);
  EXPECT_EQ(run["done"], 200);

  json log = mock_requests(mock);
  ASSERT_TRUE(log.is_array());
  long answered = 0;
  for (const auto& e : log)
    if (e["status"] == 200) ++answered;
  EXPECT_EQ(answered, static_cast<long>(log.size()));
  TurnCounts counts = turn_counts(run);
  EXPECT_EQ(counts.sent, answered);
  EXPECT_EQ(counts.replayed, 0);

  std::map<std::string, long> total;
  std::map<std::string, int> max;
  long all = 0;
  int all_max = 0;
  for (const auto& [task, row] : export_records(suite, db, true)) {
    const std::string group = row["dims"]["group"];
    const int turns = row["turns"].get<int>();
    EXPECT_EQ(turns, assistant_messages(row["transcript"])) << row.dump();
    EXPECT_EQ(row["attempts"], turns) << "no faults: one attempt per turn";
    total[group] += turns;
    max[group] = std::max(max[group], turns);
    all += turns;
    all_max = std::max(all_max, turns);
  }
  EXPECT_EQ(all, answered) << "every answer the mock sent is a turn of some task";
  EXPECT_EQ(query(db, "SELECT count(*) FROM attempts WHERE decision = 'answered'"), std::to_string(answered));

  json st = json::parse(shepherd({"status", suite, "--db", db, "--json", "--by", "group"}).out);
  EXPECT_EQ(st["overall"]["turns"]["total"], all) << st["overall"].dump();
  EXPECT_EQ(st["overall"]["turns"]["max"], all_max);
  EXPECT_DOUBLE_EQ(st["overall"]["turns"]["mean"].get<double>(), static_cast<double>(all) / 200.0);
  ASSERT_EQ(st["groups"].size(), 2u);
  for (const auto& g : st["groups"]) {
    const std::string group = g["key"]["group"];
    EXPECT_EQ(g["turns"]["total"], total[group]) << g.dump();
    EXPECT_EQ(g["turns"]["max"], max[group]) << g.dump();
    EXPECT_DOUBLE_EQ(g["turns"]["mean"].get<double>(), static_cast<double>(total[group]) / 100.0) << g.dump();
  }
  Result text = shepherd({"status", suite, "--db", db});
  EXPECT_NE(text.out.find("turns"), std::string::npos) << text.out;
}

// conversation.max_open bounds the conversations open at once across every
// worker: the turns of different conversations that overlap in time (from
// the store's sent/answered stamps; the turns of one conversation never
// overlap) are never more than max_open. The mock's own peak in flight
// cannot show it: it counts an answer until its last write completes, which
// may be after the client has read it and sent the next turn.
TEST(Conversation, MaxOpenBoundsOpenConversationsAcrossWorkers) {
  for (int max_open : {1, 3}) {
    SCOPED_TRACE("max_open = " + std::to_string(max_open));
    Mock mock(json{{"latency", 20}});
    TempDir dir;
    ConvSuite s;
    s.base_url = mock.base_url();
    s.concurrency = 16;
    s.matrix = instances(12);
    s.extra = "  conversation = { max_open = " + std::to_string(max_open) + " },";
    s.task = R"lua(function(cell, llm)
    local messages = { { role = "user", content = "open " .. cell.instance } }
    for turn = 1, 2 do
      local r = llm:chat{ max_tokens = 8, messages = messages }
      messages[#messages + 1] = r.message
      messages[#messages + 1] = { role = "user", content = "more" }
    end
    return "ok"
  end)lua";
    std::string suite = dir.write("s.lua", s.text());
    Result r = shepherd({"run", suite, "--db", dir.file("s.db"), "--workers", "2"}, key_env(1));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(mock.stats()["requests"], 24);
    std::string overlap = query(dir.file("s.db"),
                                "SELECT max(n) FROM (SELECT (SELECT count(*) FROM attempts b "
                                "WHERE b.started_at <= a.started_at AND b.ended_at > a.started_at) AS n FROM attempts a)");
    EXPECT_LE(std::stoi(overlap), max_open);
    if (max_open > 1) {
      EXPECT_GT(std::stoi(overlap), 1) << "conversations did run side by side";
    }
  }
}
