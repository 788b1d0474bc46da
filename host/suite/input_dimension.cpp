#include "suite/suite.h"

namespace shepherd {

bool input_descriptor(lua_State* L, int index, nlohmann::json& out) {
  // Raw reads only: nothing here runs the suite's code.
  if (!lua_istable(L, index) || !lua_getmetatable(L, index)) return false;
  lua_pushliteral(L, "__shepherd_input");
  lua_rawget(L, -2);
  bool found = lua_istable(L, -1);
  if (found) {
    out = nlohmann::json::object();
    for (const char* field : {"kind", "path", "id"}) {
      lua_pushstring(L, field);
      lua_rawget(L, -2);
      if (lua_type(L, -1) == LUA_TSTRING) out[field] = lua_tostring(L, -1);
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 2);
  return found;
}

}  // namespace shepherd
