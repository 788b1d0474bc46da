#pragma once
// Every host->Lua call goes through protected_call: a traceback handler, and
// a Lua error becomes {message, file, line, traceback} for the host's Error.
#include <string>

#include "lua/lua_state.h"

namespace shepherd {

struct LuaFailure {
  std::string message;    // without the "file:line:" prefix
  std::string file;       // chunk name without '@', empty if unknown
  int line = 0;           // 0 if unknown
  std::string traceback;

  std::string where() const;  // "file:line" / "file" / ""
  std::string describe() const;  // "file:line: message"
};

// Calls the function below `nargs` arguments on the stack. On success leaves
// `nresults` results and returns true; on failure leaves nothing and fills `out`.
bool protected_call(lua_State* L, int nargs, int nresults, LuaFailure& out);

// Loads a chunk (text only: bytecode is refused). On success pushes the function.
bool load_chunk(lua_State* L, const std::string& text, const std::string& chunk_name,
                LuaFailure& out);

// Splits "file:line: message" as Lua formats it.
LuaFailure parse_lua_message(const std::string& raw);

}  // namespace shepherd
