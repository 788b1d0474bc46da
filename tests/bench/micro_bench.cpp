// Hot paths, one at a time: response parsing, a policy call, the request
// body from Lua, and committing attempts.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <filesystem>

#include <mutex>

#include "engine/response_parser.h"
#include "engine/stream_assembler.h"
#include "keys/key_pool.h"
#include "lua/api.h"
#include "lua/lua_json.h"
#include "policy/policy_set.h"
#include "store/store.h"
#include "store/writer.h"

using namespace shepherd;

namespace {

HttpResponse sample_response() {
  HttpResponse r;
  r.status = 200;
  r.headers = {{"content-type", "application/json"}, {"x-ratelimit-remaining-requests", "99"}};
  r.body = R"({"id":"chatcmpl-1","object":"chat.completion","created":1732000000,"model":"gpt-4o-mini-2024-07-18",)"
           R"("choices":[{"index":0,"message":{"role":"assistant","content":"The answer is 42, because the question )"
           R"(was about the meaning of everything."},"finish_reason":"stop"}],)"
           R"("usage":{"prompt_tokens":31,"completion_tokens":17,"total_tokens":48}})";
  return r;
}

void BM_ParseResponse(benchmark::State& state) {
  HttpResponse r = sample_response();
  for (auto _ : state) benchmark::DoNotOptimize(parse_response(r));
}
BENCHMARK(BM_ParseResponse);

// The same answer streamed as OpenAI streams it: a role chunk, eight content
// chunks, a finish chunk, a usage chunk and [DONE] (what the mock sends).
void BM_AssembleStream(benchmark::State& state) {
  const std::string head = R"(data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1732000000,)"
                           R"("model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"delta":)";
  std::string body = head + R"({"role":"assistant","content":""},"finish_reason":null}]})" + "\n\n";
  for (const char* piece : {"The answer ", "is 42, ", "because ", "the question ", "was about ", "the meaning ",
                            "of every", "thing."}) {
    body += head + R"({"content":")" + piece + R"("},"finish_reason":null}]})" + "\n\n";
  }
  body += head + R"({},"finish_reason":"stop"}]})" + "\n\n";
  body += R"(data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1732000000,)"
          R"("model":"gpt-4o-mini-2024-07-18","choices":[],"usage":{"prompt_tokens":31,"completion_tokens":17,)"
          R"("total_tokens":48}})" "\n\ndata: [DONE]\n\n";
  for (auto _ : state) benchmark::DoNotOptimize(assemble_stream(body));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * body.size()));
}
BENCHMARK(BM_AssembleStream);

void BM_ClassifyOk(benchmark::State& state) {
  LuaState L;
  register_shepherd_api(L);
  Suite suite;
  PolicySet policies(L, PolicySources::for_suite(suite), RetryConfig{});
  HttpResponse r = sample_response();
  ParsedResponse p = parse_response(r);
  OutcomeView o;
  o.status = 200;
  o.headers = &r.headers;
  o.body = &p.body;
  o.raw = r.body;
  o.model_requested = "gpt-4o-mini";
  o.model_answered = p.model;
  o.model_role = "dimension";
  o.content = &p.content;
  o.finish_reason = p.finish_reason;
  std::string cls;
  LuaFailure failure;
  for (auto _ : state) {
    policies.classify(o, cls, failure);
    benchmark::DoNotOptimize(cls);
  }
  if (cls != "ok") state.SkipWithError("classify did not say ok");
}
BENCHMARK(BM_ClassifyOk);

void BM_RequestBodyFromLua(benchmark::State& state) {
  LuaState L;
  register_shepherd_api(L);
  luaL_dostring(L, R"(
    request = function(cell)
      return { model = cell.model, max_tokens = 32,
               messages = { { role = "user", content = string.format("task %s/%s/%d", cell.model, cell.prompt_type, cell.instance) } } }
    end)");
  for (auto _ : state) {
    lua_getglobal(L, "request");
    lua_createtable(L, 0, 3);
    lua_pushstring(L, "m-a");
    lua_setfield(L, -2, "model");
    lua_pushstring(L, "baseline");
    lua_setfield(L, -2, "prompt_type");
    lua_pushnumber(L, 3);
    lua_setfield(L, -2, "instance");
    lua_call(L, 1, 1);
    std::string body = to_json(L, -1).dump();
    lua_pop(L, 1);
    benchmark::DoNotOptimize(body);
  }
}
BENCHMARK(BM_RequestBodyFromLua);

void BM_WriterCommit(benchmark::State& state) {
  std::string dir = std::filesystem::temp_directory_path() / ("shepherd-bench-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  std::string db = dir + "/bench.db";
  const int n = static_cast<int>(state.range(0));
  {
    Store store(db, Store::Mode::read_write);
    std::vector<TaskSeed> seeds;
    for (int i = 0; i < n; ++i) seeds.push_back({"task-" + std::to_string(i), R"({"instance":)" + std::to_string(i) + "}"});
    store.ensure_tasks("bench", seeds);
  }
  HttpResponse r = sample_response();
  for (auto _ : state) {
    Writer writer(db);
    for (int i = 0; i < n; ++i) {
      AttemptRecord rec;
      rec.task_id = "task-" + std::to_string(i);
      rec.run_id = 1;
      rec.n = 1;
      rec.key_id = "k0";
      rec.model_requested = rec.model_answered = "m-a";
      rec.http_status = 200;
      rec.cls = "ok";
      rec.decision = "done";
      rec.response = r.body;
      rec.task_state = TaskState::done;
      rec.task_attempts = 1;
      rec.content = "The answer is 42.";
      writer.push(std::move(rec));
    }
    writer.flush();
  }
  state.SetItemsProcessed(state.iterations() * n);
  std::filesystem::remove_all(dir);
}
// Real time: the commits happen on the writer thread, not the one measured.
BENCHMARK(BM_WriterCommit)->Arg(10000)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();

namespace {

// The key pool's hot path under contention: workers acquire and release
// slots behind the dispatcher's one lock (8 keys x 4 models, as in e2e_load).
void BM_KeyPoolAcquireRelease(benchmark::State& state) {
  static KeyPool pool;
  static std::mutex mutex;
  if (state.thread_index() == 0) {
    pool = KeyPool();
    for (int k = 0; k < 8; ++k) {
      uint32_t key = pool.add_key("k" + std::to_string(k), 0);
      for (uint32_t m = 0; m < 4; ++m) pool.add_slot(key, m, SlotLimits{64, 0, 0});
    }
  }
  uint32_t model = static_cast<uint32_t>(state.thread_index()) % 4;
  SlotFeedback ok;
  ok.status = 200;
  for (auto _ : state) {
    TimePoint now = SteadyClock::now();
    std::lock_guard lock(mutex);
    int slot = pool.acquire(model, now);
    if (slot >= 0) pool.on_result(slot, ok, 0, now);
  }
}
BENCHMARK(BM_KeyPoolAcquireRelease)->Threads(1)->Threads(2)->Threads(4);

}  // namespace
