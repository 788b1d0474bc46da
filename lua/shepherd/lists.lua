-- List helpers shared by policies: require("shepherd.lists").
local M = {}

-- True when `list` (an array, or nil) holds `value`.
function M.contains(list, value)
  for _, v in ipairs(list or {}) do
    if v == value then return true end
  end
  return false
end

return M
