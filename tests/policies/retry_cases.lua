-- Table-driven cases for policies/retry.lua: a failed attempt in, a decision out.
-- Each case: { name = …, input = { fields of ctx }, config = { overrides of the
-- suite's retry defaults }, expect = { action = …, code = …, delay = { min, max } } }.
-- Defaults: max_retries 3, base_delay_ms 1000, backoff_multiplier 2,
-- max_delay_ms 60000, jitter on (delay × [0.5, 1]), retry_on_timeout,
-- retry_on_api_error, no retry_on_format_error.
local function ctx(class, attempt, extra)
  local c = { class = class, attempt = attempt, model = "m-a", model_role = "dimension", status = 0,
              task = { model = "m-a", instance = 1 } }
  for k, v in pairs(extra or {}) do c[k] = v end
  return c
end

return {
  { name = "timeout, attempt 1", input = ctx("timeout", 1),
    expect = { action = "retry", delay = { 500, 1000 } } },
  { name = "timeout, attempt 2", input = ctx("timeout", 2),
    expect = { action = "retry", delay = { 1000, 2000 } } },
  { name = "timeout, attempt 3", input = ctx("timeout", 3),
    expect = { action = "retry", delay = { 2000, 4000 } } },
  { name = "timeout, attempt 4 with max_retries 3", input = ctx("timeout", 4),
    expect = { action = "fail", code = "TIMEOUT" } },
  { name = "timeout, retry_on_timeout off", input = ctx("timeout", 1), config = { retry_on_timeout = false },
    expect = { action = "fail", code = "TIMEOUT" } },
  { name = "delay capped at max_delay_ms", input = ctx("timeout", 3),
    config = { backoff_multiplier = 10, max_delay_ms = 5000 },
    expect = { action = "retry", delay = { 2500, 5000 } } },
  { name = "no jitter: exact backoff", input = ctx("server_error", 3, { status = 503 }),
    config = { jitter = false, base_delay_ms = 100, backoff_multiplier = 3 },
    expect = { action = "retry", delay = { 900, 900 } } },
  { name = "max_retries 0 never retries", input = ctx("network", 1), config = { max_retries = 0 },
    expect = { action = "fail", code = "NETWORK" } },

  { name = "rate limited honours retry_after_ms", input = ctx("rate_limited", 1, { status = 429, retry_after_ms = 7000 }),
    expect = { action = "retry", delay = { 7000, 7000 } } },
  { name = "rate limited with a short retry_after_ms uses the backoff",
    input = ctx("rate_limited", 1, { status = 429, retry_after_ms = 10 }),
    expect = { action = "retry", delay = { 500, 1000 } } },
  { name = "rate limited is retried even with retry_on_api_error off",
    input = ctx("rate_limited", 2, { status = 429 }), config = { retry_on_api_error = false },
    expect = { action = "retry", delay = { 1000, 2000 } } },

  { name = "quota exhausted, model is a dimension", input = ctx("quota_exhausted", 1, { status = 429 }),
    expect = { action = "fail", code = "QUOTA_EXHAUSTED" } },
  { name = "quota exhausted, model is a resource",
    input = ctx("quota_exhausted", 1, { status = 403, model_role = "resource" }),
    expect = { action = "switch_model" } },
  { name = "quota exhausted, resource, even on the first attempt after many",
    input = ctx("quota_exhausted", 9, { status = 403, model_role = "resource" }),
    expect = { action = "switch_model" } },

  { name = "auth failed", input = ctx("auth_failed", 1, { status = 401 }),
    expect = { action = "fail", code = "AUTH_FAILED" } },
  { name = "check failed, retry_on_format_error off", input = ctx("check_failed", 1, { status = 200 }),
    expect = { action = "fail", code = "CHECK_FAILED" } },
  { name = "check failed, retry_on_format_error on", input = ctx("check_failed", 1, { status = 200 }),
    config = { retry_on_format_error = true },
    expect = { action = "retry", delay = { 500, 1000 } } },
  { name = "server error", input = ctx("server_error", 1, { status = 500 }),
    expect = { action = "retry", delay = { 500, 1000 } } },
  { name = "server error, retry_on_api_error off", input = ctx("server_error", 1, { status = 500 }),
    config = { retry_on_api_error = false }, expect = { action = "fail", code = "SERVER_ERROR" } },
  { name = "model mismatch is retried", input = ctx("model_mismatch", 1, { status = 200 }),
    expect = { action = "retry", delay = { 500, 1000 } } },
  { name = "context length is final", input = ctx("context_length", 1, { status = 400 }),
    expect = { action = "fail", code = "CONTEXT_LENGTH" } },
  { name = "client error is final", input = ctx("client_error", 1, { status = 400 }),
    expect = { action = "fail", code = "CLIENT_ERROR" } },
  { name = "content filtered is final", input = ctx("content_filtered", 1, { status = 200 }),
    expect = { action = "fail", code = "CONTENT_FILTERED" } },
  { name = "a class of a user's own is final", input = ctx("my_own_class", 1),
    expect = { action = "fail", code = "MY_OWN_CLASS" } },
}
