-- Table-driven cases for lua/shepherd/loops.lua, run by tests/cpp/loops_test.cpp
-- in a sandbox, the module loaded with require("shepherd.loops").
--
-- watch:     { name, options = loops.new's argument (nil: the defaults),
--              steps = { { answer = ..., stuck = bool, count = n, why = "..." } | { reset = true, count = 0 } } }
--            a step's `stuck` defaults to false; `why` and `count` are checked when given.
-- signature: { name, a = answer, b = answer, same = bool } or { name, answer = ..., expect = string | false (nil) }
-- errors:    { name, code = Lua (with `loops` in scope), error = the message, without file:line }

-- An answer as llm:chat returns it.
local function chat(content, tool_calls)
  return {
    content = content,
    tool_calls = tool_calls,
    message = { role = "assistant", content = content, tool_calls = tool_calls },
    finish_reason = tool_calls and "tool_calls" or "stop",
    usage = { prompt_tokens = 10, completion_tokens = 5, total_tokens = 15 },
    model = "m-a",
  }
end

local n = 0
local function call(name, arguments)
  n = n + 1
  return { id = "call_" .. n, type = "function", ["function"] = { name = name, arguments = arguments } }
end

-- An answer with these tool calls (each { name, arguments }) and no text.
local function calls(...)
  local list = {}
  for i, c in ipairs({ ... }) do list[i] = call(c[1], c[2]) end
  return chat(nil, list)
end

local function text(s) return chat(s, nil) end

local search_x = { "search", '{"q":"x"}' }

