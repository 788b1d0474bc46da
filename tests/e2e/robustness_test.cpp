// Nothing a provider sends can crash a run: hostile and broken answers,
// replayed by the mock's canned rules over real HTTP, each end as one
// classified attempt with a reason, and the store stays whole.
#include <gtest/gtest.h>

#include "harness.h"

using namespace e2e;
using nlohmann::json;

namespace {

const std::string kHead = R"({"id":"chatcmpl-x","object":"chat.completion","created":1700000000,"model":"m-a",)";
const std::string kChoices =
    R"("choices":[{"index":0,"message":{"role":"assistant","content":"fine"},"finish_reason":"stop"}])";
const std::string kUsage = R"("usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6})";

std::string completion(const std::string& choices = kChoices, const std::string& usage = kUsage) {
  return kHead + choices + "," + usage + "}";
}

std::string nested(size_t depth, char open, char close) {
  return std::string(depth, open) + std::string(depth, close);
}

std::string deep_object(size_t depth) {
  std::string s;
  for (size_t i = 0; i < depth; ++i) s += "{\"a\":";
  s += "1";
  s += std::string(depth, '}');
  return s;
}

std::string base64(const std::string& bytes) {
  static const char* abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    uint32_t v = (uint8_t(bytes[i]) << 16) | (uint8_t(bytes[i + 1]) << 8) | uint8_t(bytes[i + 2]);
    for (int k = 18; k >= 0; k -= 6) out += abc[(v >> k) & 63];
  }
  if (i + 1 == bytes.size()) {
    uint32_t v = uint8_t(bytes[i]) << 16;
    out += abc[(v >> 18) & 63];
    out += abc[(v >> 12) & 63];
    out += "==";
  } else if (i + 2 == bytes.size()) {
    uint32_t v = (uint8_t(bytes[i]) << 16) | (uint8_t(bytes[i + 1]) << 8);
    out += abc[(v >> 18) & 63];
    out += abc[(v >> 12) & 63];
    out += abc[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

std::string sse(const std::vector<std::string>& events) {
  std::string out;
  for (const auto& e : events) out += "data: " + e + "\n\n";
  return out;
}

const std::string kChunkHead = R"({"id":"chatcmpl-x","object":"chat.completion.chunk","created":1700000000,"model":"m-a",)";

std::string chunk(const std::string& delta, const std::string& finish = "null") {
  return kChunkHead + R"("choices":[{"index":0,"delta":)" + delta + R"(,"finish_reason":)" + finish + "}]}";
}

// `gzip -9` of `bytes` zero bytes: a few hundred KB that inflate to much more.
std::string gzip_of_zeros(size_t bytes) {
  std::string cmd = "head -c " + std::to_string(bytes) + " /dev/zero | gzip -9";
  std::string out;
  if (FILE* p = popen(cmd.c_str(), "r")) {
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    pclose(p);
  }
  return out;
}

struct Case {
  std::string name;
  json rule;             // the canned reply (matches every request)
  std::string cls;       // the attempt's class ("a|b": either, while classify.lua decides)
  std::string transport; // "" for a complete HTTP answer
  std::string reason;    // a piece of the task's error message ("" when the task is done)
  std::string provider = "";  // more provider fields (Lua, ending with ',')
};

json rule_with_body(const std::string& body, int status = 200) { return {{"status", status}, {"body", body}}; }

json sse_rule(const std::string& body) {
  return {{"headers", {{"Content-Type", "text/event-stream"}}}, {"body", body}};
}

std::vector<Case> build_cases() {
  std::vector<Case> c;
  c.push_back({"usage_nested_100000_deep", rule_with_body(completion(kChoices, "\"usage\":" + nested(100000, '[', ']'))),
               "bad_response", "", "deep"});
  c.push_back({"content_object_nested_100000_deep",
               rule_with_body(kHead + R"("choices":[{"index":0,"message":{"role":"assistant","content":)" +
                              deep_object(100000) + R"(},"finish_reason":"stop"}]})"),
               "bad_response", "", "deep"});
  c.push_back({"body_nested_1000000_deep", rule_with_body(nested(1000000, '[', ']')), "bad_response", "", "deep"});
  c.push_back({"error_500_nested_deep", rule_with_body(R"({"error":)" + nested(100000, '[', ']') + "}", 500),
               "server_error", "", "HTTP 500"});
  {
    // 20 MB of content: over the default 8 MiB limit.
    std::string big = kHead + R"("choices":[{"index":0,"message":{"role":"assistant","content":")" +
                       std::string(20u << 20, 'a') + R"("},"finish_reason":"stop"}],)" + kUsage + "}";
    c.push_back({"body_of_20_mb", rule_with_body(big), "bad_response", "too_large", "exceeded"});
    // Allowed by the provider's limit: a 20 MB answer is an answer.
    c.push_back({"body_of_20_mb_allowed", rule_with_body(big), "ok", "", "", "      max_response_bytes = 32 * 1024 * 1024,"});
    std::string events;
    for (int i = 0; i < 20 * 16; ++i) events += "data: " + chunk(R"({"content":")" + std::string(64 * 1024, 'b') + "\"}") + "\n\n";
    // The events fit on the wire (8 times the limit); the answer they spell does not.
    c.push_back({"stream_of_20_mb", sse_rule(events), "bad_response", "", "too large"});
  }
  {
    std::string whole = completion();
    c.push_back({"truncated_json", rule_with_body(whole.substr(0, whole.size() / 2)), "bad_response", "", ""});
  }
  c.push_back({"invalid_utf8",
               {{"body_base64", base64(kHead + R"("choices":[{"index":0,"message":{"role":"assistant","content":"ok )" +
                                       std::string("\xff\xfe\xc3(\xed\xa0\x80") +
                                       R"("},"finish_reason":"stop"}],)" + kUsage + "}")}},
               "bad_response", "", ""});
  c.push_back({"choices_a_string", rule_with_body(completion(R"("choices":"hello")")), "bad_response", "", ""});
  c.push_back({"choices_empty", rule_with_body(completion(R"("choices":[])")), "bad_response", "", ""});
  c.push_back({"message_a_number",
               rule_with_body(completion(R"("choices":[{"index":0,"message":42,"finish_reason":"stop"}])")),
               "bad_response", "", ""});
  c.push_back({"content_an_object",
               rule_with_body(completion(
                   R"("choices":[{"index":0,"message":{"role":"assistant","content":{"text":1}},"finish_reason":"stop"}])")),
               "bad_response", "", ""});
  // A usage that is a number is useless, but the answer is there.
  // (Invalid UTF-8 in a plain body refuses the whole body, while a stream
  // repairs it with U+FFFD, as it must for characters split between chunks.)
  c.push_back({"usage_a_number", rule_with_body(completion(kChoices, R"("usage":42)")), "ok", "", ""});
  c.push_back({"not_json_at_all", rule_with_body("<html><body>502 Bad Gateway</body></html>"), "bad_response", "", ""});
  c.push_back({"empty_body", rule_with_body(""), "bad_response", "", ""});
  c.push_back({"json_null", rule_with_body("null"), "bad_response", "", ""});
  c.push_back({"nul_bytes", {{"body_base64", base64(std::string("{\"choices\"\0\0\0:[]}", 17))}}, "bad_response", "", ""});
  {
    json longer = rule_with_body(completion());
    longer["content_length"] = 100000;  // claims far more than it sends, then closes
    c.push_back({"content_length_longer_than_body", longer, "network", "reset", ""});
    json shorter = rule_with_body(completion());
    shorter["content_length"] = 40;  // the body is cut at 40 bytes: truncated JSON
    c.push_back({"content_length_shorter_than_body", shorter, "bad_response", "", ""});
  }
  c.push_back({"sse_garbage_json", sse_rule("data: {not json at all\n\ndata: [DONE]\n\n"), "bad_response", "", "stream"});
  c.push_back({"sse_binary_garbage",
               {{"headers", {{"Content-Type", "text/event-stream"}}},
                {"body_base64", base64(std::string("\x00\x01\xff\xfe\x80garbage\r\r\n\x00:\xff", 19))}},
               "bad_response", "", "stream"});
  c.push_back({"sse_chunk_nested_deep", sse_rule("data: " + nested(100000, '[', ']') + "\n\ndata: [DONE]\n\n"),
               "bad_response", "", "stream"});
  c.push_back({"sse_cut_before_the_end",
               sse_rule(sse({chunk(R"({"role":"assistant","content":"half an"})")})), "bad_response", "", "stream"});
  c.push_back({"sse_wrong_types",
               sse_rule(sse({R"({"choices":"x","model":7})", R"({"choices":[{"index":"0","delta":[]}]})", "[DONE]"})),
               "bad_response", "", "not a chat completion"});
  // 200 MB of zeros behind "Content-Encoding: gzip": cut at the limit as it inflates.
  c.push_back({"gzip_bomb",
               {{"headers", {{"Content-Encoding", "gzip"}}}, {"body_base64", base64(gzip_of_zeros(200u << 20))}},
               "bad_response", "too_large", "exceeded"});
  c.push_back({"gzip_that_is_not",
               {{"headers", {{"Content-Encoding", "gzip"}}}, {"body", completion()}},
               "network|bad_response", "other", ""});
  // Over curl's 100 KB limit for one header: refused by curl (which calls it
  // "Out of memory"), never buffered whole.
  c.push_back({"header_of_1_mb",
               {{"headers", {{"x-padding", std::string(1u << 20, 'h')}}}, {"body", completion()}},
               "network|bad_response", "other", ""});
  c.push_back({"ten_thousand_headers", [] {
                 json headers = json::object();
                 for (int i = 0; i < 10000; ++i) headers["x-h" + std::to_string(i)] = "v";
                 return json{{"headers", headers}, {"body", completion()}};
               }(),
               "network|bad_response|ok", "", ""});
  c.push_back({"sse_error_event_mid_answer",
               sse_rule(sse({chunk(R"({"role":"assistant","content":"half"})"),
                             R"({"error":{"message":"Internal server error","type":"server_error","code":"internal_error"}})"})),
               // The provider's own error, sent with status 200 once the stream
               // had begun: server_error is what it says; bad_response is what
               // the status allows. Either is retried.
               "server_error|bad_response", "", "Internal server error"});
  {
    // Many events: 700,000 empty ones (7 MB), and 60,000 one-character
    // deltas: 9 MB of events on the wire for a 60 KB answer, which must fit
    // the default 8 MiB limit as the same answer unstreamed does.
    std::string empty;
    for (int i = 0; i < 700000; ++i) empty += "data: {}\n\n";
    c.push_back({"sse_700000_empty_events", sse_rule(empty + "data: [DONE]\n\n"), "bad_response", "", ""});
    std::string tiny = "data: " + chunk(R"({"role":"assistant","content":""})") + "\n\n";
    for (int i = 0; i < 60000; ++i) tiny += "data: " + chunk(R"({"content":"x"})") + "\n\n";
    tiny += "data: " + chunk("{}", "\"stop\"") + "\n\ndata: [DONE]\n\n";
    c.push_back({"sse_60000_deltas", sse_rule(tiny), "ok", "", ""});
  }
  c.push_back({"sse_invalid_utf8",
               {{"headers", {{"Content-Type", "text/event-stream"}}},
                {"body_base64", base64(sse({chunk("{\"role\":\"assistant\",\"content\":\"a\xff\xfe\"}"),
                                            chunk("{}", "\"stop\""), "[DONE]"}))}},
               "ok", "", ""});
  return c;
}

