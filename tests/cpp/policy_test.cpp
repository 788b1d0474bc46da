// The packaged policies, table-driven (tests/policies/*_cases.lua: outcome in,
// class or decision out), and the PolicySet's loading and calling contract.
// Every case runs twice: on a fresh load, and on a second PolicySet built in
// the same Lua state after the first is destroyed (the reload path).
#include <stdlib.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/hash.h"
#include "core/resources.h"
#include "lua/api.h"
#include "lua/lua_call.h"
#include "lua/lua_json.h"
#include "policy/policy_set.h"
#include "policy/policy_sources.h"
#include "policy/policy_watcher.h"
#include "suite/suite.h"

namespace shepherd {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// ---------------------------------------------------------------- helpers

// A case file (a Lua chunk returning a list of cases) as JSON.
json load_cases(const std::string& file) {
  std::string path = std::string(SHEPHERD_TEST_SOURCE_DIR) + "/policies/" + file;
  LuaState L;
  LuaFailure failure;
  json out;
  std::string error;
  if (!load_chunk(L, read_file(path), path, failure) || !protected_call(L, 0, 1, failure)) {
    ADD_FAILURE() << failure.describe();
    return json::array();
  }
  if (!try_to_json(L, -1, out, error)) ADD_FAILURE() << path << ": " << error;
  return out;
}

std::string_view str(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_string()) return {};
  return it->get_ref<const std::string&>();
}

// An OutcomeView over a case's input table; the views point into this object.
struct Outcome {
  json in;
  std::vector<std::pair<std::string, std::string>> headers;
  json body;
  std::string content;
  std::string check;
  OutcomeView view;

  explicit Outcome(json input) : in(std::move(input)) {
    view.status = in.value("status", 0L);
    view.transport = str(in, "transport");
    if (auto h = in.find("headers"); h != in.end()) {
      for (const auto& [name, value] : h->items()) headers.emplace_back(name, value.get<std::string>());
    }
    view.headers = &headers;
    if (auto b = in.find("body"); b != in.end()) {
      body = *b;
      view.body = &body;
    }
    view.raw = str(in, "raw");
    view.elapsed_ms = in.value("elapsed_ms", 0.0);
    view.model_requested = str(in, "model_requested");
    view.model_answered = str(in, "model_answered");
    view.model_role = str(in, "model_role");
    if (in.contains("content")) {
      content = in["content"].get<std::string>();
      view.content = &content;
    }
    view.finish_reason = str(in, "finish_reason");
    view.refusal = str(in, "refusal");
    view.tool_calls = in.value("tool_calls", false);
    view.error_code = str(in, "error_code");
    view.error_message = str(in, "error_message");
    if (in.contains("check")) {
      check = in["check"].get<std::string>();
      view.check = &check;
    }
  }
  Outcome(const Outcome&) = delete;
  Outcome& operator=(const Outcome&) = delete;
};

// A DecideInput over a case's input table.
struct DecideCtx {
  json in;
  json cell;
  std::vector<HistoryEntry> history;
  DecideInput view;

  explicit DecideCtx(json input) : in(std::move(input)) {
    view.cls = str(in, "class");
    view.attempt = in.value("attempt", 1);
    if (auto t = in.find("task"); t != in.end()) {
      cell = *t;
      view.cell = &cell;
    }
    view.model = str(in, "model");
    view.model_role = str(in, "model_role");
    if (auto h = in.find("history"); h != in.end()) {
      for (const auto& e : *h) history.push_back({e.value("class", ""), e.value("status", 0L), e.value("code", "")});
    }
    view.history = &history;
    view.retry_after_ms = in.value("retry_after_ms", -1L);
    view.status = in.value("status", 0L);
    view.error_code = str(in, "error_code");
    view.usable_keys = in.value("usable_keys", 0);
  }
  DecideCtx(const DecideCtx&) = delete;
  DecideCtx& operator=(const DecideCtx&) = delete;
};

RetryConfig retry_config(const json& overrides) {
  RetryConfig c;
  if (!overrides.is_object()) return c;
  c.max_retries = overrides.value("max_retries", c.max_retries);
  c.base_delay_ms = overrides.value("base_delay_ms", c.base_delay_ms);
  c.backoff_multiplier = overrides.value("backoff_multiplier", c.backoff_multiplier);
  c.max_delay_ms = overrides.value("max_delay_ms", c.max_delay_ms);
  c.jitter = overrides.value("jitter", c.jitter);
  c.retry_on_timeout = overrides.value("retry_on_timeout", c.retry_on_timeout);
  c.retry_on_api_error = overrides.value("retry_on_api_error", c.retry_on_api_error);
  c.retry_on_format_error = overrides.value("retry_on_format_error", c.retry_on_format_error);
  return c;
}

PolicySources packaged() { return PolicySources::for_suite(Suite{}); }

