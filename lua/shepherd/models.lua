-- Model-name rules shared by policies: require("shepherd.models").
local M = {}

-- Dated snapshot suffixes providers append to a model's name:
-- gpt-4o-mini-2024-07-18, claude-3-5-sonnet-20241022, gpt-4-0613.
local snapshot_suffixes = {
  "^%-%d%d%d%d%-%d%d%-%d%d$",
  "^%-%d%d%d%d%d%d%d%d$",
  "^%-%d%d%d%d$",
}

-- True when `answered` is `requested` itself or a dated snapshot of it.
-- qwen2.5-72b-instruct answering for qwen2.5-7b-instruct is not.
function M.same_model(requested, answered)
  if requested == nil or answered == nil then return false end
  if answered == requested then return true end
  if answered:sub(1, #requested) ~= requested then return false end
  local suffix = answered:sub(#requested + 1)
  for _, pattern in ipairs(snapshot_suffixes) do
    if suffix:match(pattern) then return true end
  end
  return false
end

return M
