// The Lua bridge: protected calls, chunk loading, Lua <-> JSON, the
// shepherd.json API and the policy sandbox, each on a real LuaJIT state.
#include <chrono>
#include <cmath>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/json_limits.h"
#include "lua/api.h"
#include "lua/lua_call.h"
#include "lua/lua_json.h"
#include "lua/lua_state.h"
#include "lua/sandbox.h"

namespace shepherd {
namespace {

using nlohmann::json;

class LuaBridgeTest : public ::testing::Test {
 protected:
  void SetUp() override { register_shepherd_api(L); }

  // Loads and runs `code` (with the global environment, or a fresh sandbox),
  // leaving `nresults` results. Fails the test on a Lua error.
  void run(const std::string& code, int nresults = 1, bool sandboxed = false) {
    LuaFailure failure;
    ASSERT_TRUE(load_chunk(L, code, "test.lua", failure)) << failure.describe();
    if (sandboxed) {
      push_sandbox_env(L);
      lua_setfenv(L, -2);
    }
    ASSERT_TRUE(protected_call(L, 0, nresults, failure)) << failure.describe();
  }

  // Runs `code`, expecting a Lua error: returns the failure.
  LuaFailure run_failing(const std::string& code, bool sandboxed = false) {
    LuaFailure failure;
    int top = lua_gettop(L);
    if (!load_chunk(L, code, "test.lua", failure)) return failure;
    if (sandboxed) {
      push_sandbox_env(L);
      lua_setfenv(L, -2);
    }
    EXPECT_FALSE(protected_call(L, 0, 0, failure)) << code;
    EXPECT_EQ(lua_gettop(L), top) << "a failed call leaves nothing on the stack";
    return failure;
  }

  // Runs `code` returning one value and converts it.
  json lua_value(const std::string& code) {
    run(code);
    json out;
    std::string error;
    EXPECT_TRUE(try_to_json(L, -1, out, error)) << error;
    lua_pop(L, 1);
    return out;
  }

  // Runs `code` returning one value; returns the conversion error.
  std::string conversion_error(const std::string& code) {
    run(code);
    int top = lua_gettop(L);
    json out;
    std::string error;
    EXPECT_FALSE(try_to_json(L, -1, out, error)) << "converted to " << out.dump();
    EXPECT_EQ(lua_gettop(L), top) << "try_to_json must restore the stack";
    lua_pop(L, 1);
    return error;
  }

  std::string sandbox_string(const std::string& code) {
    run(code, 1, true);
    std::string out = lua_tostring(L, -1) ? lua_tostring(L, -1) : "<not a string>";
    lua_pop(L, 1);
    return out;
  }

