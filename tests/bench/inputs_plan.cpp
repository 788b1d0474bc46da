// Planning a suite over a big JSONL file: the real binary on N records
// (default 1,000,000 lines of about 200 bytes, an `id` field each).
//   inputs_plan [--lines N] [--max-seconds S] [--max-rss-mb M]
// Times `shepherd run SUITE` against a mock whose one model runs out of quota
// at once (the run loads the suite — the host reads the file once —, plans
// every task's id, stores them all as pending, then stops: no model left),
// then `shepherd status SUITE --json` (load, plan, read the store). Prints
// the seconds and peak RSS of each; fails when either exceeds the limits
// given (defaults: the 20 s and 1 GB).
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>

#include "harness.h"

using namespace e2e;

int main(int argc, char** argv) {
  const long lines = number_arg(argc, argv, "--lines", 1'000'000);
  const long max_seconds = number_arg(argc, argv, "--max-seconds", 20);
  const long max_rss_mb = number_arg(argc, argv, "--max-rss-mb", 1024);
  Mock mock(nlohmann::json{{"quota", {{"m-a", 1}}}});
  TempDir dir;
  {
    std::ofstream out(dir.file("prompts.jsonl"));
    std::string filler(120, 'x');
    char id[32];
    for (long i = 0; i < lines; ++i) {
      std::snprintf(id, sizeof id, "rec-%09ld", i);
      out << "{\"id\":\"" << id << "\",\"topic\":\"topic " << (i % 97) << "\",\"prompt\":\"Write a test for function "
          << i << ": " << filler << "\",\"n\":" << i << "}\n";
    }
  }
  std::ifstream probe(dir.file("prompts.jsonl"), std::ios::ate);
  const double bytes = static_cast<double>(probe.tellg());
  dir.write("big.lua",
            "return {\n  name = 'big_inputs',\n"
            "  providers = { mock = { base_url = '" + mock.base_url() + "', models = { 'm-a' },\n"
            "    keys = { { id = 'k0', env = 'E2E_KEY_0' } } } },\n"
            "  models = { 'm-a' },\n"
            "  matrix = { prompt = shepherd.jsonl('prompts.jsonl', { id = 'id' }) },\n"
            "  request = function(cell) return { messages = { { role = 'user', content = cell.prompt.prompt } } } end,\n"
            "}\n");
  auto measure = [&](const std::vector<std::string>& args, Result& r) {
    auto start = std::chrono::steady_clock::now();
    r = shepherd(args, key_env(1), std::chrono::minutes(10));
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  Result run;
  const double run_s = measure({"run", dir.file("big.lua"), "--no-progress"}, run);
  Result st;
  const double status_s = measure({"status", dir.file("big.lua"), "--json"}, st);
  if (st.exit_code != 0) {
    std::fprintf(stderr, "status failed (%d): %s\nrun (%d): %s\n", st.exit_code, st.err.c_str(), run.exit_code,
                 run.err.substr(0, 2000).c_str());
    return 1;
  }
  std::printf("%ld JSONL records (%.0f bytes a line)\n", lines, bytes / static_cast<double>(lines));
  std::printf("run (plan, store every task, stop): %.2f s, peak RSS %ld MB, %.1f s CPU\n", run_s, run.max_rss_kb / 1024,
              run.cpu_seconds);
  std::printf("status (plan, read the store):     %.2f s, peak RSS %ld MB, %.1f s CPU\n", status_s, st.max_rss_kb / 1024,
              st.cpu_seconds);
  if (st.out.find("\"total\":" + std::to_string(lines)) == std::string::npos) {
    std::fprintf(stderr, "status does not count %ld tasks: %s\n", lines, st.out.substr(0, 400).c_str());
    return 1;
  }
  for (auto [seconds, rss_kb] : {std::pair{run_s, run.max_rss_kb}, std::pair{status_s, st.max_rss_kb}}) {
    if (seconds > static_cast<double>(max_seconds) || rss_kb / 1024 > max_rss_mb) {
      std::fprintf(stderr, "over the limits (%ld s, %ld MB)\n", max_seconds, max_rss_mb);
      return 1;
    }
  }
  return 0;
}
