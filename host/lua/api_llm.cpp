#include "lua/api_llm.h"

#include <cmath>

#include "core/hash.h"
#include "lua/lua_call.h"

namespace shepherd {

namespace {

// Registry keys: their addresses are unique.
char kChatMarker;     // first value of a yield from llm:chat
char kLlmMeta;        // the llm objects' metatable
char kFailureMeta;    // the metatable of turn-failure objects
char kRngField;       // llm[&kRngField]: the generator (a userdata)
char kThreadField;    // llm[&kThreadField]: the coroutine it belongs to

// xoshiro256**, seeded through splitmix64: small, fast, and the same stream
// on every machine, so a replayed conversation simulates the same tools.
struct Rng {
  uint64_t s[4];

  static uint64_t splitmix(uint64_t& x) {
    uint64_t z = (x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  explicit Rng(uint64_t seed) {
    for (auto& word : s) word = splitmix(seed);
  }
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t next() {
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
  }
};

void push_key_field(lua_State* L, int object, void* key) {
  lua_pushlightuserdata(L, key);
  lua_rawget(L, object);
}

// llm:random() -> [0, 1); llm:random(m) -> 1..m; llm:random(m, n) -> m..n
// (as math.random).
int llm_random(lua_State* L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  push_key_field(L, 1, &kRngField);
  auto* rng = static_cast<Rng*>(lua_touserdata(L, -1));
  if (rng == nullptr) return luaL_argerror(L, 1, "not an llm object (call it as llm:random())");
  lua_pop(L, 1);
  uint64_t x = rng->next();
  int args = lua_gettop(L) - 1;
  if (args == 0) {
    lua_pushnumber(L, static_cast<double>(x >> 11) * 0x1.0p-53);
    return 1;
  }
  double lo = 1, hi = 0;
  if (args == 1) {
    hi = luaL_checknumber(L, 2);
  } else {
    lo = luaL_checknumber(L, 2);
    hi = luaL_checknumber(L, 3);
  }
  lo = std::floor(lo);
  hi = std::floor(hi);
  if (!(lo <= hi) || hi - lo >= 9007199254740992.0) return luaL_argerror(L, args == 1 ? 2 : 3, "interval is empty");
  auto span = static_cast<uint64_t>(hi - lo) + 1;
  lua_pushnumber(L, lo + static_cast<double>(x % span));
  return 1;
}

int failure_tostring(lua_State* L) {
  lua_getfield(L, 1, "code");
  lua_getfield(L, 1, "message");
  lua_pushfstring(L, "%s: %s", luaL_optstring(L, -2, "?"), luaL_optstring(L, -1, ""));
  return 1;
}

// Runs once per Lua state: chat is Lua, so that it can yield to the host and,
// on a failed turn, raise in the task's own frame.
constexpr const char* kChatSource = R"lua(
local marker, thread_key, yield, running = ...
return function(self, body)
  if type(body) ~= "table" then
    error("bad argument #1 to 'chat' (table expected, got " .. type(body) .. ")", 2)
  end
  if type(self) ~= "table" or rawget(self, thread_key) == nil then
    error("bad argument #1 to 'chat' (call it as llm:chat{...})", 2)
  end
  if rawget(self, thread_key) ~= running() then
    error("llm:chat must be called from task(cell, llm) itself, not from a coroutine of its own", 2)
  end
  local answer, failure = yield(marker, body)
  if answer == nil then error(failure, 2) end
  return answer
end
)lua";

void push_metatable(lua_State* L) {
  lua_pushlightuserdata(L, &kLlmMeta);
  lua_rawget(L, LUA_REGISTRYINDEX);
  if (!lua_isnil(L, -1)) return;
  lua_pop(L, 1);
  lua_createtable(L, 0, 2);
  lua_createtable(L, 0, 2);  // methods
  LuaFailure failure;
  if (!load_chunk(L, kChatSource, "llm", failure)) luaL_error(L, "llm: %s", failure.describe().c_str());
  lua_pushlightuserdata(L, &kChatMarker);
  lua_pushlightuserdata(L, &kThreadField);
  lua_getglobal(L, "coroutine");
  lua_getfield(L, -1, "yield");
  lua_getfield(L, -2, "running");
  lua_remove(L, -3);
  lua_call(L, 4, 1);
  lua_setfield(L, -2, "chat");
  lua_pushcfunction(L, llm_random);
  lua_setfield(L, -2, "random");
  lua_setfield(L, -2, "__index");
  lua_pushliteral(L, "llm");
  lua_setfield(L, -2, "__metatable");
  lua_pushlightuserdata(L, &kLlmMeta);
  lua_pushvalue(L, -2);
  lua_rawset(L, LUA_REGISTRYINDEX);
}

}  // namespace

void push_llm(lua_State* L, lua_State* co, const LlmInit& init) {
  lua_createtable(L, 0, 6);
  int object = lua_gettop(L);
  lua_pushlstring(L, init.task_id.data(), init.task_id.size());
  lua_setfield(L, object, "task");
  lua_pushinteger(L, init.attempt);
  lua_setfield(L, object, "attempt");
  lua_pushlstring(L, init.model.data(), init.model.size());
  lua_setfield(L, object, "model");
  lua_pushinteger(L, 0);
  lua_setfield(L, object, "turn");
  lua_pushlightuserdata(L, &kRngField);
  void* memory = lua_newuserdata(L, sizeof(Rng));
  new (memory) Rng(stable_hash64(init.task_id + "#" + std::to_string(init.attempt)));
  lua_rawset(L, object);
  lua_pushlightuserdata(L, &kThreadField);
  lua_pushthread(co);
  lua_xmove(co, L, 1);
  lua_rawset(L, object);
  push_metatable(L);
  lua_setmetatable(L, object);
}

void set_llm_turn(lua_State* L, int index, int turn) {
  lua_pushinteger(L, turn);
  lua_setfield(L, index, "turn");
}

bool is_chat_yield(lua_State* co, int nresults) {
  return nresults == 2 && lua_touserdata(co, -2) == &kChatMarker && lua_istable(co, -1);
}

void push_turn_failure(lua_State* L, const std::string& code, const std::string& message, int turn) {
  lua_createtable(L, 0, 3);
  lua_pushlstring(L, code.data(), code.size());
  lua_setfield(L, -2, "code");
  lua_pushlstring(L, message.data(), message.size());
  lua_setfield(L, -2, "message");
  lua_pushinteger(L, turn);
  lua_setfield(L, -2, "turn");
  lua_pushlightuserdata(L, &kFailureMeta);
  lua_rawget(L, LUA_REGISTRYINDEX);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, failure_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushlightuserdata(L, &kFailureMeta);
    lua_pushvalue(L, -2);
    lua_rawset(L, LUA_REGISTRYINDEX);
  }
  lua_setmetatable(L, -2);
}

bool read_turn_failure(lua_State* L, int index, std::string& code, std::string& message) {
  if (index < 0) index = lua_gettop(L) + index + 1;
  if (!lua_istable(L, index) || !lua_getmetatable(L, index)) return false;
  lua_pushlightuserdata(L, &kFailureMeta);
  lua_rawget(L, LUA_REGISTRYINDEX);
  bool ours = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  if (!ours) return false;
  lua_getfield(L, index, "code");
  lua_getfield(L, index, "message");
  code = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "TURN_FAILED";
  message = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
  lua_pop(L, 2);
  return true;
}

}  // namespace shepherd
