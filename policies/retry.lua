-- retry.lua: after a failed attempt, what now?
--
-- decide(ctx) -> { action = "retry", delay_ms = N }
--              | { action = "fail", code = "CODE" }      (code optional)
--              | { action = "switch_model" }             (resource models only)
--
-- ctx (plain fields):
--   class           the class classify.lua gave the attempt (never "ok")
--   attempt         attempts made for this task in this run, this one included
--   task            the task's cell, e.g. { model = "m-a", instance = 3 }
--   model           the model the attempt asked for
--   model_role      "dimension" or "resource"
--   config          the suite's `retry` table over the defaults: max_retries,
--                   base_delay_ms, backoff_multiplier, max_delay_ms, jitter,
--                   retry_on_timeout, retry_on_api_error, retry_on_format_error
--   history         earlier attempts in this run, oldest first: { class, status, code }
--   retry_after_ms  the provider's Retry-After / retry-after-ms, or nil
--   status          HTTP status of this attempt (0 without a response)
--   error_code      the provider's error code, or nil
--   usable_keys     how many other keys may still serve this model (the one
--                   that failed is parked or disabled by the key pool)
--
-- Whatever this returns, the host ends the retries: the same error
-- (class, status and code) `config.poison_after` times in a row (5) fails the
-- task as POISONED, and no task gets more than 100 attempts in one run.
local M = { name = "retry", version = "2" }

-- Which classes are transient, and the config switch that allows retrying them.
local retryable = {
  timeout = "retry_on_timeout",
  network = "retry_on_api_error",
  server_error = "retry_on_api_error",
  bad_response = "retry_on_api_error",
  model_mismatch = "retry_on_api_error",
  rate_limited = true,
  check_failed = "retry_on_format_error",
}

local function fail(class)
  return { action = "fail", code = class:upper() }
end

-- The backoff for the retries_done-th retry: exponential, capped, jittered.
local function backoff(cfg, retries_done)
  local delay = cfg.base_delay_ms * cfg.backoff_multiplier ^ retries_done
  if delay > cfg.max_delay_ms then delay = cfg.max_delay_ms end
  if cfg.jitter then delay = delay * (0.5 + 0.5 * math.random()) end
  return delay
end

-- Classes that are about the key or the model on this key, not the moment:
-- waiting does not help, another key might.
local key_bound = { quota_exhausted = true, auth_failed = true, model_not_found = true }

function M.decide(ctx)
  local cfg = ctx.config
  local class = ctx.class
  local retries_done = ctx.attempt - 1
  if key_bound[class] then
    -- The key pool has taken that (key, model) out. Another key may still
    -- serve the model: try it, after the usual backoff (never at once, so a
    -- provider that answers each key differently cannot cause a storm).
    -- Otherwise a model used as a resource gives way to the next one.
    if (ctx.usable_keys or 0) > 0 then return { action = "retry", delay_ms = math.floor(backoff(cfg, retries_done)) } end
    if ctx.model_role == "resource" then return { action = "switch_model" } end
    return fail(class)
  end
  local gate = retryable[class]
  if gate == nil or (gate ~= true and not cfg[gate]) then return fail(class) end
  if retries_done >= cfg.max_retries then return fail(class) end

  local delay = backoff(cfg, retries_done)
  if ctx.retry_after_ms and ctx.retry_after_ms > delay then delay = ctx.retry_after_ms end
  return { action = "retry", delay_ms = math.floor(delay) }
end

return M
