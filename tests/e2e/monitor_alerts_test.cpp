// `shepherd monitor` and the suite's alert rules, against the real binary, the
// real mock and a tiny webhook receiver on 127.0.0.1 in this process: rounds
// and their reports, SIGTERM between rounds, a maintenance round (and one
// that finds the store locked by a run), error counts per class and per code
// with their trend, alerts fired during `run` (once per window, an event, a
// log line, one POST; an earlier run's failures within the window count, older
// ones do not) and by monitor rounds, a dead webhook that must not
// hold a run, and the suite's alerts validated at load.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <filesystem>
#include <map>
#include <mutex>
#include <thread>

#include <gtest/gtest.h>

#include "harness.h"

using namespace e2e;
using nlohmann::json;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

// An HTTP/1.1 endpoint for alert POSTs. `answer`: each complete request is
// recorded and answered 200 (connection closed). `silent`: requests are
// recorded, the connection is held open and nothing is ever answered, as a
// hung webhook would.
class WebhookServer {
 public:
  enum class Mode { answer, silent };

  explicit WebhookServer(Mode mode) : mode_(mode) {
    listen_fd_ = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(listen_fd_, 64) != 0) {
      throw std::runtime_error("webhook server: cannot listen");
    }
    socklen_t len = sizeof addr;
    getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { loop(); });
  }

  ~WebhookServer() {
    stop_ = true;
    thread_.join();
    for (auto& [fd, buffer] : clients_) close(fd);
    close(listen_fd_);
  }

  WebhookServer(const WebhookServer&) = delete;
  WebhookServer& operator=(const WebhookServer&) = delete;

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/hook"; }

  // The bodies of the complete requests so far, in arrival order.
  std::vector<std::string> bodies() {
    std::lock_guard lock(mutex_);
    return bodies_;
  }
  std::vector<std::string> request_lines() {
    std::lock_guard lock(mutex_);
    return request_lines_;
  }
  int connections() const { return connections_; }

 private:
  void loop() {
    while (!stop_) {
      std::vector<pollfd> fds{{listen_fd_, POLLIN, 0}};
      for (auto& [fd, buffer] : clients_) fds.push_back({fd, POLLIN, 0});
      if (poll(fds.data(), fds.size(), 20) <= 0) continue;
      if (fds[0].revents & POLLIN) {
        int fd = accept(listen_fd_, nullptr, nullptr);
        if (fd >= 0) {
          clients_[fd] = Client{};
          ++connections_;
        }
      }
      for (size_t i = 1; i < fds.size(); ++i) {
        if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        int fd = fds[i].fd;
        char chunk[4096];
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n <= 0) {
          close(fd);
          clients_.erase(fd);
          continue;
        }
        Client& c = clients_[fd];
        c.data.append(chunk, static_cast<size_t>(n));
        if (c.done) continue;  // silent: whatever more comes is ignored
        if (take_request(fd, c) && mode_ == Mode::answer) {
          static const std::string ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
          (void)!write(fd, ok.data(), ok.size());
          close(fd);
          clients_.erase(fd);
        }
      }
    }
  }

  struct Client {
    std::string data;
    bool continued = false;  // answered "Expect: 100-continue"
    bool done = false;       // the request was recorded
  };

  // Records the request once it is whole; true then.
  bool take_request(int fd, Client& c) {
    size_t end = c.data.find("\r\n\r\n");
    if (end == std::string::npos) return false;
    std::string head = c.data.substr(0, end);
    std::string lower = head;
    std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char ch) { return std::tolower(ch); });
    size_t length = 0;
    if (size_t at = lower.find("content-length:"); at != std::string::npos) {
      length = std::stoul(lower.substr(at + 15));
    }
    if (c.data.size() < end + 4 + length) {
      if (mode_ == Mode::answer && !c.continued && lower.find("expect: 100-continue") != std::string::npos) {
        static const std::string cont = "HTTP/1.1 100 Continue\r\n\r\n";
        (void)!write(fd, cont.data(), cont.size());
        c.continued = true;
      }
      return false;
    }
    std::lock_guard lock(mutex_);
    request_lines_.push_back(head.substr(0, head.find("\r\n")));
    bodies_.push_back(c.data.substr(end + 4, length));
    c.done = true;
    return true;
  }

  Mode mode_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> connections_{0};
  std::map<int, Client> clients_;  // the server thread's alone
  std::mutex mutex_;
  std::vector<std::string> bodies_, request_lines_;
  std::thread thread_;
};

// The default request's prompt lists the cell sorted ("instance=1 kind=e500
// model=m-a"); the mock's canned rules match on the kind:
//   e500  a 500 (server_error, retried once: two failed attempts per task)
//   e400  a 400 (client_error, never retried: one attempt)
//   chk   answered, refused by check (check_failed, one attempt)
//   ok    answered
// `e500_times`: how many 500s the mock gives before it answers (0: always).
json faulty_scenario(int e500_times = 0, int latency_ms = 0) {
  json e500 = {{"when", "kind=e500"},
               {"status", 500},
               {"body_json", {{"error", {{"message", "The server had an error"}, {"type", "server_error"}}}}}};
  if (e500_times > 0) e500["times"] = e500_times;
  json e400 = {{"when", "kind=e400"},
               {"status", 400},
               {"body_json", {{"error", {{"message", "Invalid value for 'messages'"}, {"type", "invalid_request_error"}}}}}};
  json s = {{"canned", json::array({e500, e400})}};
  if (latency_ms > 0) s["latency"] = latency_ms;
  return s;
}