PolicySource source(const std::string& kind, const std::string& chunk_name, const std::string& text) {
  return PolicySource{.kind = kind, .chunk_name = chunk_name, .path = "", .text = text,
                      .hash = stable_hash_hex(text).substr(0, 12)};
}

// A Lua state as a worker has it: the shepherd API registered.
struct WorkerState {
  LuaState L;
  WorkerState() { register_shepherd_api(L); }
};

std::string classify(PolicySet& set, const OutcomeView& o) {
  std::string cls;
  LuaFailure failure;
  EXPECT_TRUE(set.classify(o, cls, failure)) << failure.describe();
  return cls;
}

Decision decide(PolicySet& set, const DecideInput& in) {
  Decision d;
  LuaFailure failure;
  EXPECT_TRUE(set.decide(in, d, failure)) << failure.describe();
  return d;
}

Error load_error(lua_State* L, const PolicySources& sources) {
  try {
    PolicySet set(L, sources, RetryConfig{});
    ADD_FAILURE() << "loaded without an error";
  } catch (const Error& e) {
    return e;
  }
  return Error(codes::INTERNAL, "no error", Stage::policy);
}

int line_of(const std::string& text, const std::string& needle) {
  size_t pos = text.find(needle);
  EXPECT_NE(pos, std::string::npos) << needle;
  return 1 + static_cast<int>(std::count(text.begin(), text.begin() + static_cast<long>(pos), '\n'));
}

// ---------------------------------------------------------------- table-driven cases

void check_classify_cases(PolicySet& set, const json& cases, const char* pass, lua_State* L) {
  for (const auto& c : cases) {
    SCOPED_TRACE(std::string(pass) + ": " + c.value("name", "?"));
    Outcome o(c.at("input"));
    int top = lua_gettop(L);
    EXPECT_EQ(classify(set, o.view), c.at("expect").get<std::string>()) << o.in.dump();
    EXPECT_EQ(lua_gettop(L), top);
  }
}

TEST(PolicyCases, Classify) {
  json cases = load_cases("classify_cases.lua");
  ASSERT_GE(cases.size(), 30u);
  PolicySources sources = packaged();
  WorkerState w;
  {
    PolicySet first(w.L, sources, RetryConfig{});
    check_classify_cases(first, cases, "fresh load", w.L);
  }
  lua_gc(w.L, LUA_GCCOLLECT, 0);  // whatever the first set left unreferenced is gone
  PolicySet second(w.L, sources, RetryConfig{});
  check_classify_cases(second, cases, "after reload", w.L);
}

void check_retry_case(PolicySet& set, const json& c) {
  const json& expect = c.at("expect");
  std::string action = expect.at("action").get<std::string>();
  // Jitter is random: a retry's delay is checked on many draws.
  int draws = action == "retry" ? 50 : 1;
  for (int i = 0; i < draws; ++i) {
    DecideCtx ctx(c.at("input"));
    Decision d = decide(set, ctx.view);
    ASSERT_EQ(to_string(d.action), action) << ctx.in.dump();
    if (action == "fail" && expect.contains("code")) {
      EXPECT_EQ(d.code, expect["code"].get<std::string>());
    }
    if (action == "retry") {
      EXPECT_GE(d.delay_ms, expect.at("delay")[0].get<long>()) << ctx.in.dump();
      EXPECT_LE(d.delay_ms, expect.at("delay")[1].get<long>()) << ctx.in.dump();
    }
  }
}

TEST(PolicyCases, Retry) {
  json cases = load_cases("retry_cases.lua");
  ASSERT_GE(cases.size(), 20u);
  PolicySources sources = packaged();
  for (const auto& c : cases) {
    RetryConfig config = retry_config(c.value("config", json::object()));
    WorkerState w;
    {
      SCOPED_TRACE("fresh load: " + c.value("name", "?"));
      PolicySet first(w.L, sources, config);
      check_retry_case(first, c);
    }
    lua_gc(w.L, LUA_GCCOLLECT, 0);
    SCOPED_TRACE("after reload: " + c.value("name", "?"));
    PolicySet second(w.L, sources, config);
    check_retry_case(second, c);
  }
}

TEST(PolicyCases, BackoffFollowsTheFormulaWithinTheJitterBand) {
  PolicySources sources = packaged();
  WorkerState w;
  RetryConfig config;
  config.base_delay_ms = 200;
  config.backoff_multiplier = 3;
  config.max_delay_ms = 4000;
  PolicySet set(w.L, sources, config);
  for (int attempt = 1; attempt <= 3; ++attempt) {
    double full = std::min(200.0 * std::pow(3.0, attempt - 1), 4000.0);
    long lo = static_cast<long>(full), hi = 0;
    for (int i = 0; i < 300; ++i) {
      DecideInput in;
      in.cls = "timeout";
      in.attempt = attempt;
      in.model = "m-a";
      in.model_role = "dimension";
      Decision d = decide(set, in);
      ASSERT_EQ(d.action, Decision::Action::retry);
      EXPECT_GE(d.delay_ms, static_cast<long>(std::floor(full * 0.5))) << "attempt " << attempt;
      EXPECT_LE(d.delay_ms, static_cast<long>(full)) << "attempt " << attempt;
      lo = std::min(lo, d.delay_ms);
      hi = std::max(hi, d.delay_ms);
    }
    // The jitter really spreads the delays over the band.
    EXPECT_LT(lo, full * 0.6) << "attempt " << attempt;
    EXPECT_GT(hi, full * 0.9) << "attempt " << attempt;
  }
  DecideInput fourth;
  fourth.cls = "timeout";
  fourth.attempt = 4;
  Decision d = decide(set, fourth);
  EXPECT_EQ(d.action, Decision::Action::fail);
  EXPECT_EQ(d.code, "TIMEOUT");
}

