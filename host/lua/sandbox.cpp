#include "lua/sandbox.h"

#include <algorithm>
#include <cstring>

#include "core/resources.h"
#include "lua/call_limit.h"
#include "lua/lua_call.h"

namespace shepherd {

namespace {

const char* const kBaseAllowlist[] = {
    "assert", "error",  "ipairs",       "next",         "pairs",  "pcall",    "select",
    "tonumber", "tostring", "type",     "unpack",       "rawequal", "setmetatable", "_VERSION",
};

int read_only_write(lua_State* L) {
  const char* key = lua_tostring(L, 2);
  return luaL_error(L, "cannot change '%s': the shepherd API and packaged modules are read-only", key ? key : "?");
}

// A read-only view of the table at `index`: nested tables are viewed too, so
// one policy cannot change what another (or the next reload) sees.
void push_read_only(lua_State* L, int index, int depth = 0) {
  index = index < 0 ? lua_gettop(L) + index + 1 : index;
  lua_newtable(L);  // the view
  lua_newtable(L);  // its contents, reached through __index
  lua_pushnil(L);
  while (lua_next(L, index) != 0) {
    if (lua_istable(L, -1) && depth < 8) {
      push_read_only(L, -1, depth + 1);
      lua_remove(L, -2);
    }
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_rawset(L, -4);
  }
  lua_newtable(L);  // metatable
  lua_insert(L, -2);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, read_only_write);
  lua_setfield(L, -2, "__newindex");
  lua_pushliteral(L, "read-only");
  lua_setfield(L, -2, "__metatable");
  lua_setmetatable(L, -2);
}

// getmetatable without the string metatable: its __index is the state's one
// `string` library, which a policy must not be able to change.
int safe_getmetatable(lua_State* L) {
  luaL_checkany(L, 1);
  if (lua_type(L, 1) == LUA_TSTRING || !lua_getmetatable(L, 1)) {
    lua_pushnil(L);
    return 1;
  }
  lua_getfield(L, -1, "__metatable");
  return lua_isnil(L, -1) ? (lua_pop(L, 1), 1) : 1;
}

// A shallow copy, so a policy cannot change the library other code sees.
void copy_library(lua_State* L, const char* name, const char* const* only = nullptr, int only_count = 0) {
  lua_getglobal(L, name);
  lua_newtable(L);
  if (only == nullptr) {
    lua_pushnil(L);
    while (lua_next(L, -3) != 0) {
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_rawset(L, -4);
    }
  } else {
    for (int i = 0; i < only_count; ++i) {
      lua_getfield(L, -2, only[i]);
      lua_setfield(L, -2, only[i]);
    }
  }
  lua_remove(L, -2);
  lua_setfield(L, -2, name);
}

int unknown_global(lua_State* L) {
  const char* name = lua_tostring(L, 2);
  return luaL_error(L, "unknown global '%s' (not available to policies)", name ? name : "?");
}

// Pushes the compiled chunk of packaged module `name`, or its error message
// and false. Every C++ object is gone before the caller raises.
bool push_module_chunk(lua_State* L, const char* name) {
  std::string message;
  try {
    std::string module_path = name;
    std::replace(module_path.begin(), module_path.end(), '.', '/');
    Resource module = load_resource("lua/" + module_path + ".lua");
    LuaFailure failure;
    if (load_chunk(L, module.content, module.name, failure)) {
      make_interruptible(L, -1);  // its functions run under the policies' time limit too
      return true;
    }
    message = failure.describe();
  } catch (const std::exception&) {
    message = std::string("module '") + name + "' not found";
  }
  lua_pushlstring(L, message.data(), message.size());
  return false;
}

// require() for policies: only the packaged Lua library ("shepherd.*"),
// each module loaded once per environment (its upvalue is the cache), in a
// sandbox of its own: a reload gets fresh modules, and no policy shares a
// module table with another.
int sandbox_require(lua_State* L) {
  const char* name = luaL_checkstring(L, 1);
  if (std::strncmp(name, "shepherd.", 9) != 0 || std::strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789_.") != std::strlen(name)) {
    return luaL_error(L, "require '%s' is not allowed in a policy (only the packaged shepherd.* modules)", name);
  }
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_getfield(L, -1, name);
  if (!lua_isnil(L, -1)) return 1;
  lua_pop(L, 1);

  if (!push_module_chunk(L, name)) return lua_error(L);  // no C++ object lives in this frame
  push_sandbox_env(L);
  lua_setfenv(L, -2);
  lua_call(L, 0, 1);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_pushboolean(L, 1);
  } else if (lua_istable(L, -1)) {
    push_read_only(L, -1);
    lua_remove(L, -2);
  }
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, name);
  return 1;
}

// A package.loaders entry: shepherd.* from the packaged library, else a
// note for require's "module not found" message.
int packaged_loader(lua_State* L) {
  const char* name = luaL_checkstring(L, 1);
  if (std::strncmp(name, "shepherd.", 9) != 0) {
    lua_pushfstring(L, "\n\tno packaged module '%s'", name);
    return 1;
  }
  if (!push_module_chunk(L, name)) return lua_error(L);
  return 1;
}

}  // namespace

void install_packaged_loader(lua_State* L) {
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "loaders");
  if (lua_istable(L, -1)) {
    // After the preload searcher (1), before the path searchers.
    int n = static_cast<int>(lua_objlen(L, -1));
    for (int i = n; i >= 2; --i) {
      lua_rawgeti(L, -1, i);
      lua_rawseti(L, -2, i + 1);
    }
    lua_pushcfunction(L, packaged_loader);
    lua_rawseti(L, -2, 2);
  }
  lua_pop(L, 2);
}

void push_sandbox_env(lua_State* L) {
  // string.dump would hand out bytecode, and ("").dump reaches the state's
  // real string library through the string metatable: it goes from both.
  lua_getglobal(L, "string");
  lua_pushnil(L);
  lua_setfield(L, -2, "dump");
  lua_pop(L, 1);

  lua_newtable(L);
  for (const char* name : kBaseAllowlist) {
    lua_getglobal(L, name);
    lua_setfield(L, -2, name);
  }
  copy_library(L, "string");
  copy_library(L, "table");
  copy_library(L, "math");
  static const char* const os_allowed[] = {"time", "clock", "date"};
  copy_library(L, "os", os_allowed, 3);
  lua_getglobal(L, "shepherd");
  push_read_only(L, -1);
  lua_remove(L, -2);
  // Inputs read files: a suite's business, never a policy's (policies do no I/O).
  lua_getmetatable(L, -1);
  lua_getfield(L, -1, "__index");
  for (const char* name : {"files", "read", "jsonl", "csv"}) {
    lua_pushnil(L);
    lua_setfield(L, -2, name);
  }
  lua_pop(L, 2);
  lua_setfield(L, -2, "shepherd");
  lua_pushcfunction(L, safe_getmetatable);
  lua_setfield(L, -2, "getmetatable");
  // LuaJIT runs an xpcall handler before unwinding, where no hook fires: a
  // looping handler would escape the time limit.
  lua_pushcfunction(L, interruptible_xpcall);
  lua_setfield(L, -2, "xpcall");
  lua_newtable(L);  // this environment's module cache
  lua_pushcclosure(L, sandbox_require, 1);
  lua_setfield(L, -2, "require");

  lua_newtable(L);  // metatable: unknown reads raise
  lua_pushcfunction(L, unknown_global);
  lua_setfield(L, -2, "__index");
  lua_pushliteral(L, "sandbox");
  lua_setfield(L, -2, "__metatable");
  lua_setmetatable(L, -2);
}

}  // namespace shepherd