const char* const kRetryAndCheck = R"(  retry = { max_retries = 1, base_delay_ms = 10, jitter = false },
  check = function(cell, response)
    if cell.kind == "chk" then return false, "chk is never right" end
    return true
  end,
)";

// kind x instance: e500 gives 2 failed attempts per instance, e400 and chk 1.
SuiteSpec faulty_suite(const Mock& mock, const std::string& instances = "1, 2, 3", const std::string& more = "") {
  SuiteSpec s = suite_at(mock.base_url());
  s.matrix = "{ model = { 'm-a' }, kind = { 'ok', 'e500', 'e400', 'chk' }, instance = { " + instances + " } }";
  s.extra = kRetryAndCheck + more;
  return s;
}

std::string alerts_field(const std::string& rules, const std::string& webhook = "") {
  std::string out = "  alerts = { rules = { " + rules + " }";
  if (!webhook.empty()) out += ", webhook = \"" + webhook + "\"";
  return out + " },\n";
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

size_t occurrences(const std::string& text, const std::string& part) {
  size_t n = 0;
  for (size_t at = text.find(part); at != std::string::npos; at = text.find(part, at + part.size())) ++n;
  return n;
}

// Every non-empty stdout line as JSON (monitor --json prints one per round).
std::vector<json> json_lines(const Result& r) { return parse_jsonl(r.out); }

// The monitor reports beside the store, sorted by name.
std::vector<std::string> monitor_reports(const TempDir& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir.file("reports"), ec)) {
    std::string name = e.path().filename().string();
    if (name.rfind("monitor-", 0) == 0 && e.path().extension() == ".json") out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// The store's alert events: {run (empty for a monitor round's), detail}.
std::vector<std::pair<std::string, json>> alert_events(const std::string& db) {
  std::vector<std::pair<std::string, json>> out;
  for (auto& row : query_rows(db, "SELECT run, detail FROM events WHERE kind = 'alert' ORDER BY id")) {
    out.emplace_back(row[0], json::parse(row[1]));
  }
  return out;
}

std::map<std::string, int> fired_names(const std::vector<std::pair<std::string, json>>& events) {
  std::map<std::string, int> out;
  for (auto& [run, detail] : events) ++out[detail["rule"]["name"].get<std::string>()];
  return out;
}

}  // namespace

// Two rounds a second apart: two reports, each the round's --json line (less
// its own path), exit 0 in about a second.
TEST(Monitor, TwoRoundsWriteTwoReportsAndExit) {
  TempDir dir;
  Mock mock(faulty_scenario());
  std::string suite = dir.write("s.lua", faulty_suite(mock).text());
  std::string db = dir.file("s.db");
  Result r = shepherd({"run", suite, "--db", db}, key_env(1));
  ASSERT_EQ(r.exit_code, 4) << r.err;

  auto t0 = std::chrono::steady_clock::now();
  r = shepherd({"monitor", suite, "--db", db, "--every", "1s", "--rounds", "2", "--json"}, key_env(1), 10s);
  double took = seconds_since(t0);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_GE(took, 1.0);
  EXPECT_LT(took, 3.0);

  std::vector<json> rounds = json_lines(r);
  ASSERT_EQ(rounds.size(), 2u) << r.out;
  std::vector<std::string> files = monitor_reports(dir);
  ASSERT_EQ(files.size(), 2u);
  for (int i = 0; i < 2; ++i) {
    json round = rounds[i];
    EXPECT_EQ(round["round"], i + 1);
    EXPECT_EQ(round["suite"], "e2e");
    EXPECT_EQ(round["store"], db);
    EXPECT_EQ(round["every_s"], 1);
    EXPECT_EQ(round["report"], files[i]);
    EXPECT_TRUE(fs::path(files[i]).filename().string().starts_with("monitor-e2e-")) << files[i];
    // The file is the round as it was written: everything but its own path.
    json written = json::parse(read_file(files[i]));
    round.erase("report");
    EXPECT_EQ(written, round) << files[i];

    // status: the one group (model is a dimension, grouped by model).
    ASSERT_EQ(round["status"].size(), 1u) << round["status"].dump();
    const json& g = round["status"][0];
    EXPECT_EQ(g["group"], json({{"model", "m-a"}}));
    EXPECT_EQ(g["total"], 12);
    EXPECT_EQ(g["done"], 3);
    EXPECT_EQ(g["failed"], 9);
    EXPECT_EQ(g["failures"], json({{"check_failed", 3}, {"client_error", 3}, {"server_error", 3}}));
    EXPECT_EQ(g["retries"], 3);

    // errors over the last second: the run's failures are older.
    const json& e = round["errors"];
    EXPECT_EQ(e["window_s"], 1);
    EXPECT_NEAR(e["now"].get<double>() - e["since"].get<double>(), 1.0, 1e-6);
    EXPECT_TRUE(e.contains("by_class") && e.contains("by_code")) << e.dump();
    // Alerts: none configured.
    EXPECT_TRUE(round["alerts"].is_array() && round["alerts"].empty()) << round.dump();
  }
  EXPECT_GE(rounds[1]["at"].get<double>() - rounds[0]["at"].get<double>(), 1.0);

  // The human form: one line per round, naming its report.
  r = shepherd({"monitor", suite, "--db", db, "--every", "1s", "--rounds", "1"}, key_env(1), 10s);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(occurrences(r.out, "round 1: 3/12 done, 9 failed"), 1u) << r.out;
  EXPECT_NE(r.out.find("reports/monitor-e2e-"), std::string::npos) << r.out;
}

