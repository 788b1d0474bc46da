// Conversations under load: the real binary against the real mock on
// 127.0.0.1, zero latency, no faults, every turn committed as it is answered.
//   conversation_load [--conversations N] [--turns T] [--keys K] [--concurrency C] [--open M] [--plain]
// Defaults: 2,000 conversations x 5 turns over 4 keys x 2 models, 16 in
// flight per (key, model); each turn appends the answer and a simulated tool
// result, so requests grow with the conversation as they do in real use.
// Prints turns/s, CPU µs per turn and peak RSS; then holds M conversations
// open at once (each waiting on a slow answer) and prints the peak RSS of that.
#include <cstdio>
#include <cstring>
#include <string>

#include "harness.h"

using namespace e2e;

namespace {

std::string suite_text(const std::string& base_url, long conversations, long turns, int keys, long concurrency,
                       long max_open, bool plain) {
  std::string key_list;
  for (int i = 0; i < keys; ++i) key_list += " { id = 'k" + std::to_string(i) + "', env = 'E2E_KEY_" + std::to_string(i) + "' },";
  return "return {\n"
         "  name = 'conversations',\n"
         "  providers = { mock = {\n"
         "    base_url = '" + base_url + "',\n" + (plain ? "    stream = false,\n" : "") +
         "    keys = {" + key_list + " },\n"
         "    models = { 'm-a', 'm-b' },\n"
         "    limits = { concurrency = " + std::to_string(concurrency) + " },\n"
         "    timeouts = { connect_ms = 5000, total_ms = 60000 },\n"
         "  } },\n"
         "  matrix = { model = { 'm-a', 'm-b' }, instance = (function() local t = {} for i = 1, " +
         std::to_string(conversations / 2) + " do t[i] = i end return t end)() },\n"
         "  conversation = { max_turns = " + std::to_string(turns + 1) + ", task_timeout_ms = 600000" +
         (max_open > 0 ? ", max_open = " + std::to_string(max_open) : std::string()) + " },\n"
         "  task = function(cell, llm)\n"
         "    local messages = { { role = 'user', content = 'task ' .. cell.instance } }\n"
         "    for turn = 1, " + std::to_string(turns) + " do\n"
         "      local r = llm:chat{ messages = messages, max_tokens = 64 }\n"
         "      messages[#messages + 1] = r.message\n"
         "      messages[#messages + 1] = { role = 'user', content = 'tool result ' .. llm:random(1000) }\n"
         "    end\n"
         "    return { turns = llm.turn }\n"
         "  end,\n"
         "}\n";
}

}  // namespace

int main(int argc, char** argv) {
  long conversations = number_arg(argc, argv, "--conversations", 2000);
  long turns = number_arg(argc, argv, "--turns", 5);
  int keys = static_cast<int>(number_arg(argc, argv, "--keys", 4));
  long concurrency = number_arg(argc, argv, "--concurrency", 16);
  long open = number_arg(argc, argv, "--open", 10000);
  bool plain = false;
  for (int i = 1; i < argc; ++i) plain = plain || std::strcmp(argv[i], "--plain") == 0;
  TempDir dir;

  {
    Mock mock;
    std::string suite =
        dir.write("conv.lua", suite_text(mock.base_url(), conversations, turns, keys, concurrency, 0, plain));
    auto start = std::chrono::steady_clock::now();
    Result r = shepherd({"run", suite, "--quiet"}, key_env(keys), std::chrono::minutes(10));
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (r.exit_code != 0) {
      std::fprintf(stderr, "run failed (%d): %s\n", r.exit_code, r.err.c_str());
      return 1;
    }
    long n = conversations / 2 * 2;
    std::string done = query(dir.file("conversations.db"), "SELECT count(*) FROM tasks WHERE state = 'done'");
    std::string stored = query(dir.file("conversations.db"), "SELECT count(*) FROM attempts WHERE decision = 'answered'");
    if (done != std::to_string(n) || stored != std::to_string(n * turns)) {
      std::fprintf(stderr, "only %s conversations done, %s turns stored\n", done.c_str(), stored.c_str());
      return 1;
    }
    double total = static_cast<double>(n * turns);
    std::printf("throughput: %ld conversations x %ld turns = %.0f turns in %.2f s = %.0f turns/s "
                "(wall, incl. start-up and planning; every turn committed)\n",
                n, turns, total, seconds, total / seconds);
    std::printf("cpu: %.1f us per turn (shepherd user+sys %.2f s), peak RSS %.1f MB\n", r.cpu_seconds * 1e6 / total,
                r.cpu_seconds, static_cast<double>(r.max_rss_kb) / 1024.0);
  }
  if (open > 0) {
    // `open` conversations at once, each waiting on a slow answer: enough
    // slots that every conversation's turn is on the wire together.
    Mock mock(nlohmann::json{{"latency", 3000}});
    std::string suite =
        dir.write("open.lua", suite_text(mock.base_url(), open, 2, 4, open / 8 + 1, open, plain));
    Result r = shepherd({"run", suite, "--db", dir.file("open.db"), "--quiet"}, key_env(4), std::chrono::minutes(5));
    if (r.exit_code != 0) {
      std::fprintf(stderr, "open run failed (%d): %s\n", r.exit_code, r.err.c_str());
      return 1;
    }
    std::printf("open: %ld conversations, peak %d turns in flight at once (mock), shepherd peak RSS %.1f MB\n", open,
                mock.stats()["peak_in_flight"].get<int>(), static_cast<double>(r.max_rss_kb) / 1024.0);
  }
  return 0;
}