// ---------------------------------------------------------------- what policies see

TEST(PolicySetTest, ClassifySeesThePlainFields) {
  WorkerState w;
  PolicySources sources = packaged();
  sources.classify = source("classify", "/policies/echo.lua",
                            "return { classify = function(o) return shepherd.json.encode(o) end }\n");
  PolicySet set(w.L, sources, RetryConfig{});
  Outcome o(json{{"status", 403},
                 {"raw", "{\"error\":{}}"},
                 {"elapsed_ms", 12.5},
                 {"model_requested", "m-a"},
                 {"model_answered", "m-a-2024-01-01"},
                 {"model_role", "resource"},
                 {"content", "hello"},
                 {"finish_reason", "stop"},
                 {"error_code", "insufficient_quota"},
                 {"error_message", "no quota"},
                 {"check", "wrong"}});
  json seen = json::parse(classify(set, o.view));
  json expected = o.in;
  EXPECT_EQ(seen, expected);

  Outcome transport(json{{"status", 0}, {"transport", "reset"}});
  EXPECT_EQ(json::parse(classify(set, transport.view)), json::parse(R"({"status":0,"transport":"reset","elapsed_ms":0})"));
}

TEST(PolicySetTest, RawIsTruncatedTo4KiB) {
  WorkerState w;
  PolicySources sources = packaged();
  sources.classify = source("classify", "/policies/raw.lua",
                            "return { classify = function(o) return 'raw:' .. #o.raw end }\n");
  PolicySet set(w.L, sources, RetryConfig{});
  Outcome big(json{{"status", 500}, {"raw", std::string(10000, 'x')}});
  EXPECT_EQ(classify(set, big.view), "raw:4096");
  Outcome small(json{{"status", 500}, {"raw", "short"}});
  EXPECT_EQ(classify(set, small.view), "raw:5");
}

const char* const kLazyClassify = R"LUA(local M = {}
function M.classify(o)
  if o.status == 1 then
    stash = o                  -- a global of this policy's environment
    return "stashed"
  end
  if o.status == 2 then
    -- A table kept from an earlier call, read during this one.
    local old = stash
    local content = old.body and old.body.choices[1].message.content
    local header = old.headers and old.headers["x-test"]
    return "stale:" .. tostring(content) .. ":" .. tostring(header)
  end
  if o.status == 3 then
    return "absent:" .. tostring(o.body) .. ":" .. type(o.headers) .. ":" .. tostring(o.headers["x-test"])
  end
  local body1, body2 = o.body, o.body
  return "lazy:" .. o.body.choices[1].message.content .. ":" .. o.headers["x-test"] .. ":" .. tostring(body1 == body2)
end
return M
)LUA";

json chat_body(const std::string& content) {
  return {{"model", "m-a"}, {"choices", {{{"message", {{"role", "assistant"}, {"content", content}}}}}}};
}

TEST(PolicySetTest, LazyBodyAndHeadersDuringTheCall) {
  WorkerState w;
  PolicySources sources = packaged();
  sources.classify = source("classify", "/policies/lazy.lua", kLazyClassify);
  PolicySet set(w.L, sources, RetryConfig{});
  Outcome o(json{{"status", 200}, {"body", chat_body("hello")}, {"headers", {{"x-test", "42"}}}});
  EXPECT_EQ(classify(set, o.view), "lazy:hello:42:true");

  Outcome none(json{{"status", 3}});  // no body, no headers
  EXPECT_EQ(classify(set, none.view), "absent:nil:table:nil");
  Outcome discarded(json{{"status", 3}});
  discarded.body = json(json::value_t::discarded);
  discarded.view.body = &discarded.body;
  EXPECT_EQ(classify(set, discarded.view), "absent:nil:table:nil");
}