// Built once: the 20 MB bodies and the gzip bomb take a moment.
const std::vector<Case>& cases() {
  static const std::vector<Case> all = build_cases();
  return all;
}

class HostileAnswer : public ::testing::TestWithParam<Case> {};

}  // namespace

TEST_P(HostileAnswer, IsClassifiedNeverACrash) {
  const Case& c = GetParam();
  Mock mock(json{{"canned", json::array({c.rule})}});
  TempDir dir;
  SuiteSpec s;
  s.base_url = mock.base_url();
  s.matrix = "{ model = { 'm-a' }, instance = { 1 } }";
  s.timeouts = "{ connect_ms = 1000, first_byte_ms = 3000, stall_ms = 1000, total_ms = 5000 }";
  s.extra = "  retry = { max_retries = 0 },";
  s.provider_extra = c.provider;
  std::string suite = dir.write("s.lua", s.text());
  std::string db = dir.file("s.db");

  Result r = shepherd({"run", suite, "--db", db, "--json"}, key_env(1), std::chrono::seconds(30));
  ASSERT_EQ(r.signal, 0) << "killed by signal " << r.signal << "\n" << r.err;
  auto allowed = [&](const std::string& cls) { return ("|" + c.cls + "|").find("|" + cls + "|") != std::string::npos; };
  EXPECT_EQ(mock.stats()["by_outcome"]["canned"], 1);

  auto rows = query_rows(db, "SELECT class, coalesce(transport, ''), decision FROM attempts");
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_TRUE(allowed(rows[0][0])) << rows[0][0] << " is not " << c.cls;
  const bool done = rows[0][0] == "ok";
  EXPECT_EQ(r.exit_code, done ? 0 : 4) << r.out << r.err;
  if (!done) {
    EXPECT_EQ(rows[0][1], c.transport);
  }
  EXPECT_EQ(rows[0][2], done ? "done" : "fail");

  // What is kept of the response is bounded by the limit (8 MiB here, or 32).
  EXPECT_LE(std::stoull(query(db, "SELECT coalesce(length(CAST(response AS BLOB)), 0) FROM attempts")),
            c.provider.empty() ? 8u << 20 : (32u << 20) + 4096);
  // The store is whole and every reader still works.
  EXPECT_EQ(query(db, "PRAGMA integrity_check"), "ok");
  Result st = shepherd({"status", suite, "--db", db, "--json"});
  ASSERT_EQ(st.exit_code, 0) << st.err;
  json status = json::parse(st.out);
  EXPECT_EQ(status["overall"]["total"], 1);
  EXPECT_EQ(status["overall"][done ? "done" : "failed"], 1);
  Result ex = shepherd({"export", suite, "--db", db, "--format", "jsonl"});
  ASSERT_EQ(ex.exit_code, 0) << ex.err;
  auto records = parse_jsonl(ex.out);  // valid JSON, whatever the provider sent
  ASSERT_EQ(records.size(), 1u);
  const json& rec = records[0];
  if (done) {
    EXPECT_EQ(rec["state"], "done");
    EXPECT_TRUE(rec["content"].is_string()) << rec.dump();
    EXPECT_TRUE(rec["error"].is_null());
    std::string content = rec["content"].dump();
    if (content.size() > 80) content = content.substr(0, 40) + "... (" + std::to_string(content.size()) + " bytes)";
    std::printf("[ content  ] %s: %s\n", rows[0][0].c_str(), content.c_str());
  } else {
    EXPECT_EQ(rec["state"], "failed");
    ASSERT_TRUE(rec["error"].is_object()) << rec.dump();
    std::string cls = rows[0][0];
    for (auto& ch : cls) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    EXPECT_EQ(rec["error"]["code"], cls) << "the retry policy's default code: the class";
    const std::string message = rec["error"]["message"].get<std::string>();
    EXPECT_FALSE(message.empty());
    EXPECT_LT(message.size(), 5000u) << "a reason, not the body";
    if (!c.reason.empty()) {
      EXPECT_NE(message.find(c.reason), std::string::npos) << message;
    }
    std::printf("[ reason   ] %s: %s\n", rows[0][0].c_str(), message.c_str());
  }
}

