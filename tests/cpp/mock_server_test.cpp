#include "mock/mock_server.h"

#include <curl/curl.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/hash.h"
#include "mock/details/chat_answer.h"
#include "mock/details/chat_reply.h"
#include "mock/details/chat_stream.h"
#include "mock/details/mock_behavior.h"
#include "mock/details/request_log.h"
#include "mock/scenario.h"

namespace shepherd {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

// ---- a small libcurl client --------------------------------------------------

struct HttpResult {
  CURLcode code = CURLE_OK;
  long status = 0;
  std::string body;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string error;
  double seconds = 0;

  json json_body() const { return json::parse(body, nullptr, false); }
  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
};

struct CurlDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct SlistDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};
using CurlPtr = std::unique_ptr<CURL, CurlDeleter>;
using SlistPtr = std::unique_ptr<curl_slist, SlistDeleter>;

size_t collect_body(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

size_t collect_header(char* data, size_t size, size_t n, void* out) {
  std::string line(data, size * n);
  auto colon = line.find(':');
  if (colon != std::string::npos) {
    std::string name = line.substr(0, colon);
    std::transform(name.begin(), name.end(), name.begin(), ::tolower);
    std::string value = line.substr(colon + 1);
    value.erase(0, value.find_first_not_of(' '));
    value.erase(value.find_last_not_of("\r\n ") + 1);
    (*static_cast<std::map<std::string, std::string>*>(out))[name] = value;
  }
  return size * n;
}

struct Request {
  std::string method = "POST";
  std::string path = "/v1/chat/completions";
  std::string body;
  std::vector<std::string> headers;
  long timeout_ms = 5000;
};

// Sets up an easy handle; `headers` and `result` must outlive the transfer.
CurlPtr make_easy(uint16_t port, const Request& r, SlistPtr& headers, HttpResult& result,
                  char* errbuf) {
  CurlPtr c(curl_easy_init());
  const std::string url = "http://127.0.0.1:" + std::to_string(port) + r.path;
  curl_easy_setopt(c.get(), CURLOPT_URL, url.c_str());
  curl_easy_setopt(c.get(), CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_1_1);
  curl_easy_setopt(c.get(), CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c.get(), CURLOPT_TIMEOUT_MS, r.timeout_ms);
  curl_easy_setopt(c.get(), CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(c.get(), CURLOPT_WRITEFUNCTION, collect_body);
  curl_easy_setopt(c.get(), CURLOPT_WRITEDATA, &result.body);
  curl_easy_setopt(c.get(), CURLOPT_HEADERFUNCTION, collect_header);
  curl_easy_setopt(c.get(), CURLOPT_HEADERDATA, &result.headers);
  if (r.method == "POST") {
    curl_easy_setopt(c.get(), CURLOPT_POST, 1L);
    curl_easy_setopt(c.get(), CURLOPT_POSTFIELDSIZE, static_cast<long>(r.body.size()));
    curl_easy_setopt(c.get(), CURLOPT_COPYPOSTFIELDS, r.body.c_str());
  }
  curl_slist* list = nullptr;
  list = curl_slist_append(list, "Content-Type: application/json");
  list = curl_slist_append(list, "Expect:");
  for (const auto& h : r.headers) list = curl_slist_append(list, h.c_str());
  headers.reset(list);
  curl_easy_setopt(c.get(), CURLOPT_HTTPHEADER, list);
  return c;
}

HttpResult http(uint16_t port, const Request& r) {
  HttpResult result;
  char errbuf[CURL_ERROR_SIZE] = {};
  SlistPtr headers;
  CurlPtr c = make_easy(port, r, headers, result, errbuf);
  const auto t0 = std::chrono::steady_clock::now();
  result.code = curl_easy_perform(c.get());
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  curl_easy_getinfo(c.get(), CURLINFO_RESPONSE_CODE, &result.status);
  result.error = errbuf;
  return result;
}

json chat_body(const std::string& model, const std::string& content) {
  return {{"model", model}, {"messages", {{{"role", "user"}, {"content", content}}}}};
}

HttpResult chat(uint16_t port, const std::string& key, const std::string& model,
                const std::string& content = "hello", long timeout_ms = 5000) {
  Request r;
  r.body = chat_body(model, content).dump();
  if (!key.empty()) r.headers.push_back("Authorization: Bearer " + key);
  r.timeout_ms = timeout_ms;
  return http(port, r);
}

json get_stats(uint16_t port) {
  Request r;
  r.method = "GET";
  r.path = "/stats";
  return http(port, r).json_body();
}

std::unique_ptr<MockServer> serve(const json& scenario) {
  auto server = std::make_unique<MockServer>(Scenario::from_json(scenario, "test.json"), 0);
  server->start();
  return server;
}

// Polls until the server has dropped every held request (the client closed).
bool drains(const MockServer& server, std::chrono::milliseconds within = 2000ms) {
  const auto deadline = std::chrono::steady_clock::now() + within;
  while (std::chrono::steady_clock::now() < deadline) {
    if (server.stats()["in_flight"] == 0) return true;
    std::this_thread::sleep_for(10ms);
  }
  return false;
}

// ---- chat completions --------------------------------------------------------

TEST(MockServer, AnswersWithAChatCompletion) {
  auto server = serve({{"latency", 0}});
  HttpResult r = chat(server->port(), "any-key", "m-a", "hello there");
  ASSERT_EQ(r.code, CURLE_OK) << r.error;
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.header("content-type"), "application/json");
  json j = r.json_body();
  ASSERT_TRUE(j.is_object()) << r.body;
  EXPECT_EQ(j["id"].get<std::string>().rfind("chatcmpl-mock-", 0), 0u);
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_GT(j["created"].get<int64_t>(), 1'600'000'000);
  EXPECT_EQ(j["model"], "m-a");
  ASSERT_EQ(j["choices"].size(), 1u);
  EXPECT_EQ(j["choices"][0]["index"], 0);
  EXPECT_EQ(j["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(j["choices"][0]["message"]["content"], "mock answer: hello there");
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
  const json& usage = j["usage"];
  EXPECT_GE(usage["prompt_tokens"].get<int>(), 1);
  EXPECT_GE(usage["completion_tokens"].get<int>(), 1);
  EXPECT_EQ(usage["total_tokens"].get<int>(),
            usage["prompt_tokens"].get<int>() + usage["completion_tokens"].get<int>());
  EXPECT_TRUE(r.header("x-ratelimit-limit-requests").empty());  // no rate limit configured

  // Ids are distinct per completion.
  HttpResult again = chat(server->port(), "any-key", "m-a");
  EXPECT_NE(again.json_body()["id"], j["id"]);
}

TEST(MockServer, EchoesAtMost200CharactersOfTheLastMessage) {
  auto server = serve(json::object());
  Request r;
  r.headers = {"Authorization: Bearer k"};
  std::string long_text;
  for (int i = 0; i < 150; ++i) long_text += "é";  // 2 bytes each: cut on characters
  long_text += std::string(100, 'x');
  r.body = json{{"model", "m-a"},
                {"messages",
                 {{{"role", "system"}, {"content", "be brief"}},
                  {{"role", "user"}, {"content", {{{"type", "text"}, {"text", long_text}}}}}}}}
               .dump();
  HttpResult res = http(server->port(), r);
  ASSERT_EQ(res.status, 200) << res.body;
  json j = res.json_body();
  ASSERT_TRUE(j.is_object()) << res.body;
  std::string expected = "mock answer: ";
  for (int i = 0; i < 150; ++i) expected += "é";
  expected += std::string(50, 'x');
  EXPECT_EQ(j["choices"][0]["message"]["content"], expected);
  EXPECT_GE(j["usage"]["prompt_tokens"].get<int>(), (8 + 400) / 4);
}

TEST(MockServer, AcceptsTheShortPathAndTheAzureKeyHeader) {
  auto server = serve({{"keys", {"key-a"}}});
  Request r;
  r.path = "/chat/completions";
  r.body = chat_body("m-a", "hi").dump();
  r.headers = {"api-key: key-a"};
  HttpResult res = http(server->port(), r);
  EXPECT_EQ(res.status, 200) << res.body;
}

TEST(MockServer, RejectsABadBodyWith400) {
  auto server = serve({{"keys", {"key-a"}}});
  Request r;
  r.headers = {"Authorization: Bearer key-a"};
  r.body = "{not json";
  HttpResult res = http(server->port(), r);
  EXPECT_EQ(res.status, 400);
  EXPECT_TRUE(res.json_body()["error"]["message"].is_string()) << res.body;

  r.body = R"({"messages":[]})";  // no model
  res = http(server->port(), r);
  EXPECT_EQ(res.status, 400);
  EXPECT_EQ(res.json_body()["error"]["type"], "invalid_request_error");

  r.body = "";
  EXPECT_EQ(http(server->port(), r).status, 400);

  // 400 comes before the key check.
  r.headers = {"Authorization: Bearer wrong"};
  r.body = "[]";
  EXPECT_EQ(http(server->port(), r).status, 400);
}

TEST(MockServer, RejectsUnknownKeysWith401WithoutEchoingThem) {
  auto server = serve({{"keys", {"key-a", "key-b"}}});
  HttpResult r = chat(server->port(), "sk-secret-value", "m-a");
  EXPECT_EQ(r.status, 401);
  json j = r.json_body();
  EXPECT_EQ(j["error"]["message"], "Incorrect API key provided.");
  EXPECT_EQ(j["error"]["type"], "invalid_request_error");
  EXPECT_EQ(j["error"]["code"], "invalid_api_key");
  EXPECT_EQ(r.body.find("sk-secret-value"), std::string::npos);
  EXPECT_EQ(get_stats(server->port()).dump().find("sk-secret-value"), std::string::npos);

  EXPECT_EQ(chat(server->port(), "", "m-a").status, 401);  // no key at all
  EXPECT_EQ(chat(server->port(), "key-b", "m-a").status, 200);
}

TEST(MockServer, WithoutAKeyListAnyKeyIsValidButOneIsRequired) {
  auto server = serve(json::object());
  EXPECT_EQ(chat(server->port(), "whatever", "m-a").status, 200);
  EXPECT_EQ(chat(server->port(), "", "m-a").status, 401);
}

TEST(MockServer, RateLimitsPerKeyAndModelWithOpenAiHeaders) {
  auto server =
      serve({{"keys", {"k1", "k2"}}, {"rate_limit", {{"requests", 3}, {"window_ms", 1000}}}});
  const auto port = server->port();
  for (int i = 0; i < 3; ++i) {
    HttpResult r = chat(port, "k1", "m-a");
    ASSERT_EQ(r.status, 200) << i;
    EXPECT_EQ(r.header("x-ratelimit-limit-requests"), "3");
    EXPECT_EQ(r.header("x-ratelimit-remaining-requests"), std::to_string(2 - i));
    EXPECT_FALSE(r.header("x-ratelimit-reset-requests").empty());
  }
  HttpResult limited = chat(port, "k1", "m-a");
  ASSERT_EQ(limited.status, 429);
  EXPECT_EQ(limited.json_body()["error"]["code"], "rate_limit_exceeded");
  EXPECT_EQ(limited.header("retry-after"), "1");  // whole seconds, rounded up
  const int retry_ms = std::stoi(limited.header("retry-after-ms"));
  EXPECT_GE(retry_ms, 1);
  EXPECT_LE(retry_ms, 1000);
  EXPECT_EQ(limited.header("x-ratelimit-limit-requests"), "3");
  EXPECT_EQ(limited.header("x-ratelimit-remaining-requests"), "0");
  EXPECT_EQ(limited.header("x-ratelimit-reset-requests"), details::format_reset_duration(retry_ms));

  // Other (key, model) pairs have their own windows.
  EXPECT_EQ(chat(port, "k1", "m-b").status, 200);
  EXPECT_EQ(chat(port, "k2", "m-a").status, 200);

  std::this_thread::sleep_for(std::chrono::milliseconds(retry_ms + 20));
  HttpResult recovered = chat(port, "k1", "m-a");
  EXPECT_EQ(recovered.status, 200);
  EXPECT_EQ(recovered.header("x-ratelimit-remaining-requests"), "2");
}

TEST(MockServer, QuotaRunsOutAfterExactlyNSuccesses) {
  auto server = serve({{"quota", {{"m-a", 3}}}});
  for (int i = 0; i < 3; ++i) ASSERT_EQ(chat(server->port(), "k", "m-a").status, 200) << i;
  HttpResult r = chat(server->port(), "k", "m-a");
  EXPECT_EQ(r.status, 403);
  json j = r.json_body();
  EXPECT_EQ(j["error"]["type"], "insufficient_quota");
  EXPECT_EQ(j["error"]["code"], "insufficient_quota");
  EXPECT_EQ(j["error"]["message"].get<std::string>().rfind("You exceeded your current quota", 0),
            0u);
  EXPECT_EQ(chat(server->port(), "k", "m-b").status, 200);  // no quota for m-b
}

// ---- faults -------------------------------------------------------------------

TEST(MockServer, Error500Fault) {
  auto server = serve({{"faults", {{"error_500", 1}}}});
  HttpResult r = chat(server->port(), "k", "m-a");
  EXPECT_EQ(r.status, 500);
  EXPECT_EQ(r.json_body()["error"]["type"], "server_error");
}

TEST(MockServer, HangFaultHoldsTheRequestUntilTheClientGivesUp) {
  auto server = serve({{"faults", {{"hang", 1}}}});
  HttpResult r = chat(server->port(), "k", "m-a", "hello", 300);
  EXPECT_EQ(r.code, CURLE_OPERATION_TIMEDOUT) << r.error;
  EXPECT_EQ(r.status, 0);
  EXPECT_GE(r.seconds, 0.25);
  EXPECT_TRUE(drains(*server));  // the server noticed the close and dropped the request
  EXPECT_EQ(server->stats()["by_outcome"]["hang"], 1);
}

TEST(MockServer, StallFaultSendsHalfTheBodyThenGoesSilent) {
  auto server = serve({{"faults", {{"stall", 1}}}});
  HttpResult r = chat(server->port(), "k", "m-a", "hello", 300);
  EXPECT_EQ(r.code, CURLE_OPERATION_TIMEDOUT) << r.error;
  EXPECT_EQ(r.status, 200);
  const size_t full = std::stoul(r.header("content-length"));
  EXPECT_GT(full, 100u);
  EXPECT_EQ(r.body.size(), full / 2);
  EXPECT_FALSE(json::accept(r.body));
  EXPECT_TRUE(drains(*server));
}

TEST(MockServer, ResetFaultAbortsTheConnection) {
  auto server = serve({{"faults", {{"reset", 1}}}});
  HttpResult r = chat(server->port(), "k", "m-a");
  EXPECT_EQ(r.code, CURLE_RECV_ERROR) << curl_easy_strerror(r.code) << ": " << r.error;
  EXPECT_NE(r.error.find("reset"), std::string::npos) << r.error;
  EXPECT_EQ(r.status, 0);
  EXPECT_TRUE(drains(*server));
  // The server keeps serving.
  EXPECT_EQ(get_stats(server->port())["by_outcome"]["reset"], 1);
}

TEST(MockServer, MalformedFaultAnswers200WithABrokenBody) {
  auto server = serve({{"faults", {{"malformed", 1}}}});
  HttpResult r = chat(server->port(), "k", "m-a");
  EXPECT_EQ(r.code, CURLE_OK);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.header("content-type"), "application/json");
  EXPECT_FALSE(r.body.empty());
  EXPECT_FALSE(json::accept(r.body)) << r.body;
}

TEST(MockServer, WrongModelFaultAnswersForAnotherModel) {
  auto server = serve({{"faults", {{"wrong_model", 1}}}, {"wrong_model", "mock-impostor-72b"}});
  HttpResult r = chat(server->port(), "k", "mock-7b");
  ASSERT_EQ(r.status, 200);
  json j = r.json_body();
  EXPECT_EQ(j["model"], "mock-impostor-72b");
  EXPECT_EQ(j["object"], "chat.completion");
}

TEST(MockServer, FirstAttemptOnlyFaultsACellOnce) {
  auto server = serve({{"faults", {{"error_500", 1}, {"first_attempt_only", true}}}});
  const auto port = server->port();
  EXPECT_EQ(chat(port, "k", "m-a", "cell one").status, 500);
  EXPECT_EQ(chat(port, "k", "m-a", "cell one").status, 200);
  EXPECT_EQ(chat(port, "k2", "m-a", "cell one").status, 200);  // the key is not part of a cell
  EXPECT_EQ(chat(port, "k", "m-a", "cell two").status, 500);
  EXPECT_EQ(chat(port, "k", "m-b", "cell one").status, 500);
}

TEST(MockServer, FaultsFollowTheSeed) {
  const json scenario = {{"faults", {{"error_500", 0.5}}}, {"seed", 7}};
  std::vector<long> first, second;
  for (auto* out : {&first, &second}) {
    auto server = serve(scenario);
    for (int i = 0; i < 20; ++i) out->push_back(chat(server->port(), "k", "m-a").status);
  }
  EXPECT_EQ(first, second);
  EXPECT_NE(std::count(first.begin(), first.end(), 500), 0);
  EXPECT_NE(std::count(first.begin(), first.end(), 200), 0);
}

// ---- latency and concurrency ----------------------------------------------------

TEST(MockServer, AnswersAfterTheLatency) {
  auto server = serve({{"latency", {{"kind", "fixed"}, {"ms", 150}}}});
  HttpResult r = chat(server->port(), "k", "m-a");
  EXPECT_EQ(r.status, 200);
  EXPECT_GE(r.seconds, 0.14);
  EXPECT_EQ(server->stats()["in_flight"], 0);
}

TEST(MockServer, DropsADelayedRequestWhoseClientLeft) {
  auto server = serve({{"latency", 2000}});
  HttpResult r = chat(server->port(), "k", "m-a", "hello", 200);
  EXPECT_EQ(r.code, CURLE_OPERATION_TIMEDOUT);
  EXPECT_TRUE(drains(*server, 1000ms));
}

TEST(MockServer, StopsCleanlyWhileHoldingRequests) {
  // Delayed answers, hangs and stalls are all still held when the server goes.
  for (const json& scenario :
       {json{{"latency", 5000}}, json{{"faults", {{"hang", 0.5}, {"stall", 0.5}}}, {"seed", 3}}}) {
    auto server = serve(scenario);
    constexpr int n = 6;
    CURLM* multi = curl_multi_init();
    HttpResult results[n];
    SlistPtr lists[n];
    char errbufs[n][CURL_ERROR_SIZE] = {};
    CurlPtr easies[n];
    for (int i = 0; i < n; ++i) {
      Request req;
      req.body = chat_body("m-a", "x").dump();
      req.headers = {"Authorization: Bearer k"};
      easies[i] = make_easy(server->port(), req, lists[i], results[i], errbufs[i]);
      curl_multi_add_handle(multi, easies[i].get());
    }
    for (int spin = 0; spin < 30 && server->stats()["in_flight"] != n; ++spin) {
      int running = 0;
      curl_multi_perform(multi, &running);
      curl_multi_poll(multi, nullptr, 0, 10, nullptr);
    }
    json stats = server->stats();
    EXPECT_EQ(stats["in_flight"], n) << scenario.dump();
    if (scenario.contains("faults")) {
      EXPECT_GT(stats["by_outcome"]["hang"].get<int>(), 0);
      EXPECT_GT(stats["by_outcome"]["stall"].get<int>(), 0);
    }
    server.reset();  // destroyed while holding them: no leak, no dangling timer
    for (auto& e : easies) curl_multi_remove_handle(multi, e.get());
    curl_multi_cleanup(multi);
  }
}

TEST(MockServer, HoldsManyRequestsAtOnceAndCountsThePeak) {
  constexpr int n = 50;
  auto server = serve({{"latency", 300}, {"keys", {"k"}}});
  CURLM* multi = curl_multi_init();
  std::vector<HttpResult> results(n);
  std::vector<SlistPtr> lists(n);
  std::vector<std::array<char, CURL_ERROR_SIZE>> errbufs(n);
  std::vector<CurlPtr> easies;
  for (int i = 0; i < n; ++i) {
    Request req;
    req.body = chat_body("m-a", "question " + std::to_string(i)).dump();
    req.headers = {"Authorization: Bearer k"};
    easies.push_back(make_easy(server->port(), req, lists[i], results[i], errbufs[i].data()));
    curl_multi_add_handle(multi, easies.back().get());
  }
  const auto t0 = std::chrono::steady_clock::now();
  int running = 0;
  do {
    curl_multi_perform(multi, &running);
    curl_multi_poll(multi, nullptr, 0, 50, nullptr);
  } while (running > 0);
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  int done = 0;
  while (CURLMsg* msg = curl_multi_info_read(multi, &running)) {
    if (msg->msg != CURLMSG_DONE) continue;
    EXPECT_EQ(msg->data.result, CURLE_OK);
    long status = 0;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &status);
    EXPECT_EQ(status, 200);
    ++done;
  }
  for (auto& e : easies) curl_multi_remove_handle(multi, e.get());
  curl_multi_cleanup(multi);
  EXPECT_EQ(done, n);
  EXPECT_LT(elapsed, 2.0);  // concurrent, not one after another

  json stats = get_stats(server->port());
  EXPECT_GE(stats["peak_in_flight"].get<int>(), n);
  EXPECT_EQ(stats["in_flight"], 0);
  EXPECT_EQ(stats["requests"], n);
  EXPECT_EQ(stats["by_outcome"]["ok"], n);
}

// ---- streaming ------------------------------------------------------------------

// A response read as it arrives: when the headers came, and each piece of body.
struct TimedResult {
  HttpResult http;
  std::chrono::steady_clock::time_point t0;
  double headers_at = -1;                             // seconds to the first header line
  std::vector<std::pair<double, std::string>> reads;  // seconds since the start, bytes

  double since_start() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
};

size_t timed_body(char* data, size_t size, size_t n, void* out) {
  auto* r = static_cast<TimedResult*>(out);
  r->reads.emplace_back(r->since_start(), std::string(data, size * n));
  return collect_body(data, size, n, &r->http.body);
}

size_t timed_header(char* data, size_t size, size_t n, void* out) {
  auto* r = static_cast<TimedResult*>(out);
  if (r->headers_at < 0) r->headers_at = r->since_start();
  return collect_header(data, size, n, &r->http.headers);
}

TimedResult timed_http(uint16_t port, const Request& req) {
  TimedResult result;
  char errbuf[CURL_ERROR_SIZE] = {};
  SlistPtr headers;
  CurlPtr c = make_easy(port, req, headers, result.http, errbuf);
  curl_easy_setopt(c.get(), CURLOPT_WRITEFUNCTION, timed_body);
  curl_easy_setopt(c.get(), CURLOPT_WRITEDATA, &result);
  curl_easy_setopt(c.get(), CURLOPT_HEADERFUNCTION, timed_header);
  curl_easy_setopt(c.get(), CURLOPT_HEADERDATA, &result);
  result.t0 = std::chrono::steady_clock::now();
  result.http.code = curl_easy_perform(c.get());
  result.http.seconds = result.since_start();
  curl_easy_getinfo(c.get(), CURLINFO_RESPONSE_CODE, &result.http.status);
  result.http.error = errbuf;
  return result;
}

json stream_body(const std::string& model, const std::string& content, bool include_usage) {
  json body = chat_body(model, content);
  body["stream"] = true;
  if (include_usage) body["stream_options"] = {{"include_usage", true}};
  return body;
}

TimedResult stream_chat(uint16_t port, const std::string& content = "hello there",
                        bool include_usage = false, long timeout_ms = 5000,
                        const std::string& model = "m-a") {
  Request r;
  r.body = stream_body(model, content, include_usage).dump();
  r.headers = {"Authorization: Bearer k"};
  r.timeout_ms = timeout_ms;
  return timed_http(port, r);
}

// One server-sent event: a comment (": …") or the text after "data: ".
struct SseEvent {
  bool comment = false;
  std::string data;
  json chunk() const { return json::parse(data, nullptr, false); }
};

// Splits a body into events; every event must end with a blank line.
std::vector<SseEvent> sse_events(const std::string& body, std::string* rest = nullptr) {
  std::vector<SseEvent> events;
  size_t at = 0;
  for (size_t end; (end = body.find("\n\n", at)) != std::string::npos; at = end + 2) {
    std::string text = body.substr(at, end - at);
    SseEvent e;
    if (text.rfind(":", 0) == 0) {
      e.comment = true;
      e.data = text;
    } else if (text.rfind("data: ", 0) == 0) {
      e.data = text.substr(6);
    } else {
      ADD_FAILURE() << "not an SSE event: " << text;
    }
    events.push_back(std::move(e));
  }
  if (rest) *rest = body.substr(at);
  else EXPECT_EQ(at, body.size()) << "an unfinished event: " << body.substr(at);
  return events;
}

std::vector<SseEvent> data_events(const std::vector<SseEvent>& events) {
  std::vector<SseEvent> out;
  for (const auto& e : events)
    if (!e.comment) out.push_back(e);
  return out;
}

// The content a client assembles from the deltas.
std::string assembled(const std::vector<SseEvent>& events) {
  std::string out;
  for (const auto& e : data_events(events)) {
    json j = e.chunk();
    if (!j.is_object() || j["choices"].empty()) continue;
    const json& delta = j["choices"][0]["delta"];
    if (delta.contains("content")) out += delta["content"].get<std::string>();
  }
  return out;
}

// Checks the OpenAI chunk sequence: role, content pieces, finish, [usage], [DONE].
void expect_openai_stream(const std::vector<SseEvent>& all, const std::string& model,
                          bool include_usage) {
  const std::vector<SseEvent> events = data_events(all);
  ASSERT_GE(events.size(), 4u);
  EXPECT_EQ(events.back().data, "[DONE]");
  const size_t chunks = events.size() - 1;
  const size_t finish = include_usage ? chunks - 2 : chunks - 1;
  std::string id;
  for (size_t i = 0; i < chunks; ++i) {
    SCOPED_TRACE("event " + std::to_string(i) + ": " + events[i].data);
    json j = events[i].chunk();
    ASSERT_TRUE(j.is_object());
    if (id.empty()) id = j["id"].get<std::string>();
    EXPECT_EQ(j["id"], id);  // one id for the whole stream
    EXPECT_EQ(id.rfind("chatcmpl-mock-", 0), 0u);
    EXPECT_EQ(j["object"], "chat.completion.chunk");
    EXPECT_GT(j["created"].get<int64_t>(), 1'600'000'000);
    EXPECT_EQ(j["model"], model);
    if (i > finish) {  // the usage chunk
      EXPECT_EQ(j["choices"], json::array());
      EXPECT_TRUE(j["usage"].is_object());
      continue;
    }
    if (include_usage)
      EXPECT_TRUE(j.contains("usage") && j["usage"].is_null());
    else
      EXPECT_FALSE(j.contains("usage"));
    ASSERT_EQ(j["choices"].size(), 1u);
    const json& choice = j["choices"][0];
    EXPECT_EQ(choice["index"], 0);
    EXPECT_TRUE(choice.contains("logprobs") && choice["logprobs"].is_null());
    if (i == 0) {
      EXPECT_EQ(choice["delta"], json({{"role", "assistant"}, {"content", ""}}));
      EXPECT_TRUE(choice["finish_reason"].is_null());
    } else if (i < finish) {
      ASSERT_EQ(choice["delta"].size(), 1u);
      EXPECT_FALSE(choice["delta"]["content"].get<std::string>().empty());
      EXPECT_TRUE(choice["finish_reason"].is_null());
    } else {
      EXPECT_EQ(choice["delta"], json::object());
      EXPECT_EQ(choice["finish_reason"], "stop");
    }
  }
  const size_t pieces = finish - 1;
  EXPECT_GE(pieces, 4u);
  EXPECT_LE(pieces, 8u);
}

TEST(MockServer, StreamsChunksAsOpenAiDoes) {
  auto server = serve({{"latency", 0}});
  TimedResult r = stream_chat(server->port(), "hello there");
  ASSERT_EQ(r.http.code, CURLE_OK) << r.http.error;
  EXPECT_EQ(r.http.status, 200);
  EXPECT_EQ(r.http.header("content-type"), "text/event-stream");
  EXPECT_EQ(r.http.header("transfer-encoding"), "chunked");
  EXPECT_TRUE(r.http.header("content-length").empty());
  std::vector<SseEvent> events = sse_events(r.http.body);
  expect_openai_stream(events, "m-a", false);
  EXPECT_EQ(data_events(events).size(), events.size()) << "no comments unless configured";

  // The deltas add up to what the same request gets unstreamed.
  HttpResult plain = chat(server->port(), "k", "m-a", "hello there");
  EXPECT_EQ(assembled(events), plain.json_body()["choices"][0]["message"]["content"]);
  EXPECT_EQ(assembled(events), "mock answer: hello there");

  json stats = get_stats(server->port());
  EXPECT_EQ(stats["streamed"], 1);
  EXPECT_EQ(stats["by_outcome"]["ok"], 2);
  EXPECT_EQ(stats["in_flight"], 0);
}

TEST(MockServer, StreamEndsWithAUsageChunkWhenAsked) {
  auto server = serve({{"latency", 0}, {"rate_limit", {{"requests", 10}}}});
  TimedResult r = stream_chat(server->port(), "count my tokens", true);
  ASSERT_EQ(r.http.code, CURLE_OK) << r.http.error;
  EXPECT_EQ(r.http.header("x-ratelimit-limit-requests"), "10");
  std::vector<SseEvent> events = data_events(sse_events(r.http.body));
  expect_openai_stream(events, "m-a", true);
  ASSERT_GE(events.size(), 2u);
  json usage = events[events.size() - 2].chunk()["usage"];

  HttpResult plain = chat(server->port(), "k", "m-a", "count my tokens");
  EXPECT_EQ(usage, plain.json_body()["usage"]);
  EXPECT_EQ(assembled(events), plain.json_body()["choices"][0]["message"]["content"]);

  // include_usage without stream is no stream at all.
  Request unstreamed;
  json body = chat_body("m-a", "x");
  body["stream_options"] = {{"include_usage", true}};
  body["stream"] = false;
  unstreamed.body = body.dump();
  unstreamed.headers = {"Authorization: Bearer k"};
  HttpResult u = http(server->port(), unstreamed);
  EXPECT_EQ(u.header("content-type"), "application/json");
  EXPECT_EQ(u.json_body()["object"], "chat.completion");
  EXPECT_EQ(get_stats(server->port())["streamed"], 1);
}

TEST(MockServer, StreamedContentMatchesForLongAndMultibyteText) {
  auto server = serve(json::object());
  std::string text;
  for (int i = 0; i < 150; ++i) text += "é";
  text += std::string(100, 'x');
  TimedResult r = stream_chat(server->port(), text, true);
  ASSERT_EQ(r.http.code, CURLE_OK) << r.http.error;
  std::vector<SseEvent> events = sse_events(r.http.body);
  expect_openai_stream(events, "m-a", true);  // every chunk parses: no split UTF-8
  HttpResult plain = chat(server->port(), "k", "m-a", text);
  EXPECT_EQ(assembled(events), plain.json_body()["choices"][0]["message"]["content"]);
}

TEST(MockServer, SplitsContentIntoFourToEightPieces) {
  for (std::string text : {std::string("mock answer: hi"), std::string(300, 'a'),
                           std::string("mock answer: ") + "日本語のテキスト", std::string("ab")}) {
    std::vector<std::string_view> pieces = details::split_content(text);
    std::string joined;
    for (auto p : pieces) {
      EXPECT_FALSE(p.empty());
      EXPECT_NE(static_cast<unsigned char>(p.front()) & 0xC0, 0x80) << "starts inside a character";
      joined += p;
    }
    EXPECT_EQ(joined, text);
    if (text.size() >= 4) {
      EXPECT_GE(pieces.size(), 4u) << text;
      EXPECT_LE(pieces.size(), 8u) << text;
    } else {
      EXPECT_EQ(pieces.size(), text.size());
    }
  }
}

TEST(MockServer, StreamSendsHeadersAtOnceThenWaitsTheLatencyThenChunkMs) {
  auto server = serve({{"latency", 250}, {"stream", {{"chunk_ms", 40}}}});
  TimedResult r = stream_chat(server->port());
  ASSERT_EQ(r.http.code, CURLE_OK) << r.http.error;
  ASSERT_FALSE(r.reads.empty());
  EXPECT_LT(r.headers_at, 0.15) << "headers come before the first token";
  EXPECT_GE(r.reads.front().first, 0.24) << "time to first token is the latency";
  EXPECT_EQ(r.reads.front().second.rfind("data: ", 0), 0u);
  // Role and first piece come together, finish and [DONE] too; each step after
  // the first (one per further piece, one for the end) waits chunk_ms.
  const size_t gaps = data_events(sse_events(r.http.body)).size() - 3;
  EXPECT_GE(gaps, 4u);
  EXPECT_GE(r.http.seconds, 0.25 + 0.04 * static_cast<double>(gaps) - 0.01);
  EXPECT_LT(r.http.seconds, 0.25 + 0.04 * static_cast<double>(gaps) + 0.15);
  EXPECT_GE(r.reads.size(), gaps + 1);
  for (size_t i = 1; i < r.reads.size(); ++i)
    EXPECT_GE(r.reads[i].first - r.reads[i - 1].first, 0.025) << i;
}

TEST(MockServer, StreamSendsKeepAliveCommentsWhileItWaits) {
  auto server = serve({{"latency", 450}, {"stream", {{"chunk_ms", 250}, {"comment_ms", 100}}}});
  TimedResult r = stream_chat(server->port(), "hi", false, 10000);
  ASSERT_EQ(r.http.code, CURLE_OK) << r.http.error;
  std::vector<SseEvent> events = sse_events(r.http.body);
  expect_openai_stream(events, "m-a", false);

  std::vector<double> comments;  // arrival of each comment
  double first_data = -1;
  int comments_between_chunks = 0;
  for (const auto& [at, text] : r.reads) {
    std::string rest;
    for (const auto& e : sse_events(text, &rest)) {
      if (e.comment) {
        EXPECT_EQ(e.data, ": keep-alive");
        comments.push_back(at);
        if (first_data >= 0) ++comments_between_chunks;
      } else if (first_data < 0) {
        first_data = at;
      }
    }
  }
  ASSERT_GE(first_data, 0.44);
  int before_first = 0;
  for (double at : comments) before_first += at < first_data;
  EXPECT_GE(before_first, 3) << "every 100 ms of the 450 ms wait";
  EXPECT_LE(before_first, 5);
  for (size_t i = 1; i < comments.size(); ++i) {
    if (comments[i] < first_data) {
      EXPECT_GE(comments[i] - comments[i - 1], 0.08) << i;
      EXPECT_LE(comments[i] - comments[i - 1], 0.2) << i;
    }
  }
  EXPECT_GE(comments_between_chunks, 3) << "chunks 250 ms apart leave room for comments";
}

TEST(MockServer, StallWhileStreamingSendsTheFirstChunksThenNothing) {
  // Keep-alive comments stop too: a stalled stream is silent.
  auto server = serve({{"faults", {{"stall", 1}}}, {"stream", {{"comment_ms", 50}}}});
  TimedResult r = stream_chat(server->port(), "hello there", false, 900);
  EXPECT_EQ(r.http.code, CURLE_OPERATION_TIMEDOUT) << r.http.error;
  EXPECT_EQ(r.http.status, 200);
  EXPECT_EQ(r.http.header("content-type"), "text/event-stream");
  ASSERT_FALSE(r.reads.empty());
  EXPECT_LT(r.reads.back().first, 0.3) << "then nothing for the rest of the 900 ms";

  std::vector<SseEvent> events = data_events(sse_events(r.http.body));
  ASSERT_GE(events.size(), 2u) << r.http.body;
  EXPECT_EQ(events[0].chunk()["choices"][0]["delta"]["role"], "assistant");
  EXPECT_FALSE(events[1].chunk()["choices"][0]["delta"]["content"].get<std::string>().empty());
  for (const auto& e : events) {
    EXPECT_NE(e.data, "[DONE]");
    EXPECT_TRUE(e.chunk()["choices"][0]["finish_reason"].is_null());
  }
  std::string content = assembled(events);
  EXPECT_LT(content.size(), std::string("mock answer: hello there").size());
  EXPECT_EQ(std::string("mock answer: hello there").rfind(content, 0), 0u);
  EXPECT_TRUE(drains(*server));
  EXPECT_EQ(server->stats()["by_outcome"]["stall"], 1);
  EXPECT_EQ(server->stats()["streamed"], 1);
}

TEST(MockServer, HangWhileStreamingSendsNoByteAtAll) {
  auto server = serve({{"faults", {{"hang", 1}}}, {"stream", {{"comment_ms", 20}}}});
  TimedResult r = stream_chat(server->port(), "hello", false, 300);
  EXPECT_EQ(r.http.code, CURLE_OPERATION_TIMEDOUT) << r.http.error;
  EXPECT_EQ(r.http.status, 0);
  EXPECT_LT(r.headers_at, 0) << "not even a status line";
  EXPECT_TRUE(r.http.body.empty());
  EXPECT_TRUE(drains(*server));
  EXPECT_EQ(server->stats()["streamed"], 0);
}

TEST(MockServer, ResetWhileStreamingCutsTheStream) {
  auto server = serve({{"faults", {{"reset", 1}}}, {"stream", {{"chunk_ms", 20}}}});
  TimedResult r = stream_chat(server->port());
  EXPECT_EQ(r.http.code, CURLE_RECV_ERROR) << curl_easy_strerror(r.http.code) << ": " << r.http.error;
  EXPECT_EQ(r.http.status, 200);
  std::string rest;
  std::vector<SseEvent> events = data_events(sse_events(r.http.body, &rest));
  ASSERT_GE(events.size(), 2u) << "mid-stream: the first chunks came";
  EXPECT_EQ(events[0].chunk()["choices"][0]["delta"]["role"], "assistant");
  for (const auto& e : events) EXPECT_NE(e.data, "[DONE]");
  EXPECT_TRUE(drains(*server));
  EXPECT_EQ(get_stats(server->port())["by_outcome"]["reset"], 1);  // still serving
}

TEST(MockServer, MalformedWhileStreamingSendsAChunkOfBrokenJson) {
  auto server = serve({{"faults", {{"malformed", 1}}}});
  TimedResult r = stream_chat(server->port(), "hello there", true);
  ASSERT_EQ(r.http.code, CURLE_OK) << r.http.error;
  EXPECT_EQ(r.http.status, 200);
  std::vector<SseEvent> events = data_events(sse_events(r.http.body));
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().data, "[DONE]");
  int broken = 0;
  for (size_t i = 0; i + 1 < events.size(); ++i) broken += !json::accept(events[i].data);
  EXPECT_EQ(broken, 1) << r.http.body;
}

TEST(MockServer, WrongModelWhileStreamingNamesTheOtherModelInEveryChunk) {
  auto server = serve({{"faults", {{"wrong_model", 1}}}, {"wrong_model", "mock-impostor-72b"}});
  TimedResult r = stream_chat(server->port(), "hello", true, 5000, "mock-7b");
  ASSERT_EQ(r.http.code, CURLE_OK) << r.http.error;
  expect_openai_stream(sse_events(r.http.body), "mock-impostor-72b", true);
}

TEST(MockServer, ErrorsWhileStreamingArePlainJson) {
  auto server = serve({{"faults", {{"error_500", 1}}}, {"keys", {"k"}}, {"quota", {{"m-q", 0}}}});
  TimedResult r = stream_chat(server->port());
  EXPECT_EQ(r.http.status, 500);
  EXPECT_EQ(r.http.header("content-type"), "application/json");
  EXPECT_EQ(r.http.json_body()["error"]["type"], "server_error");
  r = stream_chat(server->port(), "hi", false, 5000, "m-q");
  EXPECT_EQ(r.http.status, 403);
  EXPECT_EQ(r.http.json_body()["error"]["code"], "insufficient_quota");
  Request bad_key;
  bad_key.body = stream_body("m-a", "hi", true).dump();
  bad_key.headers = {"Authorization: Bearer nope"};
  EXPECT_EQ(http(server->port(), bad_key).status, 401);
  EXPECT_EQ(get_stats(server->port())["streamed"], 0);
}

TEST(MockServer, DropsAStreamWhoseClientLeftAndStopsWithStreamsHeld) {
  auto server = serve({{"latency", 100}, {"stream", {{"chunk_ms", 1000}, {"comment_ms", 30}}}});
  TimedResult r = stream_chat(server->port(), "hello", false, 400);
  EXPECT_EQ(r.http.code, CURLE_OPERATION_TIMEDOUT);
  EXPECT_FALSE(r.http.body.empty());
  EXPECT_TRUE(drains(*server, 1000ms));

  // Destroyed while streams wait (for the first token, for the next chunk, stalled).
  for (const json& scenario :
       {json{{"latency", 5000}, {"stream", {{"comment_ms", 10}}}},
        json{{"stream", {{"chunk_ms", 5000}, {"comment_ms", 10}}}},
        json{{"faults", {{"stall", 1}}}}}) {
    auto held = serve(scenario);
    constexpr int n = 4;
    CURLM* multi = curl_multi_init();
    HttpResult results[n];
    SlistPtr lists[n];
    char errbufs[n][CURL_ERROR_SIZE] = {};
    CurlPtr easies[n];
    for (int i = 0; i < n; ++i) {
      Request req;
      req.body = stream_body("m-a", "x", true).dump();
      req.headers = {"Authorization: Bearer k"};
      easies[i] = make_easy(held->port(), req, lists[i], results[i], errbufs[i]);
      curl_multi_add_handle(multi, easies[i].get());
    }
    for (int spin = 0; spin < 50; ++spin) {
      int running = 0;
      curl_multi_perform(multi, &running);
      curl_multi_poll(multi, nullptr, 0, 10, nullptr);
    }
    EXPECT_EQ(held->stats()["in_flight"], n) << scenario.dump();
    EXPECT_EQ(held->stats()["streamed"], n) << scenario.dump();
    held.reset();
    for (auto& e : easies) curl_multi_remove_handle(multi, e.get());
    curl_multi_cleanup(multi);
  }
}

// ---- canned replies -----------------------------------------------------------------

TEST(MockServer, CannedRulesAnswerExactlyAsGivenUntilTheyRunOut) {
  auto server = serve({{"canned",
                        {{{"when", "please fail"},
                          {"status", 429},
                          {"headers", {{"retry-after", "1"}, {"x-request-id", "req_123"}}},
                          {"body", "exact text, not JSON"},
                          {"times", 2}},
                         {{"when", "\"as json\""},
                          {"body_json", {{"error", {{"message", "over capacity"}, {"code", nullptr}}}}},
                          {"status", 503}},
                         {{"when", "plain text"},
                          {"headers", {{"Content-Type", "text/plain; charset=utf-8"}}},
                          {"body", "hi there"}}}}});
  const auto port = server->port();
  for (int i = 0; i < 2; ++i) {
    HttpResult r = chat(port, "k", "m-a", "oh please fail now");
    EXPECT_EQ(r.status, 429) << i;
    EXPECT_EQ(r.body, "exact text, not JSON");
    EXPECT_EQ(r.header("retry-after"), "1");
    EXPECT_EQ(r.header("x-request-id"), "req_123");
    EXPECT_EQ(r.header("content-type"), "application/json");
  }
  HttpResult spent = chat(port, "k", "m-a", "oh please fail now");  // times ran out
  EXPECT_EQ(spent.status, 200);
  EXPECT_EQ(spent.json_body()["object"], "chat.completion");

  HttpResult j = chat(port, "k", "m-a", "as json");  // matches the raw body, quotes and all
  EXPECT_EQ(j.status, 503);
  EXPECT_EQ(j.body, R"({"error":{"code":null,"message":"over capacity"}})");

  HttpResult text = chat(port, "k", "m-a", "plain text please");
  EXPECT_EQ(text.status, 200);
  EXPECT_EQ(text.body, "hi there");
  EXPECT_EQ(text.header("content-type"), "text/plain; charset=utf-8");

  EXPECT_EQ(chat(port, "k", "m-a", "nothing canned").status, 200);

  json stats = get_stats(port);
  EXPECT_EQ(stats["by_outcome"]["canned"], 4);
  EXPECT_EQ(stats["by_outcome"]["ok"], 2);
  EXPECT_EQ(stats["by_key_model"]["k|m-a"]["canned"], 4);

  // POST /reset gives the rules their times back.
  Request reset;
  reset.path = "/reset";
  ASSERT_EQ(http(port, reset).status, 200);
  EXPECT_EQ(chat(port, "k", "m-a", "please fail").status, 429);
}

TEST(MockServer, CannedRulesComeAfterKeysAndBeforeLimitsAndFaults) {
  auto server = serve({{"keys", {"k"}},
                       {"rate_limit", {{"requests", 1}, {"window_ms", 60000}}},
                       {"quota", {{"m-a", 0}}},
                       {"faults", {{"error_500", 1}}},
                       {"canned", {{{"when", "replay me"}, {"status", 502}, {"body", "bad gateway"}}}}});
  const auto port = server->port();
  EXPECT_EQ(chat(port, "wrong", "m-b", "replay me").status, 401);
  for (int i = 0; i < 3; ++i) {  // no rate budget used, no quota, no fault
    HttpResult r = chat(port, "k", "m-a", "replay me");
    EXPECT_EQ(r.status, 502) << i;
    EXPECT_EQ(r.body, "bad gateway");
    EXPECT_TRUE(r.header("x-ratelimit-limit-requests").empty());
  }
  EXPECT_EQ(chat(port, "k", "m-b", "other").status, 500);  // the fault, using the budget
  EXPECT_EQ(chat(port, "k", "m-b", "other").status, 429);
  EXPECT_EQ(chat(port, "k", "m-b", "replay me").status, 502);
}

TEST(MockServer, CannedRuleWithoutWhenMatchesEveryRequestAfterTheLatency) {
  auto server = serve({{"latency", 150},
                       {"canned",
                        {{{"status", 529}, {"body_json", {{"type", "overloaded_error"}}}, {"times", 1}},
                         {{"headers", {{"content-type", "text/event-stream"}}},
                          {"body", "data: {\"choices\":[]}\n\ndata: [DONE]\n\n"}}}}});
  HttpResult first = chat(server->port(), "k", "m-a");
  EXPECT_EQ(first.status, 529);
  EXPECT_EQ(first.body, R"({"type":"overloaded_error"})");
  EXPECT_GE(first.seconds, 0.14);
  // A canned stream is replayed as it is, even to a request that asked for a stream.
  TimedResult second = stream_chat(server->port());
  EXPECT_EQ(second.http.status, 200);
  EXPECT_EQ(second.http.header("content-type"), "text/event-stream");
  EXPECT_EQ(second.http.body, "data: {\"choices\":[]}\n\ndata: [DONE]\n\n");
  EXPECT_EQ(get_stats(server->port())["by_outcome"]["canned"], 2);
  EXPECT_EQ(get_stats(server->port())["streamed"], 0);
}

TEST(MockServer, CannedRulesCarryAnyBytesAndCanLieAboutTheirLength) {
  // "\xff\xfe{" in base64: bytes no JSON string can carry.
  auto server = serve({{"canned",
                        {{{"when", "raw bytes"}, {"body_base64", "//57"}},
                         {{"when", "longer"}, {"body", "0123456789"}, {"content_length", 1000}},
                         {{"when", "shorter"}, {"body", "0123456789"}, {"content_length", 4}}}}});
  const auto port = server->port();
  HttpResult raw = chat(port, "k", "m-a", "raw bytes");
  EXPECT_EQ(raw.status, 200);
  EXPECT_EQ(raw.body, "\xff\xfe{");

  // Claims 1000 bytes, sends 10, closes: the client sees a truncated transfer.
  HttpResult longer = chat(port, "k", "m-a", "longer");
  EXPECT_EQ(longer.code, CURLE_PARTIAL_FILE) << longer.error;
  EXPECT_EQ(longer.status, 200);
  EXPECT_EQ(longer.body, "0123456789");
  EXPECT_LT(longer.seconds, 2.0) << "closed, not left to time out";

  // Claims 4: the client reads 4 and the connection is not reused.
  HttpResult shorter = chat(port, "k", "m-a", "shorter");
  EXPECT_EQ(shorter.code, CURLE_OK) << shorter.error;
  EXPECT_EQ(shorter.body, "0123");
  EXPECT_EQ(shorter.header("content-length"), "4");
  EXPECT_EQ(shorter.header("connection"), "close");
  EXPECT_EQ(chat(port, "k", "m-a", "after").json_body()["object"], "chat.completion");
  EXPECT_EQ(get_stats(port)["by_outcome"]["canned"], 3);
}

// ---- tool calls and conversations ------------------------------------------------

json weather_tool() {
  return json::parse(R"({"type": "function", "function": {
      "name": "get_weather", "description": "The weather in a city",
      "parameters": {"type": "object",
        "properties": {"city": {"type": "string"},
                       "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                       "days": {"type": "integer", "minimum": 1, "maximum": 7}},
        "required": ["city", "unit"]}}})");
}

json search_tool() {
  return json::parse(R"({"type": "function", "function": {
      "name": "search_docs",
      "parameters": {"type": "object",
        "properties": {"query": {"type": "string"}, "limit": {"type": "integer"},
                       "exact": {"type": "boolean"}, "score": {"type": "number"},
                       "tags": {"type": "array", "items": {"type": "string"}},
                       "filters": {"type": "object"}},
        "required": ["query", "exact", "score", "tags", "filters", "limit"]}}})");
}