// A mistyped --every or --rounds is a usage error before any round. An
// interval under a second is one too: reports are named to the second, and
// rounds closer than that overwrote each other's (--every 0.3s --rounds 4
// left two reports).
TEST(Monitor, BadIntervalOrRoundsIsAUsageError) {
  TempDir dir;
  Mock mock;
  std::string suite = dir.write("s.lua", faulty_suite(mock).text());
  std::string db = dir.file("s.db");
  const std::vector<std::vector<std::string>> cases = {
      {"--every", "0.5s", "--rounds", "2"}, {"--every", "0s"}, {"--every", "ten"}, {"--every", "5w"},
      {"--every", "1s", "--rounds", "0"},   {"--every", "1s", "--rounds", "1.5"}};
  for (const auto& extra : cases) {
    std::vector<std::string> args{"monitor", suite, "--db", db};
    args.insert(args.end(), extra.begin(), extra.end());
    Result r = shepherd(args, key_env(1), 10s);
    EXPECT_EQ(r.exit_code, 2) << extra[1] << ": " << r.err;
    EXPECT_NE(r.err.find("USAGE"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(extra[0] == "--every" && extra[1] != "1s" ? "--every" : "--rounds"), std::string::npos) << r.err;
    EXPECT_EQ(r.out, "");
  }
  EXPECT_TRUE(monitor_reports(dir).empty());
}

// errors{window_s = every}: failed attempts per class and per code, split at
// the window's middle, equal to what the store holds; the trend compares the
// halves. Run A's failures (server_error 4, client_error 2) fall in the first
// half of a 4 s window, run B's (client_error 2, check_failed 2) 2.5 s later
// in the second.
TEST(Monitor, ErrorCountsPerClassAndCodeMatchTheStoreWithTheirTrend) {
  TempDir dir;
  Mock mock(faulty_scenario());
  std::string suite = dir.write("s.lua", faulty_suite(mock, "1, 2, 3, 4").text());
  std::string db = dir.file("s.db");
  Result r = shepherd({"run", suite, "--db", db, "--where", "kind=e500,e400", "--where", "instance=1,2"}, key_env(1));
  ASSERT_EQ(r.exit_code, 4) << r.err;
  std::this_thread::sleep_for(2500ms);
  r = shepherd({"run", suite, "--db", db, "--where", "kind=e400,chk", "--where", "instance=3,4"}, key_env(1));
  ASSERT_EQ(r.exit_code, 4) << r.err;
  r = shepherd({"monitor", suite, "--db", db, "--every", "4s", "--rounds", "1", "--json"}, key_env(1), 10s);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::vector<json> rounds = json_lines(r);
  ASSERT_EQ(rounds.size(), 1u) << r.out;
  const json& e = rounds[0]["errors"];
  const double since = e["since"].get<double>(), now = e["now"].get<double>(), mid = since + 2.0;
  EXPECT_NEAR(now - since, 4.0, 1e-6);

  // The store, counted here: every attempt that did not succeed.
  std::map<std::string, std::array<int, 2>> by_class, by_code;
  int total = 0;
  for (auto& row : query_rows(db, "SELECT class, error_code, ended_at FROM attempts WHERE class <> 'ok'")) {
    double at = std::stod(row[2]);
    if (at < since) continue;
    int half = at < mid ? 0 : 1;
    ++by_class[row[0]][half];
    ++by_code[row[1]][half];
    ++total;
  }
  EXPECT_EQ(total, 10);
  EXPECT_EQ(e["total"], total);
  auto expect_same = [](const json& got, const std::map<std::string, std::array<int, 2>>& want, const char* what) {
    ASSERT_EQ(got.size(), want.size()) << what << " " << got.dump();
    for (auto& [key, halves] : want) {
      ASSERT_TRUE(got.contains(key)) << what << " " << key << " " << got.dump();
      EXPECT_EQ(got[key]["first_half"], halves[0]) << what << " " << key;
      EXPECT_EQ(got[key]["second_half"], halves[1]) << what << " " << key;
      EXPECT_EQ(got[key]["count"], halves[0] + halves[1]) << what << " " << key;
    }
  };
  expect_same(e["by_class"], by_class, "by_class");
  expect_same(e["by_code"], by_code, "by_code");

  // The intended split (the runs were timed for it), and its trends.
  EXPECT_EQ(by_class["server_error"], (std::array<int, 2>{4, 0}));
  EXPECT_EQ(by_class["client_error"], (std::array<int, 2>{2, 2}));
  EXPECT_EQ(by_class["check_failed"], (std::array<int, 2>{0, 2}));
  EXPECT_EQ(e["by_class"]["server_error"]["trend"], "decreasing");
  EXPECT_EQ(e["by_class"]["client_error"]["trend"], "stable");
  EXPECT_EQ(e["by_class"]["check_failed"]["trend"], "increasing");
  EXPECT_EQ(e["by_code"]["SERVER_ERROR"]["trend"], "decreasing");
  EXPECT_EQ(e["by_code"]["CLIENT_ERROR"]["trend"], "stable");
  EXPECT_EQ(e["by_code"]["CHECK_FAILED"]["trend"], "increasing");

  // A window of 600 s holds them all, all in its second half.
  r = shepherd({"monitor", suite, "--db", db, "--every", "600s", "--rounds", "1", "--json"}, key_env(1), 10s);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json wide = json_lines(r).at(0)["errors"];
  EXPECT_EQ(wide["total"], 10);
  EXPECT_EQ(wide["by_class"]["server_error"], json({{"count", 4}, {"first_half", 0}, {"second_half", 4}, {"trend", "increasing"}}));
  EXPECT_EQ(wide["by_class"]["client_error"], json({{"count", 4}, {"first_half", 0}, {"second_half", 4}, {"trend", "increasing"}}));
  EXPECT_EQ(wide["by_code"]["CHECK_FAILED"], json({{"count", 2}, {"first_half", 0}, {"second_half", 2}, {"trend", "increasing"}}));
}

// SIGTERM or SIGINT while monitor sleeps out a 30 s interval ends it at once,
// exit 0, with the one report it wrote.
TEST(Monitor, SigtermOrSigintDuringTheSleepEndsItAtOnce) {
  for (int sig : {SIGTERM, SIGINT}) {
    SCOPED_TRACE(sig == SIGTERM ? "SIGTERM" : "SIGINT");
    TempDir dir;
    Mock mock(faulty_scenario());
    std::string suite = dir.write("s.lua", faulty_suite(mock).text());
    std::string db = dir.file("s.db");
    Result r = shepherd({"run", suite, "--db", db}, key_env(1));
    ASSERT_EQ(r.exit_code, 4) << r.err;

    Process monitor({SHEPHERD_BIN, "monitor", suite, "--db", db, "--every", "30s", "--json"}, key_env(1));
    ASSERT_TRUE(wait_until([&] { return monitor.out_so_far().find('\n') != std::string::npos; }, 10s))
        << monitor.err_so_far();
    std::this_thread::sleep_for(300ms);  // well into the sleep
    auto t0 = std::chrono::steady_clock::now();
    monitor.signal(sig);
    Result m = monitor.wait(5s);
    EXPECT_LT(seconds_since(t0), 1.0);
    EXPECT_EQ(m.exit_code, 0) << m.err;
    EXPECT_EQ(json_lines(m).size(), 1u) << m.out;
    EXPECT_EQ(monitor_reports(dir).size(), 1u);
  }
}

// --maintain: the round's maintenance re-sends the server_error failures (the
// mock now answers them) and leaves client_error and check_failed alone.
TEST(Monitor, MaintainRoundResendsServerErrorFailures) {
  TempDir dir;
  Mock mock(faulty_scenario(/*e500_times=*/6));  // 3 tasks x 2 attempts, then answered
  std::string suite =
      dir.write("s.lua", faulty_suite(mock, "1, 2, 3", "  maintain = { minimum_completion_rate = 0.99, cooldown_hours = 0 },\n").text());
  std::string db = dir.file("s.db");
  Result r = shepherd({"run", suite, "--db", db}, key_env(1));
  ASSERT_EQ(r.exit_code, 4) << r.err;
  const int before = mock.stats()["requests"].get<int>();
  ASSERT_EQ(before, 3 * 2 + 3 + 3 + 3);

  r = shepherd({"monitor", suite, "--db", db, "--every", "1s", "--rounds", "1", "--maintain", "--json"}, key_env(1), 30s);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(mock.stats()["requests"].get<int>() - before, 3) << "the three server_error tasks, once each";

  std::vector<json> rounds = json_lines(r);
  ASSERT_EQ(rounds.size(), 1u) << r.out;
  const json& m = rounds[0]["maintain"];
  ASSERT_EQ(m["selection"].size(), 1u) << m.dump();
  EXPECT_EQ(m["selection"][0]["group"], json({{"model", "m-a"}}));
  ASSERT_EQ(m["ran"].size(), 1u) << m.dump();
  EXPECT_FALSE(m["ran"][0].contains("error")) << m.dump();
  EXPECT_EQ(m["ran"][0]["group"], json({{"model", "m-a"}}));
  // The round's status is from before the maintenance.
  EXPECT_EQ(rounds[0]["status"][0]["done"], 3);

  EXPECT_EQ(query(db, "SELECT count(*) FROM tasks WHERE state = 'done' AND json_extract(dims, '$.kind') = 'e500'"), "3");
  EXPECT_EQ(query(db, "SELECT count(*) FROM tasks WHERE state = 'failed' AND last_class = 'client_error'"), "3");
  EXPECT_EQ(query(db, "SELECT count(*) FROM tasks WHERE state = 'failed' AND last_class = 'check_failed'"), "3");
  EXPECT_EQ(query(db, "SELECT count(*) FROM tasks WHERE state = 'done'"), "6");
}

// A round whose maintenance meets a running `shepherd run` (the mock holds
// each answer 0.6 s; the run sends one request, then the other five: about
// 1.3 s) records STORE_LOCKED in its report; the monitor goes on, and its next
// round, 2 s later and after the run, finds nothing more to do.
TEST(Monitor, MaintainRoundFindingTheStoreLockedSaysSoAndGoesOn) {
  TempDir dir;
  Mock mock(json{{"latency", 600}});
  SuiteSpec spec = suite_at(mock.base_url());
  spec.matrix = "{ model = { 'm-a' }, instance = { 1, 2, 3, 4, 5, 6 } }";
  spec.extra = "  maintain = { minimum_completion_rate = 0.99, cooldown_hours = 0 },\n";
  std::string suite = dir.write("s.lua", spec.text());
  std::string db = dir.file("s.db");

  Process run({SHEPHERD_BIN, "run", suite, "--db", db}, key_env(1));
  ASSERT_TRUE(wait_until([&] { return mock.stats()["in_flight"].get<int>() > 0; }, 10s)) << run.err_so_far();
  Result r = shepherd({"monitor", suite, "--db", db, "--every", "2s", "--rounds", "2", "--maintain", "--json"}, key_env(1), 30s);
  Result ran = run.wait(30s);
  EXPECT_EQ(ran.exit_code, 0) << ran.err;
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::vector<json> rounds = json_lines(r);
  ASSERT_EQ(rounds.size(), 2u) << r.out << r.err;
  EXPECT_EQ(monitor_reports(dir).size(), 2u);

  // Round 1: everything pending, the group selected, its run refused.
  const json& first = rounds[0];
  EXPECT_EQ(first["status"][0]["pending"], 6) << first.dump();
  ASSERT_EQ(first["maintain"]["ran"].size(), 1u) << first.dump();
  EXPECT_EQ(first["maintain"]["ran"][0]["error"]["code"], "STORE_LOCKED") << first.dump();
  EXPECT_EQ(json::parse(read_file(first["report"].get<std::string>()))["maintain"]["ran"][0]["error"]["code"],
            "STORE_LOCKED");
  // Round 2: the run has ended; all done, nothing selected, nothing locked.
  const json& second = rounds[1];
  EXPECT_EQ(second["status"][0]["done"], 6) << second.dump();
  EXPECT_TRUE(second["maintain"]["selection"].empty()) << second.dump();
  EXPECT_TRUE(second["maintain"]["ran"].empty()) << second.dump();
  EXPECT_EQ(mock.stats()["requests"], 6) << "the monitor sent nothing";
}

// During `run`: a rule fires once when its count is reached (not once per
// failure): one alert event, one log warning, one POST of {"text", "alert"};
// a code rule with count 1 fires on the first 400; rules whose count is never
// reached stay quiet. A monitor round after the run, within the windows,
// fires nothing again.
TEST(RunAlerts, ARuleFiresOncePerWindowWithAnEventALogLineAndOnePost) {
  TempDir dir;
  WebhookServer hook(WebhookServer::Mode::answer);
  Mock mock(faulty_scenario());
  std::string rules =
      "{ class = 'server_error', count = 3, window_s = 300, name = '5xx' }, { code = 'CLIENT_ERROR', count = 1 }, "
      "{ class = 'timeout', count = 1, name = 'never' }, { class = 'server_error', count = 100, name = 'not yet' }";
  std::string suite = dir.write("s.lua", faulty_suite(mock, "1, 2, 3", alerts_field(rules, hook.url())).text());
  std::string db = dir.file("s.db");
  const double started = unix_now();
  Result r = shepherd({"run", suite, "--db", db}, key_env(1));
  const double ended = unix_now();
  ASSERT_EQ(r.exit_code, 4) << r.err;
  ASSERT_EQ(query(db, "SELECT count(*) FROM attempts WHERE class = 'server_error'"), "6");
  ASSERT_EQ(query(db, "SELECT count(*) FROM attempts WHERE class = 'client_error'"), "3");

  // The store: one event per rule that fired, of this run.
  auto events = alert_events(db);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(fired_names(events), (std::map<std::string, int>{{"5xx", 1}, {"CLIENT_ERROR x1/300s", 1}}));
  const std::string run_id = query(db, "SELECT max(id) FROM runs");
  std::map<std::string, json> detail;
  for (auto& [run, d] : events) {
    EXPECT_EQ(run, run_id);
    detail[d["rule"]["name"]] = d;
  }
  const json& server = detail["5xx"];
  EXPECT_EQ(server["suite"], "e2e");
  EXPECT_EQ(server["rule"], json({{"name", "5xx"}, {"class", "server_error"}, {"window_s", 300}, {"count", 3}}));
  EXPECT_EQ(server["count"], 3) << "fired as the third arrived";
  EXPECT_GE(server["at"].get<double>(), started);
  EXPECT_LE(server["at"].get<double>(), ended);
  const json& client = detail["CLIENT_ERROR x1/300s"];
  EXPECT_EQ(client["rule"], json({{"name", "CLIENT_ERROR x1/300s"}, {"code", "CLIENT_ERROR"}, {"window_s", 300}, {"count", 1}}));
  EXPECT_EQ(client["count"], 1) << "fired on the first 400";

  // The log: one warning per firing, on stderr and in the run's log.
  const std::string server_text = "shepherd alert [e2e] 5xx: 3 failed attempts of class server_error in the last 300 s (threshold 3)";
  const std::string client_text =
      "shepherd alert [e2e] CLIENT_ERROR x1/300s: 1 failed attempts with code CLIENT_ERROR in the last 300 s (threshold 1)";
  EXPECT_EQ(occurrences(r.err, "shepherd alert ["), 2u) << r.err;
  EXPECT_EQ(occurrences(r.err, "warning: " + server_text), 1u) << r.err;
  EXPECT_EQ(occurrences(r.err, "warning: " + client_text), 1u) << r.err;
  std::string log;
  for (const auto& e : fs::directory_iterator(dir.file("logs"))) log += read_file(e.path().string());
  EXPECT_EQ(occurrences(log, server_text), 1u) << log;
  EXPECT_EQ(occurrences(log, client_text), 1u) << log;

  // The webhook: one POST per firing, Slack's shape, the alert as stored.
  std::vector<std::string> bodies = hook.bodies();
  ASSERT_EQ(bodies.size(), 2u);
  std::map<std::string, json> posted;
  for (auto& b : bodies) {
    json j = json::parse(b);
    ASSERT_EQ(j.size(), 2u) << b;
    posted[j["alert"]["rule"]["name"]] = j;
  }
  EXPECT_EQ(posted["5xx"], json({{"text", server_text}, {"alert", server}}));
  EXPECT_EQ(posted["CLIENT_ERROR x1/300s"], json({{"text", client_text}, {"alert", client}}));
  for (auto& line : hook.request_lines()) EXPECT_EQ(line, "POST /hook HTTP/1.1");

  // A monitor round now: both rules still count enough failures in their
  // windows, but they fired within them: nothing new anywhere.
  r = shepherd({"monitor", suite, "--db", db, "--every", "1s", "--rounds", "1", "--json"}, key_env(1), 10s);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(json_lines(r).at(0)["alerts"].empty()) << r.out;
  EXPECT_EQ(alert_events(db).size(), 2u);
  EXPECT_EQ(hook.bodies().size(), 2u);
  EXPECT_EQ(occurrences(r.err, "shepherd alert ["), 0u) << r.err;
}

// README: a rule fires "at most once per window ... (a rule that already
// fired within its window, in a run or a round, stays quiet)": a second run
// inside the window (run --retry-failed, or monitor --maintain's s:run right
// after its round fired) starts from the store's last firing of each rule.
TEST(RunAlerts, ASecondRunWithinTheWindowStaysQuiet) {
  TempDir dir;
  WebhookServer hook(WebhookServer::Mode::answer);
  Mock mock(faulty_scenario());
  std::string rules = "{ class = 'server_error', count = 3, window_s = 300, name = '5xx' }, { code = 'CLIENT_ERROR', count = 1 }";
  std::string suite = dir.write("s.lua", faulty_suite(mock, "1, 2, 3", alerts_field(rules, hook.url())).text());
  std::string db = dir.file("s.db");
  Result r = shepherd({"run", suite, "--db", db}, key_env(1));
  ASSERT_EQ(r.exit_code, 4) << r.err;
  ASSERT_EQ(alert_events(db).size(), 2u);
  r = shepherd({"run", suite, "--db", db, "--retry-failed"}, key_env(1));
  ASSERT_EQ(r.exit_code, 4) << r.err;
  EXPECT_EQ(alert_events(db).size(), 2u);
  EXPECT_EQ(occurrences(r.err, "shepherd alert ["), 0u) << r.err;
  EXPECT_EQ(hook.bodies().size(), 2u);
}

// A rule's window spans runs: a run that stopped one failure below the count
// leaves its failures in the store, and the next run within the window fires
// at its first matching failure (the count includes the earlier run's). One
// event of the second run, one warning on stderr and in that run's log, one
// POST.
TEST(RunAlerts, FailuresOfAnEarlierRunWithinTheWindowCount) {
  TempDir dir;
  WebhookServer hook(WebhookServer::Mode::answer);
  Mock mock(faulty_scenario());
  SuiteSpec spec = suite_at(mock.base_url());
  spec.matrix = "{ model = { 'm-a' }, kind = { 'e500' }, instance = { 1, 2, 3, 4, 5 } }";
  spec.extra = "  retry = { max_retries = 0 },\n" +
               alerts_field("{ class = 'server_error', count = 5, window_s = 300, name = '5xx' }", hook.url());
  std::string suite = dir.write("s.lua", spec.text());
  std::string db = dir.file("s.db");

  Result r = shepherd({"run", suite, "--db", db, "--where", "instance=1,2,3,4"}, key_env(1));
  ASSERT_EQ(r.exit_code, 4) << r.err;
  ASSERT_EQ(query(db, "SELECT count(*) FROM attempts WHERE class = 'server_error'"), "4");
  ASSERT_TRUE(alert_events(db).empty()) << "4 of 5: not yet";
  ASSERT_EQ(occurrences(r.err, "shepherd alert ["), 0u) << r.err;
  const std::string first_run = query(db, "SELECT max(id) FROM runs");

  const double started = unix_now();
  r = shepherd({"run", suite, "--db", db, "--where", "instance=5"}, key_env(1));
  const double ended = unix_now();
  ASSERT_EQ(r.exit_code, 4) << r.err;
  ASSERT_EQ(query(db, "SELECT count(*) FROM attempts WHERE class = 'server_error'"), "5");
  const std::string second_run = query(db, "SELECT max(id) FROM runs");
  ASSERT_NE(second_run, first_run);

  auto events = alert_events(db);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].first, second_run);
  const json& alert = events[0].second;
  EXPECT_EQ(alert["rule"], json({{"name", "5xx"}, {"class", "server_error"}, {"window_s", 300}, {"count", 5}}));
  EXPECT_EQ(alert["count"], 5) << "the first run's 4 and this run's 1";
  EXPECT_GE(alert["at"].get<double>(), started);
  EXPECT_LE(alert["at"].get<double>(), ended);

  const std::string text = "shepherd alert [e2e] 5xx: 5 failed attempts of class server_error in the last 300 s (threshold 5)";
  EXPECT_EQ(occurrences(r.err, "shepherd alert ["), 1u) << r.err;
  EXPECT_EQ(occurrences(r.err, "warning: " + text), 1u) << r.err;
  std::string first_log, second_log;
  for (const auto& e : fs::directory_iterator(dir.file("logs"))) {
    const std::string name = e.path().filename().string();
    if (name.find("-run" + first_run + ".log") != std::string::npos) first_log += read_file(e.path().string());
    if (name.find("-run" + second_run + ".log") != std::string::npos) second_log += read_file(e.path().string());
  }
  EXPECT_EQ(occurrences(second_log, text), 1u) << second_log;
  EXPECT_EQ(occurrences(first_log, "shepherd alert ["), 0u) << first_log;

  std::vector<std::string> bodies = hook.bodies();
  ASSERT_EQ(bodies.size(), 1u);
  EXPECT_EQ(json::parse(bodies[0]), json({{"text", text}, {"alert", alert}}));
}

