-- shepherd incomplete SUITE [--by DIMS] [--where dim=v,...] [--db PATH] [--json]
-- Every task that is not done: its cell, state, attempts, last class and
-- error; with --by, how many are pending, failed and stale per group.
-- A packaged workflow: copy it and edit it to make your own.
local args = require("shepherd.args")
local opts = args.parse(shepherd.args, { repeated = { where = true } })
local where = args.where(opts.where)
local by = nil
if opts.by then
  by = {}
  for dim in (opts.by .. ","):gmatch("([^,]*),") do
    if dim ~= "" then by[#by + 1] = dim end
  end
end

local s, code, message = shepherd.suite(opts[1], { db = opts.db })
if not s then
  io.stderr:write("shepherd: error ", code, ": ", message, "\n")
  return code == "STORE_LOCKED" and 1 or 2
end
local valid, why = pcall(s.check_where, s, where)
if not valid then
  io.stderr:write("shepherd: error USAGE: ", (tostring(why):gsub("^bad argument #1 to 'check_where' %((.*)%)$", "%1")), "\n")
  return 2
end

-- A group's values, model first (a task row carries its cell's label, as logs write it).
local function label(cell)
  local keys = {}
  for k in pairs(cell) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b)
    if a == "model" or b == "model" then return a == "model" end
    return a < b
  end)
  local parts = {}
  for _, k in ipairs(keys) do
    local v = cell[k]
    parts[#parts + 1] = type(v) == "table" and (v.name or v.id or shepherd.json.encode(v)) or tostring(v)
  end
  return table.concat(parts, "/")
end

if by then
  local groups, gcode, gmessage = s:status{ by = by, where = where }
  if not groups then
    io.stderr:write("shepherd: error ", gcode, ": ", gmessage, "\n")
    return 1
  end
  local rows = {}
  for _, g in ipairs(groups) do
    local incomplete = g.pending + g.failed + g.stale
    if incomplete > 0 then
      rows[#rows + 1] = { group = g.group, incomplete = incomplete, pending = g.pending, failed = g.failed,
                          stale = g.stale, total = g.total, failures = g.failures }
    end
  end
  if opts.json then
    print(shepherd.json.encode{ suite = s:name(), by = by, groups = shepherd.json.array(rows) })
    return 0
  end
  for _, r in ipairs(rows) do
    local classes = {}
    for cls, n in pairs(r.failures) do classes[#classes + 1] = cls .. "=" .. n end
    table.sort(classes)
    print(string.format("%-40s %6d incomplete (%d pending, %d failed, %d stale of %d)  %s", label(r.group),
                        r.incomplete, r.pending, r.failed, r.stale, r.total, table.concat(classes, " ")))
  end
  if #rows == 0 then print("every task is done") end
  return 0
end

local list = {}
local iter, tcode, tmessage = s:tasks{ state = { "pending", "failed", "stale" }, where = where }
if not iter then
  io.stderr:write("shepherd: error ", tcode, ": ", tmessage, "\n")
  return 1
end
-- Printed as they come: a million-task store may list a hundred thousand.
local n = 0
for t in iter do
  n = n + 1
  local state = t.stale and "stale" or t.state
  if opts.json then
    list[n] = { task = t.id, cell = t.cell, state = state, attempts = t.attempts, class = t.class, error = t.error }
  else
    local err = t.error and (t.error.code .. ": " .. (t.error.message or "")) or ""
    print(string.format("%-40s %-7s %3d attempts  %-16s %s", t.label, state, t.attempts, t.class or "-", err))
  end
end
if opts.json then
  print(shepherd.json.encode{ suite = s:name(), count = n, tasks = shepherd.json.array(list) })
  return 0
end
io.stderr:write(n, " tasks not done\n")
return 0
