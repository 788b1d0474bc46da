// `shepherd doctor SUITE [--probe] [--db PATH] [--json]` against the real
// binary and mock: a healthy suite (before and after its first run), a
// missing key variable, a corrupted store, a suite policy whose selftest()
// fails, a suite that does not load, a revoked key found by --probe, the
// JSON shape, and the same checks through the workflow API (s:doctor).
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "harness.h"

using namespace e2e;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

json parse_out(const Result& r) {
  json j = json::parse(r.out, nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << "stdout: " << r.out << "\nstderr: " << r.err;
  return j.is_discarded() ? json::object() : j;
}

// The check named `name` in a --json report (null when absent).
json check(const json& report, const std::string& name) {
  for (const auto& c : report.value("checks", json::array())) {
    if (c.value("name", "") == name) return c;
  }
  return nullptr;
}

// Two keys, two models: 2 x 2 = 4 (key, model) slots, 2 x 3 = 6 tasks.
SuiteSpec two_keys(const Mock& mock) {
  SuiteSpec s = suite_at(mock.base_url());
  s.keys = 2;
  s.models = {"m-a", "m-b"};
  s.matrix = "{ model = { 'm-a', 'm-b' }, instance = { 1, 2, 3 } }";
  return s;
}

// No key's value may appear in anything doctor prints.
void expect_no_secret(const Result& r) {
  for (int i = 0; i < 2; ++i) {
    std::string value = "e2e-secret-value-" + std::to_string(i);
    EXPECT_FALSE(has(r.out, value)) << r.out;
    EXPECT_FALSE(has(r.err, value)) << r.err;
  }
}

}  // namespace

TEST(Doctor, AHealthySuiteExitsZeroBeforeAndAfterItsFirstRun) {
  Mock mock;
  TempDir dir;
  std::string suite = dir.write("s.lua", two_keys(mock).text());

  // No store yet: fine, and said so.
  Result before = shepherd({"doctor", suite}, key_env(2));
  ASSERT_EQ(before.exit_code, 0) << before.out << before.err;
  EXPECT_TRUE(has(before.out, "no run yet")) << before.out;
  EXPECT_TRUE(has(before.out, "healthy")) << before.out;
  expect_no_secret(before);

  ASSERT_EQ(shepherd({"run", suite}, key_env(2)).exit_code, 0);
  Result after = shepherd({"doctor", suite, "--json"}, key_env(2));
  ASSERT_EQ(after.exit_code, 0) << after.out << after.err;
  json report = parse_out(after);
  EXPECT_EQ(report["ok"], true);
  for (const char* name : {"suite", "policy classify", "policy retry", "policy switch", "policy retest", "key mock/k0",
                           "key mock/k1", "store", "store schema", "store integrity", "disk", "logs"}) {
    json c = check(report, name);
    ASSERT_FALSE(c.is_null()) << name << " missing: " << after.out;
    EXPECT_EQ(c["ok"], true) << c.dump();
  }
  EXPECT_TRUE(has(check(report, "store integrity")["detail"].get<std::string>(), "ok"));
  // Without --probe nothing is sent: the mock saw the run's 6 requests only.
  EXPECT_EQ(mock.stats()["requests"], 6);
}

TEST(Doctor, JsonShape) {
  Mock mock;
  TempDir dir;
  std::string suite = dir.write("s.lua", two_keys(mock).text());
  Result r = shepherd({"doctor", suite, "--json"}, key_env(2));
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  json report = parse_out(r);
  ASSERT_TRUE(report.is_object());
  EXPECT_EQ(report["suite"], "e2e");
  EXPECT_TRUE(report["ok"].is_boolean());
  ASSERT_TRUE(report["checks"].is_array());
  ASSERT_GE(report["checks"].size(), 10u);
  for (const auto& c : report["checks"]) {
    EXPECT_TRUE(c["name"].is_string()) << c.dump();
    EXPECT_TRUE(c["ok"].is_boolean()) << c.dump();
    EXPECT_TRUE(c["detail"].is_string()) << c.dump();
  }
  EXPECT_EQ(report["checks"][0]["name"], "suite");
  // The human form: one line per check, then the verdict.
  Result human = shepherd({"doctor", suite}, key_env(2));
  ASSERT_EQ(human.exit_code, 0);
  size_t lines = std::count(human.out.begin(), human.out.end(), '\n');
  EXPECT_EQ(lines, report["checks"].size() + 1) << human.out;
  EXPECT_TRUE(has(human.out, "ok    key mock/k1")) << human.out;
}

