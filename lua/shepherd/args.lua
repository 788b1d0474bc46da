---@meta shepherd.args
-- Command-line arguments for workflows: positional words and --name=value
-- options (a repeated option collects a list), --flag alone is true.
--   local opts = require("shepherd.args").parse(shepherd.args, { repeated = { where = true } })
--   opts[1], opts.db, opts.where (a list), opts.json (true)
local M = {}

-- Options that take a value, as `--name value` as well as `--name=value`.
local VALUED = { db = true, by = true, where = true, script = true, every = true, rounds = true,
                 completion_threshold = true, failure_threshold = true }

---@param args string[]
---@param spec? { repeated?: table<string, boolean>, valued?: table<string, boolean> }
---@return table
function M.parse(args, spec)
  if type(args) ~= "table" then error("bad argument #1 to 'parse' (table expected, got " .. type(args) .. ")", 2) end
  local repeated = spec and spec.repeated or {}
  local valued = setmetatable(spec and spec.valued or {}, { __index = VALUED })
  local out = {}
  local i = 1
  while i <= #args do
    local a = args[i]
    local name, value = a:match("^%-%-([%w_-]+)=(.*)$")
    if not name then
      name = a:match("^%-%-([%w_-]+)$")
      local key = name and name:gsub("-", "_")
      if name and (repeated[key] or valued[key]) and args[i + 1] ~= nil then
        value = args[i + 1]
        i = i + 1
      elseif name then
        value = true
      end
    end
    if name then
      name = name:gsub("-", "_")
      if repeated[name] then
        out[name] = out[name] or {}
        out[name][#out[name] + 1] = value
      else
        out[name] = value
      end
    else
      out[#out + 1] = a
    end
    i = i + 1
  end
  return out
end

--- `--where dim=v1,v2` clauses as a where table: { dim = { "v1", "v2" } }.
---@param clauses? string[]
---@return table<string, string[]>|nil
function M.where(clauses)
  if not clauses or #clauses == 0 then return nil end
  local where = {}
  for _, clause in ipairs(clauses) do
    local dim, values = clause:match("^([^=]+)=(.+)$")
    if not dim then error("--where " .. clause .. ": expected dim=value[,value...]", 2) end
    local list = where[dim] or {}
    for v in (values .. ","):gmatch("([^,]*),") do
      if v ~= "" then list[#list + 1] = v end
    end
    where[dim] = list
  end
  return where
end

return M
