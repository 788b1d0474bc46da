return {
  name = "demo",
  providers = {
    local_mock = {
      kind = "openai",                          -- OpenAI-compatible POST {base_url}/chat/completions
      base_url = "http://127.0.0.1:8089/v1",
      keys = { { id = "k0", env = "DEMO_KEY_0" }, { id = "k1", env = "DEMO_KEY_1" } },
      models = { "m-a", "m-b", "m-c" },
      limits = { concurrency = 16 },            -- in flight per (key, model)
      timeouts = { connect_ms = 1000, total_ms = 2000, stall_ms = 1500 },
    },
  },
  matrix = {
    model = { "m-a", "m-b", "m-c" },
    prompt_type = { "baseline", "cot", "optimal", "flawed" },
    instance = { 1, 2, 3 },
  },
  request = function(cell)
    return {
      model = cell.model,
      max_tokens = 32,
      messages = { { role = "user", content = string.format("task %s/%s/%d", cell.model, cell.prompt_type, cell.instance) } },
    }
  end,
}
