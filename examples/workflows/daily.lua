-- The daily routine of ../shared/seeds/000 in one workflow:
--   status -> maintain -> maintain to a 90% completion threshold ->
--   retest script for what is still incomplete -> report.
--
--   shepherd script examples/workflows/daily.lua SUITE [--db PATH] [--dry-run]
--
-- Each step uses the same API as the packaged commands; edit freely.
local args = require("shepherd.args")
local m = require("shepherd.maintenance")

local opts = args.parse(shepherd.args)
local s, code, message = shepherd.suite(opts[1] or error("usage: daily.lua SUITE [--db PATH] [--dry-run]"),
                                        { db = opts.db })
if not s then return m.fail(code, message) end
local info = s:info()
local by = info.model_is_dimension and { "model" } or {}

local function snapshot()
  local groups = assert(s:status{ by = by })
  local out = {}
  for _, g in ipairs(groups) do
    out[#out + 1] = { group = g.group, total = g.total, done = g.done, failed = g.failed, pending = g.pending,
                      completion_rate = g.completion_rate, failures = g.failures }
  end
  return out
end

-- A maintenance round: the retest policy's picks at `completion`, each
-- group's pending tasks and retryable failures run.
local function maintain(completion)
  local picks = assert(s:select_retest{ minimum_completion_rate = completion, by = by })
  local ran = {}
  for _, pick in ipairs(picks) do
    if shepherd.stopping() then break end
    local classes = {}
    for _, g in ipairs(assert(s:status{ by = by, where = pick.group })) do
      for cls in pairs(g.failures) do
        if s:would_retry(cls) then classes[#classes + 1] = cls end
      end
    end
    local reset = 0
    if not opts.dry_run then
      if #classes > 0 then reset = s:reset{ where = pick.group, state = "failed", class = classes } end
      local result, rcode, rmessage = s:run{ where = pick.group }
      if not result then return nil, rcode, rmessage end
      s:mark_maintained(pick.group)
      ran[#ran + 1] = { group = pick.group, reason = pick.reason, reset = reset, done = result.done,
                        failed = result.failed }
    else
      ran[#ran + 1] = { group = pick.group, reason = pick.reason, would_run = pick.tasks }
    end
  end
  return ran
end

local report = { suite = info.name, started_at = shepherd.time.now(), before = snapshot() }
local first, c1, m1 = maintain(info.maintain.minimum_completion_rate)
if not first then return m.fail(c1, m1) end
report.maintain = first
local second, c2, m2 = maintain(0.9)
if not second then return m.fail(c2, m2) end
report.maintain_90 = second

-- What is still incomplete gets a script for tomorrow, not a run today.
local dir = info.db:match("^(.*)/[^/]*$") or "."
local script = dir .. "/reports/retest-" .. info.name .. ".sh"
local lines = { "#!/bin/sh", "# still incomplete after the daily maintenance of " .. os.date("!%Y-%m-%d") }
for _, g in ipairs(snapshot()) do
  if g.done < g.total then
    local where = {}
    for k, v in pairs(g.group) do where[#where + 1] = string.format("--where '%s=%s'", k, tostring(v)) end
    -- Failed tasks go again only where the retry policy would retry their class, as maintain does.
    local classes = {}
    for cls in pairs(g.failures) do
      if s:would_retry(cls) then classes[#classes + 1] = cls end
    end
    table.sort(classes)
    local retry = #classes > 0 and (" --retry-class " .. table.concat(classes, ",")) or ""
    lines[#lines + 1] = string.format("'%s' run '%s' --db '%s' %s%s", shepherd.executable, info.path,
                                      info.db, table.concat(where, " "), retry)
  end
end
os.execute("mkdir -p '" .. dir .. "/reports'")
local f = assert(io.open(script, "w"))
f:write(table.concat(lines, "\n"), "\n")
f:close()
os.execute("chmod +x '" .. script .. "'")

report.after = snapshot()
report.retest_script = script
report.finished_at = shepherd.time.now()
local path = shepherd.report(dir .. "/reports/daily-{suite}-{ts}.json", report)
print("daily report " .. path)
print("retest script " .. script)
return 0
