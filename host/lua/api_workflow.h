#pragma once
// The workflow API (`shepherd script`, the packaged maintenance commands):
//   shepherd.args, shepherd.json_output
//   shepherd.suite(path [, {db = PATH}]) -> s | nil, code, message
//   s:status{by, where}, s:tasks{state, where, limit}, s:attempts(id),
//   s:events{kind, since}, s:run{where, tasks, retry_failed, retry_classes, progress},
//   s:reset{where, state, class}, s:select_retest(config), s:export{format, out, where}
//   shepherd.report(path_template, tbl) -> path
//   shepherd.sleep(ms) -> true | false (false: asked to stop), shepherd.stopping()
// Misuse raises ("bad argument #1 to 'status' (…)"); an operational failure
// returns nil, code, message (STORE_LOCKED, STORE_OPEN_FAILED, …).
#include <string>
#include <vector>

#include "lua/lua_state.h"

namespace shepherd {

// Adds the workflow API to the global `shepherd` table (which must exist).
void register_workflow_api(lua_State* L, const std::vector<std::string>& args, bool json_output);

}  // namespace shepherd
