// HttpClient against the real mock provider over 127.0.0.1: responses,
// concurrency, connection reuse, every transport failure, cancellation.
#include "http/http_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/clock.h"
#include "mock/mock_server.h"
#include "mock/scenario.h"

namespace shepherd {
namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;

// Gathers every delivered response; tests wait for a count.
class Collector {
 public:
  HttpClient::CompletionSink sink() {
    return [this](std::vector<HttpResponse>&& batch) {
      std::lock_guard lock(mutex_);
      ++batches_;
      for (auto& r : batch) responses_.push_back(std::move(r));
      changed_.notify_all();
    };
  }

  bool wait_for(size_t count, Millis timeout) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return responses_.size() >= count; });
  }

  std::vector<HttpResponse> responses() {
    std::lock_guard lock(mutex_);
    return responses_;
  }

  size_t size() {
    std::lock_guard lock(mutex_);
    return responses_.size();
  }

  size_t batches() {
    std::lock_guard lock(mutex_);
    return batches_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<HttpResponse> responses_;
  size_t batches_ = 0;
};

std::unique_ptr<MockServer> start_mock(const json& scenario) {
  auto server = std::make_unique<MockServer>(Scenario::from_json(scenario, "http_client_test"), 0);
  server->start();
  return server;
}

std::string base_url(uint16_t port) { return "http://127.0.0.1:" + std::to_string(port); }

HttpRequest chat_request(uint16_t port, uint64_t id, const std::string& key = "k") {
  HttpRequest r;
  r.id = id;
  r.url = base_url(port) + "/v1/chat/completions";
  r.headers = {"Content-Type: application/json", "Authorization: Bearer " + key};
  r.body = R"({"model":"m","messages":[{"role":"user","content":"hi"}]})";
  r.connect_timeout_ms = 5'000;
  r.total_timeout_ms = 10'000;
  return r;
}

std::vector<HttpRequest> chat_batch(uint16_t port, size_t count, uint64_t first_id = 1) {
  std::vector<HttpRequest> batch;
  batch.reserve(count);
  for (size_t i = 0; i < count; ++i) batch.push_back(chat_request(port, first_id + i));
  return batch;
}

// Waits until the mock holds `count` requests open (hang faults), so a test
// acts on transfers that are truly in flight.
bool wait_server_in_flight(const MockServer& server, int count, Millis timeout) {
  const auto deadline = SteadyClock::now() + timeout;
  while (SteadyClock::now() < deadline) {
    if (server.stats().value("in_flight", 0) >= count) return true;
    std::this_thread::sleep_for(5ms);
  }
  return false;
}

// Client-side TCP sockets (any state, TIME_WAIT included) whose peer is
// 127.0.0.1:port, from /proc/net/tcp: each one is a connection the client opened.
size_t client_connections_to(uint16_t port) {
  std::ifstream in("/proc/net/tcp");
  std::string line;
  std::getline(in, line);  // header
  std::set<std::string> local_ends;
  char wanted[32];
  std::snprintf(wanted, sizeof wanted, "0100007F:%04X", port);
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string slot, local, remote;
    fields >> slot >> local >> remote;
    if (remote == wanted) local_ends.insert(local);
  }
  return local_ends.size();
}

double seconds_since(TimePoint start) { return ms_between(start, SteadyClock::now()) / 1000.0; }

TEST(HttpClient, OkResponseCarriesStatusHeadersAndBody) {
  auto server = start_mock({{"latency", 0}});
  Collector got;
  HttpClient client({}, got.sink());
  client.submit(chat_request(server->port(), 42));
  ASSERT_TRUE(got.wait_for(1, 5s));

  const auto r = got.responses().front();
  EXPECT_EQ(r.id, 42u);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.transport, Transport::none);
  EXPECT_TRUE(r.transport_detail.empty());
  EXPECT_NE(r.header("content-type").find("application/json"), std::string_view::npos);
  for (const auto& [name, value] : r.headers) {
    for (char c : name) EXPECT_FALSE(c >= 'A' && c <= 'Z') << name;
    if (!value.empty()) {  // trimmed
      EXPECT_NE(value.front(), ' ') << name;
      EXPECT_NE(value.back(), '\r') << name;
      EXPECT_NE(value.back(), ' ') << name;
    }
  }
  const auto body = json::parse(r.body);
  EXPECT_TRUE(body.contains("choices")) << r.body;
  EXPECT_GT(r.elapsed_ms, 0.0);
  EXPECT_EQ(client.in_flight(), 0u);
}

