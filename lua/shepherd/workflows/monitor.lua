-- shepherd monitor SUITE [--every DURATION] [--rounds N] [--maintain] [--where …] [--db PATH] [--json]
-- Every interval (default 1h): the status of every group, error statistics
-- per class and per code over the interval with their trend (increasing,
-- stable, decreasing), the suite's alert rules (a rule that fires is an
-- event, a log line and a webhook POST), and with --maintain a maintenance round. Each round
-- writes reports/monitor-<suite>-<ts>.json beside the store. SIGINT or
-- SIGTERM ends it between rounds. A round that finds the store locked by a
-- running `shepherd run` says so and waits for the next.
local m = require("shepherd.maintenance")

local s, opts, where = m.open()
if not s then return opts end
local info = s:info()

-- "90s", "15m", "1h", "1d", or plain seconds.
local function seconds(text)
  local n, unit = tostring(text):match("^(%d+%.?%d*)(%a*)$")
  local scale = ({ [""] = 1, s = 1, m = 60, h = 3600, d = 86400 })[unit or ""]
  if not n or not scale or tonumber(n) <= 0 then return nil end
  return tonumber(n) * scale
end
local every = seconds(opts.every or "1h")
-- At least a second: reports are named to the second, and rounds closer than
-- that would overwrite each other's.
if not every or every < 1 then return m.fail("USAGE", "--every must be a duration of at least 1s, such as 30s, 15m, 1h") end
local rounds = opts.rounds and tonumber(opts.rounds)
if opts.rounds and (not rounds or rounds < 1 or rounds % 1 ~= 0) then
  return m.fail("USAGE", "--rounds must be a whole number >= 1")
end
local by = info.maintain.group_by
if not info.model_is_dimension and #by == 1 and by[1] == "model" then by = {} end
local dir = info.db:match("^(.*)/[^/]*$") or "."

local function maintain_round()
  local picks, code, message = s:select_retest{ by = by, where = where }
  if not picks then return { error = { code = code, message = message } } end
  local ran = {}
  for _, pick in ipairs(picks) do
    if shepherd.stopping() then break end
    local slice = m.slice(where, pick.group)
    local classes = {}
    for _, g in ipairs(s:status{ by = by, where = slice } or {}) do
      for cls in pairs(g.failures) do
        if s:would_retry(cls) then classes[#classes + 1] = cls end
      end
    end
    if #classes > 0 then s:reset{ where = slice, state = "failed", class = classes } end
    local result, rcode, rmessage = s:run{ where = slice }
    if not result then
      ran[#ran + 1] = { group = pick.group, error = { code = rcode, message = rmessage } }
      if rcode == "STORE_LOCKED" then break end
    else
      s:mark_maintained(pick.group)
      ran[#ran + 1] = { group = pick.group, reason = pick.reason, done = result.done, failed = result.failed,
                        pending = result.pending }
    end
  end
  return { selection = shepherd.json.array(picks), ran = shepherd.json.array(ran) }
end

local round = 0
while true do
  round = round + 1
  local report = { suite = info.name, store = info.db, round = round, at = shepherd.time.now(), every_s = every }
  local groups, code, message = s:status{ by = by, where = where }
  if not groups then
    report.error = { code = code, message = message }
    shepherd.log.warn("monitor round " .. round .. ": " .. tostring(code) .. " " .. tostring(message))
  else
    report.status = groups
    report.errors = s:errors{ window_s = every }
    report.alerts = shepherd.json.array(s:check_alerts() or {})
    if opts.maintain then report.maintain = maintain_round() end
  end
  report.report = shepherd.report(dir .. "/reports/monitor-{suite}-{ts}.json", report)
  if shepherd.json_output then
    print(shepherd.json.encode(report))
  else
    local done, total, failed = 0, 0, 0
    for _, g in ipairs(groups or {}) do
      done, total, failed = done + g.done, total + g.total, failed + g.failed
    end
    local trends = {}
    for cls, e in pairs(report.errors and report.errors.by_class or {}) do
      trends[#trends + 1] = string.format("%s=%d (%s)", cls, e.count, e.trend)
    end
    table.sort(trends)
    print(string.format("%s round %d: %d/%d done, %d failed; errors in the last %ds: %s; report %s",
                        os.date("!%Y-%m-%dT%H:%M:%SZ"), round, done, total, failed, every,
                        #trends > 0 and table.concat(trends, " ") or "none", report.report))
    for _, a in ipairs(report.alerts or {}) do print("  ALERT " .. a.text) end
  end
  io.stdout:flush()
  if rounds and round >= rounds then break end
  if not shepherd.sleep(every * 1000) then break end  -- SIGINT/SIGTERM: end between rounds
end
return 0