  LuaState L;
};

// ---------------------------------------------------------------- lua_call

TEST_F(LuaBridgeTest, ProtectedCallTurnsErrorIntoMessageFileLineTraceback) {
  LuaFailure failure;
  ASSERT_TRUE(load_chunk(L, "local x = 1\n\nerror('boom')\n", "/srv/policies/classify.lua", failure));
  int top = lua_gettop(L) - 1;
  ASSERT_FALSE(protected_call(L, 0, 0, failure));
  EXPECT_EQ(lua_gettop(L), top);
  EXPECT_EQ(failure.message, "boom");
  EXPECT_EQ(failure.file, "/srv/policies/classify.lua");
  EXPECT_EQ(failure.line, 3);
  EXPECT_NE(failure.traceback.find("stack traceback:"), std::string::npos) << failure.traceback;
  EXPECT_EQ(failure.where(), "/srv/policies/classify.lua:3");
  EXPECT_EQ(failure.describe(), "/srv/policies/classify.lua:3: boom");
}

TEST_F(LuaBridgeTest, ProtectedCallPassesArgumentsAndLeavesResults) {
  run("return function(a, b) return a + b, a * b end");
  lua_pushnumber(L, 3);
  lua_pushnumber(L, 4);
  LuaFailure failure;
  ASSERT_TRUE(protected_call(L, 2, 2, failure)) << failure.describe();
  ASSERT_EQ(lua_gettop(L), 2);
  EXPECT_EQ(lua_tonumber(L, 1), 7);
  EXPECT_EQ(lua_tonumber(L, 2), 12);
}

TEST_F(LuaBridgeTest, ProtectedCallReportsErrorInNestedFunctionAtItsLine) {
  LuaFailure failure = run_failing("local function inner()\n  local t = nil\n  return t.x\nend\ninner()\n");
  EXPECT_EQ(failure.file, "test.lua");
  EXPECT_EQ(failure.line, 3);
  EXPECT_NE(failure.message.find("attempt to index"), std::string::npos) << failure.message;
  EXPECT_NE(failure.traceback.find("inner"), std::string::npos) << failure.traceback;
}

TEST_F(LuaBridgeTest, ProtectedCallHandlesErrorsWithoutPosition) {
  LuaFailure plain = run_failing("error('no position', 0)");
  EXPECT_EQ(plain.message, "no position");
  EXPECT_EQ(plain.file, "");
  EXPECT_EQ(plain.line, 0);
  EXPECT_EQ(plain.describe(), "no position");

  LuaFailure table = run_failing("error({ code = 1 })");
  EXPECT_EQ(table.message, "(error object is a table value)");

  LuaFailure with_tostring =
      run_failing("error(setmetatable({}, { __tostring = function() return 'custom error' end }))");
  EXPECT_EQ(with_tostring.message, "custom error");
}

TEST_F(LuaBridgeTest, LoadChunkRefusesBytecode) {
  LuaFailure failure;
  int top = lua_gettop(L);
  EXPECT_FALSE(load_chunk(L, std::string("\x1bLua\x51\x00\x01\x04", 8), "evil.luac", failure));
  EXPECT_EQ(lua_gettop(L), top);
  EXPECT_NE(failure.message.find("bytecode"), std::string::npos) << failure.message;
  EXPECT_EQ(failure.file, "evil.luac");

  // Real LuaJIT bytecode, as string.dump makes it.
  run("return string.dump(function() return 42 end)");
  size_t len = 0;
  const char* dumped = lua_tolstring(L, -1, &len);
  std::string bytecode(dumped, len);
  lua_pop(L, 1);
  EXPECT_FALSE(load_chunk(L, bytecode, "dumped", failure));
  EXPECT_NE(failure.message.find("bytecode"), std::string::npos) << failure.message;
}

TEST_F(LuaBridgeTest, LoadChunkReportsSyntaxErrorsWithFileAndLine) {
  LuaFailure failure;
  int top = lua_gettop(L);
  EXPECT_FALSE(load_chunk(L, "local a = 1\nlocal b = = 2\n", "/srv/suite.lua", failure));
  EXPECT_EQ(lua_gettop(L), top);
  EXPECT_EQ(failure.file, "/srv/suite.lua");
  EXPECT_EQ(failure.line, 2);
  EXPECT_FALSE(failure.message.empty());
}

TEST_F(LuaBridgeTest, ParseLuaMessageWithColonInPath) {
  LuaFailure f = parse_lua_message("/home/me/run:2024/policies/retry.lua:17: attempt to call a nil value");
  EXPECT_EQ(f.file, "/home/me/run:2024/policies/retry.lua");
  EXPECT_EQ(f.line, 17);
  EXPECT_EQ(f.message, "attempt to call a nil value");

  LuaFailure drive = parse_lua_message("C:/work/x.lua:3: oops: with a colon 4: inside");
  EXPECT_EQ(drive.file, "C:/work/x.lua");
  EXPECT_EQ(drive.line, 3);
  EXPECT_EQ(drive.message, "oops: with a colon 4: inside");
}

TEST_F(LuaBridgeTest, ParseLuaMessageKeepsOnlyTheFirstLineAsMessage) {
  std::string raw = "a.lua:9: bad thing\nstack traceback:\n\t[C]: in function 'error'\n\ta.lua:9: in main chunk";
  LuaFailure f = parse_lua_message(raw);
  EXPECT_EQ(f.file, "a.lua");
  EXPECT_EQ(f.line, 9);
  EXPECT_EQ(f.message, "bad thing");
  EXPECT_EQ(f.traceback, raw);
}

TEST_F(LuaBridgeTest, ParseLuaMessageWithoutPositionOrFromAString) {
  LuaFailure none = parse_lua_message("just text: no line");
  EXPECT_EQ(none.file, "");
  EXPECT_EQ(none.line, 0);
  EXPECT_EQ(none.message, "just text: no line");

  LuaFailure str = parse_lua_message("[string \"return x +\"]:1: unexpected symbol near '<eof>'");
  EXPECT_EQ(str.file, "");
  EXPECT_EQ(str.line, 1);
  EXPECT_EQ(str.message, "unexpected symbol near '<eof>'");
}

// ---------------------------------------------------------------- lua_json

TEST_F(LuaBridgeTest, JsonNestedTablesConvert) {
  json v = lua_value(
      "return { name = 'x', flag = true, off = false,"
      "  nested = { list = { 1, 2, { deep = 'y' } }, obj = { a = 'b' } } }");
  json expected = {{"name", "x"},
                   {"flag", true},
                   {"off", false},
                   {"nested", {{"list", {1, 2, {{"deep", "y"}}}}, {"obj", {{"a", "b"}}}}}};
  EXPECT_EQ(v, expected);
}

TEST_F(LuaBridgeTest, JsonArraysVersusObjects) {
  EXPECT_TRUE(lua_value("return { 1, 2, 3 }").is_array());
  EXPECT_TRUE(lua_value("return { a = 1 }").is_object());
  EXPECT_TRUE(lua_value("return { [1] = 'a', [2] = 'b' }").is_array());
  json empty = lua_value("return {}");
  EXPECT_TRUE(empty.is_object());
  EXPECT_EQ(empty.dump(), "{}");
  json marked = lua_value("return shepherd.json.array()");
  EXPECT_TRUE(marked.is_array());
  EXPECT_EQ(marked.dump(), "[]");
  EXPECT_EQ(lua_value("return shepherd.json.array({ 'a', 'b' })"), json::array({"a", "b"}));
}

TEST_F(LuaBridgeTest, JsonNumbersKeepTheirKind) {
  json i = lua_value("return 42");
  EXPECT_TRUE(i.is_number_integer()) << i.dump();
  EXPECT_EQ(i.get<int64_t>(), 42);
  json neg = lua_value("return -7");
  EXPECT_TRUE(neg.is_number_integer());
  EXPECT_EQ(neg.get<int64_t>(), -7);
  json f = lua_value("return 1.5");
  EXPECT_TRUE(f.is_number_float()) << f.dump();
  EXPECT_DOUBLE_EQ(f.get<double>(), 1.5);
  EXPECT_EQ(f.dump(), "1.5");
}

TEST_F(LuaBridgeTest, JsonRoundTripThroughLuaKeepsShapeAndKinds) {
  json original = json::parse(R"({
    "a": [1, 2.5, "three", true, {"x": []}],
    "empty_obj": {},
    "empty_arr": [],
    "n": 9007199254740000,
    "s": "\u00e9t\u00e9"
  })");
  push_json(L, original);
  json back;
  std::string error;
  ASSERT_TRUE(try_to_json(L, -1, back, error)) << error;
  lua_pop(L, 1);
  EXPECT_EQ(back, original);
  EXPECT_TRUE(back["a"][0].is_number_integer());
  EXPECT_TRUE(back["a"][1].is_number_float());
  EXPECT_TRUE(back["n"].is_number_integer());
  EXPECT_TRUE(back["empty_arr"].is_array());
  EXPECT_TRUE(back["empty_obj"].is_object());
}

TEST_F(LuaBridgeTest, JsonNullBecomesNilAndIsDroppedFromObjects) {
  push_json(L, json::parse(R"({"a": null, "b": 1})"));
  json back;
  std::string error;
  ASSERT_TRUE(try_to_json(L, -1, back, error)) << error;
  lua_pop(L, 1);
  EXPECT_EQ(back, json::parse(R"({"b": 1})"));
}

TEST_F(LuaBridgeTest, JsonRefusesFunctionsWithThePath) {
  std::string error = conversion_error("return { a = { f = function() end } }");
  EXPECT_NE(error.find("a.f"), std::string::npos) << error;
  EXPECT_NE(error.find("function"), std::string::npos) << error;
  std::string in_list = conversion_error("return { messages = { 'x', print } }");
  EXPECT_NE(in_list.find("messages[2]"), std::string::npos) << in_list;
}

TEST_F(LuaBridgeTest, JsonRefusesCycles) {
  std::string error = conversion_error("local t = { a = {} }; t.a.back = t; return t");
  EXPECT_NE(error.find("cycle"), std::string::npos) << error.substr(0, 200);
}

TEST_F(LuaBridgeTest, JsonRefusesMixedKeys) {
  std::string error = conversion_error("return { list = { 1, 2, x = 3 } }");
  EXPECT_NE(error.find("list"), std::string::npos) << error;
  EXPECT_NE(error.find("mixes array items and named fields"), std::string::npos) << error;
}

TEST_F(LuaBridgeTest, JsonRefusesNonFiniteNumbersWithThePath) {
  std::string nan = conversion_error("return { stats = { mean = 0/0 } }");
  EXPECT_NE(nan.find("stats.mean"), std::string::npos) << nan;
  EXPECT_NE(nan.find("not finite"), std::string::npos) << nan;
  std::string inf = conversion_error("return { 1, math.huge }");
  EXPECT_NE(inf.find("[2]"), std::string::npos) << inf;
  std::string root = conversion_error("return -math.huge");
  EXPECT_EQ(root, "value: number is not finite");  // the root is named too
}

int call_to_json_named_request(lua_State* L) {
  json out = to_json(L, 1, "request");
  lua_pushstring(L, out.dump().c_str());
  return 1;
}

TEST_F(LuaBridgeTest, ToJsonRaisesALuaErrorNamingWhatAndThePath) {
  lua_pushcfunction(L, call_to_json_named_request);
  run("return { messages = { { role = 'user' }, function() end } }");
  LuaFailure failure;
  ASSERT_FALSE(protected_call(L, 1, 1, failure));
  // lua_json.h: "raise a Lua error naming `what` and the path, e.g. request.messages[2]".
  EXPECT_NE(failure.message.find("request.messages[2]"), std::string::npos) << failure.message;

  lua_pushcfunction(L, call_to_json_named_request);
  run("return { model = 'm' }");
  ASSERT_TRUE(protected_call(L, 1, 1, failure)) << failure.describe();
  EXPECT_STREQ(lua_tostring(L, -1), R"({"model":"m"})");
  lua_pop(L, 1);
}

// ---------------------------------------------------------------- bounds

// `levels` arrays nested in one another around a 1, built without recursion.
json nested_arrays(int levels) {
  json value = 1;
  for (int i = 0; i < levels; ++i) {
    json outer = json::array();
    outer.push_back(std::move(value));
    value = std::move(outer);
  }
  return value;
}

int call_push_json_of_deep_value(lua_State* L) {
  json deep = nested_arrays(static_cast<int>(lua_tointeger(L, 1)));
  push_json(L, deep);
  return 1;
}

TEST_F(LuaBridgeTest, PushJsonTakesValuesAsDeepAsTheLimit) {
  int top = lua_gettop(L);
  std::string error;
  ASSERT_TRUE(try_push_json(L, nested_arrays(kMaxJsonDepth), error)) << error;
  EXPECT_EQ(lua_gettop(L), top + 1);
  lua_setglobal(L, "deep");
  run("local v, n = deep, 0; while type(v) == 'table' do v = v[1]; n = n + 1 end; return n * 1000 + v");
  EXPECT_EQ(lua_tointeger(L, -1), kMaxJsonDepth * 1000 + 1);
  lua_pop(L, 1);
}

TEST_F(LuaBridgeTest, PushJsonRefusesValuesNestedDeeperThanTheLimit) {
  for (int levels : {kMaxJsonDepth + 1, 100'000}) {
    int top = lua_gettop(L);
    std::string error;
    EXPECT_FALSE(try_push_json(L, nested_arrays(levels), error)) << levels;
    EXPECT_EQ(lua_gettop(L), top) << "nothing pushed";
    EXPECT_EQ(error, "JSON nested deeper than 128 levels");

    // push_json raises instead, a Lua error its pcall turns into a failure.
    lua_pushcfunction(L, call_push_json_of_deep_value);
    lua_pushinteger(L, levels);
    LuaFailure failure;
    ASSERT_FALSE(protected_call(L, 1, 1, failure));
    EXPECT_EQ(failure.message, "JSON nested deeper than 128 levels");
    EXPECT_EQ(lua_gettop(L), top);
  }
  // Objects count as levels too.
  json objects = 1;
  for (int i = 0; i <= kMaxJsonDepth; ++i) objects = json{{"k", std::move(objects)}};
  std::string error;
  EXPECT_FALSE(try_push_json(L, objects, error));
}

TEST_F(LuaBridgeTest, JsonRefusesTablesNestedDeeperThan64) {
  run("local t = 1; for i = 1, 64 do t = { t } end; return t");
  json out;
  std::string error;
  EXPECT_TRUE(try_to_json(L, -1, out, error)) << error;
  lua_pop(L, 1);
  std::string deep = conversion_error("local t = 1; for i = 1, 65 do t = { t } end; return t");
  EXPECT_NE(deep.find("nested deeper than 64 levels"), std::string::npos) << deep.substr(0, 200);
}

TEST_F(LuaBridgeTest, JsonRefusesTablesLargerThanTheBudget) {
  // 2^40 values in a few lines: each level holds its subtable twice.
  auto started = std::chrono::steady_clock::now();
  std::string shared = conversion_error("local t = { 'x' }; for i = 1, 40 do t = { t, t } end; return { list = t }");
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(30));
  EXPECT_EQ(shared.rfind("value.list[", 0), 0u) << shared;  // names where the budget ran out
  EXPECT_NE(shared.find("larger than 64 MiB as JSON"), std::string::npos) << shared;

  std::string one_string = conversion_error("return { text = string.rep('x', 64 * 1024 * 1024) }");
  EXPECT_EQ(one_string.rfind("value.text: larger than 64 MiB as JSON", 0), 0u) << one_string;

  std::string many = conversion_error("local t = {}; for i = 1, 5 * 1024 * 1024 do t[i] = i end; return t");
  EXPECT_NE(many.find("larger than 64 MiB as JSON"), std::string::npos) << many;

  // The budget counts memory, not text: 4 M numbers are about 64 MiB.
  // Well under the budget converts.
  json ok = lua_value("return { text = string.rep('x', 16 * 1024 * 1024) }");
  EXPECT_EQ(ok["text"].get_ref<const std::string&>().size(), 16u << 20);
}

int call_to_json_with_4k_budget(lua_State* L) {
  json out = to_json(L, 1, "small", 4096);
  lua_pushstring(L, out.dump().c_str());
  return 1;
}

TEST_F(LuaBridgeTest, JsonBudgetCanBeTightenedPerCall) {
  // The same shared-subtable bomb, refused at a caller's smaller budget.
  run("local t = { 'x' }; for i = 1, 40 do t = { t, t } end; return { list = t }");
  json out;
  std::string error;
  EXPECT_FALSE(try_to_json(L, -1, out, error, "value", 64 * 1024));
  EXPECT_EQ(error.rfind("value.list[", 0), 0u) << error;
  EXPECT_NE(error.find("larger than 64 KiB as JSON"), std::string::npos) << error;
  lua_pop(L, 1);

  lua_pushcfunction(L, call_to_json_with_4k_budget);
  run("return { text = string.rep('x', 5000) }");
  LuaFailure failure;
  ASSERT_FALSE(protected_call(L, 1, 1, failure));
  EXPECT_EQ(failure.message, "small.text: larger than 4 KiB as JSON (a huge table, or subtables shared many "
                             "times over?)");

  lua_pushcfunction(L, call_to_json_with_4k_budget);
  run("return { text = string.rep('x', 1000) }");
  ASSERT_TRUE(protected_call(L, 1, 1, failure)) << failure.describe();
  lua_pop(L, 1);
}

TEST_F(LuaBridgeTest, JsonKeysKeepTheirBytesAndMustBeUtf8) {
  json v = lua_value("return { ['a\\0b'] = 1 }");
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v.begin().key(), std::string("a\0b", 3));
  std::string bad = conversion_error("return { inner = { ['\\255'] = 1 } }");
  EXPECT_EQ(bad, "value.inner: a key is not valid UTF-8");
  std::string value = conversion_error("return { s = '\\255' }");
  EXPECT_EQ(value, "value.s: string is not valid UTF-8");
}

