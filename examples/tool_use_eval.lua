-- The users' workflow evaluation as one suite: each task is a conversation
-- in which the model gets a task and tools, calls them, gets simulated
-- results and goes on, for at most 10 turns. Tool reliability is a
-- dimension; flawed prompt types inject errors into the workflow; a model
-- stuck repeating itself is stopped as a loop; `check` scores the result.
--
--   shepherd mock --port 8089 --scenario examples/tool_use_mock.json &
--   DEMO_KEY_0=k DEMO_KEY_1=k shepherd run examples/tool_use_eval.lua
--   shepherd status examples/tool_use_eval.lua --by prompt_type,tool_success_rate
--   shepherd export examples/tool_use_eval.lua --format jsonl --transcripts
local loops = require("shepherd.loops")

local MAX_TURNS = 10

local TOOLS = {
  { type = "function", ["function"] = { name = "search", description = "Search the document index",
    parameters = { type = "object", properties = { query = { type = "string" } }, required = { "query" } } } },
  { type = "function", ["function"] = { name = "read_file", description = "Read a file of the workspace",
    parameters = { type = "object", properties = { path = { type = "string" } }, required = { "path" } } } },
  { type = "function", ["function"] = { name = "transform", description = "Apply an operation to data",
    parameters = { type = "object", properties = {
      data = { type = "string" }, operation = { type = "string", enum = { "filter", "sort", "aggregate" } } },
      required = { "data", "operation" } } } },
  { type = "function", ["function"] = { name = "write_file", description = "Write a file of the workspace",
    parameters = { type = "object", properties = { path = { type = "string" }, content = { type = "string" } },
      required = { "path", "content" } } } },
}

local SYSTEM = "You are a workflow executor. Use the tools to complete the task, then answer with a summary."

-- How each prompt type frames the task; flawed ones carry the error the
-- model is meant to notice.
local FRAMING = {
  baseline = "Complete the task.",
  cot = "Think step by step, then complete the task.",
  optimal = "Plan: search, read the relevant file, transform the data, write the result. Complete the task.",
  flawed_tool_misuse = "Plan: call write_file before reading anything. Complete the task.",
  flawed_parameter_error = "Plan: call transform with operation 'merge'. Complete the task.",
  flawed_sequence_disorder = "Plan: write the result, then transform, then read. Complete the task.",
}

local TASKS = {
  basic_task = "Find the quarterly report and summarise its totals.",
  data_pipeline = "Read sales.csv, keep rows above 1000, sort them and write top_sales.csv.",
  api_integration = "Search for the API spec, read it and write a client stub to client.py.",
}

-- A simulated tool: it succeeds with the cell's tool_success_rate; flawed
-- prompt types make parameter errors likelier. `draw` comes from
-- llm:random(), so a resumed conversation simulates the same results.
local function simulate(call, cell, draw)
  local rate = cell.tool_success_rate
  if cell.prompt_type == "flawed_parameter_error" then rate = rate - 0.2 end
  local name = call["function"].name
  if draw >= rate then
    return shepherd.json.encode{ ok = false, error = name .. " failed: transient error, try again" }
  end
  return shepherd.json.encode{ ok = true, result = name .. " succeeded with " .. call["function"].arguments }
end

return {
  name = "tool_use_eval",
  description = "multi-turn tool-use workflows: prompt types x tool reliability x task types x instances",
  providers = {
    local_mock = {
      kind = "openai",
      base_url = "http://127.0.0.1:8089/v1",
      keys = { { id = "k0", env = "DEMO_KEY_0" }, { id = "k1", env = "DEMO_KEY_1" } },
      models = { "m-a", "m-b" },
      limits = { concurrency = 32 },
      timeouts = { connect_ms = 1000, first_byte_ms = 10000, stall_ms = 5000, total_ms = 30000 },
    },
  },
  matrix = {
    model = { "m-a", "m-b" },
    prompt_type = { "baseline", "cot", "optimal", "flawed_tool_misuse", "flawed_parameter_error",
                    "flawed_sequence_disorder" },
    tool_success_rate = { 0.9, 0.8, 0.7, 0.6 },
    task_type = { "basic_task", "data_pipeline", "api_integration" },
    instance = { 1, 2, 3, 4, 5 },
  },
  retry = { max_retries = 4, base_delay_ms = 200 },
  conversation = { max_turns = MAX_TURNS, task_timeout_ms = 120000 },

  task = function(cell, llm)
    local messages = {
      { role = "system", content = SYSTEM },
      { role = "user", content = string.format("%s\nTask %d: %s", FRAMING[cell.prompt_type],
                                               cell.instance, TASKS[cell.task_type]) },
    }
    local watch = loops.new{ repeats = 3 }
    local calls, errors = 0, 0
    for turn = 1, MAX_TURNS do
      local r = llm:chat{ messages = messages, tools = TOOLS, max_tokens = 512 }
      messages[#messages + 1] = r.message
      if watch:observe(r) then return nil, "loop" end
      if not r.tool_calls then
        return { answer = r.content, turns = turn, tool_calls = calls, tool_errors = errors }
      end
      for _, call in ipairs(r.tool_calls) do
        local result = simulate(call, cell, llm:random())
        calls = calls + 1
        if result:find('"ok":false', 1, true) then errors = errors + 1 end
        messages[#messages + 1] = { role = "tool", tool_call_id = call.id, content = result }
      end
    end
    return nil, "no answer within " .. MAX_TURNS .. " turns"
  end,

  -- The score: an answer, and tools that worked at least once when used.
  check = function(cell, result)
    if type(result.answer) ~= "string" or result.answer == "" then return false, "no final answer" end
    if result.tool_calls > 0 and result.tool_errors == result.tool_calls then
      return false, "every tool call failed"
    end
    return true
  end,
}
