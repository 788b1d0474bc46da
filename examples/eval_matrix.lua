-- The users' evaluation matrix of ../shared/seeds/001: five qwen models ×
-- prompt types × task types × instances, three keys chosen by prompt type
-- (key_for: as the older system mapped them), the model a dimension (an
-- answer from another model is a failure, never a result).
--
--   shepherd mock --port 8089 --scenario examples/eval_matrix_mock.json &
--   EVAL_KEY_0=key-0 EVAL_KEY_1=key-1 EVAL_KEY_2=revoked shepherd run examples/eval_matrix.lua
--   shepherd status examples/eval_matrix.lua --by model,prompt_type
--   shepherd maintain examples/eval_matrix.lua --dry-run
--
-- The scenario revokes key 2 (401: it leaves the run, its cells go to the
-- other keys), fails 3 % of requests, and lets qwen2.5-72b-instruct answer
-- for the others now and then (model_mismatch, retried).
local MODELS = { "qwen2.5-3b-instruct", "qwen2.5-7b-instruct", "qwen2.5-14b-instruct", "qwen2.5-32b-instruct",
                 "qwen2.5-72b-instruct" }

-- Prompt types spread over the keys so that no key carries them all.
local KEY_OF_PROMPT = { baseline = "k0", cot = "k1", optimal = "k2", flawed_tool_misuse = "k0",
                        flawed_parameter_error = "k1", flawed_sequence_disorder = "k2" }

return {
  name = "eval_matrix",
  description = "seed 001: models x prompt types x task types x instances, keys by prompt type",
  providers = {
    dashscope_mock = {
      kind = "openai",
      base_url = "http://127.0.0.1:8089/v1",
      keys = { { id = "k0", env = "EVAL_KEY_0" }, { id = "k1", env = "EVAL_KEY_1" }, { id = "k2", env = "EVAL_KEY_2" } },
      models = MODELS,
      limits = { concurrency = 8 },
      timeouts = { connect_ms = 1000, first_byte_ms = 10000, stall_ms = 5000, total_ms = 30000 },
    },
  },
  matrix = {
    model = MODELS,
    prompt_type = { "baseline", "cot", "optimal", "flawed_tool_misuse", "flawed_parameter_error",
                    "flawed_sequence_disorder" },
    task_type = { "basic_task", "simple_task", "data_pipeline", "api_integration", "multi_stage_pipeline" },
    instance = { 1, 2, 3, 4, 5 },
  },
  key_for = function(cell) return KEY_OF_PROMPT[cell.prompt_type] end,
  retry = { max_retries = 3, base_delay_ms = 100 },
  maintain = { priority_models = { "qwen2.5-7b-instruct" }, minimum_completion_rate = 0.8, batch_size = 5 },
  alerts = { rules = { { class = "auth_failed", count = 1, name = "a key was refused" },
                       { class = "model_mismatch", window_s = 300, count = 20 } } },
  request = function(cell)
    return {
      max_tokens = 256,
      messages = {
        { role = "system", content = "You are a workflow executor (" .. cell.prompt_type .. ")." },
        { role = "user", content = string.format("Task %s #%d", cell.task_type, cell.instance) },
      },
    }
  end,
  check = function(cell, response)
    if response.content == "" then return false, "empty answer" end
    return true
  end,
}