TEST_F(LuaBridgeTest, JsonArrayIsOnlyKeysOneToN) {
  // A fractional key is not an item: the table is refused, not silently cut.
  std::string error = conversion_error("local t = { 1, 2, 3 }; t[2] = nil; t[2.5] = 'x'; return t");
  EXPECT_NE(error.find("mixes array items and named fields"), std::string::npos) << error;
}

// ---------------------------------------------------------------- shepherd.json

TEST_F(LuaBridgeTest, ApiJsonEncode) {
  EXPECT_EQ(sandbox_string("return shepherd.json.encode({ a = 1, b = { 1.5, 'x' } })"),
            R"({"a":1,"b":[1.5,"x"]})");
  EXPECT_EQ(sandbox_string("return shepherd.json.encode({})"), "{}");
  EXPECT_EQ(sandbox_string("return shepherd.json.encode(shepherd.json.array())"), "[]");
  EXPECT_EQ(sandbox_string("return shepherd.json.encode('a\"b')"), R"("a\"b")");
  EXPECT_EQ(sandbox_string("return shepherd.json.encode(3)"), "3");
}

TEST_F(LuaBridgeTest, ApiJsonEncodeRaisesOnMisuse) {
  LuaFailure fn = run_failing("shepherd.json.encode({ f = function() end })");
  EXPECT_NE(fn.message.find("shepherd.json.encode"), std::string::npos) << fn.message;
  EXPECT_NE(fn.message.find("f"), std::string::npos) << fn.message;
  LuaFailure none = run_failing("shepherd.json.encode()");
  EXPECT_NE(none.message.find("bad argument #1"), std::string::npos) << none.message;
}