// Failures older than a rule's window do not count toward it: the same 4
// failures of an earlier run, over 2 s old when the next run starts, bring a
// 300 s rule to its count at the next run's first failure and leave a 2 s
// rule (1 of 5) quiet.
TEST(RunAlerts, FailuresOlderThanTheWindowDoNotCount) {
  TempDir dir;
  WebhookServer hook(WebhookServer::Mode::answer);
  Mock mock(faulty_scenario());
  SuiteSpec spec = suite_at(mock.base_url());
  spec.matrix = "{ model = { 'm-a' }, kind = { 'e500' }, instance = { 1, 2, 3, 4, 5 } }";
  spec.extra = "  retry = { max_retries = 0 },\n" +
               alerts_field("{ class = 'server_error', count = 5, window_s = 2, name = 'short' }, "
                            "{ class = 'server_error', count = 5, window_s = 300, name = 'long' }",
                            hook.url());
  std::string suite = dir.write("s.lua", spec.text());
  std::string db = dir.file("s.db");

  Result r = shepherd({"run", suite, "--db", db, "--where", "instance=1,2,3,4"}, key_env(1));
  ASSERT_EQ(r.exit_code, 4) << r.err;
  ASSERT_EQ(query(db, "SELECT count(*) FROM attempts WHERE class = 'server_error'"), "4");
  ASSERT_TRUE(alert_events(db).empty());
  // Until the newest of them is 2.5 s old: out of the short window, well
  // inside the long one.
  const double newest = std::stod(query(db, "SELECT max(ended_at) FROM attempts"));
  while (unix_now() < newest + 2.5) std::this_thread::sleep_for(50ms);

  r = shepherd({"run", suite, "--db", db, "--where", "instance=5"}, key_env(1));
  ASSERT_EQ(r.exit_code, 4) << r.err;
  ASSERT_EQ(query(db, "SELECT count(*) FROM attempts WHERE class = 'server_error'"), "5");
  auto events = alert_events(db);
  EXPECT_EQ(fired_names(events), (std::map<std::string, int>{{"long", 1}}));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].second["count"], 5);
  EXPECT_EQ(occurrences(r.err, "shepherd alert [e2e] short:"), 0u) << r.err;
  EXPECT_EQ(occurrences(r.err, "shepherd alert [e2e] long: 5 failed attempts"), 1u) << r.err;
  std::vector<std::string> bodies = hook.bodies();
  ASSERT_EQ(bodies.size(), 1u);
  EXPECT_EQ(json::parse(bodies[0])["alert"]["rule"]["name"], "long");
}

