// The maintenance routine on a big store: the real binary on a store of
// N tasks (default 1,000,000: 5 models x 4 prompt types x 5 difficulties x
// 10 task types x N/1000 instances).
//   maintenance_load [--tasks N] [--keep DIR]
// The store is made by a real run of one instance per cell group against the
// mock (which plans every task and records the run), then its tasks are
// given outcomes in SQL: 90 % done, 6 % failed over four classes, 4 %
// pending. Prints the seconds and peak RSS of:
//   s:status{by = {"model", "prompt_type"}}   (a workflow script, timed inside and out)
//   shepherd status --by model
//   shepherd incomplete --by model,prompt_type
//   shepherd incomplete                       (every unfinished task listed)
//   s:status after the suite text changed     (every done task's request rebuilt to find stale ones)
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include <SQLiteCpp/Database.h>

#include "harness.h"

using namespace e2e;

namespace {

std::string suite_text(const std::string& base_url, long instances, const std::string& comment) {
  return "-- " + comment + "\n"
         "return {\n"
         "  name = 'big',\n"
         "  providers = { mock = { base_url = '" + base_url + "', stream = false,\n"
         "    models = { 'qwen2.5-7b-instruct', 'qwen2.5-14b-instruct', 'qwen2.5-32b-instruct',\n"
         "      'qwen2.5-72b-instruct', 'qwen-max' },\n"
         "    keys = { { id = 'k0', env = 'E2E_KEY_0' } }, limits = { concurrency = 64 } } },\n"
         "  matrix = {\n"
         "    model = { 'qwen2.5-7b-instruct', 'qwen2.5-14b-instruct', 'qwen2.5-32b-instruct',\n"
         "              'qwen2.5-72b-instruct', 'qwen-max' },\n"
         "    prompt_type = { 'baseline', 'cot', 'flawed_tool_misuse', 'optimal' },\n"
         "    difficulty = { 'easy', 'medium', 'hard', 'very_hard', 'expert' },\n"
         "    task_type = { 'api_integration', 'basic_task', 'data_pipeline', 'file_ops', 'multi_stage',\n"
         "                  'search', 'math', 'planning', 'coding', 'writing' },\n"
         "    instance = (function() local t = {} for i = 1, " + std::to_string(instances) +
         " do t[i] = i end return t end)(),\n"
         "  },\n"
         "  request = function(cell)\n"
         "    return { messages = { { role = 'user', content = cell.prompt_type .. ' ' .. cell.task_type .. ' ' ..\n"
         "      cell.difficulty .. ' #' .. cell.instance } }, max_tokens = 16 }\n"
         "  end,\n"
         "}\n";
}

struct Timed {
  double seconds = 0;
  long rss_mb = 0;
  std::string out;
};

Timed timed(const std::vector<std::string>& args) {
  auto start = std::chrono::steady_clock::now();
  Result r = shepherd(args, key_env(1), std::chrono::minutes(10));
  Timed t{std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), r.max_rss_kb / 1024, r.out};
  if (r.exit_code != 0) {
    std::fprintf(stderr, "%s failed (%d): %s\n", args[0].c_str(), r.exit_code, r.err.c_str());
    std::exit(1);
  }
  return t;
}

}  // namespace

int main(int argc, char** argv) {
  const long tasks = number_arg(argc, argv, "--tasks", 1000000);
  const long instances = std::max(1L, tasks / 1000);
  TempDir dir;
  Mock mock;
  const std::string suite = dir.write("big.lua", suite_text(mock.base_url(), instances, "v1"));
  const std::string db = dir.file("big.db");

  // A real run stores the schema, every planned task and the run's suite version.
  timed({"run", suite, "--where", "instance=1", "--quiet"});
  {
    SQLite::Database store(db, SQLite::OPEN_READWRITE);
    const std::string run = store.execAndGet("SELECT max(id) FROM runs").getString();
    // Outcomes by seq, spread over every group.
    store.exec("UPDATE tasks SET state = 'done', attempts = 1 + (seq % 7 = 0), last_class = 'ok', "
               "content = 'answer', model = json_extract(dims, '$.model'), updated_at = 1.7e9 + seq, "
               "request_hash = coalesce(request_hash, printf('%016x', seq)), request_run = " + run +
               " WHERE seq % 100 < 90");
    store.exec("UPDATE tasks SET state = 'failed', attempts = 3, updated_at = 1.7e9 + seq, "
               "last_class = CASE seq % 4 WHEN 0 THEN 'server_error' WHEN 1 THEN 'timeout' "
               "WHEN 2 THEN 'auth_failed' ELSE 'rate_limited' END, error_code = 'HTTP_500', "
               "error_message = 'upstream error ' || seq WHERE seq % 100 BETWEEN 90 AND 95");
    store.exec("UPDATE tasks SET state = 'pending', attempts = 0 WHERE seq % 100 > 95");
  }
  // --keep DIR: a copy of the suite and its store, to profile by hand.
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], "--keep") == 0) {
      std::string to = argv[i + 1];
      std::system(("mkdir -p '" + to + "' && cp '" + suite + "' '" + db + "' '" + to + "/'").c_str());
    }
  }
  const std::string count = query(db, "SELECT count(*) FROM tasks");
  std::printf("store: %s tasks\n", count.c_str());

  const std::string script = dir.write("status.lua",
                                       "local s = shepherd.suite(shepherd.args[1])\n"
                                       "local t0 = shepherd.time.now()\n"
                                       "local groups = s:status{ by = { 'model', 'prompt_type' } }\n"
                                       "print(string.format('%.3f %d', shepherd.time.now() - t0, #groups))\n");
  Timed status = timed({"script", script, suite});
  std::printf("s:status{by={model,prompt_type}}: %.2f s (inside the script %s s, %s groups), peak RSS %ld MB\n",
              status.seconds, status.out.substr(0, status.out.find(' ')).c_str(),
              status.out.substr(status.out.find(' ') + 1, status.out.find('\n') - status.out.find(' ') - 1).c_str(),
              status.rss_mb);
  Timed cli = timed({"status", suite, "--by", "model"});
  std::printf("shepherd status --by model: %.2f s, peak RSS %ld MB\n", cli.seconds, cli.rss_mb);
  Timed by = timed({"incomplete", suite, "--by", "model,prompt_type"});
  std::printf("shepherd incomplete --by model,prompt_type: %.2f s, peak RSS %ld MB\n", by.seconds, by.rss_mb);
  Timed list = timed({"incomplete", suite});
  long lines = 0;
  for (char c : list.out) lines += c == '\n';
  std::printf("shepherd incomplete (%ld tasks listed): %.2f s, peak RSS %ld MB\n", lines, list.seconds, list.rss_mb);

  // An edited suite text: every done task's request is built again to see if it changed.
  dir.write("big.lua", suite_text(mock.base_url(), instances, "v2: edited"));
  Timed edited = timed({"script", script, suite});
  std::printf("s:status after an edit of the suite (every done request rebuilt): %.2f s, peak RSS %ld MB\n",
              edited.seconds, edited.rss_mb);
  return 0;
}
