// shepherd.log.debug|info|warn|error(message) -> the run's log, tagged "lua".
#include <spdlog/spdlog.h>

#include "lua/api.h"

namespace shepherd {

namespace {

template <spdlog::level::level_enum Level>
int log_at(lua_State* L) {
  size_t len = 0;
  const char* msg = luaL_checklstring(L, 1, &len);
  spdlog::log(Level, "[lua] {}", std::string_view(msg, len));
  return 0;
}

}  // namespace

void register_log_api(lua_State* L) {
  static const luaL_Reg fns[] = {{"debug", log_at<spdlog::level::debug>},
                                 {"info", log_at<spdlog::level::info>},
                                 {"warn", log_at<spdlog::level::warn>},
                                 {"error", log_at<spdlog::level::err>},
                                 {nullptr, nullptr}};
  lua_newtable(L);
  luaL_register(L, nullptr, fns);
  lua_setfield(L, -2, "log");
}

}  // namespace shepherd
