// shepherd.json.encode(value) -> string
// shepherd.json.decode(text) -> value | nil, "JSON_INVALID", detail
// shepherd.json.array([t]) -> t marked to encode as a JSON array even when empty
#include "core/error.h"
#include "lua/api.h"
#include "lua/lua_json.h"

namespace shepherd {

namespace {

int json_encode(lua_State* L) {
  luaL_checkany(L, 1);
  nlohmann::json value;
  std::string error;
  if (try_to_json(L, 1, value, error)) {
    std::string text = value.dump();
    lua_pushlstring(L, text.data(), text.size());
    return 1;
  }
  lua_pushfstring(L, "bad argument #1 to 'shepherd.json.encode' (%s)", error.c_str());
  error = std::string();
  return lua_error(L);
}

int json_decode(lua_State* L) {
  size_t len = 0;
  const char* text = luaL_checklstring(L, 1, &len);
  auto value = nlohmann::json::parse(text, text + len, nullptr, false);
  if (value.is_discarded()) {
    lua_pushnil(L);
    lua_pushstring(L, codes::JSON_INVALID);
    lua_pushliteral(L, "not valid JSON");
    return 3;
  }
  push_json(L, value);
  return 1;
}

int json_array(lua_State* L) {
  if (lua_isnoneornil(L, 1)) {
    lua_settop(L, 0);
    lua_newtable(L);
  } else {
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
  }
  luaL_getmetatable(L, kJsonArrayMarker);
  lua_setmetatable(L, 1);
  return 1;
}

}  // namespace

void register_json_api(lua_State* L) {
  luaL_newmetatable(L, kJsonArrayMarker);
  lua_pop(L, 1);
  static const luaL_Reg fns[] = {
      {"encode", json_encode}, {"decode", json_decode}, {"array", json_array}, {nullptr, nullptr}};
  lua_newtable(L);
  luaL_register(L, nullptr, fns);
  lua_setfield(L, -2, "json");
}

}  // namespace shepherd