TEST(PolicySetTest, LazyFieldsReadAfterTheCallAreNil) {
  WorkerState w;
  PolicySources sources = packaged();
  sources.classify = source("classify", "/policies/lazy.lua", kLazyClassify);
  PolicySet set(w.L, sources, RetryConfig{});
  {
    Outcome first(json{{"status", 1}, {"body", chat_body("first")}, {"headers", {{"x-test", "A"}}}});
    EXPECT_EQ(classify(set, first.view), "stashed");
  }  // the outcome's memory is gone

  // Host-side Lua finds the policy's environment through the registry and
  // reads the kept outcome there, outside any classify() call.
  LuaFailure failure;
  ASSERT_TRUE(load_chunk(w.L, R"LUA(
    for _, module in pairs(debug.getregistry()) do
      local fn = type(module) == "table" and rawget(module, "classify")
      if type(fn) == "function" then
        local o = rawget(getfenv(fn), "stash")
        if o then return tostring(o.body) .. ":" .. tostring(o.headers) .. ":" .. o.status end
      end
    end
    return "stash not found"
  )LUA", "reader.lua", failure));
  ASSERT_TRUE(protected_call(w.L, 0, 1, failure)) << failure.describe();
  EXPECT_STREQ(lua_tostring(w.L, -1), "nil:nil:1");
  lua_pop(w.L, 1);
}

TEST(PolicySetTest, LazyFieldsOfAKeptOutcomeNeverShowALaterOutcome) {
  WorkerState w;
  PolicySources sources = packaged();
  sources.classify = source("classify", "/policies/lazy.lua", kLazyClassify);
  PolicySet set(w.L, sources, RetryConfig{});
  Outcome first(json{{"status", 1}, {"body", chat_body("first")}, {"headers", {{"x-test", "A"}}}});
  EXPECT_EQ(classify(set, first.view), "stashed");
  Outcome second(json{{"status", 2}, {"body", chat_body("second")}, {"headers", {{"x-test", "B"}}}});
  std::string seen = classify(set, second.view);
  // The kept table belongs to the first outcome: reading it later may give
  // nothing, but never the second outcome's body or headers.
  EXPECT_EQ(seen.find("second"), std::string::npos) << seen;
  EXPECT_EQ(seen.find(":B"), std::string::npos) << seen;
  EXPECT_EQ(seen, "stale:nil:nil");
}

TEST(PolicySetTest, DecideSeesTheContext) {
  WorkerState w;
  PolicySources sources = packaged();
  sources.retry = source("retry", "/policies/echo_retry.lua",
                         "return { decide = function(ctx) return { action = 'fail', code = shepherd.json.encode(ctx) } end }\n");
  RetryConfig config;
  config.max_retries = 7;
  config.retry_on_format_error = true;
  PolicySet set(w.L, sources, config);
  json cell = {{"model", "m-a"}, {"instance", 3}};
  std::vector<HistoryEntry> history = {{"timeout", 0, ""}, {"rate_limited", 429, "rate_limit_exceeded"}};
  DecideInput in;
  in.cls = "server_error";
  in.attempt = 3;
  in.cell = &cell;
  in.model = "m-a";
  in.model_role = "dimension";
  in.history = &history;
  in.retry_after_ms = 1500;
  in.status = 503;
  in.error_code = "overloaded";
  Decision d = decide(set, in);
  json ctx = json::parse(d.code);
  EXPECT_EQ(ctx["class"], "server_error");
  EXPECT_EQ(ctx["attempt"], 3);
  EXPECT_EQ(ctx["task"], cell);
  EXPECT_EQ(ctx["model"], "m-a");
  EXPECT_EQ(ctx["model_role"], "dimension");
  EXPECT_EQ(ctx["config"], json::parse(R"({"max_retries":7,"base_delay_ms":1000,"backoff_multiplier":2,
      "max_delay_ms":60000,"jitter":true,"retry_on_timeout":true,"retry_on_api_error":true,
      "retry_on_format_error":true,"poison_after":5})"));
  EXPECT_EQ(ctx["history"], json::parse(R"([{"class":"timeout","status":0},
                                             {"class":"rate_limited","status":429,"code":"rate_limit_exceeded"}])"));
  EXPECT_EQ(ctx["retry_after_ms"], 1500);
  EXPECT_EQ(ctx["status"], 503);
  EXPECT_EQ(ctx["error_code"], "overloaded");

  DecideInput bare;
  bare.cls = "timeout";
  json minimal = json::parse(decide(set, bare).code);
  EXPECT_FALSE(minimal.contains("retry_after_ms"));
  EXPECT_FALSE(minimal.contains("task"));
  EXPECT_EQ(minimal["history"], json::object());  // an empty Lua table
}

// ---------------------------------------------------------------- loading

TEST(PolicySetTest, PackagedSourcesAndVersion) {
  PolicySources s = packaged();
  EXPECT_EQ(s.classify.kind, "classify");
  EXPECT_EQ(s.retry.kind, "retry");
  EXPECT_NE(s.classify.chunk_name.find("policies/classify.lua"), std::string::npos) << s.classify.chunk_name;
  EXPECT_NE(s.retry.chunk_name.find("policies/retry.lua"), std::string::npos) << s.retry.chunk_name;
  EXPECT_EQ(s.classify.hash, stable_hash_hex(s.classify.text).substr(0, 12));
  EXPECT_EQ(s.version.size(), 12u);
  EXPECT_EQ(packaged().version, s.version);  // the same text, the same version

  WorkerState w;
  PolicySet set(w.L, s, RetryConfig{});
  EXPECT_EQ(set.version(), s.version);
}

class PolicyFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = "/tmp/shepherd_policy_test_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string write(const std::string& name, const std::string& text) {
    fs::path p = dir_ / name;
    std::ofstream(p, std::ios::binary) << text;
    return p.string();
  }

  fs::path dir_;
};

