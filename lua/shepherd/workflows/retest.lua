-- shepherd retest SUITE --script FILE [--where dim=v,...] [--completion-threshold X]
--                       [--failure-threshold Y] [--db PATH] [--json]
-- Writes an executable shell script of `shepherd run SUITE --where … --retry-failed`
-- lines, one per group the retest policy selects, each commented with its
-- reason; runs nothing. Running the script completes the work.
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

-- POSIX shell quoting: everything inside single quotes, ' as '\''.
local function q(text) return "'" .. tostring(text):gsub("'", "'\\''") .. "'" end

local lines = {
  "#!/bin/sh",
  "# Re-tests for suite " .. info.name .. ", written by `shepherd retest` at " .. os.date("!%Y-%m-%dT%H:%M:%SZ") .. ".",
  "# Each line runs one group's unfinished tasks (failed ones included); a run",
  "# that leaves failures (exit 4) does not stop the next.",
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
  cmd[#cmd + 1] = "--retry-failed"
  lines[#lines + 1] = ""
  lines[#lines + 1] = string.format("# %s: %s (priority %d, %d unfinished)", m.describe(pick.group), pick.reason,
                                    pick.priority, pick.tasks)
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
  for _, pick in ipairs(selection) do print("  " .. m.describe(pick.group) .. " — " .. pick.reason) end
end
return 0