json clock_tool() {  // no parameters at all
  return json{{"type", "function"}, {"function", {{"name", "read_clock"}}}};
}

json user_messages(const std::string& content) {
  return json::array({{{"role", "user"}, {"content", content}}});
}

json tool_body(const json& messages, const json& tools, bool stream = false,
               bool include_usage = false) {
  json body = {{"model", "m-a"}, {"messages", messages}, {"tools", tools}};
  if (stream) body["stream"] = true;
  if (include_usage) body["stream_options"] = {{"include_usage", true}};
  return body;
}

HttpResult post_chat(uint16_t port, const json& body, long timeout_ms = 5000) {
  Request r;
  r.body = body.dump();
  r.headers = {"Authorization: Bearer k"};
  r.timeout_ms = timeout_ms;
  return http(port, r);
}

// The "message" object exactly as the mock wrote it.
std::string raw_message(const std::string& body) {
  const size_t from = body.find(R"("message":)");
  const size_t to = body.find(R"(,"finish_reason")");
  if (from == std::string::npos || to == std::string::npos || to < from) return "";
  return body.substr(from + 10, to - from - 10);
}

// The client's side of a turn: the assistant's message, then a result for each call.
json after_turn(json messages, const json& message) {
  messages.push_back(message);
  if (message.contains("tool_calls"))
    for (const json& call : message["tool_calls"])
      messages.push_back({{"role", "tool"},
                          {"tool_call_id", call["id"]},
                          {"content", "result of " + call["function"]["name"].get<std::string>()}});
  return messages;
}

