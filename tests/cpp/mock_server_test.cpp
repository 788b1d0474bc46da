#include "mock/mock_server.h"

#include <curl/curl.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "mock/details/chat_reply.h"
#include "mock/details/mock_behavior.h"
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

}  // namespace
}  // namespace shepherd
