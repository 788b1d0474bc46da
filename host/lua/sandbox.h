#pragma once
// The environment policies run in, built from an allowlist: no io, no os
// beyond time/clock/date, no load/loadfile/dofile/debug/ffi/require.
// Reading an unknown global raises.
#include "lua/lua_state.h"

namespace shepherd {

// Pushes a fresh environment table (expects the `shepherd` global to exist).
void push_sandbox_env(lua_State* L);

}  // namespace shepherd
