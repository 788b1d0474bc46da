-- Table-driven cases for policies/classify.lua: an outcome in, a class out.
-- Each case: { name = …, input = { fields of the outcome classify() sees }, expect = "class" }.
-- input.headers is a table name -> value; input.body the decoded JSON body.
-- `without` lists fields to leave out (nil cannot be written in `extra`).
local function completion(requested, answered, extra, without)
  local o = {
    status = 200,
    model_requested = requested,
    model_answered = answered,
    model_role = "dimension",
    content = "The answer is 4.",
    finish_reason = "stop",
  }
  for k, v in pairs(extra or {}) do o[k] = v end
  for _, k in ipairs(without or {}) do o[k] = nil end
  return o
end

return {
  { name = "200 valid completion", input = completion("m-a", "m-a"), expect = "ok" },
  { name = "200 from a dated snapshot (gpt-4o-mini)",
    input = completion("gpt-4o-mini", "gpt-4o-mini-2024-07-18"), expect = "ok" },
  { name = "200 from a dated snapshot (claude-3-5-sonnet)",
    input = completion("claude-3-5-sonnet", "claude-3-5-sonnet-20241022"), expect = "ok" },
  { name = "200 from a short dated snapshot (gpt-4-0613)",
    input = completion("gpt-4", "gpt-4-0613"), expect = "ok" },
  { name = "72b answering for 7b, model is a dimension",
    input = completion("qwen2.5-7b-instruct", "qwen2.5-72b-instruct"), expect = "model_mismatch" },
  { name = "72b answering for 7b, model is a resource",
    input = completion("qwen2.5-7b-instruct", "qwen2.5-72b-instruct", { model_role = "resource" }), expect = "ok" },
  { name = "a longer name is not a snapshot (gpt-4o-mini for gpt-4o)",
    input = completion("gpt-4o", "gpt-4o-mini"), expect = "model_mismatch" },
  { name = "200 with null content", input = completion("m-a", "m-a", nil, { "content" }), expect = "bad_response" },
  { name = "200 without model_answered", input = completion("m-a", nil), expect = "bad_response" },
  { name = "200 with empty content is still a completion", input = completion("m-a", "m-a", { content = "" }), expect = "ok" },
  { name = "check failed", input = completion("m-a", "m-a", { check = "expected a number" }), expect = "check_failed" },
  { name = "content filter", input = completion("m-a", "m-a", { finish_reason = "content_filter" }),
    expect = "content_filtered" },

  { name = "transport timeout", input = { status = 0, transport = "timeout" }, expect = "timeout" },
  { name = "transport stall", input = { status = 0, transport = "stall" }, expect = "timeout" },
  { name = "transport connect", input = { status = 0, transport = "connect" }, expect = "network" },
  { name = "transport reset", input = { status = 0, transport = "reset" }, expect = "network" },
  { name = "transport other", input = { status = 0, transport = "other" }, expect = "network" },
  { name = "transport too_large", input = { status = 0, transport = "too_large" }, expect = "bad_response" },
  { name = "transport wins over a status", input = { status = 200, transport = "reset" }, expect = "network" },

  { name = "429", input = { status = 429, error_code = "rate_limit_exceeded" }, expect = "rate_limited" },
  { name = "429 without a body", input = { status = 429 }, expect = "rate_limited" },
  { name = "429 insufficient_quota", input = { status = 429, error_code = "insufficient_quota",
    error_message = "You exceeded your current quota" }, expect = "quota_exhausted" },
  { name = "403 insufficient_quota", input = { status = 403, error_code = "insufficient_quota" },
    expect = "quota_exhausted" },
  { name = "403 permission denied", input = { status = 403,
    error_message = "Permission denied: this key cannot use the model" }, expect = "quota_exhausted" },
  { name = "plain 403", input = { status = 403, error_message = "Forbidden" }, expect = "auth_failed" },
  { name = "401", input = { status = 401, error_code = "invalid_api_key" }, expect = "auth_failed" },
  { name = "500", input = { status = 500 }, expect = "server_error" },
  { name = "502", input = { status = 502, raw = "<html>Bad Gateway</html>" }, expect = "server_error" },
  { name = "503", input = { status = 503 }, expect = "server_error" },
  { name = "408", input = { status = 408 }, expect = "timeout" },
  { name = "400 context_length_exceeded", input = { status = 400, error_code = "context_length_exceeded",
    error_message = "This model's maximum context length is 8192 tokens" }, expect = "context_length" },
  { name = "other 400", input = { status = 400, error_code = "invalid_request_error" }, expect = "client_error" },
  { name = "404", input = { status = 404 }, expect = "client_error" },
  { name = "204 is not an answer", input = { status = 204 }, expect = "bad_response" },
}
