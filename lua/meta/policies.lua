---@meta _
-- LuaCATS definitions of the policy contracts (policies/*.lua, README
-- "Policies", host/policy/policy_set.cpp). Definitions only: shepherd never
-- runs this file.
--
-- A policy file returns a table: its function plus optional metadata. The
-- loader checks the shape (the function exists; name a string, version a
-- string or a number, schema a table, selftest a function) and runs
-- selftest() at every load. Declare the module table a class of its own that
-- extends the contract, to have it completed and checked (helpers on M stay
-- allowed):
--
--   ---@class my.retry: shepherd.RetryPolicy
--   local M = { name = "retry", version = "3" }
--   function M.decide(ctx) … end   -- ctx is a shepherd.RetryContext
--   return M
--
-- Policies run in a sandbox: no io, no os beyond os.time/os.clock/os.date, no
-- load*, dofile, debug, ffi, string.dump, getfenv/setfenv, rawget/rawset,
-- collectgarbage; require only of the packaged shepherd.* modules; shepherd.*
-- read-only. A call runs at most 250 ms.

--- What every policy module may carry besides its function.
---@class shepherd.Policy
---@field name? string  e.g. "retry"
---@field version? string|number  shown with the decisions it made
---@field schema? table  a description of the policy's config
---@field selftest? fun()  run at every load; raising refuses the file (POLICY_LOAD_FAILED)

-- ---------------------------------------------------------------------------
-- classify.lua: classify(outcome) -> class

--- Why no complete response arrived.
---@alias shepherd.Transport "timeout"|"first_byte"|"stall"|"connect"|"reset"|"too_large"|"other"

--- One attempt, as classify sees it (plain read-only fields; nil where empty).
---@class shepherd.Outcome
---@field status number  the HTTP status, 0 when no response arrived
---@field transport? shepherd.Transport  nil when a complete response arrived
---@field headers table<string, string>  lowercase name -> value (built on first access)
---@field body? any  the decoded JSON body, nil when it is not JSON (built on first access)
---@field raw? string  the body text, truncated to 4 KiB
---@field elapsed_ms number  from sending to the end of the answer
---@field model_requested string  the model sent
---@field model_answered? string  the answer's "model"
---@field model_role "dimension"|"resource"  dimension: the answer must come from model_requested
---@field content? string  the assistant text when the body is a chat completion ("" for tool calls without text)
---@field tool_calls? true  the answer calls tools
---@field refusal? string  message.refusal: the model declined
---@field finish_reason? string  choices[1].finish_reason
---@field error_code? string  the provider's error code (or type, or status), whatever its shape
---@field error_message? string  the provider's error message
---@field check? string  the reason the suite's check(cell, response) refused the answer

--- The packaged classes; a policy may return classes of its own (printable
--- text, at most 1,024 bytes), and retry.lua decides what each one means.
---@alias shepherd.Class
---| "ok"
---| "timeout"
---| "network"
---| "rate_limited"
---| "quota_exhausted"
---| "auth_failed"
---| "model_not_found"
---| "server_error"
---| "bad_response"
---| "model_mismatch"
---| "check_failed"
---| "context_length"
---| "content_filtered"
---| "client_error"
---| string

---@class shepherd.ClassifyPolicy: shepherd.Policy
---@field classify fun(outcome: shepherd.Outcome): shepherd.Class

-- ---------------------------------------------------------------------------
-- retry.lua: decide(ctx) -> decision

--- The suite's `retry` table over the defaults (every field present).
---@class shepherd.RetrySettings
---@field max_retries integer
---@field base_delay_ms number
---@field backoff_multiplier number
---@field max_delay_ms number
---@field jitter boolean
---@field retry_on_timeout boolean
---@field retry_on_api_error boolean
---@field retry_on_format_error boolean
---@field poison_after integer

---@class shepherd.HistoryEntry
---@field class string
---@field status number  HTTP status (0 without a response)
---@field code? string  the provider's error code

---@class shepherd.RetryContext
---@field class shepherd.Class  what classify gave the attempt (never "ok")
---@field attempt integer  attempts for this task in this run, this one included
---@field task shepherd.Cell  the task's cell
---@field model string  the model the attempt asked for
---@field model_role "dimension"|"resource"
---@field config shepherd.RetrySettings
---@field history shepherd.HistoryEntry[]  earlier attempts in this run, oldest first
---@field retry_after_ms? number  the provider's Retry-After / retry-after-ms
---@field status number  HTTP status of this attempt (0 without a response)
---@field error_code? string  the provider's error code
---@field usable_keys number  other keys that may still serve this model

--- What decide returns: retry after delay_ms (cut to a day), fail with a
--- code (printable text; optional), or switch_model (resource models only).
--- Whatever it says, the host ends the retries: poison_after identical errors
--- in a row fail the task as POISONED, 100 attempts in a run as RETRY_LIMIT.
---@class shepherd.Decision
---@field action "retry"|"fail"|"switch_model"
---@field delay_ms? number  required for "retry": >= 0
---@field code? string  for "fail": the task's error code (e.g. "TIMEOUT")

---@class shepherd.RetryPolicy: shepherd.Policy
---@field decide fun(ctx: shepherd.RetryContext): shepherd.Decision

-- ---------------------------------------------------------------------------
-- switch.lua: next_model(ctx) -> model | nil

--- The suite's `maintain` table over the defaults (every field present).
---@class shepherd.MaintainSettings
---@field minimum_completion_rate number
---@field maximum_failure_rate number
---@field priority_models string[]
---@field skip_models string[]
---@field cooldown_hours number
---@field batch_size integer
---@field group_by string[]

---@class shepherd.SwitchContext
---@field current string  the model just exhausted
---@field candidates string[]  the suite's `models`, in the suite's order
---@field exhausted table<string, true>  every model used up in this run
---@field class shepherd.Class  why: "quota_exhausted", "auth_failed", …
---@field config shepherd.MaintainSettings

--- Returns the next model (a candidate not yet exhausted), or nil: no model
--- left, the run stops (exit 3). Another answer is overruled by the next
--- candidate in order.
---@class shepherd.SwitchPolicy: shepherd.Policy
---@field next_model fun(ctx: shepherd.SwitchContext): string|nil

-- ---------------------------------------------------------------------------
-- retest.lua: select(stats, config) -> picks

--- One pick of the retest policy.
---@class shepherd.RetestSelection
---@field group table<string, any>  the group's key, as in stats
---@field priority number  1 first
---@field reason string

--- stats: the status groups (shepherd.StatusGroup, defined with the workflow
--- API in shepherd.lua); returns the groups that deserve a re-test, most
--- urgent first. The host calls it with two arguments; the packaged one
--- takes `now` (unix seconds) as a third for its tests.
---@class shepherd.RetestPolicy: shepherd.Policy
---@field select fun(stats: shepherd.StatusGroup[], config: shepherd.MaintainSettings, now?: number): shepherd.RetestSelection[]