TEST_F(PolicyFilesTest, SuiteOverridesAreLoadedFromTheirFiles) {
  const std::string classify_text =
      "local M = { name = 'mine' }\n"
      "function M.classify(o)\n"
      "  if o.status == 999 then error('mine broke') end\n"
      "  return 'mine:' .. o.status\n"
      "end\n"
      "return M\n";
  std::string classify_path = write("my_classify.lua", classify_text);
  write("suite.lua",
        "return {\n"
        "  name = 'p',\n"
        "  providers = { p = { base_url = 'http://x/v1', keys = { { id = 'k', env = 'UNSET_FOR_POLICY_TEST' } },\n"
        "                      models = { 'm' } } },\n"
        "  matrix = { model = { 'm' } },\n"
        "  request = function(cell) return {} end,\n"
        "  policies = { classify = 'my_classify.lua' },\n"
        "}\n");
  Suite suite = load_suite((dir_ / "suite.lua").string(), SuiteLoadOptions{false});
  PolicySources sources = PolicySources::for_suite(suite);
  EXPECT_EQ(sources.classify.chunk_name, fs::weakly_canonical(classify_path).string());
  EXPECT_EQ(sources.classify.text, classify_text);
  EXPECT_NE(sources.version, packaged().version);
  EXPECT_NE(sources.retry.chunk_name.find("policies/retry.lua"), std::string::npos);

  WorkerState w;
  PolicySet set(w.L, sources, suite.retry);
  Outcome ok(json{{"status", 200}});
  EXPECT_EQ(classify(set, ok.view), "mine:200");

  Outcome broken(json{{"status", 999}});
  std::string cls;
  LuaFailure failure;
  EXPECT_FALSE(set.classify(broken.view, cls, failure));
  EXPECT_EQ(failure.file, sources.classify.chunk_name);
  EXPECT_EQ(failure.line, 3);
  EXPECT_EQ(failure.message, "mine broke");
}

TEST(PolicyLoadErrors, SyntaxErrorNamesFileAndLine) {
  WorkerState w;
  PolicySources sources = packaged();
  const std::string text = "local M = {\n  name = 'x'\n  version = 1,\n}\nreturn M\n";
  sources.classify = source("classify", "/etc/shepherd/classify.lua", text);
  Error e = load_error(w.L, sources);
  EXPECT_EQ(e.code(), codes::POLICY_LOAD_FAILED);
  EXPECT_EQ(e.stage(), Stage::policy);
  EXPECT_EQ(e.details().value("file", ""), "/etc/shepherd/classify.lua");
  EXPECT_EQ(e.details().value("line", -1), 3);
  EXPECT_EQ(e.details().value("policy", ""), "classify");
  EXPECT_EQ(std::string(e.what()).rfind("/etc/shepherd/classify.lua:3: ", 0), 0u) << e.what();
}

TEST(PolicyLoadErrors, RuntimeErrorWhileLoading) {
  WorkerState w;
  PolicySources sources = packaged();
  sources.retry = source("retry", "/etc/shepherd/retry.lua", "local cfg = {}\nlocal x = cfg.a.b\nreturn {}\n");
  Error e = load_error(w.L, sources);
  EXPECT_EQ(e.code(), codes::POLICY_LOAD_FAILED);
  EXPECT_EQ(e.details().value("line", -1), 2);
  EXPECT_EQ(e.details().value("policy", ""), "retry");
  EXPECT_EQ(std::string(e.what()).rfind("/etc/shepherd/retry.lua:2: ", 0), 0u) << e.what();
}

TEST(PolicyLoadErrors, SandboxAppliesWhileLoading) {
  WorkerState w;
  PolicySources sources = packaged();
  sources.classify = source("classify", "/p/classify.lua", "local f = io.open\nreturn { classify = function() return 'ok' end }\n");
  Error e = load_error(w.L, sources);
  EXPECT_EQ(e.code(), codes::POLICY_LOAD_FAILED);
  EXPECT_NE(std::string(e.what()).find("unknown global 'io'"), std::string::npos) << e.what();
  EXPECT_EQ(e.details().value("line", -1), 1);

  sources.classify = source("classify", "/p/classify.lua", "local x = require('os')\nreturn {}\n");
  EXPECT_NE(std::string(load_error(w.L, sources).what()).find("not allowed"), std::string::npos);
}

