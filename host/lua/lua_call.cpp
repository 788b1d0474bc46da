#include "lua/lua_call.h"

#include <cctype>
#include <cstdlib>

namespace shepherd {

namespace {

int traceback_handler(lua_State* L) {
  const char* msg = lua_tostring(L, 1);
  if (msg == nullptr) {
    // A non-string error value (e.g. error({…})): keep what can be shown.
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) {
      msg = lua_tostring(L, -1);
    } else {
      msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

}  // namespace

std::string LuaFailure::where() const {
  if (file.empty()) return "";
  return line > 0 ? file + ":" + std::to_string(line) : file;
}

std::string LuaFailure::describe() const {
  auto w = where();
  return w.empty() ? message : w + ": " + message;
}

LuaFailure parse_lua_message(const std::string& raw) {
  LuaFailure f;
  std::string first = raw.substr(0, raw.find("\nstack traceback:"));
  f.traceback = raw;
  // "path/to/file.lua:12: message" — the path itself may contain ':'.
  for (size_t colon = first.find(':'); colon != std::string::npos; colon = first.find(':', colon + 1)) {
    size_t digits_end = colon + 1;
    while (digits_end < first.size() && std::isdigit(static_cast<unsigned char>(first[digits_end]))) ++digits_end;
    if (digits_end > colon + 1 && digits_end < first.size() && first[digits_end] == ':') {
      f.file = first.substr(0, colon);
      if (f.file.rfind("[string \"", 0) == 0) f.file.clear();
      f.line = std::atoi(first.substr(colon + 1, digits_end - colon - 1).c_str());
      size_t msg_start = digits_end + 1;
      while (msg_start < first.size() && first[msg_start] == ' ') ++msg_start;
      f.message = first.substr(msg_start);
      return f;
    }
  }
  f.message = first;
  return f;
}

bool protected_call(lua_State* L, int nargs, int nresults, LuaFailure& out) {
  int base = lua_gettop(L) - nargs;  // index of the function
  lua_pushcfunction(L, traceback_handler);
  lua_insert(L, base);
  int rc = lua_pcall(L, nargs, nresults, base);
  lua_remove(L, base);
  if (rc == 0) return true;
  const char* raw = lua_tostring(L, -1);
  out = parse_lua_message(raw ? raw : "unknown Lua error");
  if (rc == LUA_ERRMEM) out.message = "out of memory";
  lua_pop(L, 1);
  return false;
}

bool load_chunk(lua_State* L, const std::string& text, const std::string& chunk_name, LuaFailure& out) {
  if (!text.empty() && text[0] == LUA_SIGNATURE[0]) {
    out = LuaFailure{"precompiled bytecode is not accepted", chunk_name, 0, ""};
    return false;
  }
  std::string name = "@" + chunk_name;
  if (luaL_loadbuffer(L, text.data(), text.size(), name.c_str()) != 0) {
    out = parse_lua_message(lua_tostring(L, -1));
    lua_pop(L, 1);
    return false;
  }
  return true;
}

}  // namespace shepherd