bool is_call_id(const json& id) {
  if (!id.is_string()) return false;
  const std::string& s = id.get_ref<const std::string&>();
  if (s.size() != 21 || s.rfind("call_", 0) != 0) return false;
  return std::all_of(s.begin() + 5, s.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

// Every required property is there with its type; only described properties appear.
void expect_arguments_follow(const json& function_schema, const std::string& arguments) {
  SCOPED_TRACE(arguments);
  json args = json::parse(arguments, nullptr, false);
  ASSERT_TRUE(args.is_object());
  const json& parameters = function_schema["parameters"];
  for (const json& name : parameters["required"]) EXPECT_TRUE(args.contains(name)) << name;
  for (const auto& [name, value] : args.items()) {
    ASSERT_TRUE(parameters["properties"].contains(name)) << name;
    const json& property = parameters["properties"][name];
    const std::string type = property["type"];
    if (property.contains("enum")) {
      const json& allowed = property["enum"];
      EXPECT_NE(std::find(allowed.begin(), allowed.end(), value), allowed.end()) << name;
    }
    const bool typed = type == "string"    ? value.is_string() && !value.get<std::string>().empty()
                       : type == "integer" ? value.is_number_integer()
                       : type == "number"  ? value.is_number()
                       : type == "boolean" ? value.is_boolean()
                       : type == "array"   ? value == json::array()
                       : type == "object"  ? value == json::object()
                                           : false;
    EXPECT_TRUE(typed) << name << " is not a " << type;
    if (property.contains("minimum")) {
      EXPECT_GE(value.get<double>(), property["minimum"].get<double>());
    }
    if (property.contains("maximum")) {
      EXPECT_LE(value.get<double>(), property["maximum"].get<double>());
    }
  }
}

TEST(MockServer, AnswersAToolOfferWithOpenAiToolCalls) {
  auto server = serve({{"tools", {{"call_probability", 1}}}});
  const json tools = json::array({weather_tool()});
  HttpResult r = post_chat(server->port(), tool_body(user_messages("weather in Oslo?"), tools));
  ASSERT_EQ(r.status, 200) << r.body;
  json j = r.json_body();
  ASSERT_TRUE(j.is_object()) << r.body;
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["model"], "m-a");
  const json& choice = j["choices"][0];
  EXPECT_EQ(choice["finish_reason"], "tool_calls");
  const json& message = choice["message"];
  EXPECT_EQ(message["role"], "assistant");
  EXPECT_TRUE(message.contains("content") && message["content"].is_null()) << message.dump();
  ASSERT_EQ(message["tool_calls"].size(), 1u);
  const json& call = message["tool_calls"][0];
  EXPECT_EQ(call.size(), 3u) << call.dump();  // id, type, function: nothing else
  EXPECT_TRUE(is_call_id(call["id"])) << call["id"];
  EXPECT_EQ(call["type"], "function");
  EXPECT_EQ(call["function"]["name"], "get_weather");
  ASSERT_TRUE(call["function"]["arguments"].is_string());
  expect_arguments_follow(weather_tool()["function"], call["function"]["arguments"]);
  // Key order as OpenAI writes it.
  EXPECT_EQ(raw_message(r.body).rfind(R"({"role":"assistant","content":null,"tool_calls":[{"id":")", 0), 0u)
      << r.body;
  EXPECT_GE(j["usage"]["completion_tokens"].get<int>(), 1);
  EXPECT_EQ(j["usage"]["total_tokens"].get<int>(),
            j["usage"]["prompt_tokens"].get<int>() + j["usage"]["completion_tokens"].get<int>());

  // No tools offered, an empty list or tool_choice "none": text as before.
  json plain = tool_body(user_messages("hi"), json::array());
  HttpResult text = post_chat(server->port(), plain);
  EXPECT_EQ(text.json_body()["choices"][0]["message"]["content"], "mock answer: hi");
  EXPECT_EQ(text.json_body()["choices"][0]["finish_reason"], "stop");
  plain.erase("tools");
  EXPECT_EQ(post_chat(server->port(), plain).json_body()["choices"][0]["finish_reason"], "stop");
  json none = tool_body(user_messages("hi"), tools);
  none["tool_choice"] = "none";
  EXPECT_EQ(post_chat(server->port(), none).json_body()["choices"][0]["finish_reason"], "stop");
  json nameless = tool_body(user_messages("hi"), json::array({{{"type", "function"}}}));
  EXPECT_EQ(post_chat(server->port(), nameless).json_body()["choices"][0]["finish_reason"], "stop");

  // A scenario without `tools` answers a tool offer with text.
  auto textual = serve(json::object());
  HttpResult t = post_chat(textual->port(), tool_body(user_messages("weather?"), tools));
  EXPECT_EQ(t.json_body()["choices"][0]["message"]["content"], "mock answer: weather?");
}

TEST(MockServer, ToolAnswersAreAPureFunctionOfTheConversation) {
  const json scenario = {{"tools", {{"call_probability", 0.5}, {"parallel", 2}}},
                         {"latency", {{"kind", "uniform"}, {"min_ms", 0}, {"max_ms", 5}}},
                         {"seed", 11}};
  const json tools = json::array({weather_tool(), search_tool(), clock_tool()});
  auto first = serve(scenario);
  auto other = serve(json{{"tools", {{"call_probability", 0.5}, {"parallel", 2}}}, {"seed", 99}});
  std::set<std::string> messages_seen;
  int with_tools = 0, with_text = 0;
  for (int i = 0; i < 24; ++i) {
    const json body = tool_body(user_messages("question " + std::to_string(i)), tools);
    HttpResult a = post_chat(first->port(), body);
    chat(first->port(), "k", "m-a", "noise in between");  // counters and draws move on
    HttpResult b = post_chat(first->port(), body);
    HttpResult c = post_chat(other->port(), body);  // another server, another seed
    ASSERT_EQ(a.status, 200);
    const std::string m = raw_message(a.body);
    ASSERT_FALSE(m.empty()) << a.body;
    EXPECT_EQ(raw_message(b.body), m);
    EXPECT_EQ(raw_message(c.body), m);
    EXPECT_NE(a.json_body()["id"], b.json_body()["id"]);  // completion ids still differ
    messages_seen.insert(m);
    json message = json::parse(m);
    if (message.contains("tool_calls")) {
      ++with_tools;
      ASSERT_EQ(message["tool_calls"].size(), 2u);
      EXPECT_NE(message["tool_calls"][0]["id"], message["tool_calls"][1]["id"]);
      EXPECT_NE(message["tool_calls"][0]["function"]["name"],
                message["tool_calls"][1]["function"]["name"]);  // two of the three tools
    } else {
      ++with_text;
    }
  }
  EXPECT_EQ(messages_seen.size(), 24u) << "different conversations, different answers";
  EXPECT_GT(with_tools, 3);
  EXPECT_GT(with_text, 3);

  // Text answers too: the same messages get the same text.
  HttpResult x = chat(first->port(), "k", "m-a", "same words");
  HttpResult y = chat(other->port(), "k2", "m-a", "same words");
  EXPECT_EQ(raw_message(x.body), raw_message(y.body));
}

TEST(MockServer, ToolArgumentsFollowTheSchema) {
  const json search = search_tool()["function"];
  const json weather = weather_tool()["function"];
  int with_days = 0, without_days = 0;
  std::set<json> units;
  for (uint64_t seed = 0; seed < 200; ++seed) {
    expect_arguments_follow(search, details::tool_arguments(search["parameters"], seed));
    const std::string text = details::tool_arguments(weather["parameters"], seed);
    expect_arguments_follow(weather, text);
    json args = json::parse(text);
    (args.contains("days") ? with_days : without_days)++;
    units.insert(args["unit"]);
    EXPECT_EQ(details::tool_arguments(weather["parameters"], seed), text) << "deterministic";
  }
  EXPECT_GT(with_days, 20) << "optional properties appear sometimes";
  EXPECT_GT(without_days, 20) << "and sometimes not";
  EXPECT_EQ(units, (std::set<json>{"celsius", "fahrenheit"}));

  // Nested objects, type lists, const, anyOf, numbers in range; odd schemas give {}.
  const json nested = json::parse(R"({"type": "object", "required": ["where", "when", "mode", "pick", "ratio"],
      "properties": {
        "where": {"type": "object", "required": ["lat"], "properties": {"lat": {"type": "number"}}},
        "when": {"type": ["string", "null"]},
        "mode": {"const": "fast"},
        "pick": {"anyOf": [{"type": "integer", "minimum": 10, "maximum": 12}, {"type": "string"}]},
        "ratio": {"type": "number", "minimum": 0.5, "maximum": 0.7}}})");
  for (uint64_t seed = 0; seed < 50; ++seed) {
    json args = json::parse(details::tool_arguments(nested, seed));
    EXPECT_TRUE(args["where"]["lat"].is_number()) << args;
    EXPECT_TRUE(args["when"].is_string()) << args;
    EXPECT_EQ(args["mode"], "fast");
    EXPECT_TRUE(args["pick"].is_number_integer()) << args;
    EXPECT_GE(args["pick"].get<int>(), 10);
    EXPECT_LE(args["pick"].get<int>(), 12);
    EXPECT_GE(args["ratio"].get<double>(), 0.5);
    EXPECT_LE(args["ratio"].get<double>(), 0.7);
  }
  EXPECT_EQ(details::tool_arguments(json::object(), 1), "{}");
  EXPECT_EQ(details::tool_arguments(json("not a schema"), 1), "{}");
  EXPECT_EQ(details::tool_arguments(json::parse(R"({"required": ["x"]})"), 1).rfind(R"({"x":")", 0), 0u);
}

TEST(MockServer, ToolCallsStopAfterMaxCalls) {
  auto server = serve({{"tools", {{"call_probability", 1}, {"max_calls", 3}}}});
  const json tools = json::array({weather_tool(), clock_tool()});
  json messages = user_messages("plan my week");
  std::vector<std::string> finishes;
  for (int turn = 1; turn <= 5; ++turn) {
    HttpResult r = post_chat(server->port(), tool_body(messages, tools));
    ASSERT_EQ(r.status, 200) << r.body;
    json choice = r.json_body()["choices"][0];
    finishes.push_back(choice["finish_reason"]);
    if (choice["finish_reason"] == "stop") break;
    messages = after_turn(messages, choice["message"]);
  }
  EXPECT_EQ(finishes, (std::vector<std::string>{"tool_calls", "tool_calls", "tool_calls", "stop"}));
  // The final text answers the last tool result.
  HttpResult last = post_chat(server->port(), tool_body(messages, tools));
  EXPECT_EQ(last.json_body()["choices"][0]["message"]["content"].get<std::string>().rfind(
                "mock answer: result of ", 0),
            0u)
      << last.body;

  auto never = serve({{"tools", {{"call_probability", 1}, {"max_calls", 0}}}});
  EXPECT_EQ(post_chat(never->port(), tool_body(user_messages("x"), tools))
                .json_body()["choices"][0]["finish_reason"],
            "stop");
  // Without max_calls there is no limit.
  auto endless = serve({{"tools", {{"call_probability", 1}}}});
  messages = user_messages("again and again");
  for (int turn = 1; turn <= 6; ++turn) {
    json choice = post_chat(endless->port(), tool_body(messages, tools)).json_body()["choices"][0];
    ASSERT_EQ(choice["finish_reason"], "tool_calls") << turn;
    messages = after_turn(messages, choice["message"]);
  }
}

TEST(MockServer, ParallelToolCallsChooseAmongTheOfferedTools) {
  auto server = serve({{"tools", {{"call_probability", 1}, {"parallel", 3}}}});
  json message = post_chat(server->port(),
                           tool_body(user_messages("all"), json::array({weather_tool(), search_tool(),
                                                                        clock_tool()})))
                     .json_body()["choices"][0]["message"];
  ASSERT_EQ(message["tool_calls"].size(), 3u);
  std::set<std::string> names, ids;
  for (const json& call : message["tool_calls"]) {
    names.insert(call["function"]["name"]);
    ids.insert(call["id"]);
    if (call["function"]["name"] == "read_clock") {
      EXPECT_EQ(call["function"]["arguments"], "{}");
    }
  }
  EXPECT_EQ(names, (std::set<std::string>{"get_weather", "search_docs", "read_clock"}));
  EXPECT_EQ(ids.size(), 3u);

  // More calls than tools: a tool is called again, with its own id and arguments.
  message = post_chat(server->port(), tool_body(user_messages("one"), json::array({weather_tool()})))
                .json_body()["choices"][0]["message"];
  ASSERT_EQ(message["tool_calls"].size(), 3u);
  ids.clear();
  for (const json& call : message["tool_calls"]) {
    EXPECT_EQ(call["function"]["name"], "get_weather");
    ids.insert(call["id"]);
  }
  EXPECT_EQ(ids.size(), 3u);
}

// What a client builds from streamed deltas: content, and tool calls merged by index.
json assembled_message(const std::vector<SseEvent>& events, std::string* finish_reason = nullptr) {
  std::string role, content;
  std::map<int64_t, json> calls;
  for (const auto& e : data_events(events)) {
    if (e.data == "[DONE]") break;
    json chunk = e.chunk();
    for (const json& choice : chunk["choices"]) {
      const json& delta = choice["delta"];
      if (delta.contains("role")) role = delta["role"];
      if (delta.contains("content") && delta["content"].is_string()) content += delta["content"];
      if (delta.contains("tool_calls")) {
        for (const json& tc : delta["tool_calls"]) {
          json& call = calls[tc["index"].get<int64_t>()];
          if (tc.contains("id")) call["id"] = tc["id"];
          if (tc.contains("type")) call["type"] = tc["type"];
          if (tc["function"].contains("name")) call["function"]["name"] = tc["function"]["name"];
          std::string args = call["function"].value("arguments", "");
          call["function"]["arguments"] = args + tc["function"]["arguments"].get<std::string>();
        }
      }
      if (finish_reason && choice["finish_reason"].is_string()) *finish_reason = choice["finish_reason"];
    }
  }
  json message = {{"role", role}, {"content", calls.empty() ? json(content) : json(nullptr)}};
  for (auto& [index, call] : calls) message["tool_calls"].push_back(call);
  return message;
}

TEST(MockServer, StreamsToolCallsAsOpenAiDoes) {
  auto server = serve({{"tools", {{"call_probability", 1}, {"parallel", 2}}}});
  const json tools = json::array({weather_tool(), search_tool()});
  const json messages = user_messages("weather and docs");
  Request req;
  req.body = tool_body(messages, tools, true, true).dump();
  req.headers = {"Authorization: Bearer k"};
  TimedResult r = timed_http(server->port(), req);
  ASSERT_EQ(r.http.code, CURLE_OK) << r.http.error;
  EXPECT_EQ(r.http.header("content-type"), "text/event-stream");
  std::vector<SseEvent> events = data_events(sse_events(r.http.body));
  ASSERT_GE(events.size(), 6u);
  EXPECT_EQ(events.back().data, "[DONE]");

  // Shape, as recorded from the live API (tests/corpus/providers/openai.json).
  json opening = events[0].chunk();
  EXPECT_EQ(opening["object"], "chat.completion.chunk");
  const json& delta0 = opening["choices"][0]["delta"];
  EXPECT_EQ(delta0["role"], "assistant");
  EXPECT_TRUE(delta0.contains("content") && delta0["content"].is_null());
  ASSERT_EQ(delta0["tool_calls"].size(), 1u);
  const json& open0 = delta0["tool_calls"][0];
  EXPECT_EQ(open0["index"], 0);
  EXPECT_TRUE(is_call_id(open0["id"]));
  EXPECT_EQ(open0["type"], "function");
  EXPECT_EQ(open0["function"]["arguments"], "");
  EXPECT_TRUE(opening["choices"][0]["finish_reason"].is_null());
  int openings = 0, fragments = 0;
  for (size_t i = 1; i + 3 < events.size(); ++i) {  // before the finish, usage and [DONE]
    SCOPED_TRACE(events[i].data);
    json chunk = events[i].chunk();
    const json& delta = chunk["choices"][0]["delta"];
    EXPECT_FALSE(delta.contains("role"));
    ASSERT_EQ(delta["tool_calls"].size(), 1u);
    const json& tc = delta["tool_calls"][0];
    if (tc.contains("id")) {
      ++openings;
      EXPECT_EQ(tc["index"], 1);
      EXPECT_EQ(tc["function"]["arguments"], "");
    } else {
      ++fragments;
      EXPECT_EQ(tc.size(), 2u);  // index and function.arguments only
      EXPECT_EQ(tc["function"].size(), 1u);
      EXPECT_FALSE(tc["function"]["arguments"].get<std::string>().empty());
    }
    EXPECT_TRUE(chunk["choices"][0]["finish_reason"].is_null());
  }
  EXPECT_EQ(openings, 1);
  EXPECT_GE(fragments, 4);
  json finish = events[events.size() - 3].chunk();
  EXPECT_EQ(finish["choices"][0]["delta"], json::object());
  EXPECT_EQ(finish["choices"][0]["finish_reason"], "tool_calls");
  json usage = events[events.size() - 2].chunk();
  EXPECT_EQ(usage["choices"], json::array());
  EXPECT_TRUE(usage["usage"].is_object());

  // Assembled, the stream is the message the same conversation gets unstreamed.
  std::string finish_reason;
  json streamed = assembled_message(events, &finish_reason);
  EXPECT_EQ(finish_reason, "tool_calls");
  HttpResult plain = post_chat(server->port(), tool_body(messages, tools));
  EXPECT_EQ(streamed, plain.json_body()["choices"][0]["message"]);
  EXPECT_EQ(usage["usage"], plain.json_body()["usage"]);
}

TEST(MockServer, FaultsHitToolCallAnswers) {
  const json tools = json::array({weather_tool()});
  const json body = tool_body(user_messages("weather?"), tools);
  const json streamed = tool_body(user_messages("weather?"), tools, true);
  auto tool_scenario = [](const json& faults) {
    return json{{"tools", {{"call_probability", 1}}}, {"faults", faults}, {"wrong_model", "impostor"}};
  };
  {
    auto server = serve(tool_scenario({{"wrong_model", 1}}));
    json j = post_chat(server->port(), body).json_body();
    EXPECT_EQ(j["model"], "impostor");
    EXPECT_EQ(j["choices"][0]["finish_reason"], "tool_calls");
    Request req;
    req.body = streamed.dump();
    req.headers = {"Authorization: Bearer k"};
    std::vector<SseEvent> events = data_events(sse_events(timed_http(server->port(), req).http.body));
    ASSERT_GE(events.size(), 3u);
    EXPECT_EQ(events[0].chunk()["model"], "impostor");
    EXPECT_TRUE(assembled_message(events).contains("tool_calls"));
  }
  {
    auto server = serve(tool_scenario({{"malformed", 1}}));
    HttpResult r = post_chat(server->port(), body);
    EXPECT_EQ(r.status, 200);
    EXPECT_FALSE(json::accept(r.body)) << r.body;
    Request req;
    req.body = streamed.dump();
    req.headers = {"Authorization: Bearer k"};
    std::vector<SseEvent> events = data_events(sse_events(timed_http(server->port(), req).http.body));
    int broken = 0;
    for (const auto& e : events) broken += e.data != "[DONE]" && !json::accept(e.data);
    EXPECT_EQ(broken, 1);
  }
  {
    // Stalled mid tool-call stream: the call opened, part of its arguments, then silence.
    auto server = serve(tool_scenario({{"stall", 1}}));
    Request req;
    req.body = streamed.dump();
    req.headers = {"Authorization: Bearer k"};
    req.timeout_ms = 400;
    TimedResult r = timed_http(server->port(), req);
    EXPECT_EQ(r.http.code, CURLE_OPERATION_TIMEDOUT);
    std::vector<SseEvent> events = data_events(sse_events(r.http.body));
    ASSERT_GE(events.size(), 1u) << r.http.body;
    EXPECT_TRUE(events[0].chunk()["choices"][0]["delta"].contains("tool_calls"));
    json partial = assembled_message(events);
    EXPECT_FALSE(json::accept(partial["tool_calls"][0]["function"]["arguments"].get<std::string>()));
    for (const auto& e : events) EXPECT_NE(e.data, "[DONE]");
    EXPECT_TRUE(drains(*server));
  }
  {
    auto server = serve(tool_scenario({{"reset", 1}}));
    Request req;
    req.body = streamed.dump();
    req.headers = {"Authorization: Bearer k"};
    TimedResult r = timed_http(server->port(), req);
    EXPECT_EQ(r.http.code, CURLE_RECV_ERROR) << r.http.error;
    EXPECT_NE(r.http.body.find("tool_calls"), std::string::npos);
    EXPECT_EQ(r.http.body.find("[DONE]"), std::string::npos);
  }
}

TEST(MockServer, CannedRulesMatchATurnHangOrNameAFault) {
  auto server = serve({{"tools", {{"call_probability", 1}, {"max_calls", 5}}},
                       {"canned",
                        {{{"turn", 2}, {"when", "special"}, {"status", 503}, {"body", "busy"}, {"times", 1}},
                         {{"turn", 3}, {"fault", "wrong_model"}, {"times", 1}},
                         {{"turn", 4}, {"hang", true}}}},
                       {"wrong_model", "impostor"}});
  const auto port = server->port();
  const json tools = json::array({weather_tool()});
  json messages = user_messages("a special trip");
  auto turn = [&](long timeout_ms = 5000) {
    return post_chat(port, tool_body(messages, tools), timeout_ms);
  };
  HttpResult t1 = turn();  // the rule for turn 2 does not take turn 1, though "special" matches
  ASSERT_EQ(t1.status, 200) << t1.body;
  messages = after_turn(messages, t1.json_body()["choices"][0]["message"]);

  HttpResult t2 = turn();
  EXPECT_EQ(t2.status, 503);
  EXPECT_EQ(t2.body, "busy");
  HttpResult t2_again = turn();  // times = 1: the retry gets the real answer
  ASSERT_EQ(t2_again.status, 200);
  messages = after_turn(messages, t2_again.json_body()["choices"][0]["message"]);

  HttpResult t3 = turn();  // the mock's own tool-call answer, under the named fault
  ASSERT_EQ(t3.status, 200);
  EXPECT_EQ(t3.json_body()["model"], "impostor");
  EXPECT_EQ(t3.json_body()["choices"][0]["finish_reason"], "tool_calls");
  HttpResult t3_again = turn();
  EXPECT_EQ(t3_again.json_body()["model"], "m-a");
  EXPECT_EQ(raw_message(t3_again.body), raw_message(t3.body));
  messages = after_turn(messages, t3_again.json_body()["choices"][0]["message"]);

  HttpResult t4 = turn(300);  // turn 4 hangs, every time
  EXPECT_EQ(t4.code, CURLE_OPERATION_TIMEDOUT);
  EXPECT_EQ(t4.status, 0);
  EXPECT_EQ(turn(300).code, CURLE_OPERATION_TIMEDOUT);
  EXPECT_TRUE(drains(*server));

  json stats = get_stats(port);
  EXPECT_EQ(stats["by_outcome"]["canned"], 1);
  EXPECT_EQ(stats["by_outcome"]["wrong_model"], 1);
  EXPECT_EQ(stats["by_outcome"]["hang"], 2);
  EXPECT_EQ(stats["by_outcome"]["ok"], 3);

  // A streamed turn can be made to stall mid tool call.
  auto stalling = serve({{"tools", {{"call_probability", 1}}}, {"canned", {{{"turn", 2}, {"fault", "stall"}}}}});
  json convo = user_messages("go");
  Request req;
  req.headers = {"Authorization: Bearer k"};
  req.body = tool_body(convo, tools, true).dump();
  TimedResult s1 = timed_http(stalling->port(), req);
  ASSERT_EQ(s1.http.code, CURLE_OK);
  convo = after_turn(convo, assembled_message(sse_events(s1.http.body)));
  req.body = tool_body(convo, tools, true).dump();
  req.timeout_ms = 400;
  TimedResult s2 = timed_http(stalling->port(), req);
  EXPECT_EQ(s2.http.code, CURLE_OPERATION_TIMEDOUT);
  EXPECT_NE(s2.http.body.find("\"tool_calls\""), std::string::npos);
  EXPECT_EQ(s2.http.body.find("[DONE]"), std::string::npos);
}

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

json get_requests(uint16_t port) {
  Request r;
  r.method = "GET";
  r.path = "/requests";
  HttpResult res = http(port, r);
  EXPECT_EQ(res.header("content-type"), "application/json");
  return res.json_body();
}

TEST(MockServer, RequestLogListsEveryCompleteAnswerInOrder) {
  auto server = serve({{"keys", {"k"}},
                       {"tools", {{"call_probability", 1}}},
                       {"canned",
                        {{{"when", "slow please"}, {"status", 429}, {"body", "later"}},
                         {{"when", "never answer"}, {"hang", true}},
                         {{"when", "stall this"}, {"fault", "stall"}}}},
                       {"stream", {{"chunk_ms", 30}}}});
  const auto port = server->port();
  EXPECT_EQ(get_requests(port), json::array());

  std::vector<std::string> bodies;
  const int64_t t0 = now_ms();
  auto send = [&](const json& body, const std::string& key = "k", long timeout_ms = 5000) {
    Request r;
    r.body = body.dump();
    r.headers = {"Authorization: Bearer " + key};
    r.timeout_ms = timeout_ms;
    bodies.push_back(r.body);
    return timed_http(port, r);
  };
  json convo = user_messages("first");
  send(tool_body(convo, json::array({weather_tool()})));                            // 200, turn 1
  convo.push_back({{"role", "assistant"}, {"content", "ok"}});
  convo.push_back({{"role", "user"}, {"content", "second"}});
  TimedResult streamed = send(tool_body(convo, json::array({weather_tool()}), true));  // 200, turn 2
  send(chat_body("m-a", "who are you"), "wrong");                                   // 401, turn 1
  Request bad;
  bad.body = "{not json";
  bad.headers = {"Authorization: Bearer k"};
  http(port, bad);                                          // 400, turn 0
  send(chat_body("m-a", "slow please"));                    // 429 (canned), turn 1
  send(chat_body("m-a", "never answer"), "k", 200);         // hangs: not logged
  send(stream_body("m-a", "stall this", false), "k", 200);  // stalls: not logged
  const int64_t t1 = now_ms();
  ASSERT_TRUE(drains(*server));

  json log = get_requests(port);
  ASSERT_EQ(log.size(), 5u) << log.dump();
  const std::vector<int> statuses = {200, 200, 401, 400, 429};
  const std::vector<int> turns = {1, 2, 1, 0, 1};
  const std::vector<std::string> hashed = {bodies[0], bodies[1], bodies[2], bad.body, bodies[3]};
  int64_t previous = 0;
  for (size_t i = 0; i < log.size(); ++i) {
    SCOPED_TRACE(log[i].dump());
    EXPECT_EQ(log[i].size(), 4u);
    EXPECT_EQ(log[i]["status"], statuses[i]);
    EXPECT_EQ(log[i]["turn"], turns[i]);
    EXPECT_EQ(log[i]["hash"], stable_hash_hex(hashed[i]));
    const int64_t at = log[i]["answered_ms"];
    EXPECT_GE(at, t0);
    EXPECT_LE(at, t1);
    EXPECT_GE(at, previous);
    previous = at;
  }
  // A stream is logged when its final chunk is written, chunk_ms after the first ones.
  ASSERT_FALSE(streamed.reads.empty());
  EXPECT_GE(log[1]["answered_ms"].get<int64_t>() - log[0]["answered_ms"].get<int64_t>(), 30 * 3);
  EXPECT_EQ(server->requests(), log);

  // POST /reset empties it.
  Request reset;
  reset.path = "/reset";
  ASSERT_EQ(http(port, reset).status, 200);
  EXPECT_EQ(get_requests(port), json::array());
  chat(port, "k", "m-a");
  EXPECT_EQ(get_requests(port).size(), 1u);
}

TEST(RequestLog, KeepsTheNewestEntries) {
  details::RequestLog log(3);
  for (int i = 1; i <= 5; ++i) log.add({static_cast<uint64_t>(i), 200, 1000 + i, i});
  EXPECT_EQ(log.size(), 3u);
  json j = log.to_json();
  ASSERT_EQ(j.size(), 3u);
  EXPECT_EQ(j[0], json::parse(R"({"hash":"0000000000000003","status":200,"answered_ms":1003,"turn":3})"));
  EXPECT_EQ(j[2]["turn"], 5);
  log.clear();
  EXPECT_EQ(log.to_json_text(), "[]");
  EXPECT_EQ(details::RequestLog::default_capacity, 1'000'000u);
}

TEST(MockServer, ReadsTheTurnOfAConversation) {
  EXPECT_EQ(details::read_conversation(json::array()).turn, 0);
  EXPECT_EQ(details::read_conversation(json("nope")).turn, 0);
  json messages = json::parse(R"([
      {"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"},
      {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1"}]},
      {"role": "tool", "tool_call_id": "call_1", "content": "42"},
      {"role": "assistant", "content": "done", "tool_calls": []},
      {"role": "user", "content": "more"}])");
  details::ConversationFacts facts = details::read_conversation(messages);
  EXPECT_EQ(facts.turn, 3);
  EXPECT_EQ(facts.tool_call_answers, 1);
}

// ---- stats, reset, routing --------------------------------------------------------

TEST(MockServer, StatsCountOutcomesByKeyAndModel) {
  auto server = serve({{"keys", {"k1", "k2"}}, {"quota", {{"m-b", 1}}}});
  const auto port = server->port();
  chat(port, "k1", "m-a");
  chat(port, "k1", "m-a");
  chat(port, "k2", "m-b");
  chat(port, "k2", "m-b");    // quota_exhausted
  chat(port, "nope", "m-a");  // unauthorized
  Request bad;
  bad.body = "{";
  http(port, bad);  // bad_request

  json s = get_stats(port);
  EXPECT_EQ(s["requests"], 6);
  EXPECT_EQ(s["in_flight"], 0);
  EXPECT_GE(s["peak_in_flight"].get<int>(), 1);
  EXPECT_EQ(s["by_outcome"]["ok"], 3);
  EXPECT_EQ(s["by_outcome"]["quota_exhausted"], 1);
  EXPECT_EQ(s["by_outcome"]["unauthorized"], 1);
  EXPECT_EQ(s["by_outcome"]["bad_request"], 1);
  EXPECT_EQ(s["by_outcome"]["hang"], 0);  // every outcome is listed
  EXPECT_EQ(s["by_key"]["k1"]["ok"], 2);
  EXPECT_EQ(s["by_key"]["k2"]["quota_exhausted"], 1);
  EXPECT_EQ(s["by_key"]["<invalid>"]["unauthorized"], 1);
  EXPECT_EQ(s["by_key"]["<none>"]["bad_request"], 1);
  EXPECT_EQ(s["by_model"]["m-a"]["ok"], 2);
  EXPECT_EQ(s["by_model"]["m-b"]["ok"], 1);
  EXPECT_EQ(s["by_model"]["<none>"]["bad_request"], 1);
  EXPECT_EQ(s["by_key_model"]["k1|m-a"]["ok"], 2);
  EXPECT_EQ(s["by_key_model"]["k2|m-b"]["quota_exhausted"], 1);
  EXPECT_EQ(server->stats(), s);  // the C++ view is the same document
}

TEST(MockServer, ResetClearsStatsWindowsQuotaAndCells) {
  auto server = serve({{"rate_limit", {{"requests", 1}, {"window_ms", 60000}}},
                       {"quota", {{"m-q", 1}}},
                       {"faults", {{"error_500", 1}, {"first_attempt_only", true}}}});
  const auto port = server->port();
  EXPECT_EQ(chat(port, "k", "m-a").status, 500);  // first attempt of the cell
  EXPECT_EQ(chat(port, "k", "m-a").status, 429);
  EXPECT_EQ(chat(port, "k2", "m-q").status, 500);
  EXPECT_EQ(chat(port, "k3", "m-q").status, 200);  // uses the quota
  EXPECT_EQ(chat(port, "k4", "m-q").status, 403);

  Request reset;
  reset.path = "/reset";
  EXPECT_EQ(http(port, reset).status, 200);
  json s = get_stats(port);
  EXPECT_EQ(s["requests"], 0);
  EXPECT_EQ(s["by_outcome"]["error_500"], 0);
  EXPECT_TRUE(s["by_key"].empty());

  EXPECT_EQ(chat(port, "k", "m-a").status, 500);   // window and cell forgotten
  EXPECT_EQ(chat(port, "k5", "m-q").status, 500);  // cell (m-q, hello) forgotten
  EXPECT_EQ(chat(port, "k6", "m-q").status, 200);  // quota forgotten
}

TEST(MockServer, UnknownRoutesAre404) {
  auto server = serve(json::object());
  Request r;
  r.method = "GET";
  r.path = "/nope";
  EXPECT_EQ(http(server->port(), r).status, 404);
  r.path = "/v1/chat/completions";
  EXPECT_EQ(http(server->port(), r).status, 404);
  r.method = "POST";
  r.path = "/v1/embeddings";
  r.body = "{}";
  EXPECT_EQ(http(server->port(), r).status, 404);
}

// ---- lifecycle --------------------------------------------------------------------

TEST(MockServer, RunServesOnTheCallingThreadUntilStopped) {
  MockServer server(Scenario::from_json(json::object(), "test.json"));
  std::thread loop([&] { server.run(); });
  EXPECT_EQ(chat(server.port(), "k", "m-a").status, 200);
  server.stop();
  server.stop();  // idempotent
  loop.join();

  MockServer stopped_early(Scenario::from_json(json::object(), "test.json"));
  stopped_early.stop();
  stopped_early.run();  // returns at once
}

TEST(MockServer, BindingATakenPortFails) {
  auto server = serve(json::object());
  try {
    MockServer second(Scenario::from_json(json::object(), "test.json"), server->port());
    FAIL() << "expected MOCK_BIND_FAILED";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), codes::MOCK_BIND_FAILED);
    EXPECT_NE(std::string(e.what()).find(std::to_string(server->port())), std::string::npos);
  }
}

