// Streaming against the real mock: a streamed answer is the same answer, a
// stall is found at stall_ms, a first byte that never comes at first_byte_ms,
// keep-alive comments keep a slow stream alive, and `stream = false` sends a
// plain request.
#include <gtest/gtest.h>

#include "harness.h"

using namespace e2e;

namespace {

// One task that must not be retried, so its only attempt shows the cut.
SuiteSpec one_shot(const Mock& mock, const std::string& timeouts) {
  SuiteSpec s;
  s.base_url = mock.base_url();
  s.matrix = "{ model = { 'm-a' }, instance = { 1 } }";
  s.timeouts = timeouts;
  s.extra = "  retry = { max_retries = 0 },";
  return s;
}

struct OnlyAttempt {
  std::string transport, cls, status;
  double latency_ms = -1;
};

OnlyAttempt only_attempt(const std::string& db) {
  auto rows = query_rows(db, "SELECT coalesce(transport, ''), class, http_status, latency_ms FROM attempts");
  EXPECT_EQ(rows.size(), 1u);
  if (rows.size() != 1) return {};
  return {rows[0][0], rows[0][1], rows[0][2], std::stod(rows[0][3])};
}

}  // namespace

TEST(Streaming, StreamedAnswersMatchPlainOnes) {
  // Several chunks per answer, a few milliseconds apart.
  Mock mock(nlohmann::json{{"stream", {{"chunk_ms", 2}}}});
  TempDir dir;
  SuiteSpec s;
  s.base_url = mock.base_url();
  s.models = {"m-a", "m-b"};
  s.matrix = "{ model = { 'm-a', 'm-b' }, lang = { 'en', 'fr', 'de' }, instance = { 1, 2 } }";
  std::string streamed = dir.write("streamed.lua", s.text());
  s.provider_extra = "      stream = false,";
  std::string plain = dir.write("plain.lua", s.text());

  Result r = shepherd({"run", streamed, "--db", dir.file("streamed.db")}, key_env(1));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(mock.stats()["streamed"], 12) << "every answer of the first run was streamed";
  r = shepherd({"run", plain, "--db", dir.file("plain.db")}, key_env(1));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(mock.stats()["streamed"], 12) << "no answer of the second run was streamed";
  EXPECT_EQ(mock.stats()["requests"], 24);

  auto a = export_by_dims(streamed, dir.file("streamed.db"));
  auto b = export_by_dims(plain, dir.file("plain.db"));
  ASSERT_EQ(a.size(), 12u);
  ASSERT_EQ(b.size(), 12u);
  for (const auto& [dims, row] : a) {
    ASSERT_TRUE(b.count(dims)) << dims;
    const auto& other = b.at(dims);
    EXPECT_EQ(row["state"], "done") << row.dump();
    EXPECT_EQ(row["task"], other["task"]);
    EXPECT_EQ(row["content"], other["content"]) << dims;
    EXPECT_EQ(row["model"], other["model"]) << dims;
    EXPECT_EQ(row["model"], row["dims"]["model"]) << dims;
    EXPECT_EQ(row["usage"], other["usage"]) << dims;
    EXPECT_TRUE(row["usage"].is_object()) << "the usage chunk was asked for and assembled: " << row.dump();
    EXPECT_GT(row["usage"].value("completion_tokens", 0), 0) << row.dump();
    EXPECT_NE(row["content"].get<std::string>().find("lang=" + row["dims"]["lang"].get<std::string>()),
              std::string::npos)
        << row.dump();
    EXPECT_EQ(row["stale"], false);
  }
  // Nothing in the store shows the difference either: the same classes and
  // tokens, and the stored response of a streamed answer is the assembled
  // completion, not the event stream.
  for (const char* db : {"streamed.db", "plain.db"}) {
    EXPECT_EQ(query(dir.file(db), "SELECT count(*) FROM attempts WHERE class = 'ok' AND prompt_tokens > 0 AND "
                                  "completion_tokens > 0 AND model_answered = model_requested"),
              "12")
        << db;
    EXPECT_EQ(query(dir.file(db), "SELECT count(*) FROM attempts WHERE response LIKE 'data:%'"), "0") << db;
  }
}

