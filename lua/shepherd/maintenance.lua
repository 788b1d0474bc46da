-- Shared steps of the packaged maintenance workflows (maintain, retest):
-- open the suite from the command line, analyse its groups, and select the
-- groups the retest policy picks. Workflows of your own can use it too.
local M = {}

local args = require("shepherd.args")

-- The stage of an error code, as the host's errors name it.
local function stage_of(code)
  if code == "USAGE" then return "cli" end
  if code:match("^SUITE_") then return "config" end
  if code:match("^STORE_") or code == "IO_ERROR" then return "storage" end
  if code:match("^POLICY_") then return "policy" end
  return "execution"
end

--- Reports an error as every command does — "shepherd: error CODE: message"
--- on stderr, or with --json the error object on stdout — and returns the
--- exit code for it.
function M.fail(code, message)
  code, message = tostring(code), tostring(message)
  local exit = 1
  if code == "USAGE" or code == "SUITE_NOT_FOUND" or code == "SUITE_INVALID" or code == "SUITE_SYNTAX" then exit = 2 end
  if shepherd.json_output then
    print(shepherd.json.encode{ status = "error", exit_code = exit, timestamp = os.date("!%Y-%m-%dT%H:%M:%SZ"),
                                error = { code = code, message = message, stage = stage_of(code), details = {} } })
  else
    io.stderr:write("shepherd: error ", code, ": ", message, "\n")
  end
  return exit
end

--- The command line of a packaged workflow: opts, the suite handle, where.
function M.open()
  local opts = args.parse(shepherd.args, { repeated = { where = true } })
  if not opts[1] then return nil, M.fail("USAGE", "a suite file is required") end
  local where = args.where(opts.where)
  local s, code, message = shepherd.suite(opts[1], { db = opts.db })
  if not s then return nil, M.fail(code, message) end
  -- A mistyped --where is a usage error, before any work.
  local ok, err = pcall(s.check_where, s, where)
  if not ok then return nil, M.fail("USAGE", tostring(err):gsub("^bad argument #1 to 'check_where' %((.*)%)$", "%1")) end
  return s, opts, where
end

--- A number option in [0, 1], or nil; raises a usage error otherwise.
function M.rate(opts, name)
  local text = opts[name]
  if text == nil then return nil end
  local x = tonumber(text)
  if not x or x < 0 or x > 1 then
    error({ code = "USAGE", message = "--" .. name:gsub("_", "-") .. " must be a number between 0 and 1" })
  end
  return x
end

--- where ∧ group: the group's own values replace where's for its dims.
function M.slice(where, group)
  local out = {}
  for k, v in pairs(where or {}) do out[k] = v end
  for k, v in pairs(group or {}) do out[k] = v end
  return out
end

--- "model=m-a prompt_type=cot", for humans and shell lines.
function M.describe(group)
  local keys = {}
  for k in pairs(group) do keys[#keys + 1] = k end
  table.sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do parts[#parts + 1] = k .. "=" .. tostring(group[k]) end
  return #parts > 0 and table.concat(parts, " ") or "(all)"
end

--- Each group's failure pattern: "high failure rate", "low completion", "both" or nil.
function M.pattern(g, config)
  local low = g.completion_rate < config.minimum_completion_rate
  local high = g.failure_rate > config.maximum_failure_rate
  if low and high then return "both" end
  if high then return "high failure rate" end
  if low then return "low completion" end
  return nil
end

return M
