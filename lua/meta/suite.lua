---@meta _
-- LuaCATS definitions of the suite table (host/suite/suite_loader.cpp, README
-- "A suite") and of the `llm` object a conversation's task(cell, llm) gets
-- (host/lua/api_llm.cpp, README "Conversations"). Definitions only: shepherd
-- never runs this file.
--
-- Annotate a suite file to have it completed and checked:
--
--   ---@type shepherd.Suite
--   local suite = { name = "demo", providers = { … }, matrix = { … }, request = function(cell) … end }
--   return suite
--
-- The loader refuses a field it does not know, a mistyped one and a missing
-- required one, with the file, the line and the field.

--- One cell of the matrix: dimension name -> that dimension's value (a
--- string, number, boolean or table, as the matrix lists it).
---@alias shepherd.Cell table<string, any>

--- A chat completion request body: any JSON object. The host sets `model`
--- (and `stream`, `stream_options` unless the body sets `stream` itself).
---@alias shepherd.RequestBody table<string, any>

---@class shepherd.Suite
---@field name string  letters, digits, `_ - .`, at most 100 characters; names the store (<name>.db beside the suite) and the logs
---@field description? string
---@field providers table<string, shepherd.Provider>  provider name -> provider
---@field matrix table<string, any[]>  dimension -> its values (strings, numbers, booleans or tables); the tasks are the cartesian product. A `model` dimension makes the model part of each task
---@field models? string[]  only without a `model` dimension: the models to use, in order (the model is a resource: when one is exhausted, the next is used)
---@field request? fun(cell: shepherd.Cell): shepherd.RequestBody  the request body of a single-request task; give request or task, never both
---@field task? fun(cell: shepherd.Cell, llm: shepherd.Llm): string|table|nil, string?  a conversation: returns the result (a string, or a table stored as JSON), or nil and a reason (CHECK_FAILED)
---@field conversation? shepherd.ConversationConfig  only with task
---@field check? fun(cell: shepherd.Cell, response: shepherd.CheckResponse|any): boolean?, string?  true, or false and a reason (class check_failed); with task, the second argument is the conversation's result
---@field key_for? fun(cell: shepherd.Cell, keys: string[]): string?  the id of the key this cell should prefer (keys: every key id of the suite), or nil
---@field retry? shepherd.RetryConfig
---@field maintain? shepherd.MaintainConfig
---@field policies? shepherd.PolicyPaths
---@field alerts? shepherd.AlertsConfig

---@class shepherd.Provider
---@field kind? "openai"|"azure"  default "openai": POST {base_url}/chat/completions
---@field base_url string  http(s) URL with a host and no query, e.g. https://api.openai.com/v1
---@field keys shepherd.KeySpec[]  at least one
---@field models? string[]  the models it serves (required for openai; not with azure)
---@field limits? shepherd.ProviderLimits  per (key, model)
---@field timeouts? shepherd.Timeouts
---@field stream? boolean  default true (see README "Streaming and timeouts")
---@field stream_usage? boolean  default true: asks for stream_options.include_usage
---@field breaker? shepherd.BreakerConfig
---@field headers? table<string, string>  extra request headers
---@field max_response_bytes? integer  default 8 MiB (1024 .. 1 GiB)
---@field quota_resets? string  "HH:MM" or "HH:MMZ" (UTC): when a key out of quota may be tried again
---@field api_version? string  azure only (required there)
---@field deployments? table<string, string>  azure only (required there): model -> deployment name

---@class shepherd.KeySpec
---@field id string  the name logs, the store and key_for use
---@field env string  the environment variable holding the key's value
---@field limits? shepherd.Limits  this key's own limits (over the provider's)

---@class shepherd.Limits
---@field concurrency? integer  requests in flight per (key, model), 1 .. 100000 (default 8)
---@field rpm? number  requests per minute (learned from the provider when not set)
---@field tpm? number  tokens per minute (learned from the provider when not set)

---@class shepherd.ProviderLimits: shepherd.Limits
---@field per_model? table<string, shepherd.Limits>  model -> its limits (a model this provider serves)

--- Milliseconds; 0 turns first_byte_ms or stall_ms off.
---@class shepherd.Timeouts
---@field connect_ms? integer  default 10000
---@field first_byte_ms? integer  default 300000
---@field stall_ms? integer  default 60000: silence between chunks once the body has begun
---@field total_ms? integer  default 600000

--- Circuit breakers per (key, model) slot and per endpoint (README "The key pool").
---@class shepherd.BreakerConfig
---@field failure_rate? number  default 0.5 (0.01 .. 1)
---@field min_calls? integer  default 20 (at most window)
---@field window? integer  default 100 answers
---@field window_ms? integer  default 60000
---@field open_ms? integer  default 5000
---@field max_open_ms? integer  default 60000
---@field probes? integer  default 3

