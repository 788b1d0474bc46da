-- shepherd retest SUITE --script FILE [--where dim=v,...] [--completion-threshold X]
--                       [--failure-threshold Y] [--db PATH] [--json]
-- Writes an executable shell script of `shepherd run SUITE --where … --retry-class …`
-- lines, one per group the retest policy selects, each commented with its
-- reason; runs nothing. Running the script completes the work as `maintain`
-- would: each group's pending tasks, and its failed tasks whose last class
-- the retry policy would retry (a server_error is sent again, an auth_failed
-- is left alone and the comment says so).
local m = require("shepherd.maintenance")

local s, opts, where = m.open()
if not s then return opts end
if type(opts.script) ~= "string" or opts.script == "" then return m.fail("USAGE", "--script FILE is required") end
local info = s:info()
local config = {}
local ok, err = pcall(function()
  config.minimum_completion_rate = m.rate(opts, "completion_threshold")
  config.maximum_failure_rate = m.rate(opts, "failure_threshold")
end)
if not ok then return m.fail(err.code or "USAGE", err.message or tostring(err)) end
local by = info.maintain.group_by
if not info.model_is_dimension and #by == 1 and by[1] == "model" then by = {} end
config.by = by
config.where = where
local selection, code, message = s:select_retest(config)
if not selection then return m.fail(code, message) end
local groups, gcode, gmessage = s:status{ by = by, where = where }
if not groups then return m.fail(gcode, gmessage) end
local failures_of = {}
for _, g in ipairs(groups) do failures_of[shepherd.json.encode(g.group)] = g.failures end

-- What the retry policy says of a class, asked once per class.
local retryable = {}
local function would_retry(cls)
  if retryable[cls] == nil then
    local yes, rcode, rmessage = s:would_retry(cls)
    if yes == nil then return nil, rcode, rmessage end
    retryable[cls] = yes
  end
  return retryable[cls]
end

-- A group's failed classes, sorted: those to send again, and those left
-- failed (with their counts, for the comment).
local function split_failures(group)
  local retry, kept = {}, {}
  local failures = failures_of[shepherd.json.encode(group)] or {}
  local classes = {}
  for cls, n in pairs(failures) do
    if n > 0 then classes[#classes + 1] = cls end
  end
  table.sort(classes)
  for _, cls in ipairs(classes) do
    local yes, rcode, rmessage = would_retry(cls)
    if yes == nil then return nil, rcode, rmessage end
    if yes then
      retry[#retry + 1] = cls
    else
      kept[#kept + 1] = string.format("%s (%d)", cls, failures[cls])
    end
  end
  return retry, kept
end

-- POSIX shell quoting: everything inside single quotes, ' as '\''.
local function q(text) return "'" .. tostring(text):gsub("'", "'\\''") .. "'" end

local lines = {
  "#!/bin/sh",
  "# Re-tests for suite " .. info.name .. ", written by `shepherd retest` at " .. os.date("!%Y-%m-%dT%H:%M:%SZ") .. ".",
  "# Each line runs one group's pending tasks and, with --retry-class, its failed",
  "# tasks whose last class the retry policy would retry; other failures stay",
  "# failed. A run that leaves failures (exit 4) does not stop the next.",
}
for _, pick in ipairs(selection) do
  local slice = m.slice(where, pick.group)
  local keys = {}
  for k in pairs(slice) do keys[#keys + 1] = k end
  table.sort(keys)
  local cmd = { q(shepherd.executable), "run", q(info.path), "--db", q(info.db) }
  for _, k in ipairs(keys) do
    local v = slice[k]
    local text = type(v) == "table" and table.concat((function()
      local t = {}
      for i, x in ipairs(v) do t[i] = tostring(x) end
      return t
    end)(), ",") or tostring(v)
    cmd[#cmd + 1] = "--where " .. q(k .. "=" .. text)
  end
  local retry, kept, rmessage = split_failures(pick.group)
  if not retry then return m.fail(kept, rmessage) end
  if #retry > 0 then cmd[#cmd + 1] = "--retry-class " .. q(table.concat(retry, ",")) end
  pick.retry_classes = shepherd.json.array(retry)
  pick.left_failed = shepherd.json.array(kept)
  local comment = string.format("# %s: %s (priority %d, %d unfinished)", m.describe(pick.group), pick.reason,
                                pick.priority, pick.tasks)
  if #kept > 0 then
    comment = comment .. "; failed " .. table.concat(kept, ", ") .. " left alone: the retry policy would not retry "
              .. (#kept > 1 and "them" or "it")
  end
  lines[#lines + 1] = ""
  lines[#lines + 1] = comment
  lines[#lines + 1] = table.concat(cmd, " ")
end
if #selection == 0 then lines[#lines + 1] = "# nothing to re-test" end
local text = table.concat(lines, "\n") .. "\n"

local tmp = opts.script .. ".tmp"
local f, ferr = io.open(tmp, "w")
if not f then return m.fail("IO_ERROR", ferr) end
f:write(text)
f:close()
local moved, merr = os.rename(tmp, opts.script)
if not moved then return m.fail("IO_ERROR", merr) end
os.execute("chmod +x " .. q(opts.script))

if shepherd.json_output then
  print(shepherd.json.encode{ suite = info.name, script = opts.script, selection = shepherd.json.array(selection) })
else
  print(string.format("%s: %d groups to re-test", opts.script, #selection))
  for _, pick in ipairs(selection) do
    local left = #pick.left_failed > 0 and " (failed left alone: " .. table.concat(pick.left_failed, ", ") .. ")" or ""
    print("  " .. m.describe(pick.group) .. " — " .. pick.reason .. left)
  end
end
return 0
