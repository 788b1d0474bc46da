// The whole engine under load: the real binary against the real mock on
// 127.0.0.1, zero latency, no faults, every result committed.
//   e2e_load [--tasks N] [--keys K] [--concurrency C] [--workers W] [--inflight-tasks M] [--plain]
// Defaults: 8 keys x 4 models, 16 in flight per (key, model), answers
// streamed (shepherd's default: the mock sends ~10 events per answer, each
// parsed); --plain sets `stream = false`, one JSON body per answer.
// Prints tasks/s, CPU µs per task and peak RSS; then holds M requests in
// flight at once against a slow mock and prints the peak RSS of that.
#include <cstdio>
#include <cstring>
#include <string>

#include "harness.h"

using namespace e2e;

namespace {

std::string suite_text(const std::string& base_url, long tasks, int keys, long concurrency, long total_ms,
                       bool plain) {
  SuiteSpec s;
  if (plain) s.provider_extra = "      stream = false,";
  s.name = "load";
  s.base_url = base_url;
  s.keys = keys;
  s.concurrency = static_cast<int>(concurrency);
  s.models = {"m-a", "m-b", "m-c", "m-d"};
  s.timeouts = "{ connect_ms = 5000, total_ms = " + std::to_string(total_ms) + " }";
  s.matrix = "{ model = { 'm-a', 'm-b', 'm-c', 'm-d' }, instance = (function() local t = {} for i = 1, " +
             std::to_string(tasks / 4) + " do t[i] = i end return t end)() }";
  return s.text();
}

}  // namespace

int main(int argc, char** argv) {
  long tasks = number_arg(argc, argv, "--tasks", 50000);
  int keys = static_cast<int>(number_arg(argc, argv, "--keys", 8));
  long concurrency = number_arg(argc, argv, "--concurrency", 16);
  long workers = number_arg(argc, argv, "--workers", 1);
  long inflight = number_arg(argc, argv, "--inflight-tasks", 10000);
  bool plain = false;
  for (int i = 1; i < argc; ++i) plain = plain || std::strcmp(argv[i], "--plain") == 0;
  TempDir dir;

  {
    Mock mock;
    std::string suite = dir.write("load.lua", suite_text(mock.base_url(), tasks, keys, concurrency, 30000, plain));
    auto start = std::chrono::steady_clock::now();
    Result r = shepherd({"run", suite, "--workers", std::to_string(workers), "--quiet"}, key_env(keys),
                        std::chrono::minutes(10));
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (r.exit_code != 0) {
      std::fprintf(stderr, "run failed (%d): %s\n", r.exit_code, r.err.c_str());
      return 1;
    }
    std::string done = query(dir.file("load.db"), "SELECT count(*) FROM tasks WHERE state = 'done'");
    if (done != std::to_string(tasks / 4 * 4)) {
      std::fprintf(stderr, "only %s tasks done\n", done.c_str());
      return 1;
    }
    double n = static_cast<double>(tasks / 4 * 4);
    std::printf("throughput: %.0f tasks in %.2f s = %.0f tasks/s (wall, incl. start-up and planning)\n", n, seconds,
                n / seconds);
    std::printf("cpu: %.1f us per task (shepherd user+sys %.2f s), peak RSS %.1f MB\n", r.cpu_seconds * 1e6 / n,
                r.cpu_seconds, static_cast<double>(r.max_rss_kb) / 1024.0);
  }
  if (inflight > 0) {
    // Hold `inflight` requests open at once: a slow mock, enough slots. Each of
    // the 16 slots first sends one probe (slow start), so a few more tasks
    // than the target keep the target in flight after the probes answer.
    Mock mock(nlohmann::json{{"latency", 3000}});
    long tasks_wide = inflight + 64;
    std::string suite = dir.write("wide.lua", suite_text(mock.base_url(), tasks_wide, 4, tasks_wide / 16 + 1, 60000, plain));
    Result r = shepherd({"run", suite, "--db", dir.file("wide.db"), "--quiet"}, key_env(4), std::chrono::minutes(5));
    if (r.exit_code != 0) {
      std::fprintf(stderr, "wide run failed (%d): %s\n", r.exit_code, r.err.c_str());
      return 1;
    }
    std::printf("in flight: peak %d requests at once (mock), shepherd peak RSS %.1f MB\n",
                mock.stats()["peak_in_flight"].get<int>(), static_cast<double>(r.max_rss_kb) / 1024.0);
  }
  return 0;
}
