-- Loop detection for multi-turn tasks: require("shepherd.loops").
--
-- A model stuck in a loop asks for the same tool call (name and arguments)
-- again and again, or gives the same answer text. Feed every answer to a
-- watch; it reports the loop when the same step comes `repeats` times in a row:
--
--   local loops = require("shepherd.loops")
--   local watch = loops.new{ repeats = 3 }
--   local r = llm:chat{ messages = messages, tools = tools }
--   local stuck, why = watch:observe(r)
--   if stuck then return nil, "loop" end  -- why: 'tool call search{"q":"x"} repeated 3 times in a row'
--
-- What counts as the same step (loops.signature):
--   * an answer with tool calls is its calls, whatever its text says; several
--     calls are one step, their order ignored;
--   * arguments compare as JSON values: key order and whitespace do not matter
--     (shepherd.json decodes them and encodes them again, keys sorted); a null
--     member compares as an absent one; arguments that are not JSON compare as
--     raw text;
--   * otherwise the answer text, surrounding whitespace ignored;
--   * an answer with neither (no calls, empty or blank text) is no step: it
--     is never a repeat, and it ends the run.
local json = shepherd.json

local M = {}

local SHOWN_BYTES = 200  -- how much of a tool call `why` quotes

---@class shepherd.loops.Answer
---@field content? string|table  the assistant text (or OpenAI content parts)
---@field tool_calls? table      OpenAI tool calls: { {id, type, ["function"] = {name, arguments}}, ... }
---@field message? table         the assistant message, read when the fields above are absent

---@class shepherd.loops.Watch
---@field repeats integer   steps in a row that make a loop
---@field count integer     length of the current run of identical steps (0 before any step)
---@field last string|nil   signature of the current run
local Watch = {}
Watch.__index = Watch

-- Raises at the caller `level` frames above the function that calls this
-- (1: whoever called that function).
local function bad_argument(fn, message, level)
  error(string.format("bad argument #1 to '%s' (%s)", fn, message), level + 2)
end

-- Surrounding whitespace removed, in linear time (no backtracking pattern).
local function trim(s)
  local from = s:match("^%s*()")
  return s:match(".*%S", from) or ""
end

-- The first `n` bytes of `s`, cut at a UTF-8 character boundary.
local function shorten(s, n)
  if #s <= n then return s end
  while n > 0 and s:byte(n + 1) >= 0x80 and s:byte(n + 1) < 0xC0 do n = n - 1 end
  return s:sub(1, n) .. "..."
end

-- Arguments as canonical JSON text, or as given when they are not JSON;
-- nil and the problem for arguments of the wrong type.
local function canonical_arguments(args)
  if args == nil then return "" end
  if type(args) == "table" then
    local ok, text = pcall(json.encode, args)
    if ok then return text end
    return nil, "is a table that cannot be encoded as JSON"
  end
  if type(args) ~= "string" then return nil, "must be a JSON string, got " .. type(args) end
  local value = json.decode(args)
  if value == nil then return args end  -- not JSON (or a bare null): raw text
  local ok, text = pcall(json.encode, value)
  return ok and text or args
end

-- The text of `content` (a string or OpenAI content parts), trimmed; nil and
-- the problem for content of the wrong type.
local function answer_text(content)
  if content == nil then return "" end
  if type(content) == "string" then return trim(content) end
  if type(content) ~= "table" then return nil, "content must be a string or a list of parts, got " .. type(content) end
  local parts = {}
  for _, part in ipairs(content) do
    if type(part) == "table" and type(part.text) == "string" then parts[#parts + 1] = part.text end
  end
  return trim(table.concat(parts))
end

-- The step an answer is, as a string (the same string for the same step), or
-- nil for an answer that is no step. Misuse raises in the name of `fn`.
local function signature(answer, fn)
  if type(answer) ~= "table" then
    bad_argument(fn, "the answer llm:chat returned, or a message table, expected, got " .. type(answer), 2)
  end
  if answer.tool_calls == nil and answer.content == nil and type(answer.message) == "table" then
    answer = answer.message
  end
  local calls = answer.tool_calls
  if calls ~= nil and type(calls) ~= "table" then
    bad_argument(fn, "tool_calls must be a list, got " .. type(calls), 2)
  end
  if calls and #calls > 0 then
    local keys = {}
    for i, call in ipairs(calls) do
      local f = type(call) == "table" and call["function"]
      if type(f) ~= "table" or type(f.name) ~= "string" then
        bad_argument(fn, "tool_calls[" .. i .. "] has no function name", 2)
      end
      local args, problem = canonical_arguments(f.arguments)
      if not args then bad_argument(fn, "tool_calls[" .. i .. "].function.arguments " .. problem, 2) end
      keys[i] = f.name .. args
    end
    table.sort(keys)
    return (#keys == 1 and "tool call " or "tool calls ") .. table.concat(keys, ", ")
  end
  local text, problem = answer_text(answer.content)
  if not text then bad_argument(fn, problem, 2) end
  if text == "" then return nil end
  return "text: " .. text
end

--- The signature of one answer: equal strings are the same step.
--- `'tool call search{"q":"x"}'`, `'tool calls a{}, b{"n":1}'` (sorted), `'text: <trimmed text>'`,
--- or nil for an answer with no tool call and no text.
---@param answer shepherd.loops.Answer
---@return string|nil
function M.signature(answer)
  local sig = signature(answer, "signature")  -- not a tail call: error levels count this frame
  return sig
end

--- A new watch over one conversation.
---@param options? { repeats?: integer }  repeats: identical steps in a row that make a loop (default 3, >= 2)
---@return shepherd.loops.Watch
function M.new(options)
  if options == nil then options = {} end
  if type(options) ~= "table" then bad_argument("new", "options table expected, got " .. type(options), 1) end
  for key in pairs(options) do
    if key ~= "repeats" then bad_argument("new", "unknown option '" .. tostring(key) .. "' (known: repeats)", 1) end
  end
  local repeats = options.repeats
  if repeats == nil then repeats = 3 end
  if type(repeats) ~= "number" or repeats ~= math.floor(repeats) or repeats < 2 or repeats == math.huge then
    local got = type(repeats) == "number" and tostring(repeats) or type(repeats)
    bad_argument("new", "repeats must be an integer >= 2, got " .. got, 1)
  end
  return setmetatable({ repeats = repeats, count = 0, last = nil }, Watch)
end

--- Records one answer. Returns true and why once the same step has come
--- `repeats` times in a row (and on every further repeat), false otherwise.
---@param answer shepherd.loops.Answer  the table llm:chat returned, or a message table
---@return boolean stuck
---@return string|nil why
function Watch:observe(answer)
  if getmetatable(self) ~= Watch then
    error("bad self to 'observe' (call it as watch:observe(answer))", 2)
  end
  local sig = signature(answer, "observe")
  if sig == nil then
    self.count, self.last = 0, nil
    return false, nil
  end
  if sig == self.last then
    self.count = self.count + 1
  else
    self.count, self.last = 1, sig
  end
  if self.count < self.repeats then return false, nil end
  if sig:find("^text: ") then
    return true, string.format("the same answer text repeated %d times", self.count)
  end
  return true, string.format("%s repeated %d times in a row", shorten(sig, SHOWN_BYTES), self.count)
end

--- Forgets the steps seen so far (for a conversation that starts over).
function Watch:reset()
  if getmetatable(self) ~= Watch then
    error("bad self to 'reset' (call it as watch:reset())", 2)
  end
  self.count, self.last = 0, nil
end

return M
