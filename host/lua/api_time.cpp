// shepherd.time.now() -> unix seconds (fractional)
// shepherd.time.monotonic_ms() -> milliseconds on a clock that never goes back
#include "core/clock.h"
#include "lua/api.h"

namespace shepherd {

namespace {

int time_now(lua_State* L) {
  lua_pushnumber(L, unix_now());
  return 1;
}

int time_monotonic_ms(lua_State* L) {
  static const TimePoint origin = SteadyClock::now();
  lua_pushnumber(L, ms_between(origin, SteadyClock::now()));
  return 1;
}

}  // namespace

void register_time_api(lua_State* L) {
  static const luaL_Reg fns[] = {
      {"now", time_now}, {"monotonic_ms", time_monotonic_ms}, {nullptr, nullptr}};
  lua_newtable(L);
  luaL_register(L, nullptr, fns);
  lua_setfield(L, -2, "time");
}

}  // namespace shepherd
