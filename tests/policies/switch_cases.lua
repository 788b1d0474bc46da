-- Table-driven cases for policies/switch.lua: { name, input = ctx, expect = model or "none" }.
-- ctx.config is the suite's `maintain` table (only the fields switch.lua reads).
local function ctx(current, exhausted, extra)
  local set = {}
  for _, m in ipairs(exhausted) do set[m] = true end
  local c = { current = current, candidates = { "m-a", "m-b", "m-c", "m-d" }, exhausted = set,
              class = "quota_exhausted", config = { priority_models = {}, skip_models = {} } }
  for k, v in pairs(extra or {}) do c[k] = v end
  return c
end

return {
  { name = "the next in the suite's order", input = ctx("m-a", { "m-a" }), expect = "m-b" },
  { name = "skips exhausted models", input = ctx("m-b", { "m-a", "m-b", "m-c" }), expect = "m-d" },
  { name = "wraps around to an earlier unused model", input = ctx("m-c", { "m-c", "m-d" }), expect = "m-a" },
  { name = "nothing left", input = ctx("m-d", { "m-a", "m-b", "m-c", "m-d" }), expect = "none" },
  { name = "the current model is never chosen again", input = ctx("m-a", {}), expect = "m-b" },
  { name = "priority models first",
    input = ctx("m-a", { "m-a" }, { config = { priority_models = { "m-d" }, skip_models = {} } }), expect = "m-d" },
  { name = "an exhausted priority model is passed over",
    input = ctx("m-a", { "m-a", "m-d" }, { config = { priority_models = { "m-d" }, skip_models = {} } }),
    expect = "m-b" },
  { name = "skip_models are never chosen",
    input = ctx("m-a", { "m-a" }, { config = { priority_models = {}, skip_models = { "m-b", "m-c" } } }),
    expect = "m-d" },
  { name = "only skipped models left",
    input = ctx("m-a", { "m-a", "m-d" }, { config = { priority_models = {}, skip_models = { "m-b", "m-c" } } }),
    expect = "none" },
  { name = "auth_failed switches the same way", input = ctx("m-b", { "m-b" }, { class = "auth_failed" }),
    expect = "m-c" },
}