TEST(MockServer, FormatsResetDurationsLikeOpenAi) {
  EXPECT_EQ(details::format_reset_duration(850), "850ms");
  EXPECT_EQ(details::format_reset_duration(1000), "1s");
  EXPECT_EQ(details::format_reset_duration(1500), "1.5s");
  EXPECT_EQ(details::format_reset_duration(61'250), "1m1.25s");
}

TEST(MockBehavior, SamplesLatencyFromTheConfiguredDistribution) {
  auto mean_of = [](const json& latency, double& lo, double& hi) {
    Scenario s = Scenario::from_json({{"latency", latency}}, "test.json");
    details::MockBehavior behavior(s);
    details::ChatFacts facts;
    facts.well_formed = true;
    facts.key = "k";
    facts.model = "m-a";
    double sum = 0;
    lo = 1e18;
    hi = -1;
    constexpr int n = 4000;
    for (int i = 0; i < n; ++i) {
      const double ms = behavior.decide(facts, SteadyClock::now()).latency_ms;
      sum += ms;
      lo = std::min(lo, ms);
      hi = std::max(hi, ms);
    }
    return sum / n;
  };
  double lo = 0, hi = 0;
  EXPECT_EQ(mean_of(7, lo, hi), 7);
  EXPECT_NEAR(mean_of({{"kind", "uniform"}, {"min_ms", 10}, {"max_ms", 20}}, lo, hi), 15, 0.5);
  EXPECT_GE(lo, 10);
  EXPECT_LE(hi, 20);
  EXPECT_NEAR(mean_of({{"kind", "normal"}, {"mean_ms", 50}, {"stddev_ms", 10}}, lo, hi), 50, 1.5);
  EXPECT_GE(lo, 0);
  EXPECT_NEAR(mean_of({{"kind", "exponential"}, {"mean_ms", 50}}, lo, hi), 50, 5);
  EXPECT_GE(lo, 0);
}

// ---- scenario validation ---------------------------------------------------------

Error scenario_error(const json& j) {
  try {
    Scenario::from_json(j, "scenarios/flaky.json");
  } catch (const Error& e) {
    return e;
  }
  ADD_FAILURE() << "accepted: " << j.dump();
  return Error("NONE", "", Stage::config);
}

TEST(Scenario, ParsesEveryField) {
  Scenario s = Scenario::from_json(json::parse(R"({
        "latency": {"kind": "uniform", "min_ms": 1, "max_ms": 10},
        "keys": ["key-a", "key-b"],
        "rate_limit": {"requests": 10, "window_ms": 1000},
        "quota": {"m-a": 100},
        "faults": {"error_500": 0.1, "hang": 0, "stall": 0.05, "reset": 0, "malformed": 0,
                   "wrong_model": 0.2, "first_attempt_only": true},
        "wrong_model": "mock-other",
        "seed": 42
      })"),
                                   "s.json");
  EXPECT_EQ(s.latency.kind, LatencySpec::Kind::uniform);
  EXPECT_EQ(s.latency.a_ms, 1);
  EXPECT_EQ(s.latency.b_ms, 10);
  ASSERT_TRUE(s.valid_keys.has_value());
  EXPECT_EQ(s.valid_keys->size(), 2u);
  EXPECT_EQ(s.rate_limit.requests, 10);
  EXPECT_EQ(s.rate_limit.window_ms, 1000);
  EXPECT_EQ(s.quota.at("m-a"), 100);
  EXPECT_DOUBLE_EQ(s.faults.error_500, 0.1);
  EXPECT_DOUBLE_EQ(s.faults.stall, 0.05);
  EXPECT_DOUBLE_EQ(s.faults.wrong_model, 0.2);
  EXPECT_TRUE(s.faults.first_attempt_only);
  EXPECT_EQ(s.wrong_model_name, "mock-other");
  EXPECT_EQ(s.seed, 42u);

  Scenario fixed = Scenario::from_json({{"latency", 5}}, "s.json");
  EXPECT_EQ(fixed.latency.kind, LatencySpec::Kind::fixed);
  EXPECT_EQ(fixed.latency.a_ms, 5);
  EXPECT_FALSE(fixed.valid_keys.has_value());

  Scenario normal = Scenario::from_json(
      {{"latency", {{"kind", "normal"}, {"mean_ms", 50}, {"stddev_ms", 10}}}}, "s.json");
  EXPECT_EQ(normal.latency.kind, LatencySpec::Kind::normal);
  Scenario expo =
      Scenario::from_json({{"latency", {{"kind", "exponential"}, {"mean_ms", 50}}}}, "s.json");
  EXPECT_EQ(expo.latency.kind, LatencySpec::Kind::exponential);
  EXPECT_EQ(expo.latency.a_ms, 50);
}

TEST(Scenario, UnknownFieldsNameTheFieldAndTheFile) {
  Error e = scenario_error({{"latency", 0}, {"latncy", 5}});
  EXPECT_EQ(e.code(), codes::SCENARIO_INVALID);
  EXPECT_EQ(e.stage(), Stage::config);
  EXPECT_NE(std::string(e.what()).find("latncy"), std::string::npos) << e.what();
  EXPECT_NE(std::string(e.what()).find("scenarios/flaky.json"), std::string::npos) << e.what();
  EXPECT_EQ(e.details()["field"], "latncy");

  e = scenario_error({{"faults", {{"timeout", 0.1}}}});
  EXPECT_NE(std::string(e.what()).find("faults.timeout"), std::string::npos) << e.what();
  e = scenario_error({{"rate_limit", {{"requests", 1}, {"per", "minute"}}}});
  EXPECT_NE(std::string(e.what()).find("rate_limit.per"), std::string::npos) << e.what();
  e = scenario_error({{"latency", {{"kind", "fixed"}, {"ms", 1}, {"max_ms", 3}}}});
  EXPECT_NE(std::string(e.what()).find("latency.max_ms"), std::string::npos) << e.what();
}

TEST(Scenario, ProbabilitiesMustBeInRangeAndSumToAtMostOne) {
  Error e = scenario_error({{"faults", {{"hang", 1.5}}}});
  EXPECT_NE(std::string(e.what()).find("faults.hang: expected a number in [0,1]"),
            std::string::npos)
      << e.what();
  e = scenario_error({{"faults", {{"hang", "often"}}}});
  EXPECT_NE(std::string(e.what()).find("faults.hang: expected a number in [0,1]"),
            std::string::npos);
  e = scenario_error({{"faults", {{"reset", -0.1}}}});
  EXPECT_NE(std::string(e.what()).find("faults.reset"), std::string::npos);
  e = scenario_error({{"faults", {{"error_500", 0.6}, {"stall", 0.6}}}});
  EXPECT_NE(std::string(e.what()).find("sum"), std::string::npos) << e.what();
  EXPECT_NO_THROW(Scenario::from_json({{"faults", {{"error_500", 0.5}, {"stall", 0.5}}}}, "s"));
}

TEST(Scenario, ParsesStreamAndCannedReplies) {
  Scenario s = Scenario::from_json(json::parse(R"({
        "stream": {"chunk_ms": 25, "comment_ms": 1000},
        "canned": [
          {"when": "fail me", "status": 429, "headers": {"retry-after": "1"}, "body": "slow down",
           "times": 2},
          {"body_json": {"error": {"message": "x", "code": null}}},
          {"when": "", "status": 503}
        ]
      })"),
                                   "s.json");
  EXPECT_EQ(s.stream.chunk_ms, 25);
  EXPECT_EQ(s.stream.comment_ms, 1000);
  ASSERT_EQ(s.canned.size(), 3u);
  EXPECT_EQ(s.canned[0].when, "fail me");
  EXPECT_EQ(s.canned[0].status, 429);
  ASSERT_EQ(s.canned[0].headers.size(), 1u);
  EXPECT_EQ(s.canned[0].headers[0].first, "retry-after");
  EXPECT_EQ(s.canned[0].headers[0].second, "1");
  EXPECT_EQ(s.canned[0].body, "slow down");
  EXPECT_EQ(s.canned[0].times, 2);
  EXPECT_EQ(s.canned[1].when, "");
  EXPECT_EQ(s.canned[1].status, 200);
  EXPECT_EQ(s.canned[1].body, R"({"error":{"code":null,"message":"x"}})");
  EXPECT_EQ(s.canned[1].times, 0);
  EXPECT_EQ(s.canned[2].body, "");

  Scenario defaults = Scenario::from_json(json::object(), "s.json");
  EXPECT_EQ(defaults.stream.chunk_ms, 0);
  EXPECT_EQ(defaults.stream.comment_ms, 0);
  EXPECT_TRUE(defaults.canned.empty());
  // An empty Lua table arrives as {}.
  EXPECT_TRUE(Scenario::from_json({{"canned", json::object()}}, "s.lua").canned.empty());
}