TEST(Streaming, StallMidAnswerIsCutAtStallMs) {
  // The answer begins (role chunk and half the content at once), then silence.
  Mock mock(nlohmann::json{{"faults", {{"stall", 1.0}}}});
  TempDir dir;
  const double stall_ms = 800;
  std::string suite =
      dir.write("s.lua", one_shot(mock, "{ connect_ms = 1000, first_byte_ms = 5000, stall_ms = 800, total_ms = 10000 }")
                             .text());
  Result r = shepherd({"run", suite, "--db", dir.file("s.db")}, key_env(1));
  ASSERT_EQ(r.signal, 0);
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_EQ(mock.stats()["streamed"], 1);
  OnlyAttempt a = only_attempt(dir.file("s.db"));
  EXPECT_EQ(a.transport, "stall");
  EXPECT_EQ(a.cls, "timeout");
  EXPECT_GE(a.latency_ms, stall_ms * 0.9);
  EXPECT_LE(a.latency_ms, stall_ms * 1.1);
  std::printf("[ measure  ] stall_ms %.0f: cut after %.0f ms\n", stall_ms, a.latency_ms);
  auto rows = parse_jsonl(shepherd({"export", suite, "--db", dir.file("s.db"), "--format", "jsonl"}).out);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0]["state"], "failed");
  EXPECT_EQ(rows[0]["error"]["code"], "TIMEOUT");
  EXPECT_NE(rows[0]["error"]["message"].get<std::string>().find("stall"), std::string::npos) << rows[0].dump();
}

TEST(Streaming, ManyStallsAtOnceAreEachCutAtStallMs) {
  // 100 streams stalling together: the sweep finds every one in time.
  Mock mock(nlohmann::json{{"faults", {{"stall", 1.0}}}});
  TempDir dir;
  SuiteSpec s = one_shot(mock, "{ connect_ms = 1000, first_byte_ms = 5000, stall_ms = 800, total_ms = 10000 }");
  s.concurrency = 100;
  s.matrix = "{ model = { 'm-a' }, instance = (function() local t = {} for i = 1, 100 do t[i] = i end return t end)() }";
  // 100 timeouts at once are a failure rate, not an endpoint outage to wait out.
  std::string suite = dir.write("s.lua", s.text());
  Result r = shepherd({"run", suite, "--db", dir.file("s.db")}, key_env(1));
  ASSERT_EQ(r.signal, 0);
  EXPECT_EQ(r.exit_code, 4) << r.err;
  std::string db = dir.file("s.db");
  EXPECT_EQ(query(db, "SELECT count(*) FROM attempts WHERE transport = 'stall' AND class = 'timeout'"), "100");
  double lo = std::stod(query(db, "SELECT min(latency_ms) FROM attempts"));
  double hi = std::stod(query(db, "SELECT max(latency_ms) FROM attempts"));
  EXPECT_GE(lo, 800 * 0.9);
  EXPECT_LE(hi, 800 * 1.1);
  std::printf("[ measure  ] stall_ms 800, 100 streams at once: cut after %.0f to %.0f ms\n", lo, hi);
}

TEST(Streaming, PlainAnswerThatStallsIsCutAtStallMs) {
  // stream = false: the status, the headers and half the body, then silence.
  Mock mock(nlohmann::json{{"faults", {{"stall", 1.0}}}});
  TempDir dir;
  SuiteSpec s = one_shot(mock, "{ connect_ms = 1000, first_byte_ms = 5000, stall_ms = 800, total_ms = 10000 }");
  s.provider_extra = "      stream = false,";
  std::string suite = dir.write("s.lua", s.text());
  Result r = shepherd({"run", suite, "--db", dir.file("s.db")}, key_env(1));
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_EQ(mock.stats()["streamed"], 0);
  OnlyAttempt a = only_attempt(dir.file("s.db"));
  EXPECT_EQ(a.transport, "stall");
  EXPECT_EQ(a.cls, "timeout");
  EXPECT_GE(a.latency_ms, 800 * 0.9);
  EXPECT_LE(a.latency_ms, 800 * 1.1);
  std::printf("[ measure  ] stall_ms 800, plain answer: cut after %.0f ms\n", a.latency_ms);
}