INSTANTIATE_TEST_SUITE_P(Replayed, HostileAnswer, ::testing::ValuesIn(cases()),
                         [](const auto& info) { return info.param.name; });

TEST(Robustness, ManyHostileAnswersInOneRun) {
  // All of them at once, each answering its own cell, over two keys: the run
  // ends with every cell classified, and a later good answer is stored.
  const std::vector<Case>& all = cases();
  json rules = json::array();
  std::string instances;
  for (size_t i = 0; i < all.size(); ++i) {
    if (all[i].name.find("20_mb") != std::string::npos) continue;  // covered above; keeps this run quick
    if (!all[i].provider.empty()) continue;
    json rule = all[i].rule;
    rule["when"] = "instance=" + std::to_string(i + 1) + " ";
    rule["times"] = 1;
    rules.push_back(rule);
    instances += std::to_string(i + 1) + ", ";
  }
  Mock mock(json{{"canned", rules}});
  TempDir dir;
  SuiteSpec s;
  s.base_url = mock.base_url();
  s.keys = 2;
  s.matrix = "{ model = { 'm-a' }, instance = { " + instances + "} }";
  s.timeouts = "{ connect_ms = 1000, first_byte_ms = 3000, stall_ms = 1000, total_ms = 5000 }";
  s.extra = "  retry = { max_retries = 1, base_delay_ms = 10, jitter = false },";
  std::string suite = dir.write("s.lua", s.text());
  std::string db = dir.file("s.db");
  Result r = shepherd({"run", suite, "--db", db}, key_env(2), std::chrono::seconds(30));
  ASSERT_EQ(r.signal, 0) << r.err;
  EXPECT_EQ(r.exit_code, 0) << "each rule answers once; the retry gets a good answer\n" << r.err;
  EXPECT_EQ(query(db, "SELECT count(*) FROM tasks WHERE state = 'done'"), std::to_string(rules.size()));
  EXPECT_EQ(query(db, "SELECT count(*) FROM attempts WHERE n = 1 AND class <> 'ok'"),
            query(db, "SELECT count(*) FROM attempts WHERE n = 2"));
  EXPECT_EQ(query(db, "PRAGMA integrity_check"), "ok");
  EXPECT_EQ(shepherd({"status", suite, "--db", db}).exit_code, 0);
}
