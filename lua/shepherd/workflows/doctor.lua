-- shepherd doctor SUITE [--probe] [--db PATH] [--json]
-- Is this suite ready to run? The suite validates; each policy loads and its
-- selftest() passes; every key's variable is set (its value is never shown);
-- the store opens, its schema is current and PRAGMA integrity_check is ok;
-- there is free disk space beside the store and its logs/ directory is
-- writable; with --probe (it costs tokens), one minimal request per
-- (key, model) says how each key and model answers: latency, HTTP status,
-- the class classify.lua gives it, the model that answered.
-- Exit 0 when every check is ok, 1 otherwise.
-- A packaged workflow: copy it and edit it to make your own checks; the
-- checks themselves are shepherd.doctor_suite (or s:doctor on a suite handle).
local args = require("shepherd.args")

local opts = args.parse(shepherd.args)
if not opts[1] then
  io.stderr:write("shepherd: error USAGE: a suite file is required\n")
  return 2
end

-- doctor_suite rather than shepherd.suite: a suite that does not load is a
-- failed check to report beside the others, not the end of the report.
local checks, info, message = shepherd.doctor_suite(opts[1], { db = opts.db, probe = opts.probe == true })
if not checks then
  io.stderr:write("shepherd: error ", tostring(info), ": ", tostring(message), "\n")
  return 1
end

local healthy = true
local failing = 0
for _, c in ipairs(checks) do
  if not c.ok then
    healthy = false
    failing = failing + 1
  end
end

if opts.json or shepherd.json_output then
  print(shepherd.json.encode{ suite = info.suite, db = info.db ~= "" and info.db or nil, ok = healthy,
                              checks = shepherd.json.array(checks) })
  return healthy and 0 or 1
end

local width = 0
for _, c in ipairs(checks) do width = math.max(width, #c.name) end
for _, c in ipairs(checks) do
  local mark = not c.ok and "FAIL" or c.warning and "warn" or "ok"
  print(string.format("%-4s  %-" .. width .. "s  %s", mark, c.name, c.detail))
end
if healthy then
  print(info.suite .. ": healthy")
else
  print(string.format("%s: %d of %d checks failed", info.suite, failing, #checks))
end
return healthy and 0 or 1
