// The JSON <-> Lua bridge on anything. Two kinds of input:
//
//   JSON text   parsed as the host parses every outside JSON
//               (parse_json_bounded), pushed into Lua (try_push_json),
//               converted back (try_to_json, and to_json under pcall), and
//               sent through shepherd.json.decode / encode.
//   "=" + Lua   a chunk run in a small environment (no I/O, under a time and
//               memory limit) whose result is converted to JSON: cycles,
//               shared subtables, metatables, functions, holes, NaN, keys of
//               every type — what a suite or a policy may hand the host.
//
// Invariants: nothing throws or crashes; a conversion either succeeds or
// names its reason; a converted value dumps (valid UTF-8) and converts the
// same way again; plain JSON comes back as it went in.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "core/json_limits.h"
#include "fuzz_check.h"
#include "lua/api.h"
#include "lua/call_limit.h"
#include "lua/lua_call.h"
#include "lua/lua_json.h"
#include "lua/lua_state.h"

extern "C" {
#include <luajit.h>
}

namespace {

using nlohmann::json;
using shepherd::LuaFailure;

// A small world for the "=" inputs: enough to build any table shape, nothing
// that touches the machine, no xpcall (its handler escapes the count hook;
// see call_limit.h), no getmetatable (the string metatable is shared by every
// input on this state).
constexpr const char* kEnvFactory = R"lua(
local json, s, t, m = shepherd.json, string, table, math
return function()
  return {
    setmetatable = setmetatable, rawset = rawset, rawget = rawget, rawequal = rawequal,
    pairs = pairs, ipairs = ipairs, next = next, type = type, select = select, unpack = unpack,
    tostring = tostring, tonumber = tonumber, pcall = pcall, error = error, assert = assert,
    string = { char = s.char, rep = s.rep, sub = s.sub, byte = s.byte, len = s.len,
               upper = s.upper, lower = s.lower, reverse = s.reverse },
    table = { insert = t.insert, remove = t.remove, concat = t.concat, sort = t.sort },
    math = { huge = m.huge, pi = m.pi, floor = m.floor, sqrt = m.sqrt, abs = m.abs, fmod = m.fmod },
    -- no encode: it converts with the default budget (see kBudget below)
    shepherd = { json = { decode = json.decode, array = json.array } },
  }
end
)lua";

// Round trip through the API: decode must never raise; encode may refuse
// (holes, depth) but only with a Lua error.
constexpr const char* kApiRoundTrip = R"lua(
local text = ...
local value, code, detail = shepherd.json.decode(text)
if value == nil then
  assert(code == "JSON_INVALID" or (code == nil and detail == nil), "decode: " .. tostring(code))
  return nil
end
local ok, out = pcall(shepherd.json.encode, value)
if ok then
  assert(type(out) == "string")
  local again = shepherd.json.decode(out)
  local ok2, out2 = pcall(shepherd.json.encode, again)
  assert(ok2 and out2 == out, "encode(decode(encode(v))) differs")
end
return ok
)lua";

struct World {
  shepherd::LuaState lua{size_t{512} << 20};
  int env_factory = LUA_NOREF;
  int api_round_trip = LUA_NOREF;

  World() {
    luaJIT_setmode(lua, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);  // the count hook must see every loop
    shepherd::register_shepherd_api(lua);
    env_factory = compile_and_run(kEnvFactory, "=env");
    api_round_trip = compile(kApiRoundTrip, "=api_round_trip");
  }

  int compile(const char* code, const char* name) {
    LuaFailure failure;
    FUZZ_CHECK(shepherd::load_chunk(lua, code, name, failure), "%s", failure.describe().c_str());
    return luaL_ref(lua, LUA_REGISTRYINDEX);
  }

  int compile_and_run(const char* code, const char* name) {
    LuaFailure failure;
    FUZZ_CHECK(shepherd::load_chunk(lua, code, name, failure), "%s", failure.describe().c_str());
    FUZZ_CHECK(shepherd::protected_call(lua, 0, 1, failure), "%s", failure.describe().c_str());
    return luaL_ref(lua, LUA_REGISTRYINDEX);
  }
};

// The conversion budget here: the default (64 MiB) takes seconds per input
// under ASan when a few shared subtables expand; the same code, a smaller
// number. The default is tested in tests/cpp/lua_bridge_test.cpp.
constexpr size_t kBudget = size_t{1} << 20;

// The raising variant, as a C function Lua calls: to_json on its argument.
int call_to_json(lua_State* L) {
  json out = shepherd::to_json(L, 1, "value", kBudget);
  (void)out;
  return 0;
}

// JSON the bridge must return unchanged (up to number kinds): no nulls (they
// become nil, so arrays get holes and objects lose members), integers Lua's
// doubles hold exactly, no deeper than the Lua -> JSON limit.
bool plain(const json& j, int depth = 0) {
  switch (j.type()) {
    case json::value_t::null:
    case json::value_t::discarded:
    case json::value_t::binary: return false;
    case json::value_t::number_integer: return std::llabs(j.get<int64_t>()) < (int64_t{1} << 53);
    case json::value_t::number_unsigned: return j.get<uint64_t>() < (uint64_t{1} << 53);
    case json::value_t::array:
    case json::value_t::object:
      if (depth + 1 > shepherd::kMaxLuaToJsonDepth) return false;
      for (const auto& item : j) {
        if (!plain(item, depth + 1)) return false;
      }
      return true;
    default: return true;
  }
}