TEST(Scenario, CannedBodyBase64AndContentLength) {
  Scenario s = Scenario::from_json(
      json::parse(R"({"canned": [{"body_base64": "aGk/Pz8", "content_length": 99}, {"body_base64": "YQ=="}]})"), "s.json");
  ASSERT_EQ(s.canned.size(), 2u);
  EXPECT_EQ(s.canned[0].body, "hi???");
  EXPECT_EQ(s.canned[0].content_length, 99u);
  EXPECT_EQ(s.canned[1].body, "a");
  EXPECT_FALSE(s.canned[1].content_length.has_value());
  auto field = [](const json& j) { return scenario_error(j).details()["field"].get<std::string>(); };
  EXPECT_EQ(field({{"canned", {{{"body_base64", "not base64!"}}}}}), "canned[0].body_base64");
  EXPECT_EQ(field({{"canned", {{{"body_base64", "YQ"}, {"body", "a"}}}}}), "canned[0].body_base64");
  EXPECT_EQ(field({{"canned", {{{"content_length", -1}}}}}), "canned[0].content_length");
  EXPECT_EQ(field({{"canned", {{{"content_length", "12"}}}}}), "canned[0].content_length");
}

TEST(Scenario, StreamAndCannedErrorsNameTheField) {
  auto field = [](const json& j) { return scenario_error(j).details()["field"].get<std::string>(); };
  EXPECT_EQ(field({{"stream", "fast"}}), "stream");
  EXPECT_EQ(field({{"stream", {{"chunk_ms", -1}}}}), "stream.chunk_ms");
  EXPECT_EQ(field({{"stream", {{"comment_ms", 0.5}}}}), "stream.comment_ms");
  EXPECT_EQ(field({{"stream", {{"pieces", 4}}}}), "stream.pieces");
  EXPECT_NO_THROW(Scenario::from_json({{"stream", {{"comment_ms", 0}}}}, "s"));

  EXPECT_EQ(field({{"canned", "429"}}), "canned");
  EXPECT_EQ(field({{"canned", {5}}}), "canned[0]");
  EXPECT_EQ(field({{"canned", {json::object(), json::object(), {{"status", 700}}}}}),
            "canned[2].status");
  EXPECT_EQ(field({{"canned", {{{"status", 199}}}}}), "canned[0].status");
  EXPECT_EQ(field({{"canned", {{{"status", "429"}}}}}), "canned[0].status");
  EXPECT_EQ(field({{"canned", {json::object(), {{"bdy", "x"}}}}}), "canned[1].bdy");
  EXPECT_EQ(field({{"canned", {{{"when", 3}}}}}), "canned[0].when");
  EXPECT_EQ(field({{"canned", {{{"times", 0}}}}}), "canned[0].times");
  EXPECT_EQ(field({{"canned", {{{"times", 1.5}}}}}), "canned[0].times");
  EXPECT_EQ(field({{"canned", {{{"body", {{"a", 1}}}}}}}), "canned[0].body");
  EXPECT_EQ(field({{"canned", {{{"body", "x"}, {"body_json", 1}}}}}), "canned[0].body_json");
  EXPECT_EQ(field({{"canned", {{{"headers", "retry-after: 1"}}}}}), "canned[0].headers");
  EXPECT_EQ(field({{"canned", {{{"headers", {{"retry-after", 1}}}}}}}),
            "canned[0].headers.retry-after");
  EXPECT_EQ(field({{"canned", {{{"headers", {{"bad name", "x"}}}}}}}),
            "canned[0].headers.bad name");
  EXPECT_EQ(field({{"canned", {{{"headers", {{"x-a", "1\r\nx-b: 2"}}}}}}}), "canned[0].headers.x-a");
  EXPECT_EQ(field({{"canned", {{{"headers", {{"Content-Length", "3"}}}}}}}),
            "canned[0].headers.Content-Length");
  EXPECT_EQ(field({{"canned", {{{"headers", {{"transfer-encoding", "chunked"}}}}}}}),
            "canned[0].headers.transfer-encoding");

  Error e = scenario_error({{"canned", {json::object(), json::object(), {{"status", 700}}}}});
  EXPECT_EQ(e.code(), codes::SCENARIO_INVALID);
  EXPECT_NE(std::string(e.what()).find("scenarios/flaky.json: canned[2].status"), std::string::npos)
      << e.what();
}

