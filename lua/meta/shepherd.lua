---@meta _
-- LuaCATS definitions of the global `shepherd` table, for lua-language-server.
-- Definitions only: shepherd never runs this file (the host builds the table
-- in host/lua/api_*.cpp). Point the language server's workspace.library at
-- lua/ (README, "Editor support").
--
-- Where it runs:
--   everywhere (suites, policies, workflows): shepherd.json, shepherd.log, shepherd.time
--   suites:      shepherd.suite_dir
--   workflows (`shepherd script FILE`, the packaged commands): everything
--                marked "Workflows only" (host/lua/api_workflow.cpp)
-- In a policy the table is a read-only view.
--
-- Misuse raises ("bad argument #1 to 'status' (…)"); an operational failure
-- returns nil, code, message (codes: README "Errors").

---@class shepherd.lib
shepherd = {}

-- ---------------------------------------------------------------------------
-- shepherd.json (everywhere)

---@class shepherd.json
shepherd.json = {}

--- Encodes a Lua value as JSON text. A table whose keys are exactly 1..n is an
--- array; an empty table is an object unless marked by `shepherd.json.array`.
--- Raises on what JSON cannot hold: functions, userdata, cycles, NaN or
--- infinity, invalid UTF-8, nesting deeper than 64 levels.
---@param value any
---@return string text
function shepherd.json.encode(value) end

--- Decodes JSON text (null becomes nil). Text that is not JSON, or is nested
--- deeper than 128 levels, returns nil, "JSON_INVALID" and the reason.
---@param text string
---@return any|nil value
---@return "JSON_INVALID"|nil code
---@return string|nil detail  "not valid JSON", "JSON nested deeper than 128 levels", …
function shepherd.json.decode(text) end

--- Marks `t` (a new table when nil) to encode as a JSON array even when empty.
---@generic T: table
---@param t? T
---@return T t
function shepherd.json.array(t) end

-- ---------------------------------------------------------------------------
-- shepherd.log (everywhere): lines in the run's log, tagged "[lua]"

---@class shepherd.log
shepherd.log = {}

---@param message string
function shepherd.log.debug(message) end

---@param message string
function shepherd.log.info(message) end

---@param message string
function shepherd.log.warn(message) end

---@param message string
function shepherd.log.error(message) end

-- ---------------------------------------------------------------------------
-- shepherd.time (everywhere)

---@class shepherd.time
shepherd.time = {}

--- Unix time in seconds, with a fractional part.
---@return number seconds
function shepherd.time.now() end

--- Milliseconds on a clock that never goes back (for durations only).
---@return number ms
function shepherd.time.monotonic_ms() end

-- ---------------------------------------------------------------------------
-- Suites

--- Suites only: the directory of the suite file (its own modules resolve there).
---@type string
shepherd.suite_dir = nil

-- ---------------------------------------------------------------------------
-- Workflows only (`shepherd script FILE [ARGS]`, the packaged commands)

--- Workflows only: the arguments after the script's name.
---@type string[]
shepherd.args = {}

--- Workflows only: whether --json was given.
---@type boolean
shepherd.json_output = false

--- Workflows only: the path of the running shepherd binary (for command lines
--- a workflow writes, such as retest scripts).
---@type string
shepherd.executable = ""

--- A dimension's value or values to keep: a string may be a glob
--- (`"flawed_*"`); a number or a boolean matches its text. An unknown
--- dimension, or a value that matches nothing, is misuse (it raises).
---@alias shepherd.Where table<string, string|number|boolean|(string|number|boolean)[]>

---@class shepherd.SuiteOptions
---@field db? string  the store (default: <suite name>.db beside the suite)

--- Workflows only: loads and validates the suite (key values are read only
--- when it runs) and opens a handle on it and its store.
---@param path string
---@param options? shepherd.SuiteOptions
---@return shepherd.SuiteHandle|nil handle
---@return string|nil code     SUITE_NOT_FOUND, SUITE_SYNTAX, SUITE_INVALID, …
---@return string|nil message
function shepherd.suite(path, options) end