---@class shepherd.ConversationConfig
---@field max_turns? integer  default 20; past it the task fails with MAX_TURNS
---@field task_timeout_ms? integer  default 1800000 (30 min); past it TASK_TIMEOUT
---@field max_open? integer  conversations open at once (default: twice the slots' total concurrency)

--- The suite's `retry` table; what a policy sees is shepherd.RetrySettings.
---@class shepherd.RetryConfig
---@field max_retries? integer  default 3
---@field base_delay_ms? integer  default 1000
---@field backoff_multiplier? number  default 2
---@field max_delay_ms? integer  default 60000
---@field jitter? boolean  default true
---@field retry_on_timeout? boolean  default true
---@field retry_on_api_error? boolean  default true
---@field retry_on_format_error? boolean  default false
---@field poison_after? integer  default 5: the same error this many times in a row fails the task as POISONED

--- The suite's `maintain` table; what a policy sees is shepherd.MaintainSettings.
---@class shepherd.MaintainConfig
---@field minimum_completion_rate? number  default 0.8
---@field maximum_failure_rate? number  default 0.3
---@field priority_models? string[]  default {}
---@field skip_models? string[]  default {}
---@field cooldown_hours? number  default 2
---@field batch_size? integer  default 5
---@field group_by? string[]  default { "model" }: dimensions `shepherd maintain` groups by

--- Paths relative to the suite; the policies not named stay the packaged ones.
---@class shepherd.PolicyPaths
---@field classify? string
---@field retry? string
---@field switch? string
---@field retest? string

--- Alert rules, counted during `run` and by s:check_alerts(): a rule fires
--- when `count` failed attempts matching it fall within its last `window_s`
--- seconds, at most once per window (an `alert` event, a log warning, and a
--- POST of {text, alert} to the webhook).
---@class shepherd.AlertsConfig
---@field rules shepherd.AlertRule[]
---@field webhook? string  http:// or https:// URL

---@class shepherd.AlertRule
---@field class? string  the attempt's class (give class, code or both)
---@field code? string  the attempt's error code
---@field window_s? number  default 300 (1 .. 7 days)
---@field count? integer  default 1
---@field name? string  default made from the match, e.g. "server_error x10/300s"

--- What check(cell, response) gets for a single request.
---@class shepherd.CheckResponse
---@field content string
---@field model string  the model that answered
---@field finish_reason string
---@field usage? table<string, any>  the provider's usage object (prompt_tokens, completion_tokens, …)

-- ---------------------------------------------------------------------------
-- Conversations: the `llm` object

--- The `llm` a conversation's task(cell, llm) gets.
---@class shepherd.Llm
---@field turn integer  the number of the latest llm:chat (0 before the first)
---@field model string  the model every turn goes to
---@field task string  the task id
---@field attempt integer  the try at this conversation (1, then 2 after --retry-failed or a model switch)
local Llm = {}

---@class shepherd.ToolFunction
---@field name? string  nil only when the provider sent none
---@field arguments string  JSON text (an object the provider sent comes as its text)

---@class shepherd.ToolCall
---@field id? string  the provider's call id (nil only when it sent none)
---@field type string  "function"
---@field ["function"] shepherd.ToolFunction

--- The assistant message, ready to append to `messages`.
---@class shepherd.AssistantMessage
---@field role "assistant"
---@field content? string  when the answer has text
---@field tool_calls? shepherd.ToolCall[]

--- What llm:chat returns (what shepherd.loops' watch:observe reads).
---@class shepherd.ChatAnswer: shepherd.loops.Answer
---@field content? string  the answer's text (nil for tool calls without text)
---@field message shepherd.AssistantMessage
---@field tool_calls? shepherd.ToolCall[]  nil when the model called none
---@field finish_reason? string
---@field usage? table<string, any>  the provider's usage object
---@field model? string  the model that answered

--- What a turn that fails for good raises in the task (`tostring`: "CODE: message").
--- Uncaught, the task fails with that code; pcall catches it.
---@class shepherd.TurnFailure
---@field code string  e.g. SERVER_ERROR, TIMEOUT, RETRY_LIMIT
---@field message string
---@field turn integer

--- Sends one chat completion through the key pool, the model rule, classify
--- and decide (a retry repeats the same turn); the host sets `model`. A turn
--- replayed from the store is answered from it without sending. Raises a
--- shepherd.TurnFailure when the turn fails for good; a body that is not a
--- JSON object raises REQUEST_INVALID. Only from task(cell, llm) itself, not
--- from a coroutine of its own.
---@param body shepherd.RequestBody
---@return shepherd.ChatAnswer
function Llm:chat(body) end

--- Like math.random, from a generator seeded by the task id and the
--- conversation's attempt (a resumed conversation draws the same numbers):
--- no argument: [0, 1); m: 1 .. m; m, n: m .. n.
---@param m? integer
---@param n? integer
---@return number
function Llm:random(m, n) end