TEST(Scenario, WrongTypesNameTheField) {
  auto message = [](const json& j) { return std::string(scenario_error(j).what()); };
  EXPECT_NE(message({{"latency", "fast"}}).find("latency"), std::string::npos);
  EXPECT_NE(message({{"latency", {{"kind", "gamma"}}}}).find("latency.kind"), std::string::npos);
  EXPECT_NE(message({{"latency", {{"kind", "uniform"}, {"min_ms", 5}}}}).find("latency.max_ms"),
            std::string::npos);
  EXPECT_NE(message({{"latency", -1}}).find("latency"), std::string::npos);
  EXPECT_NE(message({{"keys", "key-a"}}).find("keys"), std::string::npos);
  EXPECT_NE(message({{"keys", {"a", 3}}}).find("keys[1]"), std::string::npos);
  EXPECT_NE(message({{"rate_limit", {{"requests", -1}}}}).find("rate_limit.requests"),
            std::string::npos);
  EXPECT_NE(
      message({{"rate_limit", {{"requests", 1}, {"window_ms", 0}}}}).find("rate_limit.window_ms"),
      std::string::npos);
  EXPECT_NE(message({{"quota", {{"m-a", 1.5}}}}).find("quota.m-a"), std::string::npos);
  EXPECT_NE(message({{"faults", {{"first_attempt_only", 1}}}}).find("faults.first_attempt_only"),
            std::string::npos);
  EXPECT_NE(message({{"wrong_model", 7}}).find("wrong_model"), std::string::npos);
  EXPECT_NE(message({{"seed", -3}}).find("seed"), std::string::npos);
  EXPECT_NE(message(json::array()).find("object"), std::string::npos);
}

