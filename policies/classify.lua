-- classify.lua: what kind of outcome is this attempt?
--
-- classify(outcome) -> class (string)
--
-- outcome (plain fields, read-only):
--   status          HTTP status, 0 when no response arrived
--   transport       nil, or why no complete response: "timeout", "connect",
--                   "reset", "stall", "too_large", "other"
--   headers         table of lowercase name -> value (built on first access)
--   body            the decoded JSON body, or nil (built on first access)
--   raw             the body text, truncated to 4 KiB
--   elapsed_ms      time from sending to the end of the answer
--   model_requested the model sent
--   model_answered  the answer's "model", or nil
--   model_role      "dimension" (the answer must come from model_requested)
--                   or "resource" (any model may answer; it is recorded)
--   content         the assistant text when the body is a chat completion, else nil
--   finish_reason   choices[1].finish_reason, or nil
--   error_code      the provider's error.code (or error.type), or nil
--   error_message   the provider's error.message, or nil
--   check           nil, or the reason the suite's check(cell, response) failed
--
-- Classes: ok, timeout, network, rate_limited, quota_exhausted, auth_failed,
-- server_error, bad_response, model_mismatch, check_failed, context_length,
-- content_filtered, client_error. A policy may return classes of its own;
-- retry.lua decides what each one means.
local models = require("shepherd.models")

local M = { name = "classify", version = "1" }

local by_transport = {
  timeout = "timeout",
  stall = "timeout",
  connect = "network",
  reset = "network",
  other = "network",
  too_large = "bad_response",
}

local quota_codes = {
  insufficient_quota = true,
  quota_exceeded = true,
  billing_hard_limit_reached = true,
}

local function mentions_quota(o)
  local text = ((o.error_code or "") .. " " .. (o.error_message or "")):lower()
  return text:find("quota", 1, true) ~= nil or text:find("permission", 1, true) ~= nil
end

function M.classify(o)
  if o.transport then
    return by_transport[o.transport] or "network"
  end
  local status = o.status
  if status == 200 then
    -- A filtered answer may carry no content at all.
    if o.finish_reason == "content_filter" then return "content_filtered" end
    if o.content == nil or o.model_answered == nil then return "bad_response" end
    if o.model_role == "dimension" and not models.same_model(o.model_requested, o.model_answered) then
      return "model_mismatch"
    end
    if o.check ~= nil then return "check_failed" end
    return "ok"
  end
  if status == 429 then
    -- OpenAI reports an exhausted quota as 429 insufficient_quota: not a rate limit.
    if quota_codes[o.error_code] then return "quota_exhausted" end
    return "rate_limited"
  end
  if status == 401 then return "auth_failed" end
  if status == 403 then
    if quota_codes[o.error_code] or mentions_quota(o) then return "quota_exhausted" end
    return "auth_failed"
  end
  if status == 400 and o.error_code == "context_length_exceeded" then return "context_length" end
  if status == 408 then return "timeout" end
  if status >= 500 then return "server_error" end
  if status >= 200 and status < 300 then return "bad_response" end
  return "client_error"
end

return M