--- Workflows only: writes `tbl` as JSON (indented) to a temporary file, syncs
--- and renames it, so a report is whole or absent. In the template, `{suite}`
--- becomes `tbl.suite` (or "suite") and `{ts}` the UTC time as
--- YYYYmmdd-HHMMSS; missing directories are made.
---@param path_template string
---@param tbl table
---@return string|nil path
---@return string|nil code
---@return string|nil message
function shepherd.report(path_template, tbl) end

--- Workflows only: sleeps `ms` milliseconds; returns false at once when
--- SIGINT or SIGTERM arrives (or had arrived), true after sleeping.
---@param ms number
---@return boolean slept
function shepherd.sleep(ms) end

--- Workflows only: true once SIGINT or SIGTERM has arrived (or a run the
--- workflow started was interrupted).
---@return boolean
function shepherd.stopping() end

-- ---------------------------------------------------------------------------
-- The suite handle (workflows only). Every method returns nil, code, message
-- on an operational failure (STORE_OPEN_FAILED before any run, STORE_LOCKED,
-- POLICY_ERROR, …) and raises on misuse (an unknown dimension or state).

---@class shepherd.SuiteHandle
local SuiteHandle = {}

---@class shepherd.StatusOptions
---@field by? string[]|string  dimensions to group by (a list, or "a,b"); none: one group, the whole suite
---@field where? shepherd.Where

---@class shepherd.Turns
---@field total integer  turns answered
---@field mean number    per task that had any
---@field max integer

--- One group of `s:status`, as `shepherd status --json` gives it.
---@class shepherd.StatusGroup
---@field key table<string, any>    the group's values, e.g. { model = "m-a", prompt_type = "cot" } ({} for the whole suite)
---@field group table<string, any>  the same as key
---@field total integer
---@field done integer
---@field failed integer
---@field pending integer
---@field stale integer             done tasks whose request the suite now builds differently
---@field completion_rate number    done / total (0 when empty)
---@field failure_rate number       failed / total (0 when empty)
---@field failures_by_class table<string, integer>  the final class of each failed task
---@field failures table<string, integer>  the same as failures_by_class
---@field retries integer           attempts beyond each task's first (per turn for conversations)
---@field model_mismatch integer    attempts answered by another model than the one asked
---@field last_attempt_at number|nil  unix seconds of the group's latest attempt
---@field last_maintained_at number|nil  unix seconds of the group's last maintenance (s:mark_maintained)
---@field turns shepherd.Turns

--- Counts per group, computed by the host in one pass over the store.
---@param options? shepherd.StatusOptions
---@return shepherd.StatusGroup[]|nil groups
---@return string|nil code
---@return string|nil message
function SuiteHandle:status(options) end

---@class shepherd.TasksOptions
---@field state? "pending"|"done"|"failed"|"stale"|string[]  one state or a list; none: every task
---@field where? shepherd.Where
---@field limit? integer  at most this many (>= 0)

---@class shepherd.TaskError
---@field code string
---@field message string|nil

---@class shepherd.TaskRow
---@field id string                 the task id (a hash of the suite name and the cell)
---@field cell table<string, any>   the matrix values
---@field label string              the cell as logs name it: its values joined by "/", in the suite file's order
---@field state "pending"|"done"|"failed"
---@field attempts integer
---@field class string|nil          the last attempt's class
---@field error shepherd.TaskError|nil
---@field model string|nil          the model that answered
---@field latency_ms number|nil
---@field updated_at number|nil     unix seconds
---@field stale boolean
---@field turns integer             0 for single requests

--- The tasks in view (a cell added since the last run counts as pending), in
--- the matrix's order. Returns an iterator: `for t in assert(s:tasks{…}) do`.
---@param options? shepherd.TasksOptions
---@return (fun(): shepherd.TaskRow|nil)|nil iterator
---@return string|nil code
---@return string|nil message
function SuiteHandle:tasks(options) end