// What plain JSON looks like after the trip: numbers that are integers
// come back as integers (Lua has only doubles).
json normalized(const json& j) {
  if (j.is_number_float()) {
    double d = j.get<double>();
    if (d == std::floor(d) && std::fabs(d) < 9007199254740992.0) return static_cast<int64_t>(d);
    return j;
  }
  if (j.is_number_unsigned()) return static_cast<int64_t>(j.get<uint64_t>());
  if (j.is_array()) {
    json out = json::array();
    for (const auto& item : j) out.push_back(normalized(item));
    return out;
  }
  if (j.is_object()) {
    json out = json::object();
    for (const auto& [key, item] : j.items()) out[key] = normalized(item);
    return out;
  }
  return j;
}

// Converts the value on top of the stack both ways (try_to_json, and to_json
// raising under pcall), checks they agree and that the result is sound.
// Pops the value. Returns whether it converted.
bool convert_and_check(lua_State* L, json& out) {
  const int top = lua_gettop(L);
  std::string error;
  bool ok = shepherd::try_to_json(L, top, out, error, "value", kBudget);
  FUZZ_CHECK(lua_gettop(L) == top, "try_to_json left the stack at %d, not %d", lua_gettop(L), top);
  FUZZ_CHECK(ok || !error.empty(), "try_to_json failed without a reason");

  lua_pushcfunction(L, call_to_json);
  lua_pushvalue(L, top);
  int status = lua_pcall(L, 1, 0, 0);
  if (ok) {
    FUZZ_CHECK(status == 0, "to_json raised where try_to_json converted: %s", lua_tostring(L, -1));
  } else {
    FUZZ_CHECK(status == LUA_ERRRUN, "to_json did not raise a plain error where try_to_json failed (%d)",
               status);
    size_t len = 0;
    const char* message = lua_tolstring(L, -1, &len);
    FUZZ_CHECK(message && std::string_view(message, len) == error, "to_json and try_to_json disagree: %s | %s",
               message ? message : "(no message)", error.c_str());
  }
  lua_settop(L, top - 1);
  if (!ok) return false;

  std::string text;
  try {
    text = out.dump();
  } catch (const std::exception& e) {
    FUZZ_CHECK(false, "a converted value does not dump: %s", e.what());
  }
  json reread = shepherd::parse_json_bounded(text);
  FUZZ_CHECK(reread == out, "a converted value does not read back: %.300s", text.c_str());
  return true;
}

void fuzz_json(World& w, std::string_view text) {
  lua_State* L = w.lua;
  std::string why;
  json value = shepherd::parse_json_bounded(text, &why);
  if (!value.is_discarded()) {
    std::string error;
    FUZZ_CHECK(shepherd::try_push_json(L, value, error), "parse_json_bounded admitted what Lua refuses: %s",
               error.c_str());
    json back;
    bool converted = convert_and_check(L, back);
    if (plain(value)) {
      FUZZ_CHECK(converted, "plain JSON did not convert back: %.300s", value.dump().c_str());
      FUZZ_CHECK(back == normalized(value), "plain JSON changed on the way: %.300s -> %.300s",
                 value.dump().c_str(), back.dump().c_str());
    }
    if (converted) {  // once through, the shape is fixed
      FUZZ_CHECK(shepherd::try_push_json(L, back, error), "%s", error.c_str());
      json again;
      FUZZ_CHECK(convert_and_check(L, again), "a converted value does not convert again");
      FUZZ_CHECK(again == back, "second trip differs: %.300s -> %.300s", back.dump().c_str(),
                 again.dump().c_str());
    }
  } else {
    FUZZ_CHECK(!why.empty(), "a refused text without a reason");
  }

  lua_rawgeti(L, LUA_REGISTRYINDEX, w.api_round_trip);
  lua_pushlstring(L, text.data(), text.size());
  LuaFailure failure;
  FUZZ_CHECK(shepherd::protected_call(L, 1, 0, failure), "shepherd.json: %s", failure.describe().c_str());
}

void fuzz_lua(World& w, std::string_view code) {
  lua_State* L = w.lua;
  const int top = lua_gettop(L);
  LuaFailure failure;
  if (!shepherd::load_chunk(L, std::string(code), "=input", failure)) return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, w.env_factory);
  FUZZ_CHECK(shepherd::protected_call(L, 0, 1, failure), "%s", failure.describe().c_str());
  lua_setfenv(L, -2);
  shepherd::make_interruptible(L, -1);
  bool ran = false;
  {
    shepherd::CallLimit limit(L, std::chrono::milliseconds(200));
    shepherd::MemoryLimit memory(L, size_t{64} << 20);
    ran = shepherd::protected_call(L, 0, 1, failure);
  }
  if (ran) {
    // Conversion runs no Lua code, so it needs no time limit; its own
    // budget bounds it.
    json out;
    if (convert_and_check(L, out)) {
      std::string error;
      FUZZ_CHECK(shepherd::try_push_json(L, out, error), "a converted value does not go back: %s", error.c_str());
      json again;
      FUZZ_CHECK(convert_and_check(L, again), "a converted value does not convert again");
      FUZZ_CHECK(again == out, "second trip differs: %.300s -> %.300s", out.dump().c_str(), again.dump().c_str());
    }
  }
  FUZZ_CHECK(lua_gettop(L) == top, "stack at %d, not %d", lua_gettop(L), top);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static World world;
  std::string_view input(reinterpret_cast<const char*>(data), size);
  if (!input.empty() && input.front() == '=') fuzz_lua(world, input.substr(1));
  else fuzz_json(world, input);
  static unsigned runs = 0;
  if (++runs % 256 == 0) lua_gc(world.lua, LUA_GCCOLLECT, 0);
  return 0;
}
