// A key's value never leaves the process: a provider that echoes it back --
// in the content, the model, the usage, an error, a header; raw, JSON-escaped
// in any way, percent-encoded -- and a policy that repeats it in its error
// text or its class name leave no trace of it in the store, exports, logs,
// stderr or --json output. The key's id is what shows.
#include <cstdio>
#include <filesystem>

#include <gtest/gtest.h>

#include "harness.h"

using namespace e2e;
namespace fs = std::filesystem;

namespace {

const std::string kKey = "sk-e2e-Zq9SECRETcore7Xw/+=tail";

std::string hex4(unsigned c, bool upper) {
  char buf[8];
  std::snprintf(buf, sizeof buf, upper ? "\\u%04X" : "\\u%04x", c);
  return buf;
}

std::string percent(const std::string& s, bool upper) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      char buf[4];
      std::snprintf(buf, sizeof buf, upper ? "%%%02X" : "%%%02x", c);
      out += buf;
    }
  }
  return out;
}

// The key as a JSON string body: the first letter \u-escaped, '/' as "\/".
std::string json_escaped_first(const std::string& s) {
  std::string out = hex4(static_cast<unsigned char>(s[0]), false);
  for (size_t i = 1; i < s.size(); ++i) out += s[i] == '/' ? std::string("\\/") : std::string(1, s[i]);
  return out;
}

// Every character \u-escaped.
std::string json_escaped_all(const std::string& s, bool upper) {
  std::string out;
  for (unsigned char c : s) out += hex4(c, upper);
  return out;
}

// Every form in which the key, or a telling part of it, could hide in `text`.
std::vector<std::string> leaks(const std::string& text) {
  std::vector<std::string> found;
  auto look = [&](const std::string& form, const std::string& what) {
    if (text.find(form) != std::string::npos) found.push_back(what + ": " + form);
  };
  // Any 12 bytes of the key in a row: a key cut short by a clipped text is a leak too.
  for (size_t i = 0; i + 12 <= kKey.size(); ++i) look(kKey.substr(i, 12), "part of the key");
  look("SECRETcore", "the key's core");
  for (bool upper : {false, true}) {
    look(json_escaped_all("SECRETcore", upper), "the key's core, \\u-escaped");
    look(percent(kKey.substr(18), upper), "the key's tail, percent-encoded");
  }
  return found;
}

std::string chat(const std::string& content_json, const std::string& model_json = "\"m-a\"",
                 const std::string& usage_json = R"({"prompt_tokens":3,"completion_tokens":4,"total_tokens":7})") {
  return R"({"id":"chatcmpl-echo","object":"chat.completion","created":1700000000,"model":)" + model_json +
         R"(,"choices":[{"index":0,"message":{"role":"assistant","content":)" + content_json +
         R"(},"finish_reason":"stop"}],"usage":)" + usage_json + "}";
}

nlohmann::json rule(int instance, int status, const std::string& body) {
  return {{"when", "instance=" + std::to_string(instance) + " "},
          {"status", status},
          {"headers", {{"Content-Type", "application/json"}, {"x-echo-key", kKey}}},
          {"body", body}};
}

// Everything a user can see or keep: the store's bytes, the logs, exports,
// status, and what `run` printed.
std::map<std::string, std::string> outputs(const TempDir& dir, const std::string& suite, const std::string& db,
                                           const Result& run) {
  std::map<std::string, std::string> out;
  out["run stdout (--json)"] = run.out;
  out["run stderr (-v)"] = run.err;
  for (const char* suffix : {"", "-wal", "-shm", ".lock"})
    if (fs::exists(db + suffix)) out["store file " + std::string(suffix)] = read_file(db + suffix);
  for (const auto& entry : fs::recursive_directory_iterator(dir.file("logs")))
    if (entry.is_regular_file()) out["log " + entry.path().filename().string()] = read_file(entry.path());
  Result jsonl = shepherd({"export", suite, "--db", db, "--format", "jsonl"});
  out["export jsonl"] = jsonl.out + jsonl.err;
  Result csv = shepherd({"export", suite, "--db", db, "--format", "csv"});
  out["export csv"] = csv.out + csv.err;
  EXPECT_EQ(shepherd({"export", suite, "--db", db, "--format", "jsonl", "--out", dir.file("out.jsonl")}).exit_code, 0);
  out["export file"] = read_file(dir.file("out.jsonl"));
  Result status = shepherd({"status", suite, "--db", db, "--json"});
  out["status --json"] = status.out + status.err;
  Result text = shepherd({"status", suite, "--db", db, "--by", "instance"});
  out["status"] = text.out + text.err;
  return out;
}

void expect_no_leak(const std::map<std::string, std::string>& outs) {
  for (const auto& [where, text] : outs) {
    std::string found;
    for (const auto& leak : leaks(text)) found += "\n  " + leak;
    if (!found.empty()) ADD_FAILURE() << where << " holds" << found;
  }
}

std::map<std::string, std::string> key_env_with(const std::string& value) { return {{"E2E_KEY_0", value}}; }

}  // namespace

