// ConversationRunner: task(cell, llm) runs as a coroutine on the suite's Lua
// state; the test plays the engine, feeding each turn's completion (or its
// failure) and reading the steps back. Suites are written into a temp dir
// per test and loaded as run loads them.
#include <stdlib.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "conversation/conversation_runner.h"
#include "core/error.h"
#include "core/hash.h"
#include "suite/matrix.h"
#include "suite/suite.h"

namespace shepherd {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using Kind = ConversationStep::Kind;

// A suite around `task`, a Lua expression (the function); `extra` adds fields.
std::string suite_text(const std::string& task, const std::string& extra = "",
                       const std::string& conversation = "  conversation = { max_turns = 5, task_timeout_ms = 60000 },\n") {
  return "return {\n"
         "  name = \"conv\",\n"
         "  providers = {\n"
         "    local_mock = {\n"
         "      base_url = \"http://127.0.0.1:1/v1\",\n"
         "      keys = { { id = \"k0\", env = \"SHEPHERD_CONVERSATION_TEST_KEY\" } },\n"
         "      models = { \"m-a\", \"m-b\" },\n"
         "    },\n"
         "  },\n"
         "  matrix = { model = { \"m-a\", \"m-b\" }, instance = { 1, 2 } },\n" +
         conversation + "  task = " + task + ",\n" + extra + "}\n";
}

// Three turns: each answer is appended with a follow-up; returns the answers
// joined, or (result = "table") a table of them with the turn numbers seen.
const char* const kThreeTurns = R"LUA(function(cell, llm)
    local messages = { { role = "user", content = "cell " .. cell.model .. "/" .. cell.instance } }
    local seen, answers = { llm.turn }, {}
    for i = 1, 3 do
      local r = llm:chat{ model = llm.model, max_tokens = 64, messages = messages }
      seen[#seen + 1] = llm.turn
      answers[#answers + 1] = r.content
      messages[#messages + 1] = r.message
      if i < 3 then messages[#messages + 1] = { role = "user", content = "next " .. i } end
    end
    if RESULT == "table" then
      return { answers = answers, seen = seen, model = llm.model, task = llm.task, attempt = llm.attempt }
    end
    return table.concat(answers, "|")
  end)LUA";

json completion(const std::string& content, int64_t prompt = 10, int64_t completion_tokens = 5) {
  return {{"id", "chatcmpl-x"},
          {"model", "m-a-served"},
          {"choices", json::array({{{"index", 0},
                                    {"message", {{"role", "assistant"}, {"content", content}}},
                                    {"finish_reason", "stop"}}})},
          {"usage", {{"prompt_tokens", prompt}, {"completion_tokens", completion_tokens},
                     {"total_tokens", prompt + completion_tokens}}}};
}

TurnFacts facts(double latency_ms, int64_t prompt = -1, int64_t completion_tokens = -1, std::string model = "") {
  TurnFacts f;
  f.latency_ms = latency_ms;
  f.prompt_tokens = prompt;
  f.completion_tokens = completion_tokens;
  f.model_answered = std::move(model);
  return f;
}

// 1-based line of the first occurrence of `needle`.
int line_of(const std::string& text, const std::string& needle) {
  size_t pos = text.find(needle);
  EXPECT_NE(pos, std::string::npos) << needle;
  if (pos == std::string::npos) return -1;
  return 1 + static_cast<int>(std::count(text.begin(), text.begin() + static_cast<long>(pos), '\n'));
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// The first value xoshiro256** (seeded through splitmix64) gives for
// `seed`, as llm:random() returns it: replayed conversations depend on this
// stream never changing.
double reference_random(uint64_t seed) {
  auto splitmix = [&seed]() {
    uint64_t z = (seed += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  };
  uint64_t s[4];
  for (auto& word : s) word = splitmix();
  uint64_t x = s[1] * 5;
  x = ((x << 7) | (x >> 57)) * 9;
  return static_cast<double>(x >> 11) * 0x1.0p-53;
}

class ConversationRunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = "/tmp/shepherd_conversation_test_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    if (runner_) {
      runner_.reset();
      EXPECT_EQ(lua_gettop(runtime_->lua()), 0) << "the runner left values on the Lua stack";
    }
    runner_.reset();
    runtime_.reset();
    matrix_.reset();
    suite_.reset();
    fs::remove_all(dir_);
  }

  // Writes and loads the suite, and builds the runner on it.
  void load(const std::string& text) {
    runner_.reset();  // the runner needs its runtime, which needs the suite and the matrix
    runtime_.reset();
    matrix_.reset();
    text_ = text;
    path_ = (dir_ / "suite.lua").string();
    std::ofstream(path_, std::ios::binary) << text;
    try {
      suite_ = std::make_unique<Suite>(load_suite(path_, SuiteLoadOptions{false}));
    } catch (const Error& e) {
      FAIL() << e.code() << ": " << e.what() << "\n" << text;
    }
    ASSERT_TRUE(suite_->has_task);
    matrix_ = std::make_unique<Matrix>(suite_->dims);
    runtime_ = std::make_unique<SuiteRuntime>(*suite_, *matrix_);
    runner_ = std::make_unique<ConversationRunner>(*runtime_);
  }

  // The conversation of cell `ordinal` (its model the cell's).
  ConversationStart start_of(uint64_t ordinal = 0, int attempt = 1,
                             std::chrono::milliseconds timeout = std::chrono::milliseconds(60'000)) {
    ConversationStart s;
    s.task_id = task_id_for(suite_->name, matrix_->cell(ordinal));
    s.ordinal = ordinal;
    s.attempt = attempt;
    s.model = runtime_->first_model(ordinal);
    s.deadline = SteadyClock::now() + timeout;
    return s;
  }

  int stack_top() const { return lua_gettop(runtime_->lua()); }

  // Starts the 3-turn conversation and answers each turn with "a<n>".
  // Returns the last step; `sends` gets the three send steps.
  ConversationStep run_three(uint32_t key, ConversationStart start, std::vector<ConversationStep>* sends = nullptr,
                             std::vector<json>* given = nullptr) {
    ConversationStep step = runner_->start(key, std::move(start));
    for (int turn = 1; turn <= 3; ++turn) {
      EXPECT_EQ(step.kind, Kind::send) << "turn " << turn << ": " << step.result.error_code << " "
                                       << step.result.error_message;
      if (step.kind != Kind::send) return step;
      EXPECT_EQ(step.turn, turn);
      if (sends) sends->push_back(step);
      json c = completion("a" + std::to_string(turn), 10 * turn, turn);
      if (given) given->push_back(c);
      step = runner_->answered(key, c, facts(100.0 * turn, 10 * turn, turn, turn == 3 ? "m-a-0613" : ""));
    }
    return step;
  }

  // The recorded turns a store would hold after `sends` were answered with `given`.
  static std::vector<RecordedTurn> records_of(const std::vector<ConversationStep>& sends, const std::vector<json>& given,
                                              const std::string& model) {
    std::vector<RecordedTurn> out;
    for (size_t i = 0; i < sends.size() && i < given.size(); ++i) {
      RecordedTurn r;
      r.turn = sends[i].turn;
      r.n = static_cast<int>(i) + 1;
      r.request_hash = sends[i].request.hash;
      r.model_requested = model;
      r.model_answered = model + "-served";
      r.response = given[i].dump();
      r.latency_ms = 50;
      r.prompt_tokens = 3;
      r.completion_tokens = 2;
      out.push_back(std::move(r));
    }
    return out;
  }

  // The recorded turns of a full live 3-turn run of cell 0 (attempt 1).
  std::vector<RecordedTurn> record_three(std::vector<ConversationStep>* sends_out = nullptr) {
    std::vector<ConversationStep> sends;
    std::vector<json> given;
    ConversationStep last = run_three(900, start_of(0), &sends, &given);
    EXPECT_EQ(last.result.state, TaskState::done);
    if (sends_out) *sends_out = sends;
    return records_of(sends, given, runtime_->first_model(0));
  }

  fs::path dir_;
  std::string path_;
  std::string text_;
  std::unique_ptr<Suite> suite_;
  std::unique_ptr<Matrix> matrix_;
  std::unique_ptr<SuiteRuntime> runtime_;
  std::unique_ptr<ConversationRunner> runner_;
};

// ------------------------------------------------------------ a live conversation

TEST_F(ConversationRunnerTest, ThreeTurnsEndDoneWithAStringResult) {
  load(suite_text(kThreeTurns));
  std::vector<ConversationStep> sends;
  ConversationStart s = start_of(0, 2);
  std::string task_id = s.task_id;
  ConversationStep step = run_three(7, s, &sends);
  ASSERT_EQ(step.kind, Kind::finished);
  const TaskResultRecord& r = step.result;
  EXPECT_EQ(r.state, TaskState::done) << r.error_code << ": " << r.error_message;
  EXPECT_EQ(r.content, "a1|a2|a3");
  EXPECT_EQ(r.error_code, "");
  EXPECT_EQ(r.error_message, "");
  EXPECT_EQ(r.cls, "ok");
  EXPECT_EQ(r.task_id, task_id);
  EXPECT_EQ(r.turns, 3);
  EXPECT_EQ(r.conversation, 2);
  EXPECT_EQ(r.model, "m-a-0613");  // the model that answered last
  EXPECT_DOUBLE_EQ(r.latency_ms, 600.0);
  EXPECT_EQ(json::parse(r.usage_json), json::parse(R"({"prompt_tokens":60,"completion_tokens":6,"total_tokens":66})"));
  ASSERT_EQ(sends.size(), 3u);
  EXPECT_EQ(r.request_hash, sends[0].request.hash);
  EXPECT_EQ(step.replayed, 0);
  EXPECT_FALSE(runner_->is_open(7));
  EXPECT_EQ(runner_->open(), 0u);
  EXPECT_EQ(stack_top(), 0);
}

TEST_F(ConversationRunnerTest, ThreeTurnsEndDoneWithATableResultAsJsonText) {
  load("RESULT = \"table\"\n" + suite_text(kThreeTurns));
  ConversationStart s = start_of(1, 3);
  std::string task_id = s.task_id;
  std::string model = s.model;
  ConversationStep step = run_three(1, s);
  ASSERT_EQ(step.kind, Kind::finished);
  ASSERT_EQ(step.result.state, TaskState::done) << step.result.error_message;
  json content = json::parse(step.result.content);
  EXPECT_EQ(content["answers"], json::parse(R"(["a1","a2","a3"])"));
  EXPECT_EQ(content["seen"], json::parse("[0,1,2,3]"));  // llm.turn before the first chat, then after each
  EXPECT_EQ(content["model"], model);
  EXPECT_EQ(content["task"], task_id);
  EXPECT_EQ(content["attempt"], 3);
  EXPECT_EQ(step.result.content, content.dump());  // compact JSON text
}

TEST_F(ConversationRunnerTest, TranscriptIsTheLastRequestsMessagesAndTheLastAnswer) {
  load(suite_text(kThreeTurns));
  std::vector<ConversationStep> sends;
  ConversationStep step = run_three(1, start_of(0), &sends);
  ASSERT_EQ(step.result.state, TaskState::done);
  json transcript = json::parse(step.result.transcript);
  json cell = matrix_->cell(0);
  json expected = json::array({
      {{"role", "user"}, {"content", "cell " + cell["model"].get<std::string>() + "/" + cell["instance"].dump()}},
      {{"role", "assistant"}, {"content", "a1"}},
      {{"role", "user"}, {"content", "next 1"}},
      {{"role", "assistant"}, {"content", "a2"}},
      {{"role", "user"}, {"content", "next 2"}},
      {{"role", "assistant"}, {"content", "a3"}},
  });
  EXPECT_EQ(transcript, expected);
  EXPECT_EQ(json::parse(sends[2].request.text)["messages"], json(std::vector<json>(expected.begin(), expected.end() - 1)));
}

TEST_F(ConversationRunnerTest, SendStepCarriesTheBody) {
  load(suite_text(kThreeTurns));
  ConversationStep step = runner_->start(1, start_of(0));
  ASSERT_EQ(step.kind, Kind::send);
  EXPECT_EQ(step.turn, 1);
  EXPECT_EQ(step.replayed, 0);
  const RequestBody& b = step.request;
  EXPECT_FALSE(contains(b.text, "\"model\"")) << b.text;  // the host sets it per attempt
  json body = json::parse(b.text);
  EXPECT_EQ(body["max_tokens"], 64);
  EXPECT_EQ(body["messages"].size(), 1u);
  EXPECT_EQ(b.max_tokens, 64);
  EXPECT_EQ(b.hash, stable_hash_hex(b.text));
  json with_model = body;
  with_model["model"] = "m-a";
  EXPECT_EQ(b.hash, request_hash(with_model));
  EXPECT_FALSE(b.sets_stream);
  EXPECT_TRUE(runner_->is_open(1));
  EXPECT_EQ(stack_top(), 0);

  // The same cell builds the same body: the hash is stable.
  ConversationStep again = runner_->start(2, start_of(0));
  EXPECT_EQ(again.request.hash, b.hash);
  EXPECT_EQ(again.request.text, b.text);
  // Another cell, another body.
  ConversationStep other = runner_->start(3, start_of(1));
  EXPECT_NE(other.request.hash, b.hash);
  EXPECT_EQ(runner_->open(), 3u);
}

TEST_F(ConversationRunnerTest, FirstTurnBodyIsTheRuntimesRequestBody) {
  // status and export find stale conversations by the first turn's hash,
  // which SuiteRuntime computes without the runner.
  load(suite_text(kThreeTurns));
  for (uint64_t ordinal = 0; ordinal < matrix_->size(); ++ordinal) {
    json body;
    std::string error;
    ASSERT_TRUE(runtime_->request_body(ordinal, body, error)) << error;
    ConversationStep step = runner_->start(1, start_of(ordinal));
    ASSERT_EQ(step.kind, Kind::send);
    EXPECT_EQ(request_hash(body), step.request.hash) << ordinal;
  }
}

TEST_F(ConversationRunnerTest, TokensUnknownLeaveUsageEmpty) {
  load(suite_text(R"(function(cell, llm)
    local r = llm:chat{ messages = { { role = "user", content = "x" } } }
    return r.content
  end)"));
  ASSERT_EQ(runner_->start(1, start_of(0)).kind, Kind::send);
  ConversationStep step = runner_->answered(1, completion("hi"), facts(12.5));
  ASSERT_EQ(step.result.state, TaskState::done);
  EXPECT_EQ(step.result.usage_json, "");
  EXPECT_DOUBLE_EQ(step.result.latency_ms, 12.5);
  EXPECT_EQ(step.result.model, runtime_->first_model(0));  // none named: the model asked
  EXPECT_EQ(step.result.turns, 1);
}

TEST_F(ConversationRunnerTest, TaskWithoutTurnsEndsAtStart) {
  load(suite_text(R"(function(cell, llm) return "no turns for " .. cell.model end)"));
  ConversationStep step = runner_->start(1, start_of(0));
  ASSERT_EQ(step.kind, Kind::finished);
  EXPECT_EQ(step.result.state, TaskState::done);
  EXPECT_EQ(step.result.content, "no turns for " + runtime_->first_model(0));
  EXPECT_EQ(step.result.turns, 0);
  EXPECT_EQ(step.result.latency_ms, -1);
  EXPECT_EQ(step.result.usage_json, "");
  EXPECT_EQ(step.result.request_hash, "");
  EXPECT_EQ(step.result.transcript, "");
  EXPECT_FALSE(runner_->is_open(1));
}

TEST_F(ConversationRunnerTest, AnswerTableReachesLua) {
  load(suite_text(R"(function(cell, llm)
    local r = llm:chat{ messages = { { role = "user", content = "x" } } }
    return { content = r.content, finish_reason = r.finish_reason, usage = r.usage, model = r.model,
             role = r.message.role, calls = r.tool_calls == nil }
  end)"));
  ASSERT_EQ(runner_->start(1, start_of(0)).kind, Kind::send);
  ConversationStep step = runner_->answered(1, completion("hello", 4, 2), facts(1));
  ASSERT_EQ(step.result.state, TaskState::done) << step.result.error_message;
  EXPECT_EQ(json::parse(step.result.content),
            json::parse(R"({"content":"hello","finish_reason":"stop","model":"m-a-served","role":"assistant",
                            "calls":true,"usage":{"prompt_tokens":4,"completion_tokens":2,"total_tokens":6}})"));
}

// ----------------------------------------------------------------------- llm:random

TEST_F(ConversationRunnerTest, RandomIsReproducibleForATaskAndAttempt) {
  load(suite_text(R"(function(cell, llm)
    local r = { llm:random(), llm:random(), llm:random(10), llm:random(5, 7) }
    llm:chat{ messages = { { role = "user", content = "x" } }, r = r }
    return "done"
  end)"));
  auto draws = [&](uint32_t key, const std::string& task_id, int attempt) {
    ConversationStart s = start_of(0, attempt);
    s.task_id = task_id;
    ConversationStep step = runner_->start(key, s);
    EXPECT_EQ(step.kind, Kind::send);
    return json::parse(step.request.text)["r"];
  };
  json a = draws(1, "task-1", 1);
  json same = draws(2, "task-1", 1);
  json next_attempt = draws(3, "task-1", 2);
  json other_task = draws(4, "task-2", 1);
  EXPECT_EQ(a, same);
  EXPECT_NE(a, next_attempt);
  EXPECT_NE(a, other_task);
  EXPECT_NE(next_attempt, other_task);
  for (const json& r : {a, next_attempt, other_task}) {
    ASSERT_EQ(r.size(), 4u);
    EXPECT_GE(r[0].get<double>(), 0.0);
    EXPECT_LT(r[0].get<double>(), 1.0);
    EXPECT_NE(r[0], r[1]);
    EXPECT_GE(r[2].get<double>(), 1);
    EXPECT_LE(r[2].get<double>(), 10);
    EXPECT_EQ(r[2].get<double>(), static_cast<double>(static_cast<int>(r[2].get<double>())));
    EXPECT_GE(r[3].get<double>(), 5);
    EXPECT_LE(r[3].get<double>(), 7);
  }
  // The stream itself is fixed: stored conversations replay on any build.
  EXPECT_EQ(a[0].get<double>(), reference_random(stable_hash64("task-1#1")));
  EXPECT_EQ(next_attempt[0].get<double>(), reference_random(stable_hash64("task-1#2")));
}

TEST_F(ConversationRunnerTest, RandomRangesAreAllReached) {
  load(suite_text(R"(function(cell, llm)
    local seen = {}
    for _ = 1, 2000 do
      local v = llm:random(3, 5)
      assert(v == math.floor(v), "not an integer")
      seen[tostring(v)] = true
    end
    local ok, err = pcall(llm.random, llm, 0)
    local ok2, err2 = pcall(llm.random, {}, 0)
    return { seen = seen, empty = err, ok = ok, not_llm = err2, ok2 = ok2 }
  end)"));
  ConversationStep step = runner_->start(1, start_of(0));
  ASSERT_EQ(step.result.state, TaskState::done) << step.result.error_message;
  json r = json::parse(step.result.content);
  EXPECT_EQ(r["seen"], json::parse(R"({"3":true,"4":true,"5":true})"));
  EXPECT_EQ(r["ok"], false);
  EXPECT_TRUE(contains(r["empty"].get<std::string>(), "interval is empty")) << r["empty"];
  EXPECT_EQ(r["ok2"], false);
  EXPECT_TRUE(contains(r["not_llm"].get<std::string>(), "bad argument #1")) << r["not_llm"];
}

// --------------------------------------------------------------------------- replay

TEST_F(ConversationRunnerTest, ReplaysRecordedTurnsWithoutSending) {
  load(suite_text(kThreeTurns));
  std::vector<ConversationStep> live;
  std::vector<RecordedTurn> records = record_three(&live);
  ASSERT_EQ(records.size(), 3u);

  ConversationStart s = start_of(0);
  s.recorded = records;
  ConversationStep step = runner_->start(1, s);
  ASSERT_EQ(step.kind, Kind::finished);
  EXPECT_EQ(step.replayed, 3);
  const TaskResultRecord& r = step.result;
  EXPECT_EQ(r.state, TaskState::done) << r.error_message;
  EXPECT_EQ(r.content, "a1|a2|a3");
  EXPECT_EQ(r.turns, 3);
  EXPECT_DOUBLE_EQ(r.latency_ms, 150.0);
  EXPECT_EQ(json::parse(r.usage_json), json::parse(R"({"prompt_tokens":9,"completion_tokens":6,"total_tokens":15})"));
  EXPECT_EQ(r.model, runtime_->first_model(0) + "-served");
  EXPECT_EQ(r.request_hash, live[0].request.hash);
  EXPECT_EQ(json::parse(r.transcript).size(), 6u);
  EXPECT_FALSE(runner_->is_open(1));
}

TEST_F(ConversationRunnerTest, ReplaysThenGoesLiveWhereTheRecordsEnd) {
  load(suite_text(kThreeTurns));
  std::vector<ConversationStep> live;
  std::vector<RecordedTurn> records = record_three(&live);
  records.pop_back();  // turn 3 never answered

  ConversationStart s = start_of(0);
  s.recorded = records;
  ConversationStep step = runner_->start(1, s);
  ASSERT_EQ(step.kind, Kind::send);
  EXPECT_EQ(step.turn, 3);
  EXPECT_EQ(step.replayed, 2);
  EXPECT_EQ(step.request.hash, live[2].request.hash);  // the same request the live run sent
  step = runner_->answered(1, completion("fresh"), facts(7, 1, 1));
  ASSERT_EQ(step.kind, Kind::finished);
  EXPECT_EQ(step.replayed, 0);
  EXPECT_EQ(step.result.content, "a1|a2|fresh");
  EXPECT_EQ(step.result.turns, 3);
  EXPECT_DOUBLE_EQ(step.result.latency_ms, 107.0);
}

TEST_F(ConversationRunnerTest, GoesLiveAtAChangedHashAndStaysLive) {
  load(suite_text(kThreeTurns));
  std::vector<RecordedTurn> records = record_three();
  records[1].request_hash = "0000000000000000";  // turn 2 was asked differently

  ConversationStart s = start_of(0);
  s.recorded = records;
  ConversationStep step = runner_->start(1, s);
  ASSERT_EQ(step.kind, Kind::send);
  EXPECT_EQ(step.turn, 2);
  EXPECT_EQ(step.replayed, 1);
  step = runner_->answered(1, completion("b2"), facts(1));
  // Turn 3's record matches its request, but it followed another turn 2: never an answer now.
  ASSERT_EQ(step.kind, Kind::send);
  EXPECT_EQ(step.turn, 3);
  EXPECT_EQ(step.replayed, 0);
  step = runner_->answered(1, completion("b3"), facts(1));
  EXPECT_EQ(step.result.content, "a1|b2|b3");
}

TEST_F(ConversationRunnerTest, StaysLiveAfterADivergenceEvenForAnIdenticalRequest) {
  // Each turn asks the same whatever the answers: turn 3's record matches
  // its request, but it answered a conversation that went otherwise.
  load(suite_text(R"(function(cell, llm)
    local answers = {}
    for i = 1, 3 do
      answers[i] = llm:chat{ messages = { { role = "user", content = "question " .. i } } }.content
    end
    return table.concat(answers, "|")
  end)"));
  std::vector<ConversationStep> sends;
  std::vector<json> given;
  ASSERT_EQ(run_three(900, start_of(0), &sends, &given).result.content, "a1|a2|a3");
  std::vector<RecordedTurn> records = records_of(sends, given, runtime_->first_model(0));
  ConversationStart all = start_of(0);
  all.recorded = records;
  ConversationStep step = runner_->start(1, all);
  EXPECT_EQ(step.replayed, 3);
  EXPECT_EQ(step.result.content, "a1|a2|a3");

  records[1].request_hash = "0000000000000000";
  ConversationStart s = start_of(0);
  s.recorded = records;
  step = runner_->start(2, s);
  ASSERT_EQ(step.kind, Kind::send);
  EXPECT_EQ(step.turn, 2);
  EXPECT_EQ(step.replayed, 1);
  step = runner_->answered(2, completion("b2"), facts(1));
  ASSERT_EQ(step.kind, Kind::send);
  EXPECT_EQ(step.turn, 3);
  EXPECT_EQ(step.request.hash, records[2].request_hash);
  EXPECT_EQ(step.replayed, 0);
  step = runner_->answered(2, completion("b3"), facts(1));
  EXPECT_EQ(step.result.content, "a1|b2|b3");
}

TEST_F(ConversationRunnerTest, GoesLiveForAnotherModel) {
  load(suite_text(kThreeTurns));
  std::vector<RecordedTurn> records = record_three();
  for (auto& r : records) r.model_requested = "m-b";

  ConversationStart s = start_of(0);
  ASSERT_EQ(s.model, "m-a");
  s.recorded = records;
  ConversationStep step = runner_->start(1, s);
  ASSERT_EQ(step.kind, Kind::send);
  EXPECT_EQ(step.turn, 1);
  EXPECT_EQ(step.replayed, 0);
}

TEST_F(ConversationRunnerTest, GoesLiveAtAnUnparseableResponse) {
  load(suite_text(kThreeTurns));
  for (const char* response : {"not json", "", "[1,2]", "\"text\"", "{\"choices\":"}) {
    std::vector<RecordedTurn> records = record_three();
    records[1].response = response;
    ConversationStart s = start_of(0);
    s.recorded = records;
    ConversationStep step = runner_->start(1, s);
    ASSERT_EQ(step.kind, Kind::send) << response;
    EXPECT_EQ(step.turn, 2) << response;
    EXPECT_EQ(step.replayed, 1) << response;
    runner_->close(1);
  }
}

TEST_F(ConversationRunnerTest, ReplaysTheLatestRecordOfATurn) {
  load(suite_text(kThreeTurns));
  std::vector<ConversationStep> live;
  std::vector<RecordedTurn> records = record_three(&live);
  // Turn 1 was answered twice (attempts 1 and 2): the later answer is the one.
  RecordedTurn older = records[0];
  older.n = 1;
  older.response = completion("stale").dump();
  records[0].n = 2;
  records[1].n = 3;
  records[2].n = 4;
  records.insert(records.begin(), older);

  ConversationStart s = start_of(0);
  s.recorded = records;
  ConversationStep step = runner_->start(1, s);
  // a1 again (not "stale"), so turn 2's request is the recorded one, and so on.
  ASSERT_EQ(step.kind, Kind::finished);
  EXPECT_EQ(step.replayed, 3);
  EXPECT_EQ(step.result.content, "a1|a2|a3");
}

TEST_F(ConversationRunnerTest, LatestRecordRulesEvenWhenItDoesNotMatch) {
  // Turn 1's latest record asked something else: the earlier, matching one
  // is history, not an answer.
  load(suite_text(kThreeTurns));
  std::vector<RecordedTurn> records = record_three();
  RecordedTurn newer = records[0];
  newer.n = 2;
  newer.request_hash = "ffffffffffffffff";
  records[1].n = 3;
  records[2].n = 4;
  records.insert(records.begin() + 1, newer);

  ConversationStart s = start_of(0);
  s.recorded = records;
  ConversationStep step = runner_->start(1, s);
  ASSERT_EQ(step.kind, Kind::send);
  EXPECT_EQ(step.turn, 1);
  EXPECT_EQ(step.replayed, 0);
}

TEST_F(ConversationRunnerTest, NeverReusesARecordOlderThanThePreviousReplayedOne) {
  load(suite_text(kThreeTurns));
  std::vector<RecordedTurn> records = record_three();
  // Turn 1 re-answered by attempt 5 (same answer); turn 2's record, attempt
  // 2, was made before that and belongs to the older turn 1.
  records[0].n = 5;
  records[1].n = 2;
  records[2].n = 6;

  ConversationStart s = start_of(0);
  s.recorded = records;
  ConversationStep step = runner_->start(1, s);
  ASSERT_EQ(step.kind, Kind::send);
  EXPECT_EQ(step.turn, 2);
  EXPECT_EQ(step.replayed, 1);
  step = runner_->answered(1, completion("c2"), facts(1));
  ASSERT_EQ(step.kind, Kind::send);  // turn 3 live too: the records were left behind
  EXPECT_EQ(step.turn, 3);
  EXPECT_EQ(step.replayed, 0);
}

TEST_F(ConversationRunnerTest, ReplayedTurnNumbersReachLua) {
  load("RESULT = \"table\"\n" + suite_text(kThreeTurns));
  std::vector<ConversationStep> sends;
  std::vector<json> given;
  ConversationStep live = run_three(900, start_of(0), &sends, &given);
  ASSERT_EQ(live.result.state, TaskState::done);
  ConversationStart s = start_of(0);
  s.recorded = records_of(sends, given, s.model);
  ConversationStep step = runner_->start(1, s);
  ASSERT_EQ(step.kind, Kind::finished);
  EXPECT_EQ(step.replayed, 3);
  EXPECT_EQ(json::parse(step.result.content), json::parse(live.result.content));
}

// ------------------------------------------------------------------------- limits

TEST_F(ConversationRunnerTest, MaxTurnsExceeded) {
  load(suite_text(R"(function(cell, llm)
    while true do llm:chat{ messages = { { role = "user", content = "again" } } } end
  end)",
                  "", "  conversation = { max_turns = 2 },\n"));
  ConversationStep step = runner_->start(1, start_of(0));
  ASSERT_EQ(step.kind, Kind::send);
  step = runner_->answered(1, completion("1"), facts(1));
  ASSERT_EQ(step.kind, Kind::send);
  EXPECT_EQ(step.turn, 2);
  step = runner_->answered(1, completion("2"), facts(1));
  ASSERT_EQ(step.kind, Kind::finished);
  const TaskResultRecord& r = step.result;
  EXPECT_EQ(r.state, TaskState::failed);
  EXPECT_EQ(r.error_code, codes::MAX_TURNS);
  EXPECT_EQ(r.cls, "max_turns");
  EXPECT_TRUE(contains(r.error_message, "turn 3")) << r.error_message;
  EXPECT_TRUE(contains(r.error_message, "max_turns is 2")) << r.error_message;
  EXPECT_EQ(r.turns, 2);
  EXPECT_FALSE(runner_->is_open(1));
  EXPECT_EQ(stack_top(), 0);
}

TEST_F(ConversationRunnerTest, DeadlineInThePast) {
  load(suite_text(kThreeTurns));
  ConversationStart s = start_of(0);
  s.deadline = SteadyClock::now() - std::chrono::milliseconds(1);
  ConversationStep step = runner_->start(1, s);
  ASSERT_EQ(step.kind, Kind::finished);
  EXPECT_EQ(step.result.state, TaskState::failed);
  EXPECT_EQ(step.result.error_code, codes::TASK_TIMEOUT);
  EXPECT_EQ(step.result.cls, "task_timeout");
  EXPECT_TRUE(contains(step.result.error_message, "task_timeout_ms (60000 ms)")) << step.result.error_message;
  EXPECT_EQ(step.result.turns, 0);
  EXPECT_FALSE(runner_->is_open(1));
}

TEST_F(ConversationRunnerTest, DeadlinePassedBetweenTurns) {
  load(suite_text(kThreeTurns));
  ConversationStep step = runner_->start(1, start_of(0, 1, std::chrono::milliseconds(50)));
  ASSERT_EQ(step.kind, Kind::send);
  std::this_thread::sleep_for(std::chrono::milliseconds(60));
  step = runner_->answered(1, completion("late"), facts(60, 1, 1));
  ASSERT_EQ(step.kind, Kind::finished);
  EXPECT_EQ(step.result.error_code, codes::TASK_TIMEOUT);
  EXPECT_EQ(step.result.turns, 1);  // the answer came, and counts
  EXPECT_FALSE(runner_->is_open(1));
}

TEST_F(ConversationRunnerTest, RunawayLuaStopsAtTheDeadline) {
  load(suite_text(R"(function(cell, llm)
    local r = llm:chat{ messages = { { role = "user", content = "x" } } }
    local n = 0
    while true do n = n + 1; pcall(function() end) end
  end)"));
  ConversationStep step = runner_->start(1, start_of(0, 1, std::chrono::milliseconds(200)));
  ASSERT_EQ(step.kind, Kind::send);
  auto t0 = SteadyClock::now();
  step = runner_->answered(1, completion("x"), facts(1));
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - t0);
  ASSERT_EQ(step.kind, Kind::finished);
  EXPECT_EQ(step.result.error_code, codes::TASK_TIMEOUT) << step.result.error_message;
  EXPECT_TRUE(contains(step.result.error_message, "Lua code ran past")) << step.result.error_message;
  EXPECT_LT(took.count(), 5000);
  EXPECT_FALSE(runner_->is_open(1));
  EXPECT_EQ(stack_top(), 0);
}

TEST_F(ConversationRunnerTest, RunawayLuaBeforeTheFirstTurnStopsToo) {
  load(suite_text(R"(function(cell, llm)
    while true do end
  end)"));
  ConversationStep step = runner_->start(1, start_of(0, 1, std::chrono::milliseconds(100)));
  ASSERT_EQ(step.kind, Kind::finished);
  EXPECT_EQ(step.result.error_code, codes::TASK_TIMEOUT) << step.result.error_message;
}

TEST_F(ConversationRunnerTest, StopEndsAnOpenConversation) {
  load(suite_text(kThreeTurns));
  ConversationStart s = start_of(0);
  TimePoint deadline = s.deadline;
  ASSERT_EQ(runner_->start(1, s).kind, Kind::send);
  EXPECT_EQ(runner_->deadline(1), deadline);
  EXPECT_EQ(runner_->deadline(2), TimePoint::max());
  ASSERT_EQ(runner_->answered(1, completion("a1"), facts(5, 1, 2)).kind, Kind::send);
  TaskResultRecord r = runner_->stop(1, codes::TASK_TIMEOUT, "cancelled from outside");
  EXPECT_EQ(r.state, TaskState::failed);
  EXPECT_EQ(r.error_code, codes::TASK_TIMEOUT);
  EXPECT_EQ(r.error_message, "cancelled from outside");
  EXPECT_EQ(r.turns, 1);
  EXPECT_EQ(json::parse(r.usage_json)["total_tokens"], 3);
  EXPECT_FALSE(runner_->is_open(1));
  EXPECT_EQ(runner_->open(), 0u);
}

// ------------------------------------------------------------------------- errors

TEST_F(ConversationRunnerTest, LuaErrorNamesFileAndLine) {
  std::string text = suite_text(R"(function(cell, llm)
    local r = llm:chat{ messages = { { role = "user", content = "x" } } }
    error("boom")
  end)");
  load(text);
  ASSERT_EQ(runner_->start(1, start_of(0)).kind, Kind::send);
  ConversationStep step = runner_->answered(1, completion("x"), facts(1));
  ASSERT_EQ(step.kind, Kind::finished);
  EXPECT_EQ(step.result.state, TaskState::failed);
  EXPECT_EQ(step.result.error_code, codes::TASK_ERROR);
  EXPECT_EQ(step.result.cls, "task_error");
  EXPECT_EQ(step.result.error_message, path_ + ":" + std::to_string(line_of(text, "error(\"boom\")")) + ": boom");
  EXPECT_EQ(step.result.turns, 1);
  EXPECT_EQ(stack_top(), 0);
}

TEST_F(ConversationRunnerTest, NonStringErrorGetsALineFromTheStack) {
  std::string text = suite_text(R"(function(cell, llm)
    error({ reason = "not a string" })
  end)");
  load(text);
  ConversationStep step = runner_->start(1, start_of(0));
  ASSERT_EQ(step.kind, Kind::finished);
  EXPECT_EQ(step.result.error_code, codes::TASK_ERROR);
  std::string where = path_ + ":" + std::to_string(line_of(text, "error({"));
  EXPECT_TRUE(contains(step.result.error_message, where)) << step.result.error_message;
  EXPECT_TRUE(contains(step.result.error_message, "table")) << step.result.error_message;
}

TEST_F(ConversationRunnerTest, ErrorObjectWithTostringIsDescribed) {
  std::string text = suite_text(R"(function(cell, llm)
    error(setmetatable({}, { __tostring = function() return "custom failure" end }))
  end)");
  load(text);
  ConversationStep step = runner_->start(1, start_of(0));
  ASSERT_EQ(step.result.error_code, codes::TASK_ERROR);
  EXPECT_TRUE(contains(step.result.error_message, "custom failure")) << step.result.error_message;
  EXPECT_TRUE(contains(step.result.error_message, path_ + ":" + std::to_string(line_of(text, "error(setmetatable"))))
      << step.result.error_message;
}

TEST_F(ConversationRunnerTest, ErrorObjectWhoseTostringRaisesIsTaskError) {
  // Describing the error must not run the suite's code unprotected.
  std::string text = suite_text(R"(function(cell, llm)
    error(setmetatable({}, { __tostring = function() error("tostring exploded") end }))
  end)");
  load(text);
  ConversationStep step = runner_->start(1, start_of(0));
  ASSERT_EQ(step.kind, Kind::finished);
  EXPECT_EQ(step.result.error_code, codes::TASK_ERROR);
  EXPECT_TRUE(contains(step.result.error_message, path_ + ":" + std::to_string(line_of(text, "error(setmetatable"))))
      << step.result.error_message;
  EXPECT_EQ(stack_top(), 0);
}

TEST_F(ConversationRunnerTest, ErrorObjectWhoseTostringLoopsIsTaskError) {
  load(suite_text(R"(function(cell, llm)
    error(setmetatable({}, { __tostring = function() while true do end end }))
  end)"));
  auto t0 = SteadyClock::now();
  ConversationStep step = runner_->start(1, start_of(0));
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - t0);
  ASSERT_EQ(step.kind, Kind::finished);
  EXPECT_EQ(step.result.error_code, codes::TASK_ERROR);
  EXPECT_TRUE(contains(step.result.error_message, "table value")) << step.result.error_message;
  EXPECT_LT(took.count(), 5000);
  EXPECT_EQ(stack_top(), 0);
}

TEST_F(ConversationRunnerTest, ErrorObjectWhoseTostringGivesNoStringIsTaskError) {
  load(suite_text(R"(function(cell, llm)
    error(setmetatable({}, { __tostring = function() return 42 end }))
  end)"));
  ConversationStep step = runner_->start(1, start_of(0));
  EXPECT_EQ(step.result.error_code, codes::TASK_ERROR);
  EXPECT_TRUE(contains(step.result.error_message, "table value")) << step.result.error_message;
}

TEST_F(ConversationRunnerTest, ReturnNilReasonIsCheckFailed) {
  load(suite_text(R"(function(cell, llm)
    local r = llm:chat{ messages = { { role = "user", content = "x" } } }
    return nil, "the answer was " .. r.content
  end)"));
  ASSERT_EQ(runner_->start(1, start_of(0)).kind, Kind::send);
  ConversationStep step = runner_->answered(1, completion("wrong"), facts(1));
  EXPECT_EQ(step.result.state, TaskState::failed);
  EXPECT_EQ(step.result.error_code, codes::CHECK_FAILED);
  EXPECT_EQ(step.result.cls, "check_failed");
  EXPECT_EQ(step.result.error_message, "the answer was wrong");
  EXPECT_EQ(step.result.turns, 1);
  EXPECT_FALSE(step.result.transcript.empty());
}

TEST_F(ConversationRunnerTest, ReturnNothingIsCheckFailed) {
  load(suite_text("function(cell, llm) end"));
  ConversationStep step = runner_->start(1, start_of(0));
  EXPECT_EQ(step.result.error_code, codes::CHECK_FAILED);
  EXPECT_EQ(step.result.error_message, "task(cell, llm) returned nil");
}

TEST_F(ConversationRunnerTest, ReturningANumberOrAFunctionIsTaskError) {
  for (const char* value : {"42", "function() end", "true", "coroutine.create(function() end)"}) {
    load(suite_text(std::string("function(cell, llm) return ") + value + " end"));
    ConversationStep step = runner_->start(1, start_of(0));
    ASSERT_EQ(step.kind, Kind::finished) << value;
    EXPECT_EQ(step.result.error_code, codes::TASK_ERROR) << value;
    EXPECT_TRUE(contains(step.result.error_message, "return a string or a table")) << step.result.error_message;
  }
}

TEST_F(ConversationRunnerTest, ReturningATableThatIsNotJsonIsTaskError) {
  load(suite_text("function(cell, llm) return { f = print } end"));
  ConversationStep step = runner_->start(1, start_of(0));
  EXPECT_EQ(step.result.error_code, codes::TASK_ERROR);
  EXPECT_TRUE(contains(step.result.error_message, "not JSON")) << step.result.error_message;
  EXPECT_TRUE(contains(step.result.error_message, "result.f")) << step.result.error_message;
}

TEST_F(ConversationRunnerTest, CheckRefusesTheResult) {
  load(suite_text(R"(function(cell, llm)
    local r = llm:chat{ messages = { { role = "user", content = "x" } } }
    return { answer = r.content, instance = cell.instance }
  end)",
                  R"(  check = function(cell, result)
    if type(result) ~= "table" then return false, "not a table" end
    if result.answer == "good" then return true end
    return false, "expected good for " .. cell.instance .. ", got " .. result.answer
  end,
)"));
  ASSERT_TRUE(suite_->has_check);
  ASSERT_EQ(runner_->start(1, start_of(0)).kind, Kind::send);
  ConversationStep step = runner_->answered(1, completion("bad"), facts(1));
  ASSERT_EQ(step.kind, Kind::finished);
  EXPECT_EQ(step.result.state, TaskState::failed);
  EXPECT_EQ(step.result.error_code, codes::CHECK_FAILED);
  std::string instance = matrix_->cell(0)["instance"].dump();
  EXPECT_EQ(step.result.error_message, "expected good for " + instance + ", got bad");
  EXPECT_EQ(json::parse(step.result.content)["answer"], "bad");  // kept: what failed the check
  EXPECT_EQ(stack_top(), 0);

  ASSERT_EQ(runner_->start(2, start_of(0)).kind, Kind::send);
  step = runner_->answered(2, completion("good"), facts(1));
  EXPECT_EQ(step.result.state, TaskState::done) << step.result.error_message;
  EXPECT_EQ(json::parse(step.result.content)["answer"], "good");
  EXPECT_EQ(stack_top(), 0);
}

TEST_F(ConversationRunnerTest, CheckGetsAStringResultAndMayRaise) {
  load(suite_text(R"(function(cell, llm) return "text result" end)",
                  R"(  check = function(cell, result)
    if result ~= "text result" then return false, "got " .. type(result) end
    error("check exploded")
  end,
)"));
  ConversationStep step = runner_->start(1, start_of(0));
  EXPECT_EQ(step.result.error_code, codes::CHECK_FAILED);
  EXPECT_TRUE(contains(step.result.error_message, "check raised")) << step.result.error_message;
  EXPECT_TRUE(contains(step.result.error_message, "check exploded")) << step.result.error_message;
  EXPECT_EQ(step.result.content, "text result");
  EXPECT_EQ(stack_top(), 0);
}

// ------------------------------------------------------------------ turn failures

const char* const kFallbackTask = R"LUA(function(cell, llm)
    local first = llm:chat{ messages = { { role = "user", content = "one" } } }
    local ok, err = pcall(function() return llm:chat{ messages = { { role = "user", content = "two" } } } end)
    if not ok then
      return { fallback = first.content, code = err.code, message = err.message, turn = err.turn,
               text = tostring(err), now = llm.turn }
    end
    return "no failure"
  end)LUA";

TEST_F(ConversationRunnerTest, TurnFailureIsCatchableAndTheTaskMayFallBack) {
  load(suite_text(kFallbackTask));
  ASSERT_EQ(runner_->start(1, start_of(0)).kind, Kind::send);
  ConversationStep step = runner_->answered(1, completion("first"), facts(1));
  ASSERT_EQ(step.kind, Kind::send);
  EXPECT_EQ(step.turn, 2);
  step = runner_->turn_failed(1, "quota", "QUOTA_EXHAUSTED", "the key is out of quota");
  ASSERT_EQ(step.kind, Kind::finished);
  EXPECT_EQ(step.result.state, TaskState::done) << step.result.error_message;
  EXPECT_EQ(step.result.cls, "ok");
  EXPECT_EQ(json::parse(step.result.content),
            json::parse(R"({"fallback":"first","code":"QUOTA_EXHAUSTED","message":"the key is out of quota",
                            "turn":2,"text":"QUOTA_EXHAUSTED: the key is out of quota","now":2})"));
  EXPECT_EQ(step.result.turns, 1);  // the failed turn was not answered
}

TEST_F(ConversationRunnerTest, UncaughtTurnFailureFailsTheTaskWithItsCodeAndClass) {
  load(suite_text(kThreeTurns));
  ASSERT_EQ(runner_->start(1, start_of(0)).kind, Kind::send);
  ASSERT_EQ(runner_->answered(1, completion("a1"), facts(1, 2, 3)).kind, Kind::send);
  ConversationStep step = runner_->turn_failed(1, "quota", "QUOTA_EXHAUSTED", "the key is out of quota");
  ASSERT_EQ(step.kind, Kind::finished);
  const TaskResultRecord& r = step.result;
  EXPECT_EQ(r.state, TaskState::failed);
  EXPECT_EQ(r.error_code, "QUOTA_EXHAUSTED");
  EXPECT_EQ(r.error_message, "the key is out of quota");
  EXPECT_EQ(r.cls, "quota");  // the class given, not the code in lower case
  EXPECT_EQ(r.turns, 1);
  EXPECT_EQ(json::parse(r.usage_json)["total_tokens"], 5);
  EXPECT_FALSE(runner_->is_open(1));
  EXPECT_EQ(stack_top(), 0);
}

TEST_F(ConversationRunnerTest, CaughtTurnFailureDoesNotNameALaterFailure) {
  load(suite_text(R"(function(cell, llm)
    pcall(llm.chat, llm, { messages = { { role = "user", content = "x" } } })
    return nil, "gave up"
  end)"));
  ASSERT_EQ(runner_->start(1, start_of(0)).kind, Kind::send);
  ConversationStep step = runner_->turn_failed(1, "quota", "QUOTA_EXHAUSTED", "out");
  EXPECT_EQ(step.result.error_code, codes::CHECK_FAILED);
  EXPECT_EQ(step.result.cls, "check_failed");
}

// --------------------------------------------------------------- llm:chat misuse

TEST_F(ConversationRunnerTest, ChatWithANonTableRaisesBadArgument) {
  std::string text = suite_text(R"(function(cell, llm)
    local ok, err = pcall(llm.chat, llm, "hello")
    local ok2, err2 = pcall(llm.chat, {}, {})
    if ok or ok2 then return "no error" end
    llm:chat("hello")
  end)");
  load(text);
  ConversationStep step = runner_->start(1, start_of(0));
  ASSERT_EQ(step.kind, Kind::finished);
  EXPECT_EQ(step.result.error_code, codes::TASK_ERROR);
  EXPECT_EQ(step.result.error_message, path_ + ":" + std::to_string(line_of(text, "llm:chat(\"hello\")")) +
                                           ": bad argument #1 to 'chat' (table expected, got string)");
  EXPECT_EQ(step.result.turns, 0);
}

TEST_F(ConversationRunnerTest, ChatOnSomethingElseRaisesBadArgument) {
  load(suite_text(R"(function(cell, llm)
    local ok, err = pcall(llm.chat, {}, {})
    local ok2, err2 = pcall(llm.chat, llm)
    return { ok = ok, err = err, ok2 = ok2, err2 = err2 }
  end)"));
  ConversationStep step = runner_->start(1, start_of(0));
  ASSERT_EQ(step.result.state, TaskState::done) << step.result.error_message;
  json r = json::parse(step.result.content);
  EXPECT_EQ(r["ok"], false);
  EXPECT_TRUE(contains(r["err"].get<std::string>(), "bad argument #1 to 'chat' (call it as llm:chat{...})")) << r;
  EXPECT_EQ(r["ok2"], false);
  EXPECT_TRUE(contains(r["err2"].get<std::string>(), "table expected, got nil")) << r;
}

TEST_F(ConversationRunnerTest, ChatFromANestedCoroutineRaises) {
  load(suite_text(R"(function(cell, llm)
    local co = coroutine.create(function() return llm:chat{ messages = {} } end)
    local ok, err = coroutine.resume(co)
    return { ok = ok, err = err }
  end)"));
  ConversationStep step = runner_->start(1, start_of(0));
  ASSERT_EQ(step.kind, Kind::finished);
  ASSERT_EQ(step.result.state, TaskState::done) << step.result.error_message;
  json r = json::parse(step.result.content);
  EXPECT_EQ(r["ok"], false);
  EXPECT_TRUE(contains(r["err"].get<std::string>(), "must be called from task(cell, llm) itself")) << r;
}

TEST_F(ConversationRunnerTest, ChatFromAWrappedCoroutineFailsTheTask) {
  load(suite_text(R"(function(cell, llm)
    local f = coroutine.wrap(function() return llm:chat{ messages = {} } end)
    return f()
  end)"));
  ConversationStep step = runner_->start(1, start_of(0));
  ASSERT_EQ(step.kind, Kind::finished);
  EXPECT_EQ(step.result.error_code, codes::TASK_ERROR);
  EXPECT_TRUE(contains(step.result.error_message, "must be called from task(cell, llm) itself"))
      << step.result.error_message;
}

TEST_F(ConversationRunnerTest, AnotherConversationsLlmRaises) {
  load(suite_text(R"(function(cell, llm)
    if STOLEN == nil then
      STOLEN = llm
      return llm:chat{ messages = {} }.content
    end
    local ok, err = pcall(STOLEN.chat, STOLEN, { messages = {} })
    return { ok = ok, err = err }
  end)"));
  ASSERT_EQ(runner_->start(1, start_of(0)).kind, Kind::send);
  ConversationStep step = runner_->start(2, start_of(1));
  ASSERT_EQ(step.kind, Kind::finished);
  json r = json::parse(step.result.content);
  EXPECT_EQ(r["ok"], false);
  EXPECT_TRUE(contains(r["err"].get<std::string>(), "must be called from task(cell, llm) itself")) << r;
  // The first conversation is untouched.
  step = runner_->answered(1, completion("still fine"), facts(1));
  EXPECT_EQ(step.result.content, "still fine");
}

TEST_F(ConversationRunnerTest, YieldInTheTaskIsTaskError) {
  load(suite_text(R"(function(cell, llm)
    coroutine.yield("sneaky")
    return "resumed"
  end)"));
  ConversationStep step = runner_->start(1, start_of(0));
  ASSERT_EQ(step.kind, Kind::finished);
  EXPECT_EQ(step.result.state, TaskState::failed);
  EXPECT_EQ(step.result.error_code, codes::TASK_ERROR);
  EXPECT_TRUE(contains(step.result.error_message, "yielded outside llm:chat")) << step.result.error_message;
  EXPECT_FALSE(runner_->is_open(1));
  EXPECT_EQ(stack_top(), 0);
}

TEST_F(ConversationRunnerTest, BodyWithAFunctionRaisesRequestInvalidAtTheCall) {
  load(suite_text(R"(function(cell, llm)
    local ok, err = pcall(llm.chat, llm, { messages = {}, tools = { print } })
    local r = llm:chat{ messages = { { role = "user", content = "fine" } } }
    return { ok = ok, code = err.code, message = err.message, turn = err.turn, answer = r.content, now = llm.turn }
  end)"));
  ConversationStep step = runner_->start(1, start_of(0));
  ASSERT_EQ(step.kind, Kind::send);
  EXPECT_EQ(step.turn, 1);  // the refused body was no turn
  step = runner_->answered(1, completion("yes"), facts(1));
  ASSERT_EQ(step.result.state, TaskState::done) << step.result.error_message;
  json r = json::parse(step.result.content);
  EXPECT_EQ(r["ok"], false);
  EXPECT_EQ(r["code"], codes::REQUEST_INVALID);
  EXPECT_TRUE(contains(r["message"].get<std::string>(), "tools[1]")) << r;
  EXPECT_TRUE(contains(r["message"].get<std::string>(), "function")) << r;
  EXPECT_EQ(r["turn"], 1);
  EXPECT_EQ(r["answer"], "yes");
  EXPECT_EQ(r["now"], 1);
}

TEST_F(ConversationRunnerTest, UncaughtRequestInvalidFailsTheTask) {
  load(suite_text(R"(function(cell, llm)
    return llm:chat{ messages = {}, bad = function() end }
  end)"));
  ConversationStep step = runner_->start(1, start_of(0));
  ASSERT_EQ(step.kind, Kind::finished);
  EXPECT_EQ(step.result.error_code, codes::REQUEST_INVALID);
  EXPECT_EQ(step.result.cls, "request_invalid");
  EXPECT_TRUE(contains(step.result.error_message, "bad")) << step.result.error_message;
}

TEST_F(ConversationRunnerTest, BodyThatIsAnArrayIsRequestInvalid) {
  load(suite_text(R"(function(cell, llm)
    local ok, err = pcall(llm.chat, llm, { 1, 2, 3 })
    return { ok = ok, code = err.code }
  end)"));
  ConversationStep step = runner_->start(1, start_of(0));
  ASSERT_EQ(step.result.state, TaskState::done) << step.result.error_message;
  EXPECT_EQ(json::parse(step.result.content), json::parse(R"({"ok":false,"code":"REQUEST_INVALID"})"));
}

// ------------------------------------------------------------------ open and close

TEST_F(ConversationRunnerTest, CloseThenStartAgain) {
  load(suite_text(kThreeTurns));
  ConversationStep first = runner_->start(1, start_of(0));
  ASSERT_EQ(first.kind, Kind::send);
  ASSERT_EQ(runner_->answered(1, completion("a1"), facts(1)).kind, Kind::send);
  runner_->close(1);
  EXPECT_FALSE(runner_->is_open(1));
  EXPECT_EQ(runner_->open(), 0u);
  runner_->close(1);  // closing twice is harmless
  runner_->close(42);
  EXPECT_EQ(stack_top(), 0);

  ConversationStep step = run_three(1, start_of(0));
  ASSERT_EQ(step.kind, Kind::finished);
  EXPECT_EQ(step.result.state, TaskState::done);
  EXPECT_EQ(step.result.content, "a1|a2|a3");
  EXPECT_EQ(step.result.turns, 3);
  EXPECT_EQ(step.result.request_hash, first.request.hash);
}

TEST_F(ConversationRunnerTest, StartOnAnOpenKeyStartsOver) {
  load(suite_text(kThreeTurns));
  ASSERT_EQ(runner_->start(1, start_of(0)).kind, Kind::send);
  ASSERT_EQ(runner_->answered(1, completion("old"), facts(1)).kind, Kind::send);
  ConversationStep step = runner_->start(1, start_of(1));
  ASSERT_EQ(step.kind, Kind::send);
  EXPECT_EQ(step.turn, 1);
  EXPECT_EQ(runner_->open(), 1u);
  step = runner_->answered(1, completion("n1"), facts(1));
  step = runner_->answered(1, completion("n2"), facts(1));
  step = runner_->answered(1, completion("n3"), facts(1));
  EXPECT_EQ(step.result.content, "n1|n2|n3");
  EXPECT_EQ(step.result.turns, 3);
}

TEST_F(ConversationRunnerTest, ConversationsInterleave) {
  load(suite_text(kThreeTurns));
  ASSERT_EQ(runner_->start(1, start_of(0)).kind, Kind::send);
  ASSERT_EQ(runner_->start(2, start_of(1)).kind, Kind::send);
  ASSERT_EQ(runner_->answered(2, completion("b1"), facts(1)).kind, Kind::send);
  ASSERT_EQ(runner_->answered(1, completion("a1"), facts(1)).kind, Kind::send);
  ASSERT_EQ(runner_->answered(1, completion("a2"), facts(1)).kind, Kind::send);
  ASSERT_EQ(runner_->answered(2, completion("b2"), facts(1)).kind, Kind::send);
  EXPECT_EQ(runner_->answered(2, completion("b3"), facts(1)).result.content, "b1|b2|b3");
  EXPECT_EQ(runner_->answered(1, completion("a3"), facts(1)).result.content, "a1|a2|a3");
  EXPECT_EQ(runner_->open(), 0u);
}

TEST_F(ConversationRunnerTest, DestroyingTheRunnerWithOpenConversations) {
  load(suite_text(kThreeTurns));
  for (uint32_t key = 0; key < 10; ++key) ASSERT_EQ(runner_->start(key, start_of(key % 4)).kind, Kind::send);
  EXPECT_EQ(runner_->open(), 10u);
  runner_.reset();
  EXPECT_EQ(stack_top(), 0);
  runner_ = std::make_unique<ConversationRunner>(*runtime_);
  EXPECT_EQ(run_three(1, start_of(0)).result.content, "a1|a2|a3");
}

TEST_F(ConversationRunnerTest, ManyOpenConversationsLeaveNoGarbage) {
  load(suite_text(kThreeTurns));
  lua_State* L = runtime_->lua();
  auto lua_bytes = [L]() {
    lua_gc(L, LUA_GCCOLLECT, 0);
    lua_gc(L, LUA_GCCOLLECT, 0);
    return static_cast<long>(lua_gc(L, LUA_GCCOUNT, 0)) * 1024 + lua_gc(L, LUA_GCCOUNTB, 0);
  };
  constexpr uint32_t kOpen = 10'000;
  auto round = [&]() {
    for (uint32_t key = 0; key < kOpen; ++key) {
      ConversationStep step = runner_->start(key, start_of(key % matrix_->size()));
      ASSERT_EQ(step.kind, Kind::send);
    }
    EXPECT_EQ(runner_->open(), kOpen);
    for (int turn = 1; turn <= 3; ++turn) {
      for (uint32_t key = 0; key < kOpen; ++key) {
        ConversationStep step = runner_->answered(key, completion("t" + std::to_string(turn)), facts(1));
        ASSERT_EQ(step.kind, turn < 3 ? Kind::send : Kind::finished) << key;
        if (turn == 3) {
          ASSERT_EQ(step.result.state, TaskState::done) << step.result.error_message;
          ASSERT_EQ(step.result.content, "t1|t2|t3");
        }
      }
    }
    EXPECT_EQ(runner_->open(), 0u);
    EXPECT_EQ(stack_top(), 0);
  };

  long baseline = lua_bytes();
  round();
  long after_first = lua_bytes();
  // The registry keeps its grown array (freed refs are reused): well under
  // what 10,000 parked coroutines hold.
  EXPECT_LT(after_first - baseline, 1L << 20) << "baseline " << baseline << ", after " << after_first;
  round();
  long after_second = lua_bytes();
  EXPECT_LT(after_second - after_first, 64L << 10) << "after one round " << after_first << ", after two "
                                                    << after_second;
}

}  // namespace
}  // namespace shepherd