TEST(PolicyLoadErrors, NotATableOrMissingFunction) {
  WorkerState w;
  PolicySources sources = packaged();
  sources.classify = source("classify", "/p/classify.lua", "return 42\n");
  Error not_table = load_error(w.L, sources);
  EXPECT_EQ(not_table.code(), codes::POLICY_LOAD_FAILED);
  EXPECT_NE(std::string(not_table.what()).find("must return a table"), std::string::npos) << not_table.what();
  EXPECT_EQ(not_table.details().value("file", ""), "/p/classify.lua");

  sources.classify = source("classify", "/p/classify.lua", "return { name = 'c', classify = 'not a function' }\n");
  Error missing = load_error(w.L, sources);
  EXPECT_NE(std::string(missing.what()).find("no function 'classify'"), std::string::npos) << missing.what();

  sources = packaged();
  sources.retry = source("retry", "/p/retry.lua", "return { retry = function() end }\n");
  Error no_decide = load_error(w.L, sources);
  EXPECT_NE(std::string(no_decide.what()).find("no function 'decide'"), std::string::npos) << no_decide.what();
  EXPECT_EQ(no_decide.details().value("policy", ""), "retry");

  sources.retry = source("retry", "/p/retry.lua", std::string("\x1bLJ\x02", 4));
  EXPECT_NE(std::string(load_error(w.L, sources).what()).find("bytecode"), std::string::npos);
}

TEST(PolicyLoadErrors, AFailedLoadKeepsTheWorkingSet) {
  WorkerState w;
  PolicySources good = packaged();
  PolicySet working(w.L, good, RetryConfig{});
  PolicySources bad = packaged();
  bad.retry = source("retry", "/p/retry.lua", "return {\n");
  EXPECT_EQ(load_error(w.L, bad).code(), codes::POLICY_LOAD_FAILED);
  lua_gc(w.L, LUA_GCCOLLECT, 0);
  Outcome o(json{{"status", 429}});
  EXPECT_EQ(classify(working, o.view), "rate_limited");
  DecideInput in;
  in.cls = "auth_failed";
  EXPECT_EQ(decide(working, in).code, "AUTH_FAILED");
}

int registry_entries(lua_State* L) {
  int n = 0;
  lua_pushnil(L);
  while (lua_next(L, LUA_REGISTRYINDEX) != 0) {
    if (!lua_isnumber(L, -1)) ++n;  // free-list links of luaL_ref are numbers
    lua_pop(L, 1);
  }
  return n;
}

TEST(PolicyLoadErrors, AFailedLoadLeavesNoReferenceBehind) {
  // Hot reload builds sets over and over in one state: a failed build must not leak.
  WorkerState w;
  { PolicySet warm(w.L, packaged(), RetryConfig{}); }  // fills the module cache
  lua_gc(w.L, LUA_GCCOLLECT, 0);
  int before = registry_entries(w.L);
  PolicySources bad = packaged();
  bad.retry = source("retry", "/p/retry.lua", "return {}\n");  // classify loads, retry fails
  for (int i = 0; i < 3; ++i) load_error(w.L, bad);
  { PolicySet ok(w.L, packaged(), RetryConfig{}); }
  EXPECT_EQ(registry_entries(w.L), before);
}

// ---------------------------------------------------------------- call failures

const char* const kBrokenClassify = R"LUA(local M = {}
function M.classify(o)
  if o.status == 1 then
    error("classify broke")
  end
  if o.status == 2 then return 42 end
  if o.status == 3 then return "" end
  if o.status == 4 then return nil end
  if o.status == 5 then local t = nil; return t.field end
  return "ok"
end
return M
)LUA";

const char* const kBrokenRetry = R"LUA(local M = {}
function M.decide(ctx)
  if ctx.class == "bogus" then return { action = "bogus" } end
  if ctx.class == "no_delay" then return { action = "retry" } end
  if ctx.class == "negative" then return { action = "retry", delay_ms = -5 } end
  if ctx.class == "string" then return "retry" end
  if ctx.class == "bad_code" then return { action = "fail", code = 42 } end
  if ctx.class == "raise" then
    error("decide broke")
  end
  if ctx.class == "switch" then return { action = "switch_model" } end
  if ctx.class == "retry" then return { action = "retry", delay_ms = 250.9 } end
  return { action = "fail" }
end
return M
)LUA";