// A webhook that accepts and never answers: the run still ends within its
// usual time plus the 3 s timeout, with every alert stored and logged, and
// the failed POST logged.
TEST(RunAlerts, ADeadWebhookDoesNotHoldTheRun) {
  WebhookServer dead(WebhookServer::Mode::silent);
  Mock mock(faulty_scenario());
  const std::string rules = "{ class = 'server_error', count = 3, name = '5xx' }, { code = 'CLIENT_ERROR', count = 1 }";

  auto timed_run = [&](const std::string& webhook, Result& r) {
    TempDir dir;
    std::string suite = dir.write("s.lua", faulty_suite(mock, "1, 2, 3", alerts_field(rules, webhook)).text());
    auto t0 = std::chrono::steady_clock::now();
    r = shepherd({"run", suite, "--db", dir.file("s.db")}, key_env(1), 30s);
    double took = seconds_since(t0);
    EXPECT_EQ(r.exit_code, 4) << r.err;
    EXPECT_EQ(alert_events(dir.file("s.db")).size(), 2u);
    return took;
  };
  Result normal_run, dead_run;
  const double normal = timed_run("", normal_run);
  const double with_dead = timed_run(dead.url(), dead_run);
  EXPECT_LE(with_dead, normal + 3.5) << "normal " << normal << " s, with a dead webhook " << with_dead << " s";
  EXPECT_GE(dead.connections(), 1);
  EXPECT_EQ(occurrences(dead_run.err, "shepherd alert ["), 2u) << dead_run.err;
  EXPECT_NE(dead_run.err.find("alert webhook failed"), std::string::npos) << dead_run.err;
}

