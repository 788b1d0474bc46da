// shepherd.json.encode(value) -> string
// shepherd.json.decode(text) -> value | nil, "JSON_INVALID", detail ("not valid JSON",
//   "JSON nested deeper than 128 levels")
// shepherd.json.array([t]) -> t marked to encode as a JSON array even when empty
#include "core/error.h"
#include "core/json_limits.h"
#include "lua/api.h"
#include "lua/lua_json.h"

namespace shepherd {

namespace {

int json_encode(lua_State* L) {
  luaL_checkany(L, 1);
  std::string error;
  try {
    nlohmann::json value;
    if (try_to_json(L, 1, value, error)) {
      std::string text = value.dump();  // cannot throw: to_json admits only valid UTF-8
      lua_pushlstring(L, text.data(), text.size());
      return 1;
    }
  } catch (const std::exception& e) {  // out of memory
    error = e.what();
  }
  lua_pushfstring(L, "bad argument #1 to 'shepherd.json.encode' (%s)", error.c_str());
  error = std::string();  // free before lua_error unwinds this frame
  return lua_error(L);
}

// Bounded like every JSON the host reads: a text nested deeper than
// kMaxJsonDepth is refused before nlohmann's parser or push_json recurse.
int json_decode(lua_State* L) {
  size_t len = 0;
  const char* text = luaL_checklstring(L, 1, &len);
  std::string error;
  {
    nlohmann::json value;
    try {
      value = parse_json_bounded(std::string_view(text, len), &error);
    } catch (const std::exception& e) {  // out of memory
      error = e.what();
      value = nlohmann::json(nlohmann::json::value_t::discarded);
    }
    if (!value.is_discarded() && try_push_json(L, value, error)) return 1;
  }
  lua_pushnil(L);
  lua_pushstring(L, codes::JSON_INVALID);
  lua_pushlstring(L, error.data(), error.size());
  return 3;
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
