-- shepherd maintain SUITE [--dry-run] [--where dim=v,...] [--completion-threshold X]
--                        [--failure-threshold Y] [--db PATH] [--json]
-- The daily routine in one command: the status of every group (by the
-- suite's maintain.group_by), their failure patterns, the retest policy's
-- selection (thresholds, priority and skip models, the cooldown since each
-- group's last maintenance, batch_size), and — unless --dry-run — a run of
-- each selected group's unfinished tasks: pending ones, and failed ones
-- whose last class the retry policy would retry. A report goes to
-- reports/maintain-<suite>-<ts>.json beside the store.
-- A packaged workflow: copy it and edit it to make your own routine.
local m = require("shepherd.maintenance")

local s, opts, where = m.open()
if not s then return opts end
local info = s:info()

local config = {}
for k, v in pairs(info.maintain) do config[k] = v end
local ok, err = pcall(function()
  config.minimum_completion_rate = m.rate(opts, "completion_threshold") or config.minimum_completion_rate
  config.maximum_failure_rate = m.rate(opts, "failure_threshold") or config.maximum_failure_rate
end)
if not ok then return m.fail(err.code or "USAGE", err.message or tostring(err)) end
local by = config.group_by
if not info.model_is_dimension and #by == 1 and by[1] == "model" then by = {} end

local function analyse()
  local groups, code, message = s:status{ by = by, where = where }
  if not groups then return nil, code, message end
  local rows, patterns = {}, {}
  for _, g in ipairs(groups) do
    local pattern = m.pattern(g, config)
    rows[#rows + 1] = { group = g.group, total = g.total, done = g.done, failed = g.failed, pending = g.pending,
                        stale = g.stale, completion_rate = g.completion_rate, failure_rate = g.failure_rate,
                        failures = g.failures, retries = g.retries, last_maintained_at = g.last_maintained_at,
                        pattern = pattern }
    if pattern then patterns[#patterns + 1] = { group = g.group, pattern = pattern } end
  end
  return rows, patterns, groups
end

local before, patterns, groups = analyse()
if not before then return m.fail(patterns, groups) end
local selection, scode, smessage = s:select_retest{
  minimum_completion_rate = config.minimum_completion_rate, maximum_failure_rate = config.maximum_failure_rate,
  by = by, where = where }
if not selection then return m.fail(scode, smessage) end

local ran = {}
local exit = 0
if not opts.dry_run then
  local failures_of = {}
  for _, g in ipairs(groups) do failures_of[shepherd.json.encode(g.group)] = g.failures end
  for _, pick in ipairs(selection) do
    if shepherd.stopping() then exit = 3 break end
    local slice = m.slice(where, pick.group)
    -- Failed tasks go again only when the retry policy would retry their
    -- class: an auth_failed stays failed, a server_error is sent again.
    local classes = {}
    for cls in pairs(failures_of[shepherd.json.encode(pick.group)] or {}) do
      if s:would_retry(cls) then classes[#classes + 1] = cls end
    end
    table.sort(classes)
    local reset = #classes > 0 and s:reset{ where = slice, state = "failed", class = classes } or 0
    shepherd.log.info("maintain: " .. m.describe(pick.group) .. ": " .. pick.reason .. "; " .. reset ..
                      " failed tasks sent again (" .. table.concat(classes, ", ") .. ")")
    local result, code, message = s:run{ where = slice }
    if not result then
      ran[#ran + 1] = { group = pick.group, error = { code = code, message = message } }
      if code == "STORE_LOCKED" then exit = 1 break end
    else
      ran[#ran + 1] = { group = pick.group, reset = reset, retried_classes = shepherd.json.array(classes),
                        done = result.done, failed = result.failed, pending = result.pending,
                        seconds = result.seconds, exit = result.exit }
      s:mark_maintained(pick.group)
      if result.interrupted then exit = 3 break end
    end
  end
end
local after = opts.dry_run and before or analyse()

local report = {
  suite = info.name, store = info.db, dry_run = opts.dry_run == true, at = shepherd.time.now(),
  configuration = { minimum_completion_rate = config.minimum_completion_rate,
                    maximum_failure_rate = config.maximum_failure_rate, priority_models = config.priority_models,
                    skip_models = config.skip_models, cooldown_hours = config.cooldown_hours,
                    batch_size = config.batch_size, group_by = by, where = where },
  analysis = shepherd.json.array(before), patterns = shepherd.json.array(patterns),
  selection = shepherd.json.array(selection), ran = shepherd.json.array(ran), after = shepherd.json.array(after or {}),
}
local dir = info.db:match("^(.*)/[^/]*$") or "."
local path = shepherd.report(dir .. "/reports/maintain-{suite}-{ts}.json", report)
report.report = path

if shepherd.json_output then
  print(shepherd.json.encode(report))
  return exit
end
print(string.format("%-36s %6s %6s %6s %7s %10s %8s  %s", "group", "total", "done", "failed", "pending",
                    "completion", "failure", "pattern"))
for _, r in ipairs(before) do
  print(string.format("%-36s %6d %6d %6d %7d %9.1f%% %7.1f%%  %s", m.describe(r.group), r.total, r.done, r.failed,
                      r.pending, r.completion_rate * 100, r.failure_rate * 100, r.pattern or "-"))
end
if #selection == 0 then
  print("\nnothing to re-test (thresholds: completion >= " .. config.minimum_completion_rate ..
        ", failures <= " .. config.maximum_failure_rate .. ")")
else
  print("\nselected for a re-test:")
  for _, pick in ipairs(selection) do
    print(string.format("  %d. %s — %s (%d unfinished)", pick.priority, m.describe(pick.group), pick.reason, pick.tasks))
  end
end
if opts.dry_run then print("\n--dry-run: nothing was sent") end
for _, r in ipairs(ran) do
  if r.error then
    print(string.format("  %s: %s %s", m.describe(r.group), r.error.code, r.error.message))
  else
    print(string.format("  ran %s: %d done, %d failed, %d pending (%.1f s)", m.describe(r.group), r.done, r.failed,
                        r.pending, r.seconds))
  end
end
print("report " .. path)
return exit
