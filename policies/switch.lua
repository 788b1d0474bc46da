-- switch.lua: a resource model is used up; which model comes next?
--
-- next_model(ctx) -> a model name, or nil (no model left: the run stops,
--                    exit 3, and unfinished tasks stay pending)
--
-- ctx (plain fields):
--   current     the model that was just exhausted
--   candidates  the suite's `models`, in the suite's order
--   exhausted   a set: exhausted[model] == true for every model used up in this run
--   class       why: "quota_exhausted", "auth_failed", ...
--   config      the suite's `maintain` table (priority_models, skip_models, …)
--
-- The host refuses an answer that is not a candidate or is exhausted (a model
-- once exhausted is never used again in the run) and then takes the next
-- candidate in order itself.
local M = { name = "switch", version = "1" }

local contains = require("shepherd.lists").contains

local function usable(ctx, model)
  return not ctx.exhausted[model] and model ~= ctx.current and not contains(ctx.config.skip_models, model)
end

function M.next_model(ctx)
  -- Priority models first, then the suite's order after the current model,
  -- then any earlier one still unused.
  for _, model in ipairs(ctx.config.priority_models or {}) do
    if contains(ctx.candidates, model) and usable(ctx, model) then return model end
  end
  local n, start = #ctx.candidates, 0
  for i, model in ipairs(ctx.candidates) do
    if model == ctx.current then start = i end
  end
  for step = 1, n do
    local model = ctx.candidates[(start + step - 1) % n + 1]
    if usable(ctx, model) then return model end
  end
  return nil
end

function M.selftest()
  local ctx = { current = "a", candidates = { "a", "b", "c" }, exhausted = { a = true }, class = "quota_exhausted",
                config = { priority_models = {}, skip_models = { "b" } } }
  assert(M.next_model(ctx) == "c", "skips skip_models")
  ctx.exhausted.c = true
  assert(M.next_model(ctx) == nil, "nothing left")
end

return M