TEST(Redaction, AnEchoedKeyIsRedactedEverywhereWithThePackagedPolicies) {
  std::string pad(4070, 'p');
  nlohmann::json canned = nlohmann::json::array({
      // 1: in the content, raw.
      rule(1, 200, chat(nlohmann::json("your key is " + kKey + ", keep it safe").dump())),
      // 2: as the answering model (a mismatch, retried, then failed).
      rule(2, 200, chat(R"("fine")", nlohmann::json("m-a-" + kKey).dump())),
      // 3: inside the usage, as a value and as a name.
      rule(3, 200, chat(R"("fine")", R"("m-a")",
                        R"({"prompt_tokens":3,"completion_tokens":4,"total_tokens":7,"note":")" + kKey + R"(",")" +
                            kKey + R"(":1})")),
      // 4: JSON-escaped as "\u0073k-…" with "\/": decoded, it is the key.
      rule(4, 200, chat("\"key=" + json_escaped_first(kKey) + "\"")),
      // 5: every character \u-escaped, upper-case hex.
      rule(5, 200, chat("\"key=" + json_escaped_all(kKey, true) + "\"")),
      // 6: percent-encoded, upper- and lower-case hex, as in a URL.
      rule(6, 200, chat("\"https://example.com/?key=" + percent(kKey, true) + "&again=" + percent(kKey, false) + "\"")),
      // 7: the provider's error message quotes the key (a 400 is final).
      rule(7, 400, R"({"error":{"message":"Invalid value for 'user': ')" + kKey +
                       R"('.","type":"invalid_request_error","param":"user","code":"invalid_value"}})"),
      // 8: an error message so long it is clipped, with the key across the cut.
      rule(8, 400, R"({"error":{"message":")" + pad + kKey + std::string(2000, 'q') +
                       R"(","type":"invalid_request_error","code":"bad"}})"),
      // 9: a 500 whose raw text (not JSON) holds the key.
      rule(9, 500, "upstream said: Authorization: Bearer " + kKey),
  });
  Mock mock(nlohmann::json{{"canned", canned}});
  TempDir dir;
  SuiteSpec s = suite_at(mock.base_url());
  s.matrix = "{ model = { 'm-a' }, instance = { 1, 2, 3, 4, 5, 6, 7, 8, 9 } }";
  s.extra = "  retry = { max_retries = 1, base_delay_ms = 10, max_delay_ms = 20, jitter = false },";
  std::string suite = dir.write("s.lua", s.text());
  std::string db = dir.file("s.db");
  Result run = shepherd({"run", suite, "--db", db, "--json", "-v"}, key_env_with(kKey));
  ASSERT_EQ(run.exit_code, 4) << run.out << run.err;
  EXPECT_EQ(mock.stats()["by_outcome"]["canned"].get<int>(), mock.stats()["requests"].get<int>());

  expect_no_leak(outputs(dir, suite, db, run));

  // What was redacted is still there around the hole, and the key's id shows.
  auto rows = parse_jsonl(shepherd({"export", suite, "--db", db, "--format", "jsonl"}).out);
  ASSERT_EQ(rows.size(), 9u);
  EXPECT_EQ(rows[0]["content"], "your key is [redacted], keep it safe") << rows[0].dump();
  EXPECT_EQ(rows[3]["content"], "key=[redacted]") << rows[3].dump();
  EXPECT_EQ(rows[4]["content"], "key=[redacted]") << rows[4].dump();
  EXPECT_EQ(rows[5]["content"], "https://example.com/?key=[redacted]&again=[redacted]") << rows[5].dump();
  EXPECT_EQ(query(db, "SELECT count(*) FROM attempts WHERE key_id = 'k0'"), query(db, "SELECT count(*) FROM attempts"));
  EXPECT_NE(shepherd({"status", suite, "--db", db, "--json"}).out.find("\"k0\""), std::string::npos);
}

TEST(Redaction, APolicyRepeatingTheKeyIsRedactedToo) {
  nlohmann::json canned = nlohmann::json::array({
      rule(1, 200, chat(nlohmann::json("raise " + kKey).dump())),
      rule(2, 200, chat(nlohmann::json("class " + kKey).dump())),
      rule(3, 400, R"({"error":{"message":"no","type":"invalid_request_error","code":")" + kKey + R"("}})"),
      rule(4, 200, chat("\"" + json_escaped_all(kKey, false) + "\"")),
  });
  Mock mock(nlohmann::json{{"canned", canned}});
  TempDir dir;
  // 1: raises with the raw body in its message; 2: a class name made of the
  // content; 3: a failure code made of the provider's error code; 4: raises
  // with the decoded content (the key, decoded by the policy) repeated.
  dir.write("classify.lua", R"(
return {
  classify = function(o)
    if o.status ~= 200 then return 'client_error' end
    local c = o.content or ''
    if c:sub(1, 6) == 'raise ' then error('provider said ' .. o.raw) end
    if c:sub(1, 6) == 'class ' then return 'echoed_' .. c:sub(7) end
    error('decoded: ' .. c)
  end,
})");
  dir.write("retry.lua", R"(
return {
  decide = function(ctx)
    if ctx.error_code and ctx.error_code ~= '' then return { action = 'fail', code = 'ECHO_' .. ctx.error_code } end
    return { action = 'fail' }
  end,
})");
  SuiteSpec s = suite_at(mock.base_url());
  s.matrix = "{ model = { 'm-a' }, instance = { 1, 2, 3, 4 } }";
  s.extra = "  policies = { classify = 'classify.lua', retry = 'retry.lua' },";
  std::string suite = dir.write("s.lua", s.text());
  std::string db = dir.file("s.db");
  Result run = shepherd({"run", suite, "--db", db, "--json", "-v"}, key_env_with(kKey));
  ASSERT_EQ(run.exit_code, 4) << run.out << run.err;
  expect_no_leak(outputs(dir, suite, db, run));
  EXPECT_EQ(query(db, "SELECT count(*) FROM tasks WHERE error_code = 'POLICY_ERROR'"), "2");
  EXPECT_EQ(query(db, "SELECT count(*) FROM attempts WHERE class LIKE 'echoed_%[redacted]%'"), "1");
  EXPECT_EQ(query(db, "SELECT count(*) FROM tasks WHERE error_code = 'ECHO_[redacted]'"), "1");
}
