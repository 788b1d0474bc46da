-- retest.lua: which groups of tasks deserve a re-test, in what order, and why.
--
-- select(stats, config) -> list of { group = <key>, priority = <number, 1 first>, reason = <text> }
--
-- stats: a list of groups, as `shepherd status --json` gives them:
--   key                 the group's dims, e.g. { model = "m-a", prompt_type = "cot" }
--   total, done, failed, pending
--   completion_rate     done / total
--   failure_rate        failed / total
--   failures_by_class   { timeout = 3, … }
--   last_attempt_at     unix seconds of the group's latest attempt, or nil
--   last_maintained_at  unix seconds of the group's last maintenance (shepherd maintain), or nil
-- config: the suite's `maintain` table over the defaults:
--   minimum_completion_rate (0.8), maximum_failure_rate (0.3), priority_models ({}),
--   skip_models ({}), cooldown_hours (2), batch_size (5)
--
-- The packaged rules are those of the older system: a group is selected when
-- its completion rate is below the minimum or its failure rate above the
-- maximum; groups of skip_models and groups maintained within cooldown_hours
-- are left alone (the cooldown counts from the group's last maintenance);
-- priority 1 for priority models, 2 for severe failure (over
-- 50%), 3 for the rest; at most batch_size groups, most urgent first.
local M = { name = "retest", version = "2" }

local contains = require("shepherd.lists").contains

local function percent(x) return string.format("%.0f%%", x * 100) end

function M.select(stats, config, now)
  now = now or os.time()
  local picked = {}
  for _, g in ipairs(stats) do
    local model = g.key and g.key.model
    -- cooldown_hours = 0 never cools: os.time() is whole seconds and may read
    -- earlier than a maintenance recorded in the same second.
    local cooling = config.cooldown_hours > 0 and g.last_maintained_at
      and (now - g.last_maintained_at) < config.cooldown_hours * 3600
    if not contains(config.skip_models, model) and not cooling and g.total > 0 then
      local reasons = {}
      if g.completion_rate < config.minimum_completion_rate then
        reasons[#reasons + 1] = "completion " .. percent(g.completion_rate) .. " < " .. percent(config.minimum_completion_rate)
      end
      if g.failure_rate > config.maximum_failure_rate then
        reasons[#reasons + 1] = "failures " .. percent(g.failure_rate) .. " > " .. percent(config.maximum_failure_rate)
      end
      if #reasons > 0 then
        local priority = 3
        if contains(config.priority_models, model) then
          priority = 1
          reasons[#reasons + 1] = "priority model"
        elseif g.failure_rate > 0.5 then
          priority = 2
          reasons[#reasons + 1] = "severe failure"
        end
        picked[#picked + 1] = { group = g.key, priority = priority, reason = table.concat(reasons, "; "),
                                rank = g.completion_rate }
      end
    end
  end
  -- Most urgent first; within a priority, the least complete first.
  table.sort(picked, function(a, b)
    if a.priority ~= b.priority then return a.priority < b.priority end
    return a.rank < b.rank
  end)
  local out = {}
  for i = 1, math.min(#picked, config.batch_size) do
    out[i] = { group = picked[i].group, priority = picked[i].priority, reason = picked[i].reason }
  end
  return out
end

function M.selftest()
  local config = { minimum_completion_rate = 0.8, maximum_failure_rate = 0.3, priority_models = {},
                   skip_models = {}, cooldown_hours = 2, batch_size = 5 }
  local out = M.select({ { key = { model = "m" }, total = 10, done = 5, failed = 5, pending = 0,
                           completion_rate = 0.5, failure_rate = 0.5, failures_by_class = {} } }, config, 0)
  assert(#out == 1 and out[1].priority == 3, "a half-failed group is selected")
end

return M