TEST_F(LuaBridgeTest, ApiJsonDecode) {
  EXPECT_EQ(sandbox_string(R"(
      local v = shepherd.json.decode('{"a":[1,2,{"b":"c"}],"n":null,"t":true}')
      return table.concat({ type(v), tostring(v.a[1]), tostring(#v.a), v.a[3].b, tostring(v.n), tostring(v.t) }, ',')
  )"),
            "table,1,3,c,nil,true");
  EXPECT_EQ(sandbox_string("return shepherd.json.encode(shepherd.json.decode('[]'))"), "[]");
  EXPECT_EQ(sandbox_string("return shepherd.json.encode(shepherd.json.decode('{}'))"), "{}");
  EXPECT_EQ(sandbox_string("return shepherd.json.encode(shepherd.json.decode('[1,2.5]'))"), "[1,2.5]");
}

TEST_F(LuaBridgeTest, ApiJsonDecodeOfInvalidJsonReturnsNilCodeDetail) {
  run("return shepherd.json.decode('{\"a\": ')", 3);
  EXPECT_TRUE(lua_isnil(L, 1));
  ASSERT_EQ(lua_type(L, 2), LUA_TSTRING);
  EXPECT_STREQ(lua_tostring(L, 2), "JSON_INVALID");
  ASSERT_EQ(lua_type(L, 3), LUA_TSTRING);
  EXPECT_GT(lua_objlen(L, 3), 0u);
  lua_settop(L, 0);

  LuaFailure misuse = run_failing("shepherd.json.decode({})");
  EXPECT_NE(misuse.message.find("bad argument #1"), std::string::npos) << misuse.message;
}

TEST_F(LuaBridgeTest, ApiJsonDecodeRefusesDeepNestingWithoutRecursing) {
  run("return shepherd.json.decode(string.rep('[', 100000) .. string.rep(']', 100000))", 3);
  EXPECT_TRUE(lua_isnil(L, 1));
  EXPECT_STREQ(lua_tostring(L, 2), "JSON_INVALID");
  EXPECT_STREQ(lua_tostring(L, 3), "JSON nested deeper than 128 levels");
  lua_settop(L, 0);
  // A 200 chat completion whose usage nests 100,000 deep.
  run("return shepherd.json.decode('{\"usage\":{\"x\":' .. string.rep('[', 100000) .. string.rep(']', 100000) .. '}}')",
      3);
  EXPECT_TRUE(lua_isnil(L, 1));
  EXPECT_STREQ(lua_tostring(L, 2), "JSON_INVALID");
  lua_settop(L, 0);
  // As deep as the limit decodes.
  EXPECT_EQ(sandbox_string("local v = shepherd.json.decode(string.rep('[', 128) .. string.rep(']', 128))\n"
                           "local n = 0; while type(v) == 'table' do v = v[1]; n = n + 1 end; return tostring(n)"),
            "128");
  run("return shepherd.json.decode(string.rep('[', 129) .. string.rep(']', 129))", 3);
  EXPECT_TRUE(lua_isnil(L, 1));
  EXPECT_STREQ(lua_tostring(L, 3), "JSON nested deeper than 128 levels");
  lua_settop(L, 0);
}

TEST_F(LuaBridgeTest, ApiJsonEncodeRaisesOnTablesBeyondTheBudget) {
  LuaFailure huge = run_failing("local t = { 'x' }; for i = 1, 40 do t = { t, t } end; shepherd.json.encode(t)");
  EXPECT_NE(huge.message.find("bad argument #1 to 'shepherd.json.encode' (value"), std::string::npos)
      << huge.message;
  EXPECT_NE(huge.message.find("larger than 64 MiB as JSON"), std::string::npos) << huge.message;
  LuaFailure key = run_failing("shepherd.json.encode({ ['\\255'] = 1 })");
  EXPECT_NE(key.message.find("a key is not valid UTF-8"), std::string::npos) << key.message;
}

TEST_F(LuaBridgeTest, ApiTimeAndLogExist) {
  run("return shepherd.time.now(), shepherd.time.monotonic_ms(), shepherd.time.monotonic_ms()", 3);
  EXPECT_GT(lua_tonumber(L, 1), 1.6e9);
  EXPECT_GE(lua_tonumber(L, 3), lua_tonumber(L, 2));
  lua_settop(L, 0);
  run("shepherd.log.debug('lua_bridge_test'); return type(shepherd.log.warn)");
  EXPECT_STREQ(lua_tostring(L, -1), "function");
  lua_pop(L, 1);
}

// ---------------------------------------------------------------- sandbox

TEST_F(LuaBridgeTest, SandboxHasNoDangerousGlobals) {
  for (const char* name : {"io", "loadfile", "dofile", "debug", "load", "loadstring", "ffi", "jit",
                           "package", "module", "collectgarbage", "setfenv", "getfenv", "newproxy"}) {
    LuaFailure f = run_failing(std::string("local x = ") + name, true);
    EXPECT_NE(f.message.find("unknown global '" + std::string(name) + "'"), std::string::npos)
        << name << ": " << f.message;
  }
}

TEST_F(LuaBridgeTest, SandboxOsOnlyHasTimeClockDate) {
  EXPECT_EQ(sandbox_string("return tostring(os.execute) .. tostring(os.exit) .. tostring(os.remove) "
                           ".. tostring(os.getenv) .. tostring(os.rename)"),
            "nilnilnilnilnil");
  LuaFailure f = run_failing("os.execute('true')", true);
  EXPECT_NE(f.message.find("execute"), std::string::npos) << f.message;
  EXPECT_EQ(sandbox_string("return type(os.time()) .. type(os.clock()) .. type(os.date('%Y'))"),
            "numbernumberstring");
}

TEST_F(LuaBridgeTest, SandboxRequireIsLimitedToPackagedModules) {
  for (const char* name : {"io", "os", "ffi", "jit.util", "shepherd/models", "../x"}) {
    LuaFailure f = run_failing(std::string("require('") + name + "')", true);
    EXPECT_NE(f.message.find("not allowed"), std::string::npos) << name << ": " << f.message;
  }
  LuaFailure missing = run_failing("require('shepherd.no_such_module')", true);
  EXPECT_NE(missing.message.find("not found"), std::string::npos) << missing.message;
}

TEST_F(LuaBridgeTest, SandboxReadingUnknownGlobalRaises) {
  LuaFailure f = run_failing("local cfg = mispelled_config\n", true);
  EXPECT_NE(f.message.find("unknown global 'mispelled_config'"), std::string::npos) << f.message;
  EXPECT_EQ(f.line, 1);
  // Writing a global of its own is allowed, and reading it back works.
  EXPECT_EQ(sandbox_string("counter = 41; counter = counter + 1; return tostring(counter)"), "42");
}

TEST_F(LuaBridgeTest, SandboxStandardLibrariesWork) {
  EXPECT_EQ(sandbox_string("return string.format('%s-%03d', 'a', 7) .. ('x'):upper()"), "a-007X");
  EXPECT_EQ(sandbox_string("return tostring(math.floor(2.7)) .. tostring(math.max(1, 5))"), "25");
  EXPECT_EQ(sandbox_string("local t = { 3, 1, 2 }; table.sort(t); return table.concat(t, ',')"), "1,2,3");
  EXPECT_EQ(sandbox_string("local ok, e = pcall(error, 'x', 0); return tostring(ok) .. e"), "falsex");
  EXPECT_EQ(sandbox_string("return type(os.time())"), "number");
}

TEST_F(LuaBridgeTest, SandboxLibrariesAreCopies) {
  EXPECT_EQ(sandbox_string("string.rep = nil; math.floor = nil; return 'changed'"), "changed");
  run("return type(string.rep) .. type(math.floor)");
  EXPECT_STREQ(lua_tostring(L, -1), "functionfunction");
  lua_pop(L, 1);
  // And a fresh sandbox is not affected by an earlier one either.
  EXPECT_EQ(sandbox_string("return type(string.rep)"), "function");
}

TEST_F(LuaBridgeTest, SandboxCannotChangeTheStringLibraryThroughItsMetatable) {
  // The string metatable's __index is the state's one `string` library: the
  // sandbox's getmetatable does not hand it out.
  EXPECT_EQ(sandbox_string("local ok = pcall(function() getmetatable('').__index.rep = nil end)\n"
                           "return tostring(ok) .. ' ' .. tostring(getmetatable(''))"),
            "false nil");
  run("return type(string.rep)");
  EXPECT_STREQ(lua_tostring(L, -1), "function");
  lua_pop(L, 1);
}

TEST_F(LuaBridgeTest, SandboxCannotChangeTheSharedShepherdApi) {
  // Every sandbox gets the one global `shepherd` table: a policy that
  // replaces a function there changes it for every other policy in the state
  // (and for the next reload's fresh environment).
  EXPECT_EQ(sandbox_string("pcall(function() shepherd.json.encode = function() return 'hijacked' end end)\n"
                           "pcall(function() shepherd.json = nil end)\n"
                           "return 'tried'"),
            "tried");
  EXPECT_EQ(sandbox_string("return shepherd.json.encode({ 1 })"), "[1]");
}

TEST_F(LuaBridgeTest, SandboxRequireReturnsThePackagedModels) {
  EXPECT_EQ(sandbox_string(R"(
      local models = require("shepherd.models")
      local again = require("shepherd.models")
      return table.concat({
        type(models), type(models.same_model), tostring(models == again),
        tostring(models.same_model("gpt-4o-mini", "gpt-4o-mini-2024-07-18")),
        tostring(models.same_model("claude-3-5-sonnet", "claude-3-5-sonnet-20241022")),
        tostring(models.same_model("qwen2.5-7b-instruct", "qwen2.5-72b-instruct")),
      }, ",")
  )"),
            "table,function,true,true,true,false");
}

}  // namespace
}  // namespace shepherd