TEST(HttpClient, GetRequestWorks) {
  auto server = start_mock({{"latency", 0}});
  Collector got;
  HttpClient client({}, got.sink());
  HttpRequest r;
  r.id = 7;
  r.method = "GET";
  r.url = base_url(server->port()) + "/stats";
  client.submit(std::move(r));
  ASSERT_TRUE(got.wait_for(1, 5s));
  const auto response = got.responses().front();
  EXPECT_EQ(response.status, 200);
  EXPECT_TRUE(json::parse(response.body).contains("requests")) << response.body;
}

TEST(HttpClient, ThousandRequestsRunConcurrently) {
  auto server = start_mock({{"latency", 300}});
  Collector got;
  HttpClient client({}, got.sink());
  const auto start = SteadyClock::now();
  client.submit(chat_batch(server->port(), 1000));
  EXPECT_EQ(client.in_flight(), 1000u);
  ASSERT_TRUE(got.wait_for(1000, 10s)) << got.size();
  const double took = seconds_since(start);
  std::printf("1000 requests at 300 ms latency: %.3f s, %zu sink batches\n", took, got.batches());
  EXPECT_LT(took, 3.0);

  size_t ok = 0;
  std::set<uint64_t> ids;
  for (const auto& r : got.responses()) {
    ok += r.status == 200 && r.transport == Transport::none;
    ids.insert(r.id);
  }
  EXPECT_EQ(ok, 1000u);
  EXPECT_EQ(ids.size(), 1000u);
  EXPECT_LT(got.batches(), 1000u) << "completions of one loop turn arrive as one batch";
  EXPECT_GE(server->stats().value("peak_in_flight", 0), 900);
  EXPECT_EQ(client.in_flight(), 0u);
}

TEST(HttpClient, ConnectionsAreReused) {
  auto server = start_mock({{"latency", 0}});
  Collector got;
  HttpClient client({}, got.sink());
  const auto start = SteadyClock::now();
  for (size_t round = 0; round < 20; ++round) {
    client.submit(chat_batch(server->port(), 100, round * 100));
    ASSERT_TRUE(got.wait_for((round + 1) * 100, 10s));
  }
  const double took = seconds_since(start);
  const size_t opened = client_connections_to(server->port());
  std::printf("2000 requests in 20 batches of 100: %.3f s, %zu connections opened\n", took, opened);
  for (const auto& r : got.responses()) ASSERT_EQ(r.status, 200) << r.transport_detail;
  // Without reuse every request would leave its own socket (TIME_WAIT) behind.
  EXPECT_LE(opened, 200u);
}