return {
  watch = {
    { name = "the same call three times is stuck at the third, not before",
      steps = {
        { answer = calls(search_x), count = 1 },
        { answer = calls(search_x), count = 2 },
        { answer = calls(search_x), count = 3, stuck = true,
          why = 'tool call search{"q":"x"} repeated 3 times in a row' },
        { answer = calls(search_x), count = 4, stuck = true,
          why = 'tool call search{"q":"x"} repeated 4 times in a row' },
      } },
    { name = "different arguments are different calls",
      steps = {
        { answer = calls({ "search", '{"q":"x"}' }), count = 1 },
        { answer = calls({ "search", '{"q":"y"}' }), count = 1 },
        { answer = calls({ "search", '{"q":"z"}' }), count = 1 },
        { answer = calls({ "search", '{"q":"x","page":2}' }), count = 1 },
      } },
    { name = "a different tool with the same arguments is a different call",
      steps = {
        { answer = calls({ "search", '{"q":"x"}' }) },
        { answer = calls({ "fetch", '{"q":"x"}' }), count = 1 },
        { answer = calls({ "search", '{"q":"x"}' }), count = 1 },
      } },
    { name = "key order, whitespace and escapes do not make another call",
      steps = {
        { answer = calls({ "search", '{"q":"\\u4e2d\\u6587","opts":{"a":1,"b":[1,2]}}' }), count = 1 },
        { answer = calls({ "search", '{ "opts" : { "b" : [ 1, 2 ], "a" : 1.0 },\n  "q" : "中文" }' }), count = 2 },
        { answer = calls({ "search", '\t{"opts":{"b":[1,2],"a":1},"q":"中文"}  ' }), count = 3, stuck = true,
          why = 'tool call search{"opts":{"a":1,"b":[1,2]},"q":"中文"} repeated 3 times in a row' },
      } },
    { name = "interleaved calls are not in a row",
      steps = {
        { answer = calls({ "search", '{"q":"a"}' }), count = 1 },
        { answer = calls({ "search", '{"q":"b"}' }), count = 1 },
        { answer = calls({ "search", '{"q":"a"}' }), count = 1 },
        { answer = calls({ "search", '{"q":"b"}' }), count = 1 },
        { answer = calls({ "search", '{"q":"a"}' }), count = 1 },
        { answer = calls({ "search", '{"q":"b"}' }), count = 1 },
      } },
    { name = "the same text three times is stuck",
      steps = {
        { answer = text("I will search again."), count = 1 },
        { answer = text("I will search again."), count = 2 },
        { answer = text("I will search again."), count = 3, stuck = true,
          why = "the same answer text repeated 3 times" },
      } },
    { name = "surrounding whitespace does not make another text",
      steps = {
        { answer = text("Let me check.\n"), count = 1 },
        { answer = text("  Let me check."), count = 2 },
        { answer = text("\n\tLet me check.  \n"), count = 3, stuck = true },
      } },
    { name = "whitespace inside the text does",
      steps = {
        { answer = text("Let me check."), count = 1 },
        { answer = text("Let me  check."), count = 1 },
        { answer = text("Let me\ncheck."), count = 1 },
      } },
    { name = "nil, empty and blank answers are never a repeat",
      steps = {
        { answer = chat(nil, nil), count = 0 },
        { answer = chat(nil, nil), count = 0 },
        { answer = text(""), count = 0 },
        { answer = text("  \n "), count = 0 },
        { answer = chat(nil, {}), count = 0 },
        { answer = {}, count = 0 },
      } },
    { name = "an empty answer ends the run",
      steps = {
        { answer = calls(search_x), count = 1 },
        { answer = calls(search_x), count = 2 },
        { answer = chat(nil, nil), count = 0 },
        { answer = calls(search_x), count = 1 },
        { answer = calls(search_x), count = 2 },
      } },
    { name = "a tool call answer is its calls, whatever its text",
      steps = {
        { answer = chat("Searching.", { call("search", '{"q":"x"}') }), count = 1 },
        { answer = chat("Searching once more.", { call("search", '{"q":"x"}') }), count = 2 },
        { answer = chat(nil, { call("search", '{"q":"x"}') }), count = 3, stuck = true },
      } },
    { name = "parallel calls in another order are the same step",
      steps = {
        { answer = calls({ "search", '{"q":"x"}' }, { "fetch", '{"url":"u"}' }), count = 1 },
        { answer = calls({ "fetch", '{"url":"u"}' }, { "search", '{"q":"x"}' }), count = 2 },
        { answer = calls({ "search", '{"q": "x"}' }, { "fetch", '{ "url": "u" }' }), count = 3, stuck = true,
          why = 'tool calls fetch{"url":"u"}, search{"q":"x"} repeated 3 times in a row' },
      } },
    { name = "one of the parallel calls alone is another step",
      steps = {
        { answer = calls({ "search", '{"q":"x"}' }, { "fetch", '{"url":"u"}' }), count = 1 },
        { answer = calls({ "search", '{"q":"x"}' }), count = 1 },
        { answer = calls({ "search", '{"q":"x"}' }, { "search", '{"q":"x"}' }), count = 1 },
      } },
    { name = "reset starts the count again",
      steps = {
        { answer = calls(search_x), count = 1 },
        { answer = calls(search_x), count = 2 },
        { reset = true, count = 0 },
        { answer = calls(search_x), count = 1 },
        { answer = calls(search_x), count = 2 },
        { answer = calls(search_x), count = 3, stuck = true },
        { reset = true, count = 0 },
        { answer = calls(search_x), count = 1 },
      } },
    { name = "repeats = 2 is stuck at the second",
      options = { repeats = 2 },
      steps = {
        { answer = text("Done?"), count = 1 },
        { answer = text("Done?"), count = 2, stuck = true, why = "the same answer text repeated 2 times" },
      } },
    { name = "repeats = 5 waits for the fifth",
      options = { repeats = 5 },
      steps = {
        { answer = calls(search_x) }, { answer = calls(search_x) }, { answer = calls(search_x) },
        { answer = calls(search_x), count = 4 },
        { answer = calls(search_x), count = 5, stuck = true },
      } },
    { name = "a message table is an answer too",
      steps = {
        { answer = { role = "assistant", tool_calls = { call("search", '{"q":"x"}') } }, count = 1 },
        { answer = { role = "assistant", content = "", tool_calls = { call("search", '{"q":"x"}') } }, count = 2 },
        { answer = { message = { role = "assistant", tool_calls = { call("search", '{"q":"x"}') } } }, count = 3,
          stuck = true },
      } },
    { name = "arguments that are not JSON compare as raw text",
      steps = {
        { answer = calls({ "search", "q=x" }), count = 1 },
        { answer = calls({ "search", "q=x" }), count = 2 },
        { answer = calls({ "search", "q = x" }), count = 1 },
        { answer = calls({ "search", '{"q":"x"' }), count = 1 },
        { answer = calls({ "search", '{"q":"x"' }), count = 2 },
        { answer = calls({ "search", '{"q": "x"' }), count = 1 },
      } },
    { name = "a long call is quoted shortened",
      options = { repeats = 2 },
      steps = {
        { answer = calls({ "write", '{"text":"' .. string.rep("ab", 200) .. '"}' }) },
        { answer = calls({ "write", '{"text":"' .. string.rep("ab", 200) .. '"}' }), stuck = true,
          why = 'tool call write{"text":"' .. string.rep("ab", 88) .. '... repeated 2 times in a row' },
      } },
  },

  signature = {
    { name = "a tool call", answer = calls(search_x), expect = 'tool call search{"q":"x"}' },
    { name = "parallel calls, sorted", answer = calls({ "b", "{}" }, { "a", '{"n":1}' }),
      expect = 'tool calls a{"n":1}, b{}' },
    { name = "text, trimmed", answer = text("  hello \n"), expect = "text: hello" },
    { name = "nil content and no calls", answer = chat(nil, nil), expect = false },
    { name = "content parts", answer = { content = { { type = "text", text = "hel" }, { type = "text", text = "lo " } } },
      expect = "text: hello" },
    { name = "arguments given as a table", answer = { tool_calls = { { ["function"] = { name = "f", arguments = { b = 2, a = 1 } } } } },
      expect = 'tool call f{"a":1,"b":2}' },
    { name = "no arguments", answer = { tool_calls = { { ["function"] = { name = "now" } } } }, expect = "tool call now" },
    { name = "key order", a = calls({ "f", '{"a":1,"b":2}' }), b = calls({ "f", '{"b":2, "a":1}' }), same = true },
    { name = "whitespace in arguments", a = calls({ "f", '{"a":[1,2]}' }), b = calls({ "f", ' {\n "a" : [ 1 , 2 ] }\n' }),
      same = true },
    { name = "whitespace inside a string argument", a = calls({ "f", '{"q":"a b"}' }), b = calls({ "f", '{"q":"a  b"}' }),
      same = false },
    { name = "parallel order", a = calls({ "f", "{}" }, { "g", "{}" }), b = calls({ "g", "{}" }, { "f", "{}" }), same = true },
    { name = "call ids do not matter", a = calls(search_x), b = calls(search_x), same = true },
    { name = "a text is never a call", a = text('tool call search{"q":"x"}'), b = calls(search_x), same = false },
    { name = "string vs number argument", a = calls({ "f", '{"n":1}' }), b = calls({ "f", '{"n":"1"}' }), same = false },
    { name = "array vs object argument", a = calls({ "f", '{"n":[]}' }), b = calls({ "f", '{"n":{}}' }), same = false },
  },

  errors = {
    { name = "repeats 1", code = "loops.new{ repeats = 1 }",
      error = "bad argument #1 to 'new' (repeats must be an integer >= 2, got 1)" },
    { name = "repeats not an integer", code = "loops.new{ repeats = 2.5 }",
      error = "bad argument #1 to 'new' (repeats must be an integer >= 2, got 2.5)" },
    { name = "repeats a string", code = "loops.new{ repeats = '3' }",
      error = "bad argument #1 to 'new' (repeats must be an integer >= 2, got string)" },
    { name = "repeats infinite", code = "loops.new{ repeats = math.huge }",
      error = "bad argument #1 to 'new' (repeats must be an integer >= 2, got inf)" },
    { name = "options not a table", code = "loops.new(3)",
      error = "bad argument #1 to 'new' (options table expected, got number)" },
    { name = "unknown option", code = "loops.new{ repeat_count = 3 }",
      error = "bad argument #1 to 'new' (unknown option 'repeat_count' (known: repeats))" },
    { name = "observe without an answer", code = "loops.new():observe(nil)",
      error = "bad argument #1 to 'observe' (the answer llm:chat returned, or a message table, expected, got nil)" },
    { name = "observe called with a dot", code = "loops.new().observe({ content = 'x' })",
      error = "bad self to 'observe' (call it as watch:observe(answer))" },
    { name = "tool_calls not a list", code = "loops.new():observe({ tool_calls = 'search' })",
      error = "bad argument #1 to 'observe' (tool_calls must be a list, got string)" },
    { name = "a tool call without a name", code = "loops.new():observe({ tool_calls = { { type = 'function' } } })",
      error = "bad argument #1 to 'observe' (tool_calls[1] has no function name)" },
    { name = "arguments of the wrong type",
      code = "loops.signature({ tool_calls = { { ['function'] = { name = 'f', arguments = 1 } } } })",
      error = "bad argument #1 to 'signature' (tool_calls[1].function.arguments must be a JSON string, got number)" },
    { name = "content of the wrong type", code = "loops.signature({ content = true })",
      error = "bad argument #1 to 'signature' (content must be a string or a list of parts, got boolean)" },
  },
}