--- One stored attempt; every column, nil where the store holds none.
---@class shepherd.AttemptRow
---@field n integer|nil
---@field run integer|nil
---@field key_id string|nil
---@field endpoint string|nil
---@field model_requested string|nil
---@field model_answered string|nil
---@field http_status integer|nil
---@field transport string|nil
---@field class string|nil
---@field decision string|nil
---@field error_code string|nil
---@field error_message string|nil
---@field policy_version string|nil
---@field latency_ms number|nil
---@field prompt_tokens integer|nil
---@field completion_tokens integer|nil
---@field started_at number|nil
---@field ended_at number|nil
---@field request_hash string|nil
---@field delay_ms number|nil
---@field turn integer|nil
---@field conversation integer|nil

--- A task's attempts, oldest first.
---@param task_id string
---@return shepherd.AttemptRow[]|nil attempts
---@return string|nil code
---@return string|nil message
function SuiteHandle:attempts(task_id) end

---@class shepherd.EventsOptions
---@field kind? string   only this kind (pool, model_switch, policy_reload, key_disabled, breaker, …)
---@field since? number  unix seconds

---@class shepherd.Event
---@field run integer
---@field at number      unix seconds
---@field kind string
---@field detail any     the event's details (a table; text when it was not JSON)

--- The suite's run events, oldest first.
---@param options? shepherd.EventsOptions
---@return shepherd.Event[]|nil events
---@return string|nil code
---@return string|nil message
function SuiteHandle:events(options) end

---@class shepherd.RunOptions
---@field where? shepherd.Where
---@field tasks? string[]|string  only these task ids (a list, or "a,b")
---@field retry_failed? boolean   failed tasks of the slice run again, whatever their class
---@field forget_exhausted? boolean  send to models whose quota ran out in an earlier run, as `run --forget-exhausted`
---@field retry_classes? string[]|string  only failed tasks of the slice whose last class is one of these run again (a list, or "a,b"; not empty; not with retry_failed), as `run --retry-class`
---@field progress? boolean       live progress on the terminal

---@class shepherd.RunResult
---@field done integer
---@field failed integer
---@field pending integer
---@field total integer
---@field finished integer        tasks finished by this run
---@field seconds number
---@field interrupted boolean     a signal stopped it (shepherd.stopping() is true from then on)
---@field models_exhausted boolean
---@field run integer             the run's id in the store
---@field exit integer            what `shepherd run` would exit with: 0, 4 (some failed) or 3 (stopped, unfinished)