TEST(Streaming, EndlessKeepAliveIsCutAtTotalMs) {
  // Comments every 100 ms and never a token: alive, but not forever.
  Mock mock(nlohmann::json{{"latency", 60000}, {"stream", {{"comment_ms", 100}}}});
  TempDir dir;
  std::string suite = dir.write(
      "s.lua", one_shot(mock, "{ connect_ms = 1000, first_byte_ms = 5000, stall_ms = 500, total_ms = 1500 }").text());
  Result r = shepherd({"run", suite, "--db", dir.file("s.db")}, key_env(1));
  EXPECT_EQ(r.exit_code, 4) << r.err;
  OnlyAttempt a = only_attempt(dir.file("s.db"));
  EXPECT_EQ(a.transport, "timeout");
  EXPECT_EQ(a.cls, "timeout");
  EXPECT_GE(a.latency_ms, 1500 * 0.9);
  EXPECT_LE(a.latency_ms, 1500 * 1.1);
  std::printf("[ measure  ] total_ms 1500, comments only: cut after %.0f ms\n", a.latency_ms);
}

TEST(Streaming, FirstByteThatNeverComesIsCutAtFirstByteMs) {
  const double first_byte_ms = 800;
  const std::string timeouts = "{ connect_ms = 1000, first_byte_ms = 800, stall_ms = 300, total_ms = 10000 }";
  {
    // Nothing at all: no status line, no headers.
    Mock mock(nlohmann::json{{"faults", {{"hang", 1.0}}}});
    TempDir dir;
    std::string suite = dir.write("s.lua", one_shot(mock, timeouts).text());
    Result r = shepherd({"run", suite, "--db", dir.file("s.db")}, key_env(1));
    ASSERT_EQ(r.signal, 0);
    EXPECT_EQ(r.exit_code, 4) << r.err;
    OnlyAttempt a = only_attempt(dir.file("s.db"));
    EXPECT_EQ(a.transport, "first_byte");
    EXPECT_EQ(a.cls, "timeout");
    EXPECT_GE(a.latency_ms, first_byte_ms * 0.9);
    EXPECT_LE(a.latency_ms, first_byte_ms * 1.1);
    std::printf("[ measure  ] first_byte_ms %.0f, nothing sent: cut after %.0f ms\n", first_byte_ms, a.latency_ms);
  }
  {
    // Status and headers at once, the first token only after 5 s: the
    // headers are not the answer, and stall_ms (300) does not apply yet.
    Mock mock(nlohmann::json{{"latency", 5000}});
    TempDir dir;
    std::string suite = dir.write("s.lua", one_shot(mock, timeouts).text());
    Result r = shepherd({"run", suite, "--db", dir.file("s.db")}, key_env(1));
    ASSERT_EQ(r.signal, 0);
    EXPECT_EQ(r.exit_code, 4) << r.err;
    EXPECT_EQ(mock.stats()["streamed"], 1);
    OnlyAttempt a = only_attempt(dir.file("s.db"));
    EXPECT_EQ(a.transport, "first_byte");
    EXPECT_EQ(a.cls, "timeout");
    EXPECT_GE(a.latency_ms, first_byte_ms * 0.9);
    EXPECT_LE(a.latency_ms, first_byte_ms * 1.1);
    std::printf("[ measure  ] first_byte_ms %.0f, headers sent: cut after %.0f ms\n", first_byte_ms, a.latency_ms);
  }
}