TEST(Scenario, ParsesToolsAndTurnRules) {
  Scenario s = Scenario::from_json(json::parse(R"({
        "tools": {"call_probability": 0.5, "max_calls": 3, "parallel": 2},
        "canned": [{"turn": 3, "hang": true}, {"turn": 2, "fault": "stall", "when": "x", "times": 1},
                   {"hang": false, "status": 500}]
      })"),
                                   "s.json");
  ASSERT_TRUE(s.tools.has_value());
  EXPECT_DOUBLE_EQ(s.tools->call_probability, 0.5);
  EXPECT_EQ(s.tools->max_calls, 3);
  EXPECT_EQ(s.tools->parallel, 2);
  ASSERT_EQ(s.canned.size(), 3u);
  EXPECT_EQ(s.canned[0].turn, 3);
  EXPECT_EQ(s.canned[0].fault, CannedFault::hang);
  EXPECT_EQ(s.canned[1].fault, CannedFault::stall);
  EXPECT_EQ(s.canned[1].times, 1);
  EXPECT_EQ(s.canned[2].fault, CannedFault::none);
  EXPECT_EQ(s.canned[2].turn, 0);

  Scenario defaults = Scenario::from_json({{"tools", {{"call_probability", 1}}}}, "s.lua");
  EXPECT_FALSE(defaults.tools->max_calls.has_value());
  EXPECT_EQ(defaults.tools->parallel, 1);
  EXPECT_FALSE(Scenario::from_json(json::object(), "s.json").tools.has_value());
}

