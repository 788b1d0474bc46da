#include "lua/lua_state.h"

#include "core/error.h"

namespace shepherd {

LuaState::LuaState() : state_(luaL_newstate()) {
  if (!state_) throw Error(codes::INTERNAL, "cannot create a Lua state (out of memory)", Stage::execution);
  luaL_openlibs(state_.get());
}

}  // namespace shepherd
