#pragma once
// Plain data across the boundary: Lua values <-> JSON.
//
// Both directions are bounded, because both carry data nobody vetted: a
// provider's body goes Lua-ward, a suite's or a policy's tables go JSON-ward.
// Lua -> JSON stops at kMaxLuaToJsonDepth levels (a cycle lands there) and
// once the converted value would hold about kMaxLuaToJsonBytes of memory (a
// table that shares its subtables doubles per level: 2^60 values in a few
// lines). JSON -> Lua refuses values nested deeper than kMaxJsonDepth, the
// bound every JSON parse in the host uses.
#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>

#include "lua/lua_state.h"

namespace shepherd {

inline constexpr int kMaxLuaToJsonDepth = 64;
inline constexpr size_t kMaxLuaToJsonBytes = size_t{64} << 20;

// Converts the value at `index`. A table whose keys are exactly 1..n is an
// array; an empty table is an empty object unless it carries the array marker
// (shepherd.json.array()). Functions, userdata, cycles, non-finite numbers,
// invalid UTF-8 and values beyond the bounds above raise a Lua error naming
// `what` and the path, e.g. "request.messages[2]". `max_bytes` may tighten
// the size budget for a caller that expects small values.
nlohmann::json to_json(lua_State* L, int index, const char* what = "value",
                       size_t max_bytes = kMaxLuaToJsonBytes);

// Same, but reports failure as a message instead of raising (safe outside
// pcall): "<root>.messages[2]: cannot convert a function to JSON".
// Never runs Lua code (no metamethods) and never raises.
bool try_to_json(lua_State* L, int index, nlohmann::json& out, std::string& error, const char* root = "value",
                 size_t max_bytes = kMaxLuaToJsonBytes);

// Pushes `value` as Lua values (null -> nil; an empty array carries the array
// marker). A value nested deeper than kMaxJsonDepth raises a Lua error, so
// call it under pcall (a C function Lua called is), or use try_push_json.
void push_json(lua_State* L, const nlohmann::json& value);

// Same, but a value nested too deep pushes nothing and returns false with
// the reason. Only running out of memory raises (as any Lua API call may).
bool try_push_json(lua_State* L, const nlohmann::json& value, std::string& error);

// The registry key of the metatable that marks a table as a JSON array.
extern const char* const kJsonArrayMarker;

}  // namespace shepherd
