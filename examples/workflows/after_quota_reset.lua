-- After a model's quota resets: its tasks that failed QUOTA_EXHAUSTED go back
-- to pending and run — nothing else is touched.
--
--   shepherd script examples/workflows/after_quota_reset.lua SUITE MODEL [--db PATH]
local args = require("shepherd.args")

local opts = args.parse(shepherd.args)
local suite, model = opts[1], opts[2]
if not suite or not model then
  io.stderr:write("usage: after_quota_reset.lua SUITE MODEL [--db PATH]\n")
  return 2
end
local s, code, message = shepherd.suite(suite, { db = opts.db })
if not s then
  io.stderr:write("shepherd: error ", code, ": ", message, "\n")
  return 2
end

-- The task ids, not a class filter alone: a failure's code is what says
-- "quota", whatever class a policy gave it.
local ids = {}
for t in s:tasks{ state = "failed", where = { model = model } } do
  if t.error and t.error.code == "QUOTA_EXHAUSTED" then ids[#ids + 1] = t.id end
end
if #ids == 0 then
  print("no task of " .. model .. " failed on quota")
  return 0
end
shepherd.log.info(#ids .. " tasks of " .. model .. " failed on quota: sending them again")
local result, rcode, rmessage = s:run{ tasks = ids, retry_failed = true, where = { model = model },
                                     forget_exhausted = true }  -- the quota is back: the store's memory of it is not
if not result then
  io.stderr:write("shepherd: error ", rcode, ": ", rmessage, "\n")
  return 1
end
print(string.format("%s: %d done, %d failed, %d pending", model, result.done, result.failed, result.pending))
return result.exit