TEST(HttpClient, SustainsThroughputWithResubmission) {
  auto server = start_mock({{"latency", 0}});
  constexpr size_t total = 20'000;
  constexpr size_t window = 256;
  std::atomic<size_t> submitted{0};
  std::atomic<size_t> finished{0};
  std::atomic<size_t> failures{0};
  std::mutex mutex;
  std::condition_variable all_done;
  HttpClient* client_ptr = nullptr;
  const uint16_t port = server->port();

  // Closed loop: every completion submits one more, from the loop thread.
  HttpClient client({}, [&](std::vector<HttpResponse>&& batch) {
    for (const auto& r : batch) failures += r.status != 200;
    std::vector<HttpRequest> more;
    for (size_t i = 0; i < batch.size(); ++i) {
      const size_t id = submitted.fetch_add(1);
      if (id >= total) break;
      more.push_back(chat_request(port, id));
    }
    if (!more.empty()) client_ptr->submit(std::move(more));
    if (finished.fetch_add(batch.size()) + batch.size() == total) {
      std::lock_guard lock(mutex);
      all_done.notify_all();
    }
  });
  client_ptr = &client;

  const auto start = SteadyClock::now();
  submitted = window;
  client.submit(chat_batch(port, window, 0));
  {
    std::unique_lock lock(mutex);
    ASSERT_TRUE(all_done.wait_for(lock, 20s, [&] { return finished.load() == total; }))
        << finished.load();
  }
  const double took = seconds_since(start);
  std::printf("%zu requests, %zu in flight, client and mock on one machine: %.3f s, %.0f req/s\n",
              total, window, took, total / took);
  EXPECT_EQ(failures.load(), 0u);
  EXPECT_GT(total / took, 2'000.0);
}

TEST(HttpClient, HungRequestTimesOutNearTheDeadline) {
  auto server = start_mock({{"latency", 0}, {"faults", {{"hang", 1.0}}}});
  Collector got;
  HttpClient client({}, got.sink());
  auto r = chat_request(server->port(), 1);
  r.total_timeout_ms = 500;
  client.submit(std::move(r));
  ASSERT_TRUE(got.wait_for(1, 5s));
  const auto response = got.responses().front();
  EXPECT_EQ(response.transport, Transport::timeout);
  EXPECT_EQ(response.status, 0);
  EXPECT_FALSE(response.transport_detail.empty());
  EXPECT_GE(response.elapsed_ms, 480.0);
  EXPECT_LT(response.elapsed_ms, 1'000.0);
}

TEST(HttpClient, StalledResponseIsAbortedLongBeforeTheTotalTimeout) {
  auto server = start_mock({{"latency", 0}, {"faults", {{"stall", 1.0}}}});
  Collector got;
  HttpClient client({}, got.sink());
  auto r = chat_request(server->port(), 1);
  r.total_timeout_ms = 10'000;
  r.stall_timeout_ms = 300;
  client.submit(std::move(r));
  ASSERT_TRUE(got.wait_for(1, 5s));
  const auto response = got.responses().front();
  EXPECT_EQ(response.transport, Transport::stall) << response.transport_detail;
  EXPECT_EQ(response.status, 200) << "the headers arrived before the silence";
  EXPECT_GE(response.elapsed_ms, 290.0);
  EXPECT_LT(response.elapsed_ms, 1'000.0);
}

TEST(HttpClient, SlowFirstByteIsNotAStall) {
  // A non-streaming answer is silent until it is ready: the stall clock
  // starts only with the first response byte.
  auto server = start_mock({{"latency", 700}});
  Collector got;
  HttpClient client({}, got.sink());
  auto r = chat_request(server->port(), 1);
  r.stall_timeout_ms = 200;
  client.submit(std::move(r));
  ASSERT_TRUE(got.wait_for(1, 5s));
  const auto response = got.responses().front();
  EXPECT_EQ(response.transport, Transport::none) << response.transport_detail;
  EXPECT_EQ(response.status, 200);
}

TEST(HttpClient, ConnectionResetIsReported) {
  auto server = start_mock({{"latency", 0}, {"faults", {{"reset", 1.0}}}});
  Collector got;
  HttpClient client({}, got.sink());
  client.submit(chat_request(server->port(), 1));
  ASSERT_TRUE(got.wait_for(1, 5s));
  const auto response = got.responses().front();
  EXPECT_EQ(response.transport, Transport::reset) << response.transport_detail;
  EXPECT_EQ(response.status, 0);
}

TEST(HttpClient, NothingListeningIsAConnectFailure) {
  // A bound socket that never listens: connecting to it is refused.
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  socklen_t length = sizeof address;
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length), 0);
  const uint16_t port = ntohs(address.sin_port);

  Collector got;
  HttpClient client({}, got.sink());
  client.submit(chat_request(port, 1, "sk-secret-value"));
  ASSERT_TRUE(got.wait_for(1, 5s));
  ::close(fd);
  const auto response = got.responses().front();
  EXPECT_EQ(response.transport, Transport::connect) << response.transport_detail;
  EXPECT_EQ(response.status, 0);
  EXPECT_LT(response.elapsed_ms, 1'000.0);
  EXPECT_FALSE(response.transport_detail.empty());
  EXPECT_EQ(response.transport_detail.find("sk-secret"), std::string::npos);
}

TEST(HttpClient, OversizedBodyIsCut) {
  auto server = start_mock({{"latency", 0}});
  Collector got;
  HttpClient client({}, got.sink());
  auto r = chat_request(server->port(), 1);
  r.max_response_bytes = 10;
  client.submit(std::move(r));
  ASSERT_TRUE(got.wait_for(1, 5s));
  const auto response = got.responses().front();
  EXPECT_EQ(response.transport, Transport::too_large);
  EXPECT_LE(response.body.size(), 10u);
}

TEST(HttpClient, ErrorStatusesAreResponsesNotTransportFailures) {
  Collector got;
  HttpClient client({}, got.sink());

  auto failing = start_mock({{"latency", 0}, {"faults", {{"error_500", 1.0}}}});
  client.submit(chat_request(failing->port(), 500));
  auto guarded = start_mock({{"latency", 0}, {"keys", {"good"}}});
  client.submit(chat_request(guarded->port(), 401, "bad"));
  auto limited =
      start_mock({{"latency", 0}, {"rate_limit", {{"requests", 1}, {"window_ms", 60'000}}}});
  client.submit(chat_request(limited->port(), 200));
  ASSERT_TRUE(got.wait_for(3, 5s));
  client.submit(chat_request(limited->port(), 429));
  ASSERT_TRUE(got.wait_for(4, 5s));

  for (const auto& r : got.responses()) {
    EXPECT_EQ(r.transport, Transport::none) << r.id << ": " << r.transport_detail;
    EXPECT_EQ(r.status, static_cast<long>(r.id)) << r.body;
    if (r.id == 429) {
      EXPECT_FALSE(r.header("retry-after").empty()) << "429 carries Retry-After";
    }
  }
}

TEST(HttpClient, CancelAllDeliversEveryHungRequestPromptly) {
  auto server = start_mock({{"latency", 0}, {"faults", {{"hang", 1.0}}}});
  Collector got;
  HttpClient client({}, got.sink());
  auto batch = chat_batch(server->port(), 100);
  for (auto& r : batch) r.total_timeout_ms = 30'000;
  client.submit(std::move(batch));
  ASSERT_TRUE(wait_server_in_flight(*server, 100, 5s));

  const auto start = SteadyClock::now();
  client.cancel_all();
  ASSERT_TRUE(got.wait_for(100, 2s)) << got.size();
  const double took = seconds_since(start);
  std::printf("cancel_all on 100 hung requests: %.1f ms\n", took * 1000);
  EXPECT_LT(took, 0.5);
  for (const auto& r : got.responses()) EXPECT_EQ(r.transport, Transport::cancelled);
  EXPECT_EQ(client.in_flight(), 0u);

  // The client keeps working after a cancel.
  auto next = chat_request(server->port(), 1000);
  next.total_timeout_ms = 200;
  client.submit(std::move(next));
  ASSERT_TRUE(got.wait_for(101, 5s));
  EXPECT_EQ(got.responses().back().transport, Transport::timeout);
}

TEST(HttpClient, CancelAllRightAfterSubmitCancelsQueuedAndStartedAlike) {
  // Whether the loop has picked the batch up yet or not, each is cancelled.
  auto server = start_mock({{"latency", 0}, {"faults", {{"hang", 1.0}}}});
  Collector got;
  HttpClient client({}, got.sink());
  for (uint64_t id = 0; id < 50; ++id) client.submit(chat_request(server->port(), id));
  client.cancel_all();
  ASSERT_TRUE(got.wait_for(50, 2s)) << got.size();
  for (const auto& r : got.responses()) EXPECT_EQ(r.transport, Transport::cancelled);
  EXPECT_EQ(client.in_flight(), 0u);
}

TEST(HttpClient, DestructorWithTransfersInFlightReturnsPromptly) {
  auto server = start_mock({{"latency", 0}, {"faults", {{"hang", 1.0}}}});
  Collector got;
  auto client = std::make_unique<HttpClient>(HttpClientOptions{}, got.sink());
  auto batch = chat_batch(server->port(), 100);
  for (auto& r : batch) r.total_timeout_ms = 30'000;
  client->submit(std::move(batch));
  ASSERT_TRUE(wait_server_in_flight(*server, 100, 5s));

  const auto start = SteadyClock::now();
  client.reset();
  const double took = seconds_since(start);
  std::printf("destructor with 100 in flight: %.1f ms\n", took * 1000);
  EXPECT_LT(took, 0.5);
  EXPECT_EQ(got.size(), 0u) << "no completions from the destructor";
}

}  // namespace
}  // namespace shepherd
