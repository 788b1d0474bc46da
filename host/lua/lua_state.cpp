#include "lua/lua_state.h"

#include <algorithm>
#include <cstdlib>

#include "core/error.h"

namespace shepherd {

struct LuaState::Memory {
  size_t used = 0;
  size_t ceiling = 0;  // the state's limit, or a MemoryLimit's tighter one
};

namespace {

// lua_Alloc: counts every byte; refuses growth past the ceiling. Shrinking
// and freeing never fail (Lua relies on that).
void* counted_alloc(void* ud, void* ptr, size_t old_size, size_t new_size) {
  auto* m = static_cast<LuaState::Memory*>(ud);
  if (ptr == nullptr) old_size = 0;  // old_size is a type tag then, not a size
  if (new_size == 0) {
    std::free(ptr);
    m->used -= old_size;
    return nullptr;
  }
  if (new_size > old_size && m->used - old_size + new_size > m->ceiling) return nullptr;
  void* out = std::realloc(ptr, new_size);
  if (out == nullptr) return nullptr;
  m->used = m->used - old_size + new_size;
  return out;
}

LuaState::Memory* memory_of(lua_State* L) {
  void* ud = nullptr;
  lua_Alloc f = lua_getallocf(L, &ud);
  return f == counted_alloc ? static_cast<LuaState::Memory*>(ud) : nullptr;
}

}  // namespace

void LuaState::Closer::operator()(lua_State* L) const { lua_close(L); }

LuaState::LuaState(size_t memory_limit) : memory_(std::make_unique<Memory>()) {
  memory_->ceiling = memory_limit;
  state_.reset(lua_newstate(counted_alloc, memory_.get()));
  if (!state_) throw Error(codes::INTERNAL, "cannot create a Lua state (out of memory)", Stage::execution);
  luaL_openlibs(state_.get());
}

LuaState::~LuaState() { state_.reset(); }  // the state goes before its allocator's count

size_t LuaState::memory_used(lua_State* L) {
  const Memory* m = memory_of(L);
  return m ? m->used : 0;
}

MemoryLimit::MemoryLimit(lua_State* L, size_t headroom) {
  LuaState::Memory* m = memory_of(L);
  if (m == nullptr) return;  // a state this host did not make: nothing to bound
  ceiling_ = &m->ceiling;
  previous_ = m->ceiling;
  size_t wanted = m->used > SIZE_MAX - headroom ? SIZE_MAX : m->used + headroom;
  m->ceiling = std::min(previous_, wanted);
}

MemoryLimit::~MemoryLimit() {
  if (ceiling_) *ceiling_ = previous_;
}

}  // namespace shepherd