TEST(PolicyCallErrors, ClassifyFailures) {
  WorkerState w;
  PolicySources sources = packaged();
  sources.classify = source("classify", "/srv/policies/classify.lua", kBrokenClassify);
  PolicySet set(w.L, sources, RetryConfig{});
  int top = lua_gettop(w.L);
  auto fails = [&](long status) {
    Outcome o(json{{"status", status}});
    std::string cls = "untouched";
    LuaFailure failure;
    EXPECT_FALSE(set.classify(o.view, cls, failure)) << "status " << status << " gave " << cls;
    EXPECT_EQ(lua_gettop(w.L), top);
    return failure;
  };
  LuaFailure raised = fails(1);
  EXPECT_EQ(raised.message, "classify broke");
  EXPECT_EQ(raised.file, "/srv/policies/classify.lua");
  EXPECT_EQ(raised.line, line_of(kBrokenClassify, "error(\"classify broke\")"));
  EXPECT_NE(raised.traceback.find("stack traceback"), std::string::npos);

  LuaFailure number = fails(2);
  EXPECT_NE(number.message.find("class name"), std::string::npos) << number.message;
  EXPECT_NE(number.message.find("number"), std::string::npos) << number.message;
  fails(3);
  fails(4);
  LuaFailure index = fails(5);
  EXPECT_EQ(index.line, line_of(kBrokenClassify, "t.field"));

  // The set still works after every failure.
  Outcome fine(json{{"status", 200}});
  EXPECT_EQ(classify(set, fine.view), "ok");
}

TEST(PolicyCallErrors, ClassifyFailureNamesALongFileInFull) {
  // Lua shortens chunk names over 60 characters in its messages ("...tail");
  // the failure must still name the policy's real file.
  WorkerState w;
  PolicySources sources = packaged();
  std::string long_name = "/home/someone/projects/evaluations/2024-reasoning-benchmark/policies/classify.lua";
  sources.classify = source("classify", long_name, kBrokenClassify);
  PolicySet set(w.L, sources, RetryConfig{});
  Outcome o(json{{"status", 1}});
  std::string cls;
  LuaFailure failure;
  ASSERT_FALSE(set.classify(o.view, cls, failure));
  EXPECT_EQ(failure.message, "classify broke");
  EXPECT_EQ(failure.file, long_name);
  EXPECT_EQ(failure.line, 4);
}

TEST(PolicyCallErrors, DecideFailures) {
  WorkerState w;
  PolicySources sources = packaged();
  sources.retry = source("retry", "/srv/policies/retry.lua", kBrokenRetry);
  PolicySet set(w.L, sources, RetryConfig{});
  int top = lua_gettop(w.L);
  auto fails = [&](const char* cls) {
    DecideInput in;
    in.cls = cls;
    Decision d;
    LuaFailure failure;
    EXPECT_FALSE(set.decide(in, d, failure)) << cls;
    EXPECT_EQ(lua_gettop(w.L), top);
    return failure;
  };
  EXPECT_NE(fails("bogus").message.find("unknown action 'bogus'"), std::string::npos);
  EXPECT_NE(fails("no_delay").message.find("delay_ms"), std::string::npos);
  EXPECT_NE(fails("negative").message.find("delay_ms"), std::string::npos);
  EXPECT_NE(fails("string").message.find("must return a table"), std::string::npos);
  EXPECT_NE(fails("bad_code").message.find("code"), std::string::npos);
  LuaFailure raised = fails("raise");
  EXPECT_EQ(raised.message, "decide broke");
  EXPECT_EQ(raised.file, "/srv/policies/retry.lua");
  EXPECT_EQ(raised.line, line_of(kBrokenRetry, "error(\"decide broke\")"));

  DecideInput switch_in;
  switch_in.cls = "switch";
  EXPECT_EQ(decide(set, switch_in).action, Decision::Action::switch_model);
  DecideInput retry_in;
  retry_in.cls = "retry";
  Decision r = decide(set, retry_in);
  EXPECT_EQ(r.action, Decision::Action::retry);
  EXPECT_EQ(r.delay_ms, 250);
  DecideInput fail_in;
  fail_in.cls = "other";
  Decision f = decide(set, fail_in);
  EXPECT_EQ(f.action, Decision::Action::fail);
  EXPECT_EQ(f.code, "");
}

}  // namespace
}  // namespace shepherd

// ------------------------------------------------ switch, retest, and a real hot reload