--- Runs the slice to its end in this process, with the same engine and lock
--- as `shepherd run` (the keys' environment variables must be set). Blocks.
---@param options? shepherd.RunOptions
---@return shepherd.RunResult|nil result
---@return string|nil code     STORE_LOCKED, KEY_ENV_MISSING, …
---@return string|nil message
function SuiteHandle:run(options) end

---@class shepherd.ResetOptions
---@field where? shepherd.Where
---@field state? "failed"|"done"|"pending"  default "failed"
---@field class? string[]|string  only tasks whose last class is one of these

--- Matching tasks back to pending (their history kept; a conversation starts afresh).
---@param options? shepherd.ResetOptions
---@return integer|nil count
---@return string|nil code
---@return string|nil message
function SuiteHandle:reset(options) end

--- Overrides of the suite's `maintain` for one selection, and the slice.
---@class shepherd.RetestOptions
---@field minimum_completion_rate? number
---@field maximum_failure_rate? number
---@field cooldown_hours? number
---@field batch_size? integer
---@field priority_models? string[]
---@field skip_models? string[]
---@field by? string[]|string  default: the suite's maintain.group_by (none when that is {"model"} and the model is a resource)
---@field where? shepherd.Where

---@class shepherd.RetestPick: shepherd.RetestSelection
---@field tasks integer  pending + failed tasks in the group

--- The suite's retest policy (packaged or its own) over the status groups.
---@param config? shepherd.RetestOptions
---@return shepherd.RetestPick[]|nil picks  most urgent first
---@return string|nil code
---@return string|nil message
function SuiteHandle:select_retest(config) end

---@class shepherd.ExportOptions
---@field format? "jsonl"|"csv"  default "jsonl"
---@field out string             the file (required); written beside and renamed
---@field where? shepherd.Where
---@field transcripts? boolean   add each conversation's messages

--- Writes the export (the records of `shepherd export`).
---@param options shepherd.ExportOptions
---@return string|nil path
---@return string|nil code
---@return string|nil message
function SuiteHandle:export(options) end

--- Whether the suite's retry policy would send a task whose last class is
--- `class` again (asked as of a first failure on a model that still has keys).
---@param class string
---@return boolean|nil retry
---@return string|nil code
---@return string|nil message
function SuiteHandle:would_retry(class) end

--- Notes that `group` was maintained now: the retest cooldown counts from it.
---@param group table<string, any>
---@return true|nil ok
---@return string|nil code
---@return string|nil message
function SuiteHandle:mark_maintained(group) end

---@class shepherd.ErrorsOptions
---@field window_s? number  seconds back from now (default 3600; > 0)

---@class shepherd.ErrorCount
---@field count integer
---@field first_half integer   in the window's first half
---@field second_half integer  in its second half
---@field trend "increasing"|"stable"|"decreasing"  the second half against the first (by a quarter and at least two)

---@class shepherd.ErrorStats
---@field window_s number
---@field since number   unix seconds
---@field now number     unix seconds
---@field total integer  failed attempts in the window
---@field by_class table<string, shepherd.ErrorCount>
---@field by_code table<string, shepherd.ErrorCount>  attempts that carried an error code

--- Failed attempts in the last `window_s` seconds, per class and per error
--- code, each with a trend.
---@param options? shepherd.ErrorsOptions
---@return shepherd.ErrorStats|nil stats
---@return string|nil code
---@return string|nil message
function SuiteHandle:errors(options) end

---@class shepherd.FiredRule
---@field name string
---@field class? string
---@field code? string
---@field window_s number
---@field count integer

---@class shepherd.WebhookResult
---@field status? integer  the webhook's HTTP status
---@field error? string    why the POST failed

---@class shepherd.FiredAlert
---@field suite string
---@field rule shepherd.FiredRule
---@field count integer  matching failed attempts in the window
---@field at number      unix seconds
---@field text string    the line logged and sent
---@field webhook? shepherd.WebhookResult  when the suite names a webhook

--- The suite's alert rules (suite field `alerts`) over the store's failed
--- attempts now: each rule that fires (not already fired within its window)
--- is recorded as an alert event, logged and sent to the webhook.
---@return shepherd.FiredAlert[]|nil fired
---@return string|nil code
---@return string|nil message
function SuiteHandle:check_alerts() end

--- Raises `bad argument` when `where` names an unknown dimension or a value
--- that matches nothing; cheap (no store access).
---@param where shepherd.Where|nil
---@return true
function SuiteHandle:check_where(where) end

---@class shepherd.DoctorCheck
---@field name string     e.g. "suite", "policy retry", "key mock/k0", "store integrity", "disk", "probe mock/k0/m-a"
---@field ok boolean
---@field detail string
---@field warning? boolean
---@field data? table

--- The health check of `shepherd doctor`: suite, policies and their
--- selftests, key variables, store, disk, logs; with probe, one minimal
--- request per (key, model) (it costs tokens).
---@param options? { probe?: boolean }
---@return shepherd.DoctorCheck[]|nil checks
---@return string|nil code
---@return string|nil message
function SuiteHandle:doctor(options) end

--- The same checks for a suite that may not even load.
---@param path string
---@param options? { db?: string, probe?: boolean }
---@return shepherd.DoctorCheck[] checks
---@return { suite: string, db: string } where
function shepherd.doctor_suite(path, options) end

---@class shepherd.SuiteInfo
---@field name string
---@field path string               the suite file, absolute
---@field db string                 the store
---@field models string[]
---@field model_is_dimension boolean
---@field dims table<string, any[]> dimension -> values
---@field maintain shepherd.MaintainSettings
---@field retry shepherd.RetrySettings

--- The suite as loaded: name, paths, dimensions, `maintain` and `retry` over
--- the defaults (read from the loaded suite: it touches no store).
---@return shepherd.SuiteInfo info
function SuiteHandle:info() end

--- The suite's name.
---@return string
function SuiteHandle:name() end
