#include "lua/api.h"

namespace shepherd {

void register_shepherd_api(lua_State* L) {
  lua_newtable(L);
  register_json_api(L);
  register_log_api(L);
  register_time_api(L);
  register_inputs_api(L);
  lua_setglobal(L, "shepherd");
}

}  // namespace shepherd