namespace shepherd {
namespace {

MaintainConfig maintain_config(const json& overrides) {
  MaintainConfig m;
  if (!overrides.is_object()) return m;
  m.minimum_completion_rate = overrides.value("minimum_completion_rate", m.minimum_completion_rate);
  m.maximum_failure_rate = overrides.value("maximum_failure_rate", m.maximum_failure_rate);
  // An empty Lua table arrives as {}: an empty list.
  auto list = [&](const char* key) {
    json v = overrides.value(key, json::array());
    return v.is_array() ? v.get<std::vector<std::string>>() : std::vector<std::string>{};
  };
  m.priority_models = list("priority_models");
  m.skip_models = list("skip_models");
  m.cooldown_hours = overrides.value("cooldown_hours", m.cooldown_hours);
  m.batch_size = overrides.value("batch_size", m.batch_size);
  return m;
}

void check_switch_cases(lua_State* L, const PolicySources& sources, const json& cases, const char* pass) {
  for (const auto& c : cases) {
    SCOPED_TRACE(std::string(pass) + ": " + c.value("name", "?"));
    const json& in = c.at("input");
    PolicySet set(L, sources, RetryConfig{}, maintain_config(in.value("config", json::object())));
    std::vector<std::string> candidates = in.at("candidates").get<std::vector<std::string>>();
    std::vector<std::string> exhausted;
    if (in.at("exhausted").is_object())
      for (const auto& [model, used] : in.at("exhausted").items()) exhausted.push_back(model);
    std::string current = in.at("current").get<std::string>();
    std::string cls = in.at("class").get<std::string>();
    SwitchInput input{current, &candidates, &exhausted, cls};
    std::string model;
    LuaFailure failure;
    ASSERT_TRUE(set.next_model(input, model, failure)) << failure.describe();
    EXPECT_EQ(model.empty() ? "none" : model, c.at("expect").get<std::string>());
  }
}

void check_retest_cases(lua_State* L, const PolicySources& sources, const json& cases, const char* pass) {
  for (const auto& c : cases) {
    SCOPED_TRACE(std::string(pass) + ": " + c.value("name", "?"));
    PolicySet set(L, sources, RetryConfig{}, maintain_config(c.value("config", json::object())));
    json selection;
    LuaFailure failure;
    json stats = c.at("stats");
    if (stats.is_object() && stats.empty()) stats = json::array();
    ASSERT_TRUE(set.select(stats, selection, failure)) << failure.describe();
    json expect = c.at("expect");
    if (expect.is_object() && expect.empty()) expect = json::array();
    ASSERT_EQ(selection.size(), expect.size()) << selection.dump();
    for (size_t i = 0; i < expect.size(); ++i) {
      EXPECT_EQ(selection[i]["group"], expect[i]["group"]) << selection.dump();
      EXPECT_EQ(selection[i]["priority"], expect[i]["priority"]) << selection.dump();
    }
    std::string reasons;
    for (const auto& s : selection) reasons += s["reason"].get<std::string>() + " | ";
    for (const auto& word : c.value("mentions", json::array())) {
      EXPECT_NE(reasons.find(word.get<std::string>()), std::string::npos) << reasons;
    }
  }
}

// The packaged policies as suite overrides in a temp dir, edited on disk and
// picked up by the real watcher: the set a run would use after a hot reload.
struct ReloadedPolicies {
  std::string dir;
  Suite suite;
  std::unique_ptr<PolicyRegistry> registry;

  ReloadedPolicies() {
    char tmpl[] = "/tmp/shepherd-reload-XXXXXX";
    dir = mkdtemp(tmpl);
    for (const char* kind : kPolicyKinds) {
      std::string path = dir + "/" + kind + ".lua";
      std::ofstream(path) << load_resource(std::string("policies/") + kind + ".lua").content;
      suite.policies.overrides[kind] = path;
    }
    registry = std::make_unique<PolicyRegistry>(PolicySources::for_suite(suite));
    PolicyWatcher watcher(*registry, suite);
    std::string before = registry->current()->version;
    for (const char* kind : kPolicyKinds) {
      std::ofstream(dir + "/" + kind + ".lua", std::ios::app) << "\n-- edited while the run goes on\n";
    }
    auto result = watcher.poll(true);
    EXPECT_EQ(result.kind, PolicyWatcher::Result::Kind::reloaded);
    EXPECT_EQ(result.changed.size(), 4u);
    EXPECT_NE(registry->current()->version, before);
  }
  ~ReloadedPolicies() { std::filesystem::remove_all(dir); }
};

TEST(PolicyCases, Switch) {
  json cases = load_cases("switch_cases.lua");
  ASSERT_GE(cases.size(), 10u);
  WorkerState w;
  check_switch_cases(w.L, packaged(), cases, "fresh load");
  ReloadedPolicies reloaded;
  check_switch_cases(w.L, *reloaded.registry->current(), cases, "after hot reload");
}

TEST(PolicyCases, Retest) {
  json cases = load_cases("retest_cases.lua");
  ASSERT_GE(cases.size(), 10u);
  WorkerState w;
  check_retest_cases(w.L, packaged(), cases, "fresh load");
  ReloadedPolicies reloaded;
  check_retest_cases(w.L, *reloaded.registry->current(), cases, "after hot reload");
}

TEST(PolicyCases, ClassifyAndRetryAfterHotReload) {
  ReloadedPolicies reloaded;
  const PolicySources& sources = *reloaded.registry->current();
  WorkerState w;
  {
    PolicySet set(w.L, sources, RetryConfig{});
    check_classify_cases(set, load_cases("classify_cases.lua"), "after hot reload", w.L);
  }
  for (const auto& c : load_cases("retry_cases.lua")) {
    SCOPED_TRACE("after hot reload: " + c.value("name", "?"));
    PolicySet set(w.L, sources, retry_config(c.value("config", json::object())));
    check_retry_case(set, c);
  }
}

}  // namespace
}  // namespace shepherd
