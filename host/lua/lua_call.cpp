#include "lua/lua_call.h"

#include <cctype>
#include <cstdlib>
#include <string_view>

#include "core/text.h"

namespace shepherd {

namespace {

bool ends_with(std::string_view s, std::string_view tail) {
  return s.size() >= tail.size() && s.substr(s.size() - tail.size()) == tail;
}

// Lua cuts chunk names longer than 60 characters to "...tail" in messages;
// put the whole name back, from `full` or from a function on the stack.
std::string restore_file_name(lua_State* L, const std::string& message, const std::string& full) {
  if (message.rfind("...", 0) != 0) return message;
  LuaFailure f = parse_lua_message(message);
  if (f.file.size() <= 3) return message;
  std::string tail = f.file.substr(3);
  if (!full.empty() && ends_with(full, tail)) return full + message.substr(f.file.size());
  lua_Debug ar;
  for (int level = 0; L != nullptr && lua_getstack(L, level, &ar); ++level) {
    lua_getinfo(L, "S", &ar);
    if (ar.source != nullptr && ar.source[0] == '@' && ends_with(ar.source + 1, tail)) {
      return std::string(ar.source + 1) + message.substr(f.file.size());
    }
  }
  return message;
}

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
  // Cut before copying: a policy may raise a 100 MB message.
  std::string full = restore_file_name(L, clip_text(msg, 2 * kMaxMessageBytes), "");
  luaL_traceback(L, L, full.c_str(), 1);
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
  size_t len = 0;
  const char* raw = lua_tolstring(L, -1, &len);
  // An error message is stored and logged: a 100 MB one is cut first.
  out = parse_lua_message(raw ? clip_text(std::string_view(raw, len), 2 * kMaxMessageBytes) : "unknown Lua error");
  out.message = clip_text(out.message);
  if (rc == LUA_ERRMEM) out.message = "out of memory (the call's memory limit, or the process's)";
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
    out = parse_lua_message(restore_file_name(nullptr, lua_tostring(L, -1), chunk_name));
    lua_pop(L, 1);
    return false;
  }
  return true;
}

}  // namespace shepherd
