-- Table-driven cases for policies/retest.lua:
-- { name, stats = { groups }, config = { overrides of maintain }, expect = { { group, priority }, … } }
-- (reasons are checked for their key words with `mentions`).
local now = os.time()

local function group(model, total, done, failed, extra)
  local g = { key = { model = model }, total = total, done = done, failed = failed,
              pending = total - done - failed, completion_rate = total > 0 and done / total or 0,
              failure_rate = total > 0 and failed / total or 0, failures_by_class = {} }
  for k, v in pairs(extra or {}) do g[k] = v end
  return g
end

return {
  { name = "healthy groups are left alone",
    stats = { group("m-a", 10, 10, 0), group("m-b", 10, 9, 1) }, expect = {} },
  { name = "low completion is selected",
    stats = { group("m-a", 10, 5, 0) }, expect = { { group = { model = "m-a" }, priority = 3 } },
    mentions = { "completion 50% < 80%" } },
  { name = "high failure rate is selected",
    stats = { group("m-a", 10, 8, 2), group("m-b", 10, 6, 4) },
    expect = { { group = { model = "m-b" }, priority = 3 } }, mentions = { "failures 40% > 30%" } },
  { name = "severe failure comes before partial",
    stats = { group("m-a", 10, 7, 0), group("m-b", 10, 3, 6) },
    expect = { { group = { model = "m-b" }, priority = 2 }, { group = { model = "m-a" }, priority = 3 } },
    mentions = { "severe failure" } },
  { name = "priority models first",
    stats = { group("m-a", 10, 2, 8), group("m-b", 10, 7, 0) }, config = { priority_models = { "m-b" } },
    expect = { { group = { model = "m-b" }, priority = 1 }, { group = { model = "m-a" }, priority = 2 } },
    mentions = { "priority model" } },
  { name = "skip_models are never selected",
    stats = { group("m-a", 10, 0, 10), group("m-b", 10, 5, 5) }, config = { skip_models = { "m-a" } },
    expect = { { group = { model = "m-b" }, priority = 3 } } },
  { name = "groups attempted within cooldown_hours wait",
    stats = { group("m-a", 10, 5, 5, { last_maintained_at = now - 600 }),
              group("m-b", 10, 5, 5, { last_maintained_at = now - 3 * 3600 }) },
    expect = { { group = { model = "m-b" }, priority = 3 } } },
  { name = "batch_size caps the selection, least complete first",
    stats = { group("m-a", 10, 6, 0), group("m-b", 10, 1, 0), group("m-c", 10, 4, 0) }, config = { batch_size = 2 },
    expect = { { group = { model = "m-b" }, priority = 3 }, { group = { model = "m-c" }, priority = 3 } } },
  { name = "thresholds come from the config",
    stats = { group("m-a", 10, 9, 1) }, config = { minimum_completion_rate = 0.95 },
    expect = { { group = { model = "m-a" }, priority = 3 } } },
  { name = "empty groups are ignored", stats = { group("m-a", 0, 0, 0) }, expect = {} },
  { name = "groups by several dims keep their whole key",
    stats = { { key = { model = "m-a", prompt_type = "cot" }, total = 4, done = 1, failed = 3, pending = 0,
                completion_rate = 0.25, failure_rate = 0.75, failures_by_class = { timeout = 3 } } },
    expect = { { group = { model = "m-a", prompt_type = "cot" }, priority = 2 } } },
}
