#include "lua/lua_json.h"

#include "core/text.h"

#include <cmath>
#include <stdexcept>

namespace shepherd {

const char* const kJsonArrayMarker = "shepherd.json.array";

namespace {

struct Converter {
  lua_State* L;
  int depth = 0;

  [[noreturn]] void fail(const std::string& path, const std::string& why) {
    throw std::runtime_error(path + ": " + why);
  }

  static bool is_array_marked(lua_State* L, int index) {
    if (!lua_getmetatable(L, index)) return false;
    luaL_getmetatable(L, kJsonArrayMarker);
    bool marked = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    return marked;
  }

  nlohmann::json convert(int index, const std::string& path) {
    index = index < 0 ? lua_gettop(L) + index + 1 : index;
    switch (lua_type(L, index)) {
      case LUA_TNIL: return nullptr;
      case LUA_TBOOLEAN: return static_cast<bool>(lua_toboolean(L, index));
      case LUA_TSTRING: {
        size_t len = 0;
        const char* s = lua_tolstring(L, index, &len);
        if (!is_valid_utf8(std::string_view(s, len))) fail(path, "string is not valid UTF-8");
        return std::string(s, len);
      }
      case LUA_TNUMBER: {
        double d = lua_tonumber(L, index);
        if (!std::isfinite(d)) fail(path, "number is not finite");
        if (d == std::floor(d) && std::fabs(d) < 9007199254740992.0) return static_cast<int64_t>(d);
        return d;
      }
      case LUA_TTABLE: return convert_table(index, path);
      default: fail(path, std::string("cannot convert a ") + lua_typename(L, lua_type(L, index)) + " to JSON");
    }
  }

  nlohmann::json convert_table(int index, const std::string& path) {
    if (++depth > 64) fail(path, "nested too deeply (a cycle?)");
    luaL_checkstack(L, 4, "json conversion");
    size_t n = lua_objlen(L, index);
    size_t count = 0;
    bool only_integer_keys = true;
    lua_pushnil(L);
    while (lua_next(L, index) != 0) {
      ++count;
      if (lua_type(L, -2) != LUA_TNUMBER) only_integer_keys = false;
      lua_pop(L, 1);
    }
    nlohmann::json out;
    if ((count > 0 && only_integer_keys && count == n) || (count == 0 && is_array_marked(L, index))) {
      out = nlohmann::json::array();
      for (size_t i = 1; i <= n; ++i) {
        lua_rawgeti(L, index, static_cast<int>(i));
        out.push_back(convert(-1, path + "[" + std::to_string(i) + "]"));
        lua_pop(L, 1);
      }
    } else {
      out = nlohmann::json::object();
      lua_pushnil(L);
      while (lua_next(L, index) != 0) {
        if (lua_type(L, -2) != LUA_TSTRING) {
          lua_pop(L, 2);
          fail(path, "mixes array items and named fields (JSON objects need string keys)");
        }
        std::string key = lua_tostring(L, -2);
        out[key] = convert(-1, path + "." + key);
        lua_pop(L, 1);
      }
    }
    --depth;
    return out;
  }
};

}  // namespace

bool try_to_json(lua_State* L, int index, nlohmann::json& out, std::string& error, const char* root) {
  int top = lua_gettop(L);
  try {
    Converter c{L};
    out = c.convert(index, root);
    return true;
  } catch (const std::exception& e) {
    lua_settop(L, top);
    error = e.what();
    return false;
  }
}

nlohmann::json to_json(lua_State* L, int index, const char* what) {
  nlohmann::json out;
  std::string error;
  if (!try_to_json(L, index, out, error, what)) {
    lua_pushlstring(L, error.data(), error.size());
    error = std::string();  // free before lua_error unwinds this frame
    lua_error(L);
  }
  return out;
}

void push_json(lua_State* L, const nlohmann::json& value) {
  luaL_checkstack(L, 3, "json conversion");
  switch (value.type()) {
    case nlohmann::json::value_t::null:
    case nlohmann::json::value_t::discarded: lua_pushnil(L); return;
    case nlohmann::json::value_t::boolean: lua_pushboolean(L, value.get<bool>()); return;
    case nlohmann::json::value_t::number_integer:
    case nlohmann::json::value_t::number_unsigned:
    case nlohmann::json::value_t::number_float: lua_pushnumber(L, value.get<double>()); return;
    case nlohmann::json::value_t::string: {
      const auto& s = value.get_ref<const std::string&>();
      lua_pushlstring(L, s.data(), s.size());
      return;
    }
    case nlohmann::json::value_t::binary: lua_pushnil(L); return;
    case nlohmann::json::value_t::array: {
      lua_createtable(L, static_cast<int>(value.size()), 0);
      int i = 1;
      for (const auto& item : value) {
        push_json(L, item);
        lua_rawseti(L, -2, i++);
      }
      if (value.empty()) {
        luaL_getmetatable(L, kJsonArrayMarker);
        lua_setmetatable(L, -2);
      }
      return;
    }
    case nlohmann::json::value_t::object: {
      lua_createtable(L, 0, static_cast<int>(value.size()));
      for (const auto& [key, item] : value.items()) {
        lua_pushlstring(L, key.data(), key.size());
        push_json(L, item);
        lua_rawset(L, -3);
      }
      return;
    }
  }
}

}  // namespace shepherd
