-- Model-name rules shared by policies: require("shepherd.models").
--
-- same_model(requested, answered): did the model asked for answer? Providers
-- answer under other spellings of the same model (tests/corpus/providers):
--   a dated snapshot      gpt-4o-mini -> gpt-4o-mini-2024-07-18, gpt-4 -> gpt-4-0613,
--                         gemini-1.5-flash -> gemini-1.5-flash-001, claude-3-5-sonnet@20240620
--   a moving alias        mistral-large-latest -> mistral-large-2411, llama3.1 -> llama3.1:latest
--   a ".0" version        claude-sonnet-4-0 -> claude-sonnet-4-20250514
--   dots for dashes       anthropic/claude-3-5-sonnet-20241022 -> anthropic/claude-3.5-sonnet
--   family and version    anthropic/claude-sonnet-4-5 -> anthropic/claude-4.5-sonnet-20250929
--   a renamed model       M.aliases below (the provider serves the old id under a new name)
-- A different size or variant is another model: qwen2.5-72b-instruct for
-- qwen2.5-7b-instruct, gpt-4o-mini for gpt-4o.
local M = {}

-- Old id -> the names the provider now answers with. A suite's own classify
-- may add to it: require("shepherd.models").aliases["my-id"] = { "served-name" }.
M.aliases = {
  ["deepseek-chat"] = { "deepseek-v4-flash" },
  ["deepseek-reasoner"] = { "deepseek-v4-flash" },
  ["compound-beta"] = { "groq/compound" },
  ["compound-beta-mini"] = { "groq/compound-mini" },
}

-- Endings that name a snapshot or an alias of the name before them.
local version_suffixes = {
  "%-%d%d%d%d%-%d%d%-%d%d$", -- -2024-07-18
  "%-%d%d%d%d%d%d%d%d$",     -- -20241022
  "@%d%d%d%d%d%d%d%d$",      -- @20240620 (Vertex AI)
  "%-%d%d%d%d$",             -- -0613
  "%-%d%d%d$",               -- -001 (Gemini)
  "%-latest$",
  ":latest$",                -- Ollama
}

local families = { "opus", "sonnet", "haiku" }

-- One spelling for all the ways a provider writes the same model.
local function canonical(name)
  local s = name:lower():gsub("%.", "-")
  local stripped = true
  while stripped do
    stripped = false
    for _, pattern in ipairs(version_suffixes) do
      local shorter = s:gsub(pattern, "")
      if shorter ~= s and shorter ~= "" then
        s, stripped = shorter, true
      end
    end
  end
  s = s:gsub("(%d)%-0$", "%1")  -- claude-sonnet-4-0 is claude-sonnet-4
  -- Claude's family word moves around (claude-3-5-sonnet, claude-sonnet-4-5,
  -- claude-4.5-sonnet): put it last.
  if s:find("claude", 1, true) then
    for _, family in ipairs(families) do
      local without, n = s:gsub("%-" .. family, "", 1)
      if n == 1 then
        s = without .. "-" .. family
        break
      end
    end
  end
  return s
end
M.canonical = canonical

-- canonical() is a few string passes; names repeat all run long, so remember
-- them (a bounded table: a provider sending ever-new names cannot grow it).
local memo, memo_size = {}, 0
local function canonical_of(name)
  local c = memo[name]
  if c == nil then
    c = canonical(name)
    if memo_size >= 4096 then memo, memo_size = {}, 0 end
    memo[name], memo_size = c, memo_size + 1
  end
  return c
end

function M.same_model(requested, answered)
  if requested == nil or answered == nil then return false end
  if answered == requested then return true end
  local a = canonical_of(answered)
  if canonical_of(requested) == a then return true end
  for _, name in ipairs(M.aliases[requested] or {}) do
    if canonical_of(name) == a then return true end
  end
  return false
end

return M
