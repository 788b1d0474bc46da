#pragma once
// Finds the line of a field in a suite's source, so a validation error can
// point at it: values are checked after Lua has run, when lines are gone.
#include <string>
#include <vector>

namespace shepherd {

// Line (1-based) where the deepest component of `path` that can be found is
// assigned (`name =` or `["name"] =`), searching each component after its
// parent's position. 0 when not even the first component is found.
int find_field_line(const std::string& source, const std::vector<std::string>& path);

}  // namespace shepherd
