#pragma once
// Plain data across the boundary: Lua values <-> JSON.
#include <nlohmann/json.hpp>
#include <string>

#include "lua/lua_state.h"

namespace shepherd {

// Converts the value at `index`. A table whose keys are exactly 1..n is an
// array; an empty table is an empty object unless it carries the array marker
// (shepherd.json.array()). Functions, userdata, cycles and non-finite numbers
// raise a Lua error naming `what` and the path, e.g. "request.messages[2]".
nlohmann::json to_json(lua_State* L, int index, const char* what = "value");

// Same, but reports failure as a message instead of raising (safe outside
// pcall): "<root>.messages[2]: cannot convert a function to JSON".
bool try_to_json(lua_State* L, int index, nlohmann::json& out, std::string& error, const char* root = "value");

void push_json(lua_State* L, const nlohmann::json& value);

// The registry key of the metatable that marks a table as a JSON array.
extern const char* const kJsonArrayMarker;

}  // namespace shepherd
