-- classify.lua: what kind of outcome is this attempt?
--
-- classify(outcome) -> class (string)
--
-- outcome (plain fields, read-only):
--   status          HTTP status, 0 when no response arrived
--   transport       nil, or why no complete response: "timeout", "first_byte",
--                   "stall", "connect", "reset", "too_large", "other"
--   headers         table of lowercase name -> value (built on first access)
--   body            the decoded JSON body, or nil (built on first access)
--   raw             the body text, truncated to 4 KiB
--   elapsed_ms      time from sending to the end of the answer
--   model_requested the model sent
--   model_answered  the answer's "model", or nil
--   model_role      "dimension" (the answer must come from model_requested)
--                   or "resource" (any model may answer; it is recorded)
--   content         the assistant text when the body is a chat completion, else nil
--   tool_calls      true when the answer calls tools
--   refusal         the model's refusal text (message.refusal), or nil
--   finish_reason   choices[1].finish_reason, or nil
--   error_code      the provider's error code (or type, or status), or nil
--   error_message   the provider's error message, or nil
--   check           nil, or the reason the suite's check(cell, response) failed
--
-- Classes: ok, timeout, network, rate_limited, quota_exhausted, auth_failed,
-- model_not_found, server_error, bad_response, model_mismatch, check_failed,
-- context_length, content_filtered, client_error. A policy may return classes
-- of its own; retry.lua decides what each one means.
--
-- Providers do not agree on status codes, so errors are read by meaning: the
-- code, the message and (for details such as Gemini's quotaId) the raw body.
-- The rules below come from tests/corpus/providers/*.json, real responses
-- with their sources; README.md lists them per provider.
local models = require("shepherd.models")

local M = { name = "classify", version = "2" }

local by_transport = {
  timeout = "timeout",
  first_byte = "timeout",
  stall = "timeout",
  connect = "network",
  reset = "network",
  other = "network",
  too_large = "bad_response",
}

local function has(text, ...)
  for i = 1, select("#", ...) do
    if text:find((select(i, ...)), 1, true) then return true end
  end
  return false
end

-- Codes (error.code or error.type, lowercased) that mean "no money or credit
-- left": waiting does not help, another key or model might.
local quota_codes = {
  insufficient_quota = true, quota_exceeded = true, billing_hard_limit_reached = true,
  billing_not_active = true, arrearage = true, insufficient_balance = true,
  ["allocationquota.freetieronly"] = true, payment_required = true,
}

-- A limit measured per minute or second clears by itself: a rate limit, even
-- when the provider words it as a quota (Gemini's PerMinute quotaId,
-- DashScope's insufficient_quota pointing at its token-limit docs, Together's
-- "queries per minute").
local function per_minute(text)
  return has(text, "perminute", "per minute", "persecond", "per second", "#token-limit", "#rate-limit")
end

local function per_day_or_money(text)
  return has(text, "perday", "per day", "per-day", "daily", "credit balance", "insufficient balance",
    "insufficient credits", "more credits", "credit limit exceeded", "billing details", "account is not active",
    "good standing", "free quota tier", "free tier of the model", "arrear", "balance is too low",
    "exceeded your current quota", "quota exceeded", "out of credits")
end

-- "Please retry after 86400 seconds" (Azure), or a Retry-After of an hour or
-- more: that is a quota, whatever the status says.
local function waits_hours(o, text)
  local seconds = tonumber(text:match("retry after (%d+) second"))
  if seconds == nil and o.headers then seconds = tonumber(o.headers["retry-after"]) end
  return seconds ~= nil and seconds >= 3600
end

local function is_quota(o, status, code, text, raw)
  if status == 402 then return true end
  -- Gemini names the quota it ran out of (quotaId): a day's quota does not
  -- come back in a minute, a minute's does.
  if has(raw, "perday") then return true end
  if status == 429 and (per_minute(text) or has(raw, "perminute")) then return false end
  if waits_hours(o, text) then return true end
  if quota_codes[code] then return true end
  return per_day_or_money(text)
end

local function is_auth(code, text)
  return code == "invalid_api_key" or code == "invalidapikey" or code == "authentication_error"
    or code == "permission_error" or code == "unauthorized"
    or has(text, "api key not valid", "api_key_invalid", "invalid api key", "invalid api-key", "incorrect api key",
      "invalid x-api-key", "authentication fails", "invalid authentication", "no auth credentials", "unauthorized",
      "invalid subscription key")
end

local function is_model_not_found(status, code, text)
  if code == "model_not_found" or code == "unknown_model" or code == "invalid_model"
    or code == "deploymentnotfound" or code == "not_found_error" then
    return true
  end
  if has(text, "model not exist", "not a valid model id", "unknown model", "invalid model", "try pulling it") then
    return true
  end
  -- A 404 that names a model: "The model `x` does not exist", "models/x is not found".
  return status == 404 and has(text, "model") and has(text, "does not exist", "not found", "no such model")
end

local function is_context_length(code, text)
  return code == "context_length_exceeded" or code == "string_above_max_length"
    or has(text, "maximum context length", "context length", "context window", "prompt is too long",
      "range of input length", "input is too long", "too many tokens", "max_tokens must be at least 1")
end

local function is_content_filter(code, text)
  return code == "content_filter" or code == "content_policy_violation" or code == "data_inspection_failed"
    or code == "datainspectionfailed"
    or has(text, "content management policy", "inappropriate content", "safety system", "content policy")
end

-- A 200 that is a chat completion.
local function answered(o)
  -- A filtered answer may carry no content at all; a refusal says so itself.
  if o.finish_reason == "content_filter" then return "content_filtered" end
  local text = o.content
  if o.refusal ~= nil and (text == nil or text == "") and not o.tool_calls then return "content_filtered" end
  if text == nil or o.model_answered == nil then return "bad_response" end
  if o.model_role == "dimension" and not models.same_model(o.model_requested, o.model_answered) then
    return "model_mismatch"
  end
  if o.check ~= nil then return "check_failed" end
  return "ok"
end

-- An error, whatever status it came with.
local function failed(o)
  local status = o.status
  local code = (o.error_code or ""):lower()
  -- A 200 whose stream reported an error carries the real status in the
  -- error (OpenRouter: {"error": {"code": 400, "message": "Token limit reached"}}).
  local embedded = tonumber(code)
  if status < 300 and embedded and embedded >= 400 and embedded < 600 then status = embedded end
  local raw = (o.raw or ""):lower()
  -- The provider's words; the raw text when the body did not parse (a
  -- truncated or HTML body still says what happened).
  local text = raw
  if o.error_code or o.error_message then text = (code .. " " .. (o.error_message or "")):lower() end

  if status >= 500 then return "server_error" end
  if status == 408 then return "timeout" end
  if status == 401 then return "auth_failed" end
  if is_quota(o, status, code, text, raw) then return "quota_exhausted" end
  if is_content_filter(code, text) then return "content_filtered" end
  if is_context_length(code, text) then return "context_length" end
  -- Groq: a request larger than the per-minute budget ("Request too large").
  if status == 413 then return "client_error" end
  if status == 429 or code == "rate_limit_exceeded" or code == "rate_limit_error" then
    -- Groq: a request bigger than the whole per-minute budget ("Used 0,
    -- Requested ~12903" against "Limit 7000") never fits; waiting is useless.
    local limit, requested = text:match("limit (%d+), used 0, requested ~?(%d+)")
    if limit and tonumber(requested) > tonumber(limit) then return "client_error" end
    return "rate_limited"
  end
  if is_model_not_found(status, code, text) then
    -- OpenRouter: "No endpoints found that support tool use" is about the request.
    if has(text, "no endpoints found") then return "client_error" end
    return "model_not_found"
  end
  if status == 403 or is_auth(code, text) then return "auth_failed" end
  -- Groq: the model wrote a tool call that does not parse or fit the schema;
  -- another try may write a good one.
  if code == "tool_use_failed" then return "bad_response" end
  if status >= 200 and status < 300 then return "bad_response" end
  return "client_error"
end

function M.classify(o)
  if o.transport then
    return by_transport[o.transport] or "network"
  end
  local status = o.status
  if status == 200 and (o.content ~= nil or o.tool_calls or o.refusal ~= nil or o.finish_reason ~= nil) then
    return answered(o)
  end
  if status >= 200 and status < 300 and o.error_code == nil and o.error_message == nil then
    -- Not a completion and not an error: an empty or foreign body.
    if o.content == nil then return "bad_response" end
    return answered(o)
  end
  return failed(o)
end

return M