TEST(Streaming, KeepAliveCommentsKeepASlowStreamAlive) {
  // Chunks 700 ms apart against stall_ms 500: a comment every 200 ms of
  // silence keeps the answer alive; without the comments it is cut.
  const std::string timeouts = "{ connect_ms = 1000, first_byte_ms = 5000, stall_ms = 500, total_ms = 20000 }";
  {
    Mock mock(nlohmann::json{{"stream", {{"chunk_ms", 700}, {"comment_ms", 200}}}});
    TempDir dir;
    std::string suite = dir.write("s.lua", one_shot(mock, timeouts).text());
    Result r = shepherd({"run", suite, "--db", dir.file("s.db")}, key_env(1));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    OnlyAttempt a = only_attempt(dir.file("s.db"));
    EXPECT_EQ(a.cls, "ok");
    EXPECT_EQ(a.transport, "");
    EXPECT_GE(a.latency_ms, 3 * 700) << "at least four chunks, 700 ms apart";
    auto rows = parse_jsonl(shepherd({"export", suite, "--db", dir.file("s.db"), "--format", "jsonl"}).out);
    ASSERT_EQ(rows.size(), 1u);
    EXPECT_EQ(rows[0]["content"], "mock answer: instance=1 model=m-a") << "comments are not content";
    std::printf("[ measure  ] stall_ms 500, chunks 700 ms apart with comments: done after %.0f ms\n", a.latency_ms);
  }
  {
    Mock mock(nlohmann::json{{"stream", {{"chunk_ms", 700}}}});
    TempDir dir;
    std::string suite = dir.write("s.lua", one_shot(mock, timeouts).text());
    Result r = shepherd({"run", suite, "--db", dir.file("s.db")}, key_env(1));
    EXPECT_EQ(r.exit_code, 4) << r.err;
    OnlyAttempt a = only_attempt(dir.file("s.db"));
    EXPECT_EQ(a.transport, "stall");
    EXPECT_EQ(a.cls, "timeout");
    EXPECT_GE(a.latency_ms, 500 * 0.9);
    // Cut at the stall (500 ms), well before the second chunk (700 ms); the
    // margin absorbs a loaded 2-core machine (579 ms seen with builds running).
    EXPECT_LE(a.latency_ms, 640) << "the first chunk comes at once, the second never in time";
  }
}

TEST(Streaming, StreamFalseSendsNoStreamField) {
  // A provider that refuses any request naming "stream" (some proxies and
  // older servers do): with `stream = false` nothing of it is sent.
  nlohmann::json refuse = {{"when", "\"stream"},
                           {"status", 400},
                           {"body_json", {{"error", {{"message", "Unrecognized request argument supplied: stream"},
                                                     {"type", "invalid_request_error"},
                                                     {"code", nullptr}}}}}};
  Mock mock(nlohmann::json{{"canned", {refuse}}});
  TempDir dir;
  SuiteSpec s;
  s.base_url = mock.base_url();
  s.provider_extra = "      stream = false,";
  std::string suite = dir.write("s.lua", s.text());
  Result r = shepherd({"run", suite, "--db", dir.file("s.db")}, key_env(1));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json st = mock.stats();
  EXPECT_EQ(st["requests"], 3);
  EXPECT_EQ(st["by_outcome"]["canned"], 0);
  EXPECT_EQ(st["streamed"], 0);
  EXPECT_EQ(query(dir.file("s.db"), "SELECT count(*) FROM tasks WHERE state = 'done'"), "3");

  // The control: by default the same provider sees "stream" and refuses.
  mock.reset();
  s.provider_extra.clear();
  s.extra = "  retry = { max_retries = 0 },";
  suite = dir.write("t.lua", s.text());
  r = shepherd({"run", suite, "--db", dir.file("t.db")}, key_env(1));
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_EQ(mock.stats()["by_outcome"]["canned"], 3);
}
