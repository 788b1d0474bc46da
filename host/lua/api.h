#pragma once
// The `shepherd` table Lua sees, assembled from one register function per
// API area (api_<area>.cpp), in a fixed order.
#include "lua/lua_state.h"

namespace shepherd {

// Each expects the `shepherd` table on top of the stack and adds its area.
void register_json_api(lua_State* L);
void register_log_api(lua_State* L);
void register_time_api(lua_State* L);
// shepherd.files, shepherd.jsonl, shepherd.csv and shepherd.read: a suite's inputs.
void register_inputs_api(lua_State* L);

// Builds the `shepherd` table and sets it as a global.
void register_shepherd_api(lua_State* L);

}  // namespace shepherd