// monitor rounds evaluate the rules over the store. While a run (of a suite
// without alerts, the same name and store) keeps failing, a rule with a 1 s
// window fires in every round a second apart; one with a 600 s window fires
// in the first round only. Each firing: an event without a run, a log line,
// a POST, and the round's report.
TEST(MonitorAlerts, ASmallWindowFiresAgainInALaterRound) {
  TempDir dir;
  WebhookServer hook(WebhookServer::Mode::answer);
  Mock mock(json{{"latency", 100}, {"faults", {{"error_500", 1.0}}}});
  SuiteSpec spec = suite_at(mock.base_url());
  spec.concurrency = 1;
  spec.matrix = "{ model = { 'm-a' }, instance = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, "
                "21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40 } }";
  spec.extra = "  retry = { max_retries = 0 },\n";
  std::string quiet = dir.write("quiet.lua", spec.text());
  spec.extra += alerts_field(
      "{ class = 'server_error', count = 1, window_s = 1, name = 'fast' }, "
      "{ class = 'server_error', count = 1, window_s = 600, name = 'slow' }",
      hook.url());
  std::string loud = dir.write("loud.lua", spec.text());
  std::string db = dir.file("s.db");

  Process run({SHEPHERD_BIN, "run", quiet, "--db", db}, key_env(1));
  ASSERT_TRUE(wait_until([&] { return try_query(db, "SELECT count(*) FROM attempts", "0") != "0"; }, 10s))
      << run.err_so_far();
  Result r = shepherd({"monitor", loud, "--db", db, "--every", "1s", "--rounds", "3", "--json"}, key_env(1), 20s);
  run.signal(SIGTERM);
  run.wait(10s);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::vector<json> rounds = json_lines(r);
  ASSERT_EQ(rounds.size(), 3u) << r.out;

  std::vector<std::vector<std::string>> fired;
  for (const json& round : rounds) {
    std::vector<std::string> names;
    for (const json& a : round["alerts"]) {
      names.push_back(a["rule"]["name"]);
      EXPECT_EQ(a["webhook"], json({{"status", 200}})) << a.dump();
      EXPECT_GE(a["count"].get<int>(), 1);
      EXPECT_EQ(a["suite"], "e2e");
    }
    std::sort(names.begin(), names.end());
    fired.push_back(names);
  }
  EXPECT_EQ(fired, (std::vector<std::vector<std::string>>{{"fast", "slow"}, {"fast"}, {"fast"}}));

  auto events = alert_events(db);
  EXPECT_EQ(fired_names(events), (std::map<std::string, int>{{"fast", 3}, {"slow", 1}}));
  for (auto& [run_id, d] : events) EXPECT_EQ(run_id, "") << "a monitor round's alert belongs to no run";
  EXPECT_EQ(hook.bodies().size(), 4u);
  EXPECT_EQ(occurrences(r.err, "shepherd alert [e2e] fast:"), 3u) << r.err;
  EXPECT_EQ(occurrences(r.err, "shepherd alert [e2e] slow:"), 1u) << r.err;
  for (const std::string& b : hook.bodies()) {
    json j = json::parse(b);
    EXPECT_TRUE(j["text"].is_string() && j["alert"].is_object()) << b;
  }
}