TEST(Scenario, ToolsAndTurnErrorsNameTheField) {
  auto field = [](const json& j) { return scenario_error(j).details()["field"].get<std::string>(); };
  EXPECT_EQ(field({{"tools", "often"}}), "tools");
  EXPECT_EQ(field({{"tools", json::object()}}), "tools.call_probability");
  EXPECT_EQ(field({{"tools", {{"call_probability", 1.5}}}}), "tools.call_probability");
  EXPECT_EQ(field({{"tools", {{"call_probability", "half"}}}}), "tools.call_probability");
  EXPECT_EQ(field({{"tools", {{"call_probability", 1}, {"max_calls", -1}}}}), "tools.max_calls");
  EXPECT_EQ(field({{"tools", {{"call_probability", 1}, {"max_calls", 2.5}}}}), "tools.max_calls");
  EXPECT_EQ(field({{"tools", {{"call_probability", 1}, {"parallel", 0}}}}), "tools.parallel");
  EXPECT_EQ(field({{"tools", {{"call_probability", 1}, {"parallel", 129}}}}), "tools.parallel");
  EXPECT_EQ(field({{"tools", {{"call_probability", 1}, {"maxcalls", 2}}}}), "tools.maxcalls");
  Error e = scenario_error({{"tools", {{"call_probability", 1}, {"parallel", 0}}}});
  EXPECT_EQ(e.code(), codes::SCENARIO_INVALID);
  EXPECT_NE(std::string(e.what()).find("scenarios/flaky.json: tools.parallel"), std::string::npos)
      << e.what();

  EXPECT_EQ(field({{"canned", {{{"turn", 0}}}}}), "canned[0].turn");
  EXPECT_EQ(field({{"canned", {{{"turn", "2"}}}}}), "canned[0].turn");
  EXPECT_EQ(field({{"canned", {{{"hang", "yes"}}}}}), "canned[0].hang");
  EXPECT_EQ(field({{"canned", {{{"fault", "explode"}}}}}), "canned[0].fault");
  EXPECT_EQ(field({{"canned", {{{"fault", 1}}}}}), "canned[0].fault");
  EXPECT_EQ(field({{"canned", {{{"hang", true}, {"fault", "stall"}}}}}), "canned[0].fault");
  EXPECT_EQ(field({{"canned", {{{"hang", true}, {"status", 500}}}}}), "canned[0].status");
  EXPECT_EQ(field({{"canned", {{{"fault", "reset"}, {"body", "x"}}}}}), "canned[0].body");
}

}  // namespace
}  // namespace shepherd