TEST(Doctor, AMissingKeyVariableFailsAndNamesIt) {
  Mock mock;
  TempDir dir;
  std::string suite = dir.write("s.lua", two_keys(mock).text());
  auto env = key_env(2);
  env.erase("E2E_KEY_1");
  Result r = shepherd({"doctor", suite}, env);
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_TRUE(has(r.out, "E2E_KEY_1 is not set")) << r.out;
  EXPECT_TRUE(has(r.out, "FAIL  key mock/k1")) << r.out;
  expect_no_secret(r);

  json report = parse_out(shepherd({"doctor", suite, "--json"}, env));
  EXPECT_EQ(report["ok"], false);
  EXPECT_EQ(check(report, "key mock/k0")["ok"], true);
  EXPECT_EQ(check(report, "key mock/k1")["ok"], false);
  EXPECT_EQ(check(report, "key mock/k1")["data"]["env"], "E2E_KEY_1");
}

TEST(Doctor, ACorruptedStoreIsReportedNotCrashedOn) {
  Mock mock;
  TempDir dir;
  SuiteSpec s = two_keys(mock);
  s.matrix = "{ model = { 'm-a', 'm-b' }, instance = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 } }";
  std::string suite = dir.write("s.lua", s.text());
  ASSERT_EQ(shepherd({"run", suite}, key_env(2)).exit_code, 0);
  std::string db = dir.file("e2e.db");
  // 8 KiB of garbage in the middle of the file: two pages at least.
  auto size = fs::file_size(db);
  ASSERT_GT(size, 16384u);
  {
    std::fstream f(db, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(size / 2 - 4096));
    std::string junk(8192, '\xA5');
    f.write(junk.data(), static_cast<std::streamsize>(junk.size()));
  }
  Result r = shepherd({"doctor", suite, "--json"}, key_env(2));
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_EQ(r.signal, 0);
  json report = parse_out(r);
  EXPECT_EQ(report["ok"], false);
  json integrity = check(report, "store integrity");
  ASSERT_FALSE(integrity.is_null()) << r.out;
  EXPECT_EQ(integrity["ok"], false) << integrity.dump();
  // The other checks still ran.
  EXPECT_EQ(check(report, "disk")["ok"], true);
  EXPECT_EQ(check(report, "logs")["ok"], true);

  // A file that is no database at all: the store fails, still no crash.
  std::string junk_db = dir.write("junk.db", "this is not a database, only text");
  Result j = shepherd({"doctor", suite, "--db", junk_db}, key_env(2));
  EXPECT_EQ(j.exit_code, 1) << j.out << j.err;
  EXPECT_TRUE(has(j.out, "FAIL  store ")) << j.out;
}

TEST(Doctor, AFailingPolicySelftestIsReportedWithFileAndLine) {
  Mock mock;
  TempDir dir;
  SuiteSpec s = two_keys(mock);
  s.extra = "  policies = { retry = 'my_retry.lua' },";
  std::string suite = dir.write("s.lua", s.text());
  // Line 5: assert() gives no position itself; doctor finds it.
  dir.write("my_retry.lua",
            "local M = { name = 'my_retry' }\n"
            "function M.decide(o) return { action = 'fail' } end\n"
            "function M.selftest()\n"
            "  local d = M.decide({ class = 'timeout' })\n"
            "  assert(d.action == 'retry', 'a timeout is retried')\n"
            "end\n"
            "return M\n");
  Result r = shepherd({"doctor", suite}, key_env(2));
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  std::string where = fs::canonical(dir.file("my_retry.lua")).string() + ":5";
  EXPECT_TRUE(has(r.out, where)) << r.out;
  EXPECT_TRUE(has(r.out, "a timeout is retried")) << r.out;
  // One broken policy hides no other: the packaged ones are checked and pass.
  EXPECT_TRUE(has(r.out, "ok    policy classify")) << r.out;
  EXPECT_TRUE(has(r.out, "FAIL  policy retry")) << r.out;

  // error() with a position of its own, in a classify override.
  dir.write("my_classify.lua", "return { classify = function(o) return 'ok' end,\n"
                               "  selftest = function() error('classify is broken') end }\n");
  s.extra = "  policies = { classify = 'my_classify.lua' },";
  dir.write("s.lua", s.text());
  json report = parse_out(shepherd({"doctor", suite, "--json"}, key_env(2)));
  json c = check(report, "policy classify");
  EXPECT_EQ(c["ok"], false);
  EXPECT_EQ(c["data"]["line"], 2);
  EXPECT_TRUE(has(c["detail"].get<std::string>(), "my_classify.lua:2: selftest() failed: classify is broken"))
      << c.dump();
  EXPECT_EQ(check(report, "policy retry")["ok"], true);
}

