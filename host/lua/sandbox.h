#pragma once
// The environment policies run in, built from an allowlist: no io, no os
// beyond time/clock/date, no load/loadfile/dofile/debug/ffi/require.
// Reading an unknown global raises.
#include "lua/lua_state.h"

namespace shepherd {

// Pushes a fresh environment table (expects the `shepherd` global to exist).
void push_sandbox_env(lua_State* L);

// Lets plain require() in L (a suite's state) find the packaged shepherd.*
// modules first, from wherever shepherd runs.
void install_packaged_loader(lua_State* L);

}  // namespace shepherd