// The suite's alerts are checked at load: SUITE_INVALID, exit 2, naming the
// field, before a store exists.
TEST(SuiteAlerts, ValidatedAtLoadNamingTheField) {
  TempDir dir;
  Mock mock;
  struct Case {
    std::string alerts, field;
  };
  const std::vector<Case> cases = {
      {"  alerts = { webhook = 'http://127.0.0.1:1/x' },\n", "alerts.rules: required field is missing"},
      {"  alerts = { rules = { { count = 3, window_s = 60 } } },\n", "alerts.rules[1]: give class, code or both"},
      {"  alerts = { rules = { { class = 'server_error' } }, webhook = 'ftp://example.com/hook' },\n", "alerts.webhook"},
      {"  alerts = { rules = { { class = 'server_error', count = 0 } } },\n", "alerts.rules[1].count"},
      {"  alerts = { rules = { { class = 'server_error', colour = 'red' } } },\n", "alerts.rules[1].colour"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.alerts);
    SuiteSpec spec = suite_at(mock.base_url());
    spec.extra = c.alerts;
    std::string suite = dir.write("bad.lua", spec.text());
    for (const char* command : {"run", "monitor"}) {
      Result r = shepherd({command, suite, "--db", dir.file("bad.db")}, key_env(1));
      EXPECT_EQ(r.exit_code, 2) << command << ": " << r.err;
      EXPECT_NE(r.err.find("SUITE_INVALID"), std::string::npos) << command << ": " << r.err;
      EXPECT_NE(r.err.find(c.field), std::string::npos) << command << ": " << r.err;
      EXPECT_FALSE(fs::exists(dir.file("bad.db"))) << command;
    }
  }
}