TEST(Doctor, ASuiteThatDoesNotLoadIsAFailedCheck) {
  TempDir dir;
  std::string suite = dir.write("bad.lua", "return {\n  name = 'bad',\n  providers = 3,\n}\n");
  Result r = shepherd({"doctor", suite, "--json"});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  json report = parse_out(r);
  EXPECT_EQ(report["ok"], false);
  json c = check(report, "suite");
  EXPECT_EQ(c["ok"], false);
  EXPECT_EQ(c["data"]["code"], "SUITE_INVALID");
  EXPECT_EQ(c["data"]["line"], 3);
  EXPECT_TRUE(has(c["detail"].get<std::string>(), "bad.lua:3")) << c.dump();
}

TEST(Doctor, ProbeShowsTheRevokedKeyForEachOfItsModels) {
  // Only key 0's value is accepted: key 1 is revoked.
  Mock mock(json{{"keys", {"e2e-secret-value-0"}}});
  TempDir dir;
  std::string suite = dir.write("s.lua", two_keys(mock).text());
  Result r = shepherd({"doctor", suite, "--probe", "--json"}, key_env(2));
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  expect_no_secret(r);
  json report = parse_out(r);
  EXPECT_EQ(report["ok"], false);
  for (const char* model : {"m-a", "m-b"}) {
    json good = check(report, std::string("probe mock/k0/") + model);
    ASSERT_FALSE(good.is_null()) << r.out;
    EXPECT_EQ(good["ok"], true) << good.dump();
    EXPECT_EQ(good["data"]["status"], 200);
    EXPECT_EQ(good["data"]["class"], "ok");
    EXPECT_EQ(good["data"]["model_answered"], model);
    EXPECT_TRUE(good["data"]["latency_ms"].is_number());

    json revoked = check(report, std::string("probe mock/k1/") + model);
    ASSERT_FALSE(revoked.is_null()) << r.out;
    EXPECT_EQ(revoked["ok"], false) << revoked.dump();
    EXPECT_EQ(revoked["data"]["status"], 401);
    EXPECT_EQ(revoked["data"]["class"], "auth_failed");
    EXPECT_TRUE(has(revoked["detail"].get<std::string>(), "401")) << revoked.dump();
  }
  // The key variables are set: only the probe finds the revoked key.
  EXPECT_EQ(check(report, "key mock/k1")["ok"], true);
  // One request per (key, model), no retry, no other key taking k1's work.
  auto stats = mock.stats();
  EXPECT_EQ(stats["requests"], 4) << stats.dump();

  // The human form says it on k1's lines.
  Result human = shepherd({"doctor", suite, "--probe"}, key_env(2));
  EXPECT_EQ(human.exit_code, 1);
  EXPECT_TRUE(has(human.out, "FAIL  probe mock/k1/m-a  HTTP 401, auth_failed")) << human.out;
  EXPECT_TRUE(has(human.out, "ok    probe mock/k0/m-a  HTTP 200, ok")) << human.out;

  // A key without its variable is not probed, and says why.
  auto env = key_env(2);
  env.erase("E2E_KEY_1");
  json partial = parse_out(shepherd({"doctor", suite, "--probe", "--json"}, env));
  EXPECT_TRUE(has(check(partial, "probe mock/k1/m-b")["detail"].get<std::string>(), "E2E_KEY_1 is not set"));
  EXPECT_EQ(check(partial, "probe mock/k0/m-b")["ok"], true);
}

TEST(Doctor, TheWorkflowApiGivesTheSameChecks) {
  Mock mock(json{{"keys", {"e2e-secret-value-0"}}});
  TempDir dir;
  std::string suite = dir.write("s.lua", two_keys(mock).text());
  std::string script = dir.write("w.lua", R"(
local s = assert(shepherd.suite(shepherd.args[1]))
local names = {}
for _, c in ipairs(s:doctor{ probe = true }) do names[#names + 1] = c.name .. "=" .. tostring(c.ok) end
print(table.concat(names, ","))
local checks, info = shepherd.doctor_suite(shepherd.args[1], { probe = false })
print(#checks, info.suite)
local ok, err = pcall(s.doctor, s, { probe = "yes" })
print(ok, err)
)");
  Result r = shepherd({"script", script, suite}, key_env(2));
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_TRUE(has(r.out, "suite=true,policy classify=true")) << r.out;
  EXPECT_TRUE(has(r.out, "probe mock/k0/m-a=true,probe mock/k0/m-b=true,probe mock/k1/m-a=false,probe mock/k1/m-b=false"))
      << r.out;
  EXPECT_TRUE(has(r.out, "10\te2e")) << r.out;  // suite, 4 policies, 2 keys, store, disk, logs
  EXPECT_TRUE(has(r.out, "false\tbad argument #1 to 'doctor' (probe must be a boolean)")) << r.out;
}
